"""Configuration: defaults in :class:`Config`, deployment values from ``KIM_*``.

Nothing here reads the environment at import time; :func:`load_environment` is
called by the application factory, so every test can build its own app.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


#: Values of KIM_ENV; anything else is refused at start.
ENVIRONMENTS = ("development", "production")
#: Shortest KIM_SECRET_KEY accepted.
MIN_SECRET_BYTES = 32
#: Values of KIM_LOG_FORMAT.
LOG_FORMATS = ("text", "json")


class Config:
    """Defaults shared by every environment."""

    # "development" or "production"; production refuses to start without a secret key.
    KIM_ENV = "development"
    # Set from KIM_DATABASE_URL; None means SQLite in the instance folder.
    SQLALCHEMY_DATABASE_URI: str | None = None
    # Recycle pooled connections a server may have dropped (PostgreSQL in production).
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True}
    # Signs the session cookie and CSRF tokens; from KIM_SECRET_KEY or the instance folder.
    SECRET_KEY: str | None = None
    # The interface speaks German only.
    BABEL_DEFAULT_LOCALE = "de"
    # Dates and times are shown in the Kreis' own time zone.
    BABEL_DEFAULT_TIMEZONE = "Europe/Berlin"
    # Session cookie hardening; SECURE is switched on in production.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    # No long-lived "remember me" cookie: a shared office PC must not stay logged in.
    REMEMBER_COOKIE_DURATION = 0
    # CSRF tokens live as long as the session, so long forms do not expire mid-entry.
    WTF_CSRF_TIME_LIMIT = None
    # Flask-Admin: show a German message instead of raising on integrity errors.
    FLASK_ADMIN_RAISE_ON_INTEGRITY_ERROR = False
    # Days after a quarter's deadline during which municipalities may still edit.
    KIM_GRACE_DAYS = 14
    # A login session ends after this many minutes without a request ...
    KIM_SESSION_IDLE_MINUTES = 60
    # ... and after this many hours in any case (a working day).
    KIM_SESSION_MAX_HOURS = 10
    # Published figures hide counts below this (1 and 2 by default, as the Bundesagentur
    # für Arbeit does), with secondary suppression; internal exports stay exact.
    KIM_SUPPRESSION_THRESHOLD = 3
    # Least width of what a reader can work out for a hidden cell of a published
    # report (interval protection); None means the threshold.
    KIM_SUPPRESSION_WIDTH: int | None = None
    # Largest upload accepted (Excel templates), in bytes.
    MAX_CONTENT_LENGTH = 5 * 1024 * 1024
    # Failed logins allowed per account and per client address before a pause.
    KIM_LOGIN_LIMIT_ACCOUNT = "5 per 15 minutes"
    KIM_LOGIN_LIMIT_CLIENT = "20 per 15 minutes"
    # Where the throttle counts: memory:// for one app server, redis://host:6379 for several.
    RATELIMIT_STORAGE_URI = "memory://"
    # Namespace of the counters, so that several deployments can share one Redis.
    RATELIMIT_KEY_PREFIX = "kim"
    # Werkzeug method for new password hashes. Keep scrypt in every deployment; the
    # test suite sets a deliberately cheap one ("pbkdf2:sha256:1"), as Django projects
    # do with a fast test hasher. Existing hashes are checked with the method they name.
    KIM_PASSWORD_HASH_METHOD = "scrypt"  # noqa: S105 (a method's name, not a password)
    # Reverse proxies in front of the app whose X-Forwarded-* headers are trusted (0: none,
    # so the client address is the TCP peer's and X-Request-ID is always generated here).
    KIM_TRUSTED_PROXIES = 0
    # Log format of the request and error lines: "text" or "json" (one object per line).
    KIM_LOG_FORMAT = "text"
    # Processes serving the app (gunicorn workers); more than one needs a shared throttle store.
    KIM_WORKERS = 1
    # Pooled database connections per worker, and how many more it may open at peaks.
    KIM_DB_POOL_SIZE = 5
    KIM_DB_MAX_OVERFLOW = 10
    # `flask audit purge`: login, logout, failed and throttled logins are kept this many
    # days; data changes at least this many years (purged only when older).
    KIM_AUDIT_LOGIN_DAYS = 365
    KIM_AUDIT_CHANGE_YEARS = 6
    # Background jobs (kim_admin.jobs): the Redis of the RQ queue, e.g. redis://127.0.0.1:6379/1;
    # None runs jobs in a thread of the app process (one machine, nothing to install).
    KIM_JOBS_URL: str | None = None
    # Name of the RQ queue (several deployments or test runs on one Redis keep apart).
    KIM_JOBS_QUEUE = "kim"
    # A job running longer than this many seconds is stopped and marked failed.
    KIM_JOBS_TIMEOUT = 1800
    # A running job touches its row this often (seconds); one whose row has not been
    # touched for KIM_JOBS_STALE_SECONDS is taken for dead (worker killed) and marked failed.
    KIM_JOBS_HEARTBEAT_SECONDS = 10
    KIM_JOBS_STALE_SECONDS = 60
    # Largest result file a job may store (bytes); a larger one fails with a German message.
    KIM_JOBS_MAX_RESULT_BYTES = 100 * 1024 * 1024
    # Finished jobs and their files are deleted after this many hours.
    KIM_JOBS_KEEP_HOURS = 24
    # A list export with more rows than this runs as a job (0: always in the request).
    KIM_JOBS_EXPORT_ROWS = 100_000


#: Secrets that may also come from a file named by ``<NAME>_FILE`` (Docker secrets,
#: systemd credentials), so that they never stand in the environment itself.
SECRET_VARIABLES = (
    "KIM_SECRET_KEY",
    "KIM_DATABASE_URL",
    "KIM_DATABASE_PASSWORD",
    "KIM_RATELIMIT_STORAGE_URL",
    "KIM_JOBS_URL",
)


def read_environment() -> dict[str, str]:
    """``os.environ`` with every ``<SECRET>_FILE`` read into ``<SECRET>``.

    A value given directly wins over a file; a named file that cannot be read
    stops the start with a message naming the variable (not the secret).
    """
    env = dict(os.environ)
    for name in SECRET_VARIABLES:
        path = env.get(f"{name}_FILE")
        if path and not env.get(name):
            try:
                env[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise RuntimeError(
                    f"{name}_FILE: Datei {path} ist nicht lesbar ({exc.strerror})."
                ) from exc
    return env


def load_environment(app: Flask) -> None:
    """Apply ``KIM_*`` environment variables (and ``*_FILE`` secrets) to ``app.config``."""
    env = read_environment()
    if "KIM_ENV" in env:
        app.config["KIM_ENV"] = env["KIM_ENV"]
    if env.get("KIM_DATABASE_URL"):
        url = env["KIM_DATABASE_URL"]
        if env.get("KIM_DATABASE_PASSWORD"):
            # The password apart from the URL: no escaping of special characters needed.
            url = make_url(url).set(password=env["KIM_DATABASE_PASSWORD"])
            url = url.render_as_string(hide_password=False)
        app.config["SQLALCHEMY_DATABASE_URI"] = url
    if env.get("KIM_RATELIMIT_STORAGE_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = env["KIM_RATELIMIT_STORAGE_URL"]
    for name in ("KIM_JOBS_URL", "KIM_JOBS_QUEUE"):
        if env.get(name):
            app.config[name] = env[name]
    if env.get("KIM_RATELIMIT_KEY_PREFIX"):
        app.config["RATELIMIT_KEY_PREFIX"] = env["KIM_RATELIMIT_KEY_PREFIX"]
    if env.get("KIM_SECRET_KEY"):
        if len(env["KIM_SECRET_KEY"].encode()) < MIN_SECRET_BYTES:
            raise RuntimeError(
                f"KIM_SECRET_KEY ist zu kurz: mindestens {MIN_SECRET_BYTES} Bytes, z. B. "
                "python -c 'import secrets; print(secrets.token_hex(32))'."
            )
        app.config["SECRET_KEY"] = env["KIM_SECRET_KEY"]
    for name in ("KIM_SESSION_IDLE_MINUTES", "KIM_SESSION_MAX_HOURS"):
        if env.get(name):
            app.config[name] = int(env[name])
    if env.get("KIM_GRACE_DAYS"):
        app.config["KIM_GRACE_DAYS"] = int(env["KIM_GRACE_DAYS"])
    if env.get("KIM_SUPPRESSION_WIDTH"):
        app.config["KIM_SUPPRESSION_WIDTH"] = int(env["KIM_SUPPRESSION_WIDTH"])
    if env.get("KIM_SUPPRESSION_THRESHOLD"):
        app.config["KIM_SUPPRESSION_THRESHOLD"] = int(env["KIM_SUPPRESSION_THRESHOLD"])
    if env.get("KIM_LOG_FORMAT"):
        app.config["KIM_LOG_FORMAT"] = env["KIM_LOG_FORMAT"]
    # gunicorn reads WEB_CONCURRENCY when no worker count is given; gunicorn.conf.py
    # exports the count it runs with as KIM_WORKERS.
    workers = env.get("KIM_WORKERS") or env.get("WEB_CONCURRENCY")
    if workers:
        app.config["KIM_WORKERS"] = int(workers)
    for name in (
        "KIM_TRUSTED_PROXIES",
        "KIM_DB_POOL_SIZE",
        "KIM_DB_MAX_OVERFLOW",
        "KIM_AUDIT_LOGIN_DAYS",
        "KIM_AUDIT_CHANGE_YEARS",
        "KIM_JOBS_TIMEOUT",
        "KIM_JOBS_HEARTBEAT_SECONDS",
        "KIM_JOBS_STALE_SECONDS",
        "KIM_JOBS_MAX_RESULT_BYTES",
        "KIM_JOBS_KEEP_HOURS",
        "KIM_JOBS_EXPORT_ROWS",
    ):
        if env.get(name):
            app.config[name] = int(env[name])


def finalize(app: Flask) -> None:
    """Fill in what depends on other settings: database, secret key, cookies."""
    instance = Path(app.instance_path)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        instance.mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'kim.db'}"
    if app.config["KIM_ENV"] not in ENVIRONMENTS:
        raise RuntimeError(
            f"Unbekannter Wert KIM_ENV={app.config['KIM_ENV']!r}; erlaubt: "
            + ", ".join(ENVIRONMENTS)
        )
    production = app.config["KIM_ENV"] == "production"
    if production:
        app.config["SESSION_COOKIE_SECURE"] = True
    if production:
        _refuse_unsafe_production(app)
        # Database errors in the log name the statement, never its values (figures,
        # e-mail addresses): SQLAlchemy leaves the parameters out of its messages.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "hide_parameters": True,
        }
    if app.config["KIM_LOG_FORMAT"] not in LOG_FORMATS:
        raise RuntimeError(
            f"Unbekannter Wert KIM_LOG_FORMAT={app.config['KIM_LOG_FORMAT']!r}; erlaubt: "
            + ", ".join(LOG_FORMATS)
        )
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A copy: the class attribute is shared by every app of the process.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_size": app.config["KIM_DB_POOL_SIZE"],
            "max_overflow": app.config["KIM_DB_MAX_OVERFLOW"],
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
        }
    if not app.config.get("SECRET_KEY"):
        if production:
            raise RuntimeError(
                "KIM_SECRET_KEY must be set when KIM_ENV=production "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')."
            )
        app.config["SECRET_KEY"] = _development_secret(instance)


def _refuse_unsafe_production(app: Flask) -> None:
    """Settings that work on a developer's machine but not in production."""
    if app.config.get("DEBUG"):
        raise RuntimeError(
            "Der Debug-Modus (FLASK_DEBUG) ist mit KIM_ENV=production nicht erlaubt: "
            "er zeigt Quelltext und erlaubt das Ausführen von Code im Browser."
        )
    if app.config["KIM_WORKERS"] > 1 and app.config["RATELIMIT_STORAGE_URI"].startswith(
        "memory://"
    ):
        raise RuntimeError(
            f"Mit {app.config['KIM_WORKERS']} Worker-Prozessen zählt jeder Prozess "
            "Fehlanmeldungen für sich: bitte KIM_RATELIMIT_STORAGE_URL auf einen gemeinsamen "
            "Speicher setzen, z. B. KIM_RATELIMIT_STORAGE_URL=redis://127.0.0.1:6379."
        )


def _development_secret(instance: Path) -> str:
    """A secret generated once per checkout and kept in the instance folder."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key
