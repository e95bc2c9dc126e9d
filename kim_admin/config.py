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

PROJECT_ROOT = Path(__file__).resolve().parent.parent


#: Values of KIM_ENV; anything else is refused at start.
ENVIRONMENTS = ("development", "production")
#: Shortest KIM_SECRET_KEY accepted.
MIN_SECRET_BYTES = 32


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


def load_environment(app: Flask) -> None:
    """Apply ``KIM_*`` environment variables to ``app.config``."""
    env = os.environ
    if "KIM_ENV" in env:
        app.config["KIM_ENV"] = env["KIM_ENV"]
    if env.get("KIM_DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = env["KIM_DATABASE_URL"]
    if env.get("KIM_RATELIMIT_STORAGE_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = env["KIM_RATELIMIT_STORAGE_URL"]
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
    if env.get("KIM_SUPPRESSION_THRESHOLD"):
        app.config["KIM_SUPPRESSION_THRESHOLD"] = int(env["KIM_SUPPRESSION_THRESHOLD"])


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
    if not app.config.get("SECRET_KEY"):
        if production:
            raise RuntimeError(
                "KIM_SECRET_KEY must be set when KIM_ENV=production "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')."
            )
        app.config["SECRET_KEY"] = _development_secret(instance)


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
