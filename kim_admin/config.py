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

from .permissions import ROLES

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
    # Whom users tell about accessibility barriers (Erklärung zur Barrierefreiheit, BITV §7).
    KIM_ACCESSIBILITY_CONTACT = "barrierefreiheit@hochsauerlandkreis.de"
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
    # Single sign-on (kim_admin/oidc.py): the OpenID provider's issuer URL, e.g.
    # https://sso.kreis.example/realms/kreis; None switches the button off.
    KIM_OIDC_ISSUER: str | None = None
    # The client registered at the provider (also from KIM_OIDC_CLIENT_*_FILE).
    KIM_OIDC_CLIENT_ID: str | None = None
    KIM_OIDC_CLIENT_SECRET: str | None = None
    # Scopes asked for; e-mail (and groups, if mapped) must stand in the ID token.
    KIM_OIDC_SCOPES = "openid email profile"
    # The callback URL as registered at the provider; None: this site's /oidc/callback.
    KIM_OIDC_REDIRECT_URI: str | None = None
    # "group=role" pairs (comma-separated): a group claim *suggests* a role to the
    # district admin (audit trail); it never grants one.
    KIM_OIDC_GROUP_MAP: dict[str, str] = {}
    # The ID-token claim that lists the person's groups.
    KIM_OIDC_GROUPS_CLAIM = "groups"
    # Clock difference between provider and app tolerated on iat/exp, in seconds.
    KIM_OIDC_CLOCK_SKEW = 60
    # Seconds to wait for the provider (discovery, JWKS, token endpoint).
    KIM_OIDC_TIMEOUT = 10
    # "off": no password login, except for KIM_EMERGENCY_ACCOUNT (e-mail address),
    # the way in when the provider is down.
    KIM_LOCAL_LOGIN = "on"
    KIM_EMERGENCY_ACCOUNT: str | None = None
    # E-mail notifications (`flask notify run`): the SMTP server, port and login ...
    KIM_SMTP_HOST: str | None = None
    KIM_SMTP_PORT = 587
    KIM_SMTP_USER: str | None = None
    KIM_SMTP_PASSWORD: str | None = None
    # ... STARTTLS on the submission port (587) or implicit TLS (465), never both ...
    KIM_SMTP_STARTTLS = True
    KIM_SMTP_SSL = False
    # CA certificates (PEM) that sign the server's certificate, if not the system's,
    # e.g. the IT provider's own CA; certificates are always verified.
    KIM_SMTP_CA_FILE: str | None = None
    # ... and how long one connection attempt or reply may take, in seconds.
    KIM_SMTP_TIMEOUT = 30
    # The sender of every notification.
    KIM_MAIL_FROM: str | None = None
    # Where the app is reached by its users: the links in the mails start with it
    # (required in production; a development server's address otherwise).
    KIM_BASE_URL: str | None = None
    # Days before a quarter's deadline on which municipalities that have not submitted
    # are reminded (KIM_REMINDER_DAYS=14,3).
    KIM_REMINDER_DAYS = (14, 3)
    # A failed mail is retried after 15, 30, 60 ... minutes (at most a day), this many
    # attempts in all; then it stays "fehlgeschlagen" on the page Benachrichtigungen.
    KIM_NOTIFY_RETRY_MINUTES = 15
    KIM_NOTIFY_MAX_ATTEMPTS = 8
    # A mail claimed longer ago than this by a run that crashed is sent again.
    KIM_NOTIFY_CLAIM_MINUTES = 10
    # A list export with more rows than this runs as a job (0: always in the request).
    KIM_JOBS_EXPORT_ROWS = 100_000
    # Kreis-wide aggregates of the start page (charts and case figures of every
    # municipality) are shared for this many seconds (0: computed on every request);
    # the page says how old they are. Municipal staff always see their own at once.
    KIM_CACHE_SECONDS = 60
    # Where they are kept: a Redis shared by every worker (e.g. redis://127.0.0.1:6379/2);
    # None takes KIM_JOBS_URL if set, else each process keeps its own.
    KIM_CACHE_URL: str | None = None


