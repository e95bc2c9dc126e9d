"""Login, logout and the session user; failed logins are throttled and audited."""

from __future__ import annotations

import functools
from datetime import timedelta

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from limits import parse as parse_limit
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Email, Length

from models import AuditEvent, User
from models._common import utcnow

from . import audit, oidc, sessions
from .extensions import db, login_manager
from .redirects import safe_next

bp = Blueprint("auth", __name__)

THROTTLED = (
    "Zu viele fehlgeschlagene Anmeldeversuche. Bitte warten Sie einige Minuten "
    "und versuchen Sie es dann erneut."
)


#: Longest e-mail address (RFC 5321) and password the login form takes.
EMAIL_MAX = 254
PASSWORD_MAX = 128


class LoginForm(FlaskForm):
    """E-mail and password, both bounded before anything looks them up."""

    email = EmailField(
        "E-Mail-Adresse",
        validators=[
            DataRequired("Bitte E-Mail-Adresse angeben."),
            Length(max=EMAIL_MAX, message="Die E-Mail-Adresse ist zu lang."),
            Email("Bitte eine gültige E-Mail-Adresse angeben."),
        ],
    )
    password = PasswordField(
        "Passwort",
        validators=[
            DataRequired("Bitte Passwort angeben."),
            Length(max=PASSWORD_MAX, message="Das Passwort ist zu lang."),
        ],
    )
    submit = SubmitField("Anmelden")


def _typed_email() -> str:
    """The e-mail address as typed, cut to what an address can be (never a flood)."""
    return request.form.get("email", "")[: EMAIL_MAX + 2].strip().lower()[:EMAIL_MAX]


@functools.cache
def _dummy_hash(method: str) -> str:
    """A hash to check unknown accounts against, so that they take as long as known ones."""
    return generate_password_hash("kein-konto-" + method, method=method)


def _login_failed(response) -> bool:
    """Only failed attempts count against the throttle (once: an attempt whose
    password was checked was counted before, see :func:`_claim_attempt`)."""
    return bool(g.get("login_failed")) and "login_claimed" not in g


def _claim_attempt() -> bool:
    """Count this attempt now in each login limit of the request; False once one of
    them is used up.

    Flask-Limiter tests the limits before the view and counts a failed attempt after
    the answer. Attempts sent at the same moment would all pass the test before the
    first is counted, and each would check a password. Counted here, in one atomic
    step of the limiter's storage before the password is checked, no more attempts
    get through than the limit allows; a successful login gives its count back
    (:func:`_give_back_attempt`).
    """
    limiter = current_app.extensions["kim_limiter"]
    allowed = True
    claimed = []
    for limit in limiter.current_limits:
        claimed.append(limit)
        if not limiter.limiter.hit(limit.limit, *limit.request_args):
            allowed = False
    g.login_claimed = claimed
    return allowed


def _give_back_attempt() -> None:
    """A successful login, or an attempt refused before its password was checked,
    does not count against the throttle (fixed windows, the configured strategy;
    another strategy keeps the count)."""
    strategy = current_app.extensions["kim_limiter"].limiter
    claimed = g.pop("login_claimed", [])
    if isinstance(strategy, FixedWindowRateLimiter):
        for limit in claimed:
            strategy.hit(limit.limit, *limit.request_args, cost=-1)


#: The answer to a password login while KIM_LOCAL_LOGIN=off.
LOCAL_LOGIN_OFF = (
    "Die Anmeldung mit Passwort ist abgeschaltet. Bitte melden Sie sich mit Ihrem Dienstkonto an."
)


def local_login_for(email: str | None) -> bool:
    """Whether ``email`` may log in with a password: always, unless KIM_LOCAL_LOGIN=off,
    which leaves only the emergency account (KIM_EMERGENCY_ACCOUNT)."""
    config = current_app.config
    if config["KIM_LOCAL_LOGIN"] != "off":
        return True
    emergency = (config.get("KIM_EMERGENCY_ACCOUNT") or "").strip().lower()
    return bool(emergency and email and email == emergency)


