"""Single sign-on with OpenID Connect (Keycloak, ADFS, Entra ID) through Authlib.

The provider only says *who* someone is; what they may do (role, municipality) stays
in KIM-Admin. A person is matched to an existing, active user by the provider's
subject once linked, else by a verified e-mail address (then linked); nobody gets an
account by signing on. Authlib runs the authorization code flow with PKCE, ``state``
and ``nonce`` and checks the ID token's signature against the provider's JWKS; the
issuer, audience and expiry are checked here explicitly (Authlib alone accepts a
token for another audience when its ``azp`` names this client).

A single sign-on session lives as long as its ID token: at the first request after
the token's expiry it is renewed with the refresh token (which the provider refuses
once the person has signed out there), or ended. Logout ends the provider session
too (RP-initiated logout).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.cli import AppGroup
from flask_login import current_user, login_user
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from sqlalchemy import func, select

from models import AuditEvent, LoginSession, User
from models._common import utcnow
from models.user import new_session_token

from . import audit, sessions
from .accounts import find_user
from .extensions import db
from .permissions import ROLES, role_label
from .redirects import safe_next

bp = Blueprint("oidc", __name__, url_prefix="/oidc")
sso_cli = AppGroup("sso", help="Anmeldung mit Dienstkonto (OpenID Connect).")

#: Name of the client in Authlib's registry (its settings would be OIDC_* in app.config).
CLIENT = "oidc"
#: Where the page to return to waits during the round trip to the provider.
NEXT_KEY = "kim_oidc_next"
#: Longest query string the callback reads (code, state, iss, session_state).
CALLBACK_MAX = 4096

#: What the person reads when a sign-on is refused, by reason (also the audit's reason).
REFUSALS = {
    "request": "Die Antwort des Anmeldedienstes ist ungültig. Bitte melden Sie sich erneut an.",
    "state": "Die Anmeldung gehört nicht zu dieser Browsersitzung (state ungültig oder schon "
    "verwendet). Bitte starten Sie die Anmeldung erneut.",
    "provider": "Die Anmeldung wurde beim Dienstkonto abgebrochen oder abgelehnt.",
    "code": "Der Anmeldecode wurde vom Anmeldedienst nicht angenommen (abgelaufen oder schon "
    "verwendet). Bitte melden Sie sich erneut an.",
    "nonce": "Das Anmeldetoken gehört nicht zu dieser Anmeldung (nonce stimmt nicht). "
    "Die Anmeldung wurde abgelehnt.",
    "signature": "Die Signatur des Anmeldetokens ist ungültig. Die Anmeldung wurde abgelehnt.",
    "audience": "Das Anmeldetoken wurde für eine andere Anwendung ausgestellt. "
    "Die Anmeldung wurde abgelehnt.",
    "expired": "Das Anmeldetoken ist abgelaufen. Bitte melden Sie sich erneut an.",
    "issuer": "Das Anmeldetoken stammt nicht vom eingerichteten Anmeldedienst. "
    "Die Anmeldung wurde abgelehnt.",
    "claims": "Das Anmeldetoken ist unvollständig. Die Anmeldung wurde abgelehnt.",
    "unreachable": "Der Anmeldedienst ist zurzeit nicht erreichbar. Bitte versuchen Sie es "
    "später erneut.",
    "inactive": "Ihr Zugang zu KIM-Admin ist gesperrt. Bitte wenden Sie sich an die "
    "Kreisverwaltung.",
    "subject": "Ihre E-Mail-Adresse ist in KIM-Admin schon mit einem anderen Dienstkonto "
    "verknüpft. Bitte wenden Sie sich an die Kreisverwaltung.",
}
#: Shown when a single sign-on session ends because the provider no longer confirms it.
EXPIRED = "Ihre Anmeldung beim Dienstkonto ist abgelaufen. Bitte melden Sie sich erneut an."


class Refused(Exception):
    """A sign-on that must not open a session; ``reason`` is a key of :data:`REFUSALS`."""

    def __init__(self, reason: str, user: User | None = None, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user = user
        self.details = details


def enabled() -> bool:
    """Whether single sign-on is configured for this app."""
    return bool(current_app.config.get("KIM_OIDC_ISSUER"))


def _issuer() -> str:
    return current_app.config["KIM_OIDC_ISSUER"].rstrip("/")


def _client():
    """The Authlib client of this app (registered in :func:`init_app`)."""
    return current_app.extensions["authlib.integrations.flask_client"].create_client(CLIENT)


def _metadata() -> dict[str, Any]:
    """The provider's discovery document, fetched once per app; its issuer must be ours."""
    metadata = _client().load_server_metadata()
    if str(metadata.get("issuer", "")).rstrip("/") != _issuer():
        raise Refused("issuer")
    return metadata


