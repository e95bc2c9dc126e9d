"""Users of the application and their roles."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from kim_admin.config import Config
from kim_admin.extensions import db
from kim_admin.permissions import ROLES

from ._common import check_choice, utcnow
from .municipality import Municipality


def new_session_token() -> str:
    """A random token that identifies a user's login sessions."""
    return secrets.token_urlsafe(32)


def password_hash_method() -> str:
    """The method for new password hashes: the app's ``KIM_PASSWORD_HASH_METHOD``,
    or the default (scrypt) outside an application, e.g. in a script."""
    default = Config.KIM_PASSWORD_HASH_METHOD
    if has_app_context():
        return current_app.config.get("KIM_PASSWORD_HASH_METHOD") or default
    return default


class User(UserMixin, db.Model):
    """A person who logs in: district admin, municipal staff or steering group."""

    __tablename__ = "user"
    __table_args__ = (
        check_choice("role", ROLES),
        CheckConstraint(
            "role <> 'municipal_staff' OR municipality_id IS NOT NULL",
            name="municipal_staff_has_municipality",
        ),
        # One KIM-Admin account per person at the provider.
        UniqueConstraint("oidc_issuer", "oidc_subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(160), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(30))
    municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    active: Mapped[bool] = mapped_column(default=True)
    # Every login session remembers this token; replacing it (password change,
    # deactivation) ends every session made before (kim_admin.sessions).
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # The person at the OpenID provider ("sub" of that issuer), linked at the first
    # single sign-on by the verified e-mail address; later sign-ons match on it alone.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))

    municipality: Mapped[Municipality | None] = relationship()

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (scrypt) and end other sessions."""
        self.password_hash = generate_password_hash(password, method=password_hash_method())
        self.session_token = new_session_token()

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    #: The token of the login session this request runs in (set by kim_admin.sessions;
    #: a plain attribute, not a column).
    login_token = None

    def get_id(self) -> str | None:
        """The value Flask-Login keeps in the session cookie: the login session's token."""
        return self.login_token

    @property
    def is_active(self) -> bool:  # Flask-Login asks this on every request
        return self.active

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@event.listens_for(User.active, "set")
def _deactivation_ends_sessions(user: User, value: bool, old: object, initiator: object) -> None:
    """Deactivating a user ends their sessions for good: a later reactivation
    does not bring old cookies back."""
    if value is False and old is not False:
        user.session_token = new_session_token()