def _login_page(form: LoginForm):
    """The login page: the single sign-on button and, where allowed, the password form.

    With KIM_LOCAL_LOGIN=off the password form is shown only at ``/login?notfall=1``,
    the address the emergency account's holder knows.
    """
    local = current_app.config["KIM_LOCAL_LOGIN"] != "off"
    emergency = not local and request.values.get("notfall") == "1"
    return render_template(
        "auth/login.html",
        form=form,
        sso=oidc.enabled(),
        show_password=local or emergency,
        emergency=emergency,
        next_url=safe_next(request.args.get("next")),
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    form = LoginForm()
    if form.validate_on_submit():
        if not _claim_attempt():
            _give_back_attempt()  # refused unchecked: only checked passwords count
            abort(429)  # answered by throttled()
        email = form.email.data.strip().lower()
        user = db.session.scalar(select(User).where(func.lower(User.email) == email))
        if not local_login_for(email):
            # Same work as any other attempt, so the answer time does not single out
            # the emergency account; counted and recorded like a wrong password.
            method = current_app.config.get("KIM_PASSWORD_HASH_METHOD", "scrypt")
            check_password_hash(_dummy_hash(method), form.password.data)
            g.login_failed = True
            audit.record(
                "login_failed",
                "user",
                user.id if user else None,
                new={"method": "password", "reason": "local_login_off"},
                user_email=email,
            )
            db.session.commit()
            flash(LOCAL_LOGIN_OFF, "error")
            return _login_page(form)
        if user is None:
            # Same work as for a real account: the answer time reveals nothing.
            method = current_app.config.get("KIM_PASSWORD_HASH_METHOD", "scrypt")
            check_password_hash(_dummy_hash(method), form.password.data)
        elif user.check_password(form.password.data) and user.active:
            _give_back_attempt()
            # A new session (and CSRF token) at login: nothing planted before survives.
            session.clear()
            sessions.start(user)
            login_user(user)
            user.last_login_at = utcnow()
            audit.record("login", "user", user.id, user.municipality_id, new={"method": "password"})
            db.session.commit()
            flash("Sie sind angemeldet.", "success")
            return redirect(safe_next(request.args.get("next")) or url_for("admin.index"))
        g.login_failed = True
        audit.record(
            "login_failed",
            "user",
            user.id if user else None,
            new={"method": "password"},
            user_email=email,
        )
        db.session.commit()
        # One message for unknown user, wrong password and deactivated account,
        # so that the form does not reveal which e-mail addresses exist.
        flash("E-Mail-Adresse oder Passwort ist falsch.", "error")
    elif form.is_submitted():
        g.login_failed = True  # malformed attempts count against the throttle too
    return _login_page(form)


def throttled(error):
    """429: the login form again, with a German explanation.

    Recorded once per address and window, so that a flood of refused attempts
    cannot flood the audit trail.
    """
    email = _typed_email() or None
    window = utcnow() - timedelta(minutes=15)
    seen = db.session.scalar(
        select(AuditEvent.id)
        .where(
            AuditEvent.action == "login_throttled",
            AuditEvent.created_at >= window,
            AuditEvent.user_email == email if email else AuditEvent.user_email.is_(None),
        )
        .limit(1)
    )
    if seen is None:
        audit.record("login_throttled", "user", user_email=email)
        db.session.commit()
    flash(THROTTLED, "error")
    return _login_page(LoginForm()), 429


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """End the session (POST with CSRF token, so no link can log a user out).

    After a single sign-on the browser goes on to the provider, which ends its own
    session and sends it back to the login page (RP-initiated logout).
    """
    provider_logout = oidc.logout_url(current_user.login_token)
    audit.record("logout", "user", current_user.id, current_user.municipality_id)
    sessions.end(current_user.login_token)
    db.session.commit()
    logout_user()
    session.clear()
    flash("Sie sind abgemeldet.", "info")
    return redirect(provider_logout or url_for("auth.login"))


def load_user(token: str):
    """Flask-Login: the active user of the live login session named in the cookie
    (a single sign-on session only while the provider still confirms it)."""
    user = sessions.resolve(token)
    if user is not None and not oidc.still_signed_on(token):
        return None
    return user


def init_app(app: Flask) -> None:
    """Register the blueprint and configure Flask-Login."""
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Bitte melden Sie sich an."
    login_manager.login_message_category = "info"
    # The server-side session (kim_admin.sessions) is the protection; Flask-Login's
    # "strong" mode would trust a client-sent X-Forwarded-For.
    login_manager.session_protection = None
    app.register_blueprint(bp)
    app.register_error_handler(429, throttled)
    _throttle_login(app)
    oidc.init_app(app)


def _password_checks():
    """(strategy, limit) for wrong current passwords: the per-account login limit."""
    limiter = current_app.extensions["kim_limiter"]
    return limiter.limiter, parse_limit(current_app.config["KIM_LOGIN_LIMIT_ACCOUNT"])


def claim_password_check(user: User) -> bool:
    """Count a check of ``user``'s current password (/konto/) before it is made; False
    if too many were wrong lately. Counted first, in one atomic step, so that checks
    sent at the same moment cannot all pass (see :func:`_claim_attempt`)."""
    strategy, limit = _password_checks()
    return strategy.hit(limit, "password-check", str(user.id))


def give_back_password_check(user: User) -> None:
    """The current password was right: the check does not count."""
    strategy, limit = _password_checks()
    if isinstance(strategy, FixedWindowRateLimiter):
        strategy.hit(limit, "password-check", str(user.id), cost=-1)


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
    # Shared with single sign-on's callback (kim_admin.oidc): one count per address
    # for failed logins either way.
    per_client = limiter.shared_limit(
        lambda: current_app.config["KIM_LOGIN_LIMIT_CLIENT"],
        "login-client",
        methods=["POST"],
        deduct_when=_login_failed,
    )
    app.view_functions["auth.login"] = per_account(per_client(login))
