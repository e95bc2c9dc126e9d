"""Background jobs (the evaluation report): who asked for what, how far it is, its file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice, utcnow
from .municipality import Municipality
from .user import User

#: A job's states, in the order they are passed through (labels in German).
JOB_STATUSES = [
    ("queued", "wartet"),
    ("running", "läuft"),
    ("done", "fertig"),
    ("failed", "fehlgeschlagen"),
]
#: What a job makes.
JOB_KINDS = [
    ("report", "Evaluationsbericht"),
    ("export", "Listenexport"),
    # Started by `flask jobs probe` (no user): checks that the workers run.
    ("probe", "Probeauftrag"),
]


class Job(db.Model):
    """One piece of long work started by a user and run off the request.

    Only the user who started it may see it, and only while their role and
    municipality are the ones it was started with (``role``, ``municipality``):
    a user moved to another municipality cannot fetch a report of the old one.
    The finished file lives in ``result`` (loaded only when downloaded).
    """

    __tablename__ = "job"
    #: Not written to the audit trail: the export itself is recorded when it is asked for.
    __audit__ = False
    __table_args__ = (
        check_choice("status", JOB_STATUSES),
        check_choice("kind", JOB_KINDS),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    )

    #: Random (uuid4 hex): also the queue's job id; not guessable, never sequential.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    #: None for a job started on the command line (nobody can see it in the app).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(30))
    municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="CASCADE")
    )
    #: What was asked for (the report's options), as JSON.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    progress: Mapped[int] = mapped_column(default=0)
    #: The step under way, in German ("Kennzahlen werden geschrieben").
    step: Mapped[str] = mapped_column(String(200), default="")
    #: Why the job failed, in German.
    error: Mapped[str] = mapped_column(String(500), default="")
    filename: Mapped[str] = mapped_column(String(200), default="")
    result_size: Mapped[int | None]
    result: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    #: Touched while the job runs; a running job whose heartbeat stops is marked failed.
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    user: Mapped[User | None] = relationship()
    municipality: Mapped[Municipality | None] = relationship()

    def __str__(self) -> str:
        who = self.user or "Kommandozeile"
        return f"{dict(JOB_KINDS)[self.kind]} von {who} ({dict(JOB_STATUSES)[self.status]})"
