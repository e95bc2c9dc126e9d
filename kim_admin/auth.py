"""Login, logout and the session user; failed logins are throttled and audited."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired

from models import User
from models._common import utcnow

from . import audit
from .extensions import db, login_manager

bp = Blueprint("auth", __name__)

THROTTLED = (
    "Zu viele fehlgeschlagene Anmeldeversuche. Bitte warten Sie einige Minuten "
    "und versuchen Sie es dann erneut."
)


class LoginForm(FlaskForm):
    """E-mail and password."""

    email = EmailField("E-Mail-Adresse", validators=[DataRequired("Bitte E-Mail-Adresse angeben.")])
    password = PasswordField("Passwort", validators=[DataRequired("Bitte Passwort angeben.")])
    submit = SubmitField("Anmelden")


def safe_next(target: str | None) -> str | None:
    """Return ``target`` only if it is a path on this site (no open redirect)."""
    if not target:
        return None
    target = target.replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _typed_email() -> str:
    return request.form.get("email", "").strip().lower()


def _login_failed(response) -> bool:
    """Only failed attempts count against the throttle."""
    return bool(g.get("login_failed"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalar(select(User).where(func.lower(User.email) == email))
        if user is not None and user.active and user.check_password(form.password.data):
            login_user(user)
            user.last_login_at = utcnow()
            audit.record("login", "user", user.id, user.municipality_id)
            db.session.commit()
            flash("Sie sind angemeldet.", "success")
            return redirect(safe_next(request.args.get("next")) or url_for("admin.index"))
        g.login_failed = True
        audit.record("login_failed", "user", user.id if user else None, user_email=email)
        db.session.commit()
        # One message for unknown user, wrong password and deactivated account,
        # so that the form does not reveal which e-mail addresses exist.
        flash("E-Mail-Adresse oder Passwort ist falsch.", "error")
    return render_template("auth/login.html", form=form)


def throttled(error):
    """429: the login form again, with a German explanation."""
    audit.record("login_throttled", "user", user_email=_typed_email() or None)
    db.session.commit()
    flash(THROTTLED, "error")
    return render_template("auth/login.html", form=LoginForm()), 429


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """End the session (POST with CSRF token, so no link can log a user out)."""
    audit.record("logout", "user", current_user.id, current_user.municipality_id)
    db.session.commit()
    logout_user()
    flash("Sie sind abgemeldet.", "info")
    return redirect(url_for("auth.login"))


def load_user(token: str):
    """Flask-Login: the active user whose session token is in the cookie."""
    user = db.session.scalar(select(User).where(User.session_token == token))
    if user is None or not user.active:
        return None
    return user


def init_app(app: Flask) -> None:
    """Register the blueprint and configure Flask-Login."""
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Bitte melden Sie sich an."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    app.register_blueprint(bp)
    app.register_error_handler(429, throttled)
    _throttle_login(app)


def _throttle_login(app: Flask) -> None:
    """Count failed logins per account and per client address.

    The limiter is made per app (not at import time): Flask-Limiter keeps its
    storage on the instance, so a shared one would mix up several apps.
    """
    limiter = Limiter(key_func=get_remote_address, app=app)
    app.extensions["kim_limiter"] = limiter
    per_account = limiter.limit(
        lambda: current_app.config["KIM_LOGIN_LIMIT_ACCOUNT"],
        key_func=lambda: "account:" + _typed_email(),
        methods=["POST"],
        deduct_when=_login_failed,
        scope="login-account",
    )
    per_client = limiter.limit(
        lambda: current_app.config["KIM_LOGIN_LIMIT_CLIENT"],
        methods=["POST"],
        deduct_when=_login_failed,
        scope="login-client",
    )
    app.view_functions["auth.login"] = per_account(per_client(login))