def _claims_options() -> dict[str, Any]:
    """What the ID token must say: this issuer, this client as audience, a subject."""
    return {
        "iss": {"essential": True, "values": [current_app.config["KIM_OIDC_ISSUER"]]},
        "aud": {"essential": True, "values": [current_app.config["KIM_OIDC_CLIENT_ID"]]},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }


def _redirect_uri() -> str:
    return current_app.config.get("KIM_OIDC_REDIRECT_URI") or url_for(
        "oidc.callback", _external=True
    )


@bp.get("/login")
def login():
    """Send the browser to the provider (state, nonce and PKCE verifier stay in the session)."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    if not enabled():
        return redirect(url_for("auth.login"))
    # One sign-on at a time per browser: unfinished earlier ones (Authlib keeps each
    # flow's state, nonce and verifier in the session) are dropped, so that the cookie
    # does not grow with every click.
    for key in [key for key in session if key.startswith(f"_state_{CLIENT}_")]:
        session.pop(key)
    session[NEXT_KEY] = safe_next(request.args.get("next"))
    try:
        _metadata()
        return _client().authorize_redirect(_redirect_uri())
    except Refused as refusal:
        return _refuse(refusal)
    except (requests.RequestException, ValueError):
        current_app.logger.warning("OpenID provider not reachable for discovery", exc_info=True)
        return _refuse(Refused("unreachable"))


@bp.get("/callback")
def callback():
    """The provider's answer: check it, match the person, open a session."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    if not enabled():
        return redirect(url_for("auth.login"))
    try:
        claims, token = _verified_claims()
        user, link = _match(claims)
        if not user.active:
            raise Refused("inactive", user)
    except Refused as refusal:
        return _refuse(refusal)
    next_url = session.get(NEXT_KEY)
    # A new session (and CSRF token) at login: nothing planted before survives.
    session.clear()
    if link:
        user.oidc_issuer, user.oidc_subject = _issuer(), claims["sub"]
    sessions.start(
        user,
        id_token=token["id_token"],
        refresh_token=token.get("refresh_token"),
        recheck_at=_expiry(claims),
    )
    login_user(user)
    user.last_login_at = utcnow()
    audit.record(
        "login",
        "user",
        user.id,
        user.municipality_id,
        new={"method": "oidc", "linked": link, **_suggestion(claims)},
    )
    db.session.commit()
    flash("Sie sind angemeldet.", "success")
    return redirect(next_url or url_for("admin.index"))


def _verified_claims() -> tuple[dict[str, Any], dict[str, Any]]:
    """Exchange the code and check the ID token; the claims and the token response."""
    if len(request.query_string) > CALLBACK_MAX:
        raise Refused("request")
    if request.args.get("error"):
        raise Refused("provider", error=request.args.get("error", "")[:100])
    try:
        _metadata()
        token = _client().authorize_access_token(
            claims_options=_claims_options(),
            leeway=current_app.config["KIM_OIDC_CLOCK_SKEW"],
        )
    except MismatchingStateError as exc:
        raise Refused("state") from exc
    except OAuthError as exc:
        raise Refused("code", error=str(exc.error)[:100]) from exc
    except JoseError as exc:
        raise Refused(_token_fault(exc)) from exc
    except requests.RequestException as exc:
        current_app.logger.warning("OpenID provider not reachable", exc_info=True)
        raise Refused("unreachable") from exc
    claims = token.get("userinfo")
    if not claims or "id_token" not in token:
        raise Refused("claims")  # no ID token: nothing says who this is
    return dict(claims), token


