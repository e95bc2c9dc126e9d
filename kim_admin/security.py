"""HTTP security headers, with a per-request nonce for the pages' scripts."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g


def csp_nonce() -> str:
    """The nonce of the current request (created on first use)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def _set_headers(response: Response) -> Response:
    nonce = csp_nonce()
    response.headers["Content-Security-Policy"] = "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            # Flask-Admin's markup carries style attributes; styles cannot run code.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action {_form_targets()}",
            "frame-ancestors 'none'",
        ]
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_app.config.get("KIM_ENV") == "production":
        # Browsers keep to HTTPS for a year once they have seen this over HTTPS.
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if _signed_in():
        # Whatever a signed-in user receives (pages, JSON, exports, templates) holds
        # figures or personal data: never stored by a browser or a shared proxy.
        response.headers["Cache-Control"] = "no-store, private"
        response.headers.pop("Expires", None)
        response.headers.pop("ETag", None)
        response.headers.pop("Last-Modified", None)
    elif response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _form_targets() -> str:
    """Where forms may lead: this site, and the OpenID provider when single sign-on is
    on, because logging out (a form) goes on to the provider's end-session endpoint
    and browsers apply form-action to the redirects after a form, too."""
    issuer = current_app.config.get("KIM_OIDC_ISSUER")
    if not issuer:
        return "'self'"
    parts = urlsplit(issuer)
    return f"'self' {parts.scheme}://{parts.netloc}"


def _signed_in() -> bool:
    """Whether this request runs in a login session (without loading one just for this)."""
    return "_login_user" in g and bool(getattr(g._login_user, "is_authenticated", False))


def init_app(app: Flask) -> None:
    """Add the headers to every response and the nonce to templates."""
    app.after_request(_set_headers)
    app.add_template_global(csp_nonce, "csp_nonce")
