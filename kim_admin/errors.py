"""German error pages; no stack trace or SQL ever reaches the user."""

from __future__ import annotations

import logging

from flask import Flask, g, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .extensions import db

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Ungültige Anfrage", "Die Anfrage konnte nicht verarbeitet werden."),
    403: ("Kein Zugriff", "Für diese Seite oder Aktion fehlt Ihnen die Berechtigung."),
    404: ("Nicht gefunden", "Die angeforderte Seite gibt es nicht."),
    405: ("Nicht erlaubt", "Diese Aktion ist auf diesem Weg nicht möglich."),
    413: ("Datei zu groß", "Die hochgeladene Datei ist zu groß (höchstens 5 MB)."),
    500: (
        "Interner Fehler",
        "Es ist ein Fehler aufgetreten. Bitte versuchen Sie es später erneut.",
    ),
}


def _page(status: int, detail: str | None = None):
    title, text = MESSAGES.get(status, MESSAGES[500])
    # The request id lets a clerk quote the error and support find its log lines.
    page = render_template(
        "kim/error.html",
        status=status,
        title=title,
        text=detail or text,
        request_id=g.get("request_id"),
    )
    return page, status


def _http_error(error: HTTPException):
    return _page(error.code or 500)


def _csrf_error(error: CSRFError):
    return _page(
        400,
        "Das Formular ist abgelaufen oder ungültig (Sicherheitsprüfung). Bitte laden Sie "
        "die Seite neu und senden Sie es erneut ab.",
    )


def _unexpected(error: Exception):
    # The log line carries the request id (kim_admin.operations), as the page does.
    log.exception("Unhandled error")
    db.session.rollback()
    return _page(500)


def init_app(app: Flask) -> None:
    """Register the handlers (429 is the login's own, see ``kim_admin.auth``)."""
    app.register_error_handler(CSRFError, _csrf_error)
    for code in (400, 403, 404, 405, 413):
        app.register_error_handler(code, _http_error)
    if not app.testing:
        # In tests an unexpected exception should fail loudly instead.
        app.register_error_handler(Exception, _unexpected)