def _token_fault(exc: JoseError) -> str:
    """The reason an ID token was refused, from the check that failed."""
    if isinstance(exc, ExpiredTokenError):
        return "expired"
    if isinstance(exc, ClaimError):
        return {"aud": "audience", "azp": "audience", "nonce": "nonce", "iss": "issuer"}.get(
            exc.claim, "claims"
        )
    return "signature"


def _match(claims: dict[str, Any]) -> tuple[User, bool]:
    """The user this person is, and whether their subject is to be linked now."""
    subject = str(claims["sub"])
    if len(subject) > 255:  # OpenID Connect Core 1.0, 2: at most 255 ASCII characters
        raise Refused("claims")
    user = db.session.scalar(
        select(User).where(User.oidc_issuer == _issuer(), User.oidc_subject == subject)
    )
    if user is not None:
        return user, False
    email = _verified_email(claims)
    if email:
        user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None:
        typed = claims.get("email")
        shown = email or (typed.strip()[:254] if isinstance(typed, str) else None)
        raise Refused("no_access", email=shown, **_suggestion(claims))
    if user.oidc_subject and user.oidc_issuer == _issuer():
        raise Refused("subject", user)  # the address belongs to another person there
    return user, True


def _verified_email(claims: dict[str, Any]) -> str | None:
    """The e-mail address, lower-case, if the provider vouches for it.

    ADFS sends no ``email_verified`` by default; README shows the claim rule that adds it.
    """
    email = claims.get("email")
    verified = claims.get("email_verified") in (True, "true", "True")
    if not isinstance(email, str) or not verified or len(email) > 254:
        return None
    return email.strip().lower()


def _suggestion(claims: dict[str, Any]) -> dict[str, Any]:
    """The role(s) KIM_OIDC_GROUP_MAP suggests for the person's groups (never granted,
    never with a municipality: that the district admin decides)."""
    mapping = current_app.config.get("KIM_OIDC_GROUP_MAP") or {}
    groups = claims.get(current_app.config["KIM_OIDC_GROUPS_CLAIM"]) or []
    if isinstance(groups, str):
        groups = [groups]
    if not mapping or not isinstance(groups, list):
        return {}
    order = [code for code, _label in ROLES]
    roles = sorted(
        {mapping[g] for g in groups if isinstance(g, str) and g in mapping}, key=order.index
    )
    if not roles:
        return {}
    return {"suggested_role": ", ".join(role_label(role) for role in roles)}


