"""E-mail notifications: the outbox and each user's choice of reminders."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db
from kim_admin.notifications.events import KINDS, STATES

from ._common import check_choice, utcnow
from .municipality import Municipality
from .reporting import ReportingPeriod
from .user import User

__all__ = ["Notification", "NotificationPreference"]


class Notification(db.Model):
    """One e-mail to one user about one event: the outbox of ``flask notify run``.

    ``key`` names the event and the recipient (``reminder-3:p12:m4:u7``); its
    uniqueness is what makes every event produce at most one mail per person,
    however often the run is repeated. The row moves pending → sending → sent
    (or skipped, or failed after the last attempt); see kim_admin.notifications.
    """

    __tablename__ = "notification"
    __table_args__ = (
        check_choice("kind", KINDS),
        check_choice("state", STATES),
        # The run asks for due rows by state and time.
        Index("ix_notification_due", "state", "next_attempt_at"),
    )
    #: An outbox, not a change of data: the transition it reports is audited itself.
    __audit__ = False

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="CASCADE")
    )
    period_id: Mapped[int | None] = mapped_column(
        ForeignKey("reporting_period.id", ondelete="CASCADE")
    )
    # What the mail says beyond the event: the reason of a return, a new due date.
    reason: Mapped[str | None] = mapped_column(Text)
    due: Mapped[date | None]
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # The last SMTP error (no secrets: the server's reply or the socket error).
    last_error: Mapped[str | None] = mapped_column(String(500))

    user: Mapped[User] = relationship()
    municipality: Mapped[Municipality | None] = relationship()
    period: Mapped[ReportingPeriod | None] = relationship()

    def __str__(self) -> str:
        return f"{self.kind} an {self.user_id} ({self.state})"


class NotificationPreference(db.Model):
    """Which optional mails a user wants; no row means every mail (the default)."""

    __tablename__ = "notification_preference"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    # Quarter opened, reminders before the deadline, overdue.
    deadline_reminders: Mapped[bool] = mapped_column(default=True)
    # Submitted (district), approved (municipality).
    status_updates: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship()

    def __str__(self) -> str:
        return f"Benachrichtigungen von {self.user_id}"
