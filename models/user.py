"""Users of the application and their roles."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from kim_admin.extensions import db
from kim_admin.permissions import ROLES

from ._common import check_choice, utcnow
from .municipality import Municipality


def new_session_token() -> str:
    """A random token that identifies a user's login sessions."""
    return secrets.token_urlsafe(32)


class User(UserMixin, db.Model):
    """A person who logs in: district admin, municipal staff or steering group."""

    __tablename__ = "user"
    __table_args__ = (
        check_choice("role", ROLES),
        CheckConstraint(
            "role <> 'municipal_staff' OR municipality_id IS NOT NULL",
            name="municipal_staff_has_municipality",
        ),
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
    # Flask-Login stores this instead of the id: changing it (password change,
    # deactivation) ends every session that still carries the old one.
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    municipality: Mapped[Municipality | None] = relationship()

    def set_password(self, password: str) -> None:
        """Store a salted scrypt hash of ``password`` and end other sessions."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        self.session_token = new_session_token()

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        """The value Flask-Login keeps in the session cookie."""
        return self.session_token

    @property
    def is_active(self) -> bool:  # Flask-Login asks this on every request
        return self.active

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email