def _expiry(claims: dict[str, Any]) -> datetime:
    """The ID token's ``exp`` as a naive UTC datetime (as the database keeps times),
    at most a year ahead: no session lives that long, and no date overflows."""
    latest = utcnow() + timedelta(days=366)
    try:
        expiry = datetime.fromtimestamp(int(claims["exp"]), UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return latest
    return min(expiry, latest)


def _refuse(refusal: Refused):
    """Record the refusal, count it against the login throttle and say why in German."""
    g.login_failed = True
    user = refusal.user
    email = refusal.details.pop("email", None) or (user.email if user else None)
    audit.record(
        "login_failed",
        "user",
        user.id if user else None,
        user.municipality_id if user else None,
        new={"method": "oidc", "reason": refusal.reason, **refusal.details},
        user_email=email,
    )
    db.session.commit()
    if refusal.reason == "no_access":
        return render_template("auth/no_access.html", email=email), 403
    flash(REFUSALS[refusal.reason], "error")
    return redirect(url_for("auth.login"))


def still_signed_on(token: str) -> bool:
    """Whether the single sign-on session of ``token`` may serve this request.

    Before the ID token's expiry: yes. After it: only if the provider renews it
    (refresh token, refused by the provider once its own session has ended); otherwise
    the session ends here. Password sessions have no expiry of this kind.
    """
    row = db.session.get(LoginSession, sessions.token_hash(token))
    if row is None or row.recheck_at is None or utcnow() < row.recheck_at:
        return True
    if row.refresh_token and enabled():
        try:
            renewed = _renew(row)
        except (OAuthError, JoseError, requests.RequestException, Refused):
            renewed = False
        if renewed:
            db.session.commit()
            return True
    user = row.user
    db.session.delete(row)
    # Recorded directly: the audit's actor lookup would ask Flask-Login for the user
    # that is being loaded right now.
    db.session.add(
        AuditEvent(
            action="logout",
            object_type="user",
            object_id=str(user.id),
            municipality_id=user.municipality_id,
            user_id=user.id,
            user_email=user.email,
            new_values={"method": "oidc", "reason": "id_token_expired"},
        )
    )
    db.session.commit()
    flash(EXPIRED, "info")
    return False


def _renew(row: LoginSession) -> bool:
    """Refresh the tokens of ``row``; True if the provider confirmed the same person."""
    client = _client()
    _metadata()
    token = client.fetch_access_token(grant_type="refresh_token", refresh_token=row.refresh_token)
    if "id_token" not in token:
        return False
    claims = client.parse_id_token(
        token,
        nonce=None,
        claims_options=_claims_options(),
        leeway=current_app.config["KIM_OIDC_CLOCK_SKEW"],
    )
    user = row.user
    if str(claims["sub"]) != user.oidc_subject or user.oidc_issuer != _issuer():
        return False
    row.id_token = token["id_token"]
    row.refresh_token = token.get("refresh_token") or row.refresh_token
    row.recheck_at = _expiry(claims)
    return True


def logout_url(token: str | None) -> str | None:
    """Where to send the browser so that the provider ends its session too (or None).

    Called before the local session ends; the provider returns to the login page.
    """
    if not token or not enabled():
        return None
    row = db.session.get(LoginSession, sessions.token_hash(token))
    if row is None or not row.id_token:
        return None
    try:
        _metadata()
        result = _client().create_logout_url(
            post_logout_redirect_uri=url_for("auth.login", _external=True),
            id_token_hint=row.id_token,
            client_id=current_app.config["KIM_OIDC_CLIENT_ID"],
        )
    except (requests.RequestException, RuntimeError, ValueError, Refused):
        current_app.logger.warning("RP-initiated logout not possible", exc_info=True)
        return None
    return result["url"]


@sso_cli.command("unlink")
@click.argument("email")
def unlink(email: str) -> None:
    """Forget which provider account a user is linked to (e.g. after it was replaced);
    ends their sessions. The next sign-on links by verified e-mail again."""
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"Kein Benutzer mit der E-Mail-Adresse {email}.")
    user.oidc_issuer = user.oidc_subject = None
    user.session_token = new_session_token()
    db.session.commit()
    click.echo(f"Dienstkonto von {user.email} gelöst; seine Sitzungen sind beendet.")


def init_app(app: Flask) -> None:
    """Register the routes and, when KIM_OIDC_ISSUER is set, the Authlib client.

    Nothing is fetched here: the discovery document is loaded at the first sign-on.
    """
    app.register_blueprint(bp)
    oauth = OAuth(app)
    if not app.config.get("KIM_OIDC_ISSUER"):
        return
    secret = app.config.get("KIM_OIDC_CLIENT_SECRET")
    oauth.register(
        CLIENT,
        client_id=app.config["KIM_OIDC_CLIENT_ID"],
        client_secret=secret,
        server_metadata_url=app.config["KIM_OIDC_ISSUER"].rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": app.config["KIM_OIDC_SCOPES"],
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
            "default_timeout": app.config["KIM_OIDC_TIMEOUT"],
        },
    )
    # Refused sign-ons count against the same per-address limit as wrong passwords.
    limiter = app.extensions["kim_limiter"]
    app.view_functions["oidc.callback"] = limiter.shared_limit(
        lambda: current_app.config["KIM_LOGIN_LIMIT_CLIENT"],
        "login-client",
        deduct_when=lambda response: bool(g.get("login_failed")),
    )(callback)
