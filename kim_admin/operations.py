"""Running behind a reverse proxy: trusted client addresses, request ids, request logs.

Every request gets an id (``g.request_id``), sent back as ``X-Request-ID``, printed on
the German error page and added to every log line written while it runs, so that a
clerk's "Fehlernummer" leads to the matching lines. One line per request says what
was asked and how it ended; it never holds query values, form data, figures or session
data (only the names of the query parameters).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, current_app, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter
from werkzeug.middleware.proxy_fix import ProxyFix

#: What an incoming X-Request-ID from a trusted proxy may look like (nginx's $request_id,
#: UUIDs); anything else is replaced by an id of our own.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")

#: The package's logger; request lines go to its child "kim_admin.requests".
LOGGER = "kim_admin"
request_log = logging.getLogger("kim_admin.requests")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(request_id)s"


class RequestIdFilter(logging.Filter):
    """Adds the current request's id (or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (gunicorn and pytest replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        """Ignored: the stream is looked up at each write."""


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for KIM_LOG_FORMAT ("json": one object per line, else text)."""
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"})
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str) -> None:
    """One handler on the package's logger, to standard error, in the chosen format.

    Idempotent: every app of a process (tests build many) shares the one handler.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    handler = next((h for h in logger.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
    handler.setFormatter(make_formatter(log_format))


def _request_id() -> str:
    """The id of this request: the trusted proxy's, if sane, else a new one."""
    if current_app.config["KIM_TRUSTED_PROXIES"] > 0:
        incoming = request.headers.get("X-Request-ID", "")
        if SANE_REQUEST_ID.fullmatch(incoming):
            return incoming
    return uuid.uuid4().hex


def _start() -> None:
    g.request_id = _request_id()
    g.request_started = time.perf_counter()


def _user_id() -> int | None:
    """The signed-in user's id, if this request loaded one (never loads it just for this)."""
    user = g.get("_login_user")
    if user is not None and getattr(user, "is_authenticated", False):
        return user.id
    return None


def _finish(response: Response) -> Response:
    request_id = g.get("request_id") or _request_id()
    response.headers["X-Request-ID"] = request_id
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 1) if started else None
    keys = ",".join(sorted(request.args.keys()))
    path = request.path + (f"?{keys}" if keys else "")
    request_log.info(
        "%s %s %s %sms user=%s",
        request.method,
        path,
        response.status_code,
        duration,
        _user_id() or "-",
        extra={
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "query_keys": keys or None,
            "status": response.status_code,
            "duration_ms": duration,
            "user_id": _user_id(),
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Trust KIM_TRUSTED_PROXIES proxies, give each request an id, log each request."""
    proxies = app.config["KIM_TRUSTED_PROXIES"]
    if proxies > 0:
        # Without this, X-Forwarded-For is ignored: anyone could otherwise pick the
        # address the login throttle counts against.
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    configure_logging(app.config["KIM_LOG_FORMAT"])
    app.before_request(_start)
    app.after_request(_finish)
