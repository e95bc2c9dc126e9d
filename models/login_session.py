"""Server-side login sessions: the cookie names one; logout deletes it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import utcnow
from ._sealed import SealedText
from .user import User


class LoginSession(db.Model):
    """One login of one user, until logout, idle timeout or absolute timeout.

    The session cookie carries a random token; the table keeps only its SHA-256,
    so a copy of the database opens no session. The row also keeps the user's
    ``session_token`` of the moment: a password change or a deactivation
    replaces that token, which ends every session made before.
    """

    __tablename__ = "login_session"
    #: Not written to the audit trail (logins and logouts are recorded explicitly).
    __audit__ = False

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    user_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Single sign-on only (kim_admin/oidc.py): the ID token (sent back as id_token_hint
    # at logout), the refresh token, and when the ID token expires: from then on the
    # session is checked with the provider again before it serves a request. The
    # refresh token is a credential at the provider: stored encrypted (SECRET_KEY).
    id_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(SealedText)
    recheck_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    def __str__(self) -> str:
        return f"Sitzung von {self.user} seit {self.created_at:%d.%m.%Y %H:%M}"