#: Secrets that may also come from a file named by ``<NAME>_FILE`` (Docker secrets,
#: systemd credentials), so that they never stand in the environment itself.
SECRET_VARIABLES = (
    "KIM_SECRET_KEY",
    "KIM_DATABASE_URL",
    "KIM_DATABASE_PASSWORD",
    "KIM_RATELIMIT_STORAGE_URL",
    "KIM_JOBS_URL",
    "KIM_CACHE_URL",
    "KIM_OIDC_CLIENT_ID",
    "KIM_OIDC_CLIENT_SECRET",
    "KIM_SMTP_PASSWORD",
)
#: Spellings of "yes" in boolean variables (KIM_SMTP_STARTTLS=false switches it off).
TRUE_WORDS = ("1", "true", "yes", "ja", "on")


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
    for name in ("KIM_JOBS_URL", "KIM_JOBS_QUEUE", "KIM_CACHE_URL"):
        if env.get(name):
            app.config[name] = env[name]
    if env.get("KIM_CACHE_SECONDS"):
        app.config["KIM_CACHE_SECONDS"] = int(env["KIM_CACHE_SECONDS"])
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
    _load_oidc(app, env)
    if env.get("KIM_GRACE_DAYS"):
        app.config["KIM_GRACE_DAYS"] = int(env["KIM_GRACE_DAYS"])
    if env.get("KIM_SUPPRESSION_WIDTH"):
        app.config["KIM_SUPPRESSION_WIDTH"] = int(env["KIM_SUPPRESSION_WIDTH"])
    if env.get("KIM_SUPPRESSION_THRESHOLD"):
        app.config["KIM_SUPPRESSION_THRESHOLD"] = int(env["KIM_SUPPRESSION_THRESHOLD"])
    if env.get("KIM_ACCESSIBILITY_CONTACT"):
        app.config["KIM_ACCESSIBILITY_CONTACT"] = env["KIM_ACCESSIBILITY_CONTACT"]
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
        "KIM_SMTP_PORT",
        "KIM_SMTP_TIMEOUT",
        "KIM_NOTIFY_RETRY_MINUTES",
        "KIM_NOTIFY_MAX_ATTEMPTS",
        "KIM_NOTIFY_CLAIM_MINUTES",
        "KIM_JOBS_EXPORT_ROWS",
    ):
        if env.get(name):
            app.config[name] = int(env[name])
    for name in (
        "KIM_SMTP_HOST",
        "KIM_SMTP_USER",
        "KIM_SMTP_PASSWORD",
        "KIM_SMTP_CA_FILE",
        "KIM_MAIL_FROM",
    ):
        if env.get(name):
            app.config[name] = env[name]
    if env.get("KIM_BASE_URL"):
        app.config["KIM_BASE_URL"] = env["KIM_BASE_URL"].rstrip("/")
    for name in ("KIM_SMTP_STARTTLS", "KIM_SMTP_SSL"):
        if env.get(name):
            app.config[name] = env[name].strip().lower() in TRUE_WORDS
    if env.get("KIM_REMINDER_DAYS"):
        app.config["KIM_REMINDER_DAYS"] = tuple(
            int(day) for day in env["KIM_REMINDER_DAYS"].split(",") if day.strip()
        )


def _load_oidc(app: Flask, env: dict[str, str]) -> None:
    """The single sign-on settings and the switch for password logins."""
    for name in (
        "KIM_OIDC_ISSUER",
        "KIM_OIDC_CLIENT_ID",
        "KIM_OIDC_CLIENT_SECRET",
        "KIM_OIDC_SCOPES",
        "KIM_OIDC_REDIRECT_URI",
        "KIM_OIDC_GROUPS_CLAIM",
        "KIM_LOCAL_LOGIN",
        "KIM_EMERGENCY_ACCOUNT",
    ):
        if env.get(name):
            app.config[name] = env[name].strip()
    for name in ("KIM_OIDC_CLOCK_SKEW", "KIM_OIDC_TIMEOUT"):
        if env.get(name):
            app.config[name] = int(env[name])
    if env.get("KIM_OIDC_GROUP_MAP"):
        app.config["KIM_OIDC_GROUP_MAP"] = parse_group_map(env["KIM_OIDC_GROUP_MAP"])


def parse_group_map(text: str) -> dict[str, str]:
    """``"KIM-Kreis=district_admin, KIM-Steuerung=steering_group"`` as a dict.

    Only known roles are accepted: a typo must not silently suggest nothing.
    """
    codes = [code for code, _label in ROLES]
    mapping = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        group, _, role = pair.rpartition("=")
        if not group.strip() or role.strip() not in codes:
            raise RuntimeError(
                f"KIM_OIDC_GROUP_MAP: {pair!r} ist kein Paar Gruppe=Rolle; Rollen: "
                + ", ".join(codes)
            )
        mapping[group.strip()] = role.strip()
    return mapping


def _check_login_settings(app: Flask) -> None:
    """Single sign-on and the password switch: refuse what cannot work."""
    config = app.config
    if config["KIM_LOCAL_LOGIN"] not in ("on", "off"):
        raise RuntimeError(
            f"Unbekannter Wert KIM_LOCAL_LOGIN={config['KIM_LOCAL_LOGIN']!r}; erlaubt: on, off"
        )
    issuer = config.get("KIM_OIDC_ISSUER")
    if config["KIM_LOCAL_LOGIN"] == "off" and not issuer:
        raise RuntimeError(
            "KIM_LOCAL_LOGIN=off braucht KIM_OIDC_ISSUER: sonst kann sich niemand anmelden."
        )
    if not issuer:
        return
    if not config.get("KIM_OIDC_CLIENT_ID"):
        raise RuntimeError("KIM_OIDC_ISSUER ist gesetzt, KIM_OIDC_CLIENT_ID fehlt.")
    if config["KIM_ENV"] == "production" and not issuer.startswith("https://"):
        raise RuntimeError(
            f"KIM_OIDC_ISSUER={issuer!r}: in Produktion nur über https://, sonst können "
            "Anmeldungen unterwegs gelesen oder verändert werden."
        )


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
    _check_login_settings(app)
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
