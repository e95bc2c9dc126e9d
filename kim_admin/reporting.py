"""The reporting cycle: the submission state machine and the locking rules.

Plain functions, called by the views, the import and the CLI alike; every
transition is written to the audit trail. Refused transitions raise
:class:`TransitionError` with a German message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from models import ReportingPeriod, Submission
from models._common import utcnow

from . import audit
from .extensions import db
from .permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF

DRAFT, SUBMITTED, APPROVED, RETURNED = "draft", "submitted", "approved", "returned"

# Statuses in which a municipality may still change its figures.
EDITABLE_STATUSES = {None, DRAFT, RETURNED}


@dataclass(frozen=True)
class Transition:
    """One allowed step: from which statuses, to which, and who may take it."""

    name: str
    label: str  # infinitive: "Ihre Rolle darf eine Meldung nicht <label>."
    done: str  # participle: "… kann nicht <done> werden."
    sources: frozenset[str]
    target: str
    roles: frozenset[str]


TRANSITIONS = {
    t.name: t
    for t in (
        Transition(
            "submit",
            "abschließen",
            "abgeschlossen",
            frozenset({DRAFT, RETURNED}),
            SUBMITTED,
            frozenset({MUNICIPAL_STAFF, DISTRICT_ADMIN}),
        ),
        Transition(
            "approve",
            "freigeben",
            "freigegeben",
            frozenset({SUBMITTED}),
            APPROVED,
            frozenset({DISTRICT_ADMIN}),
        ),
        Transition(
            "return",
            "zurückgeben",
            "zurückgegeben",
            frozenset({SUBMITTED, APPROVED}),
            RETURNED,
            frozenset({DISTRICT_ADMIN}),
        ),
    )
}

STATUS_LABELS = {
    None: "fehlt",
    DRAFT: "Entwurf",
    SUBMITTED: "gemeldet",
    APPROVED: "freigegeben",
    RETURNED: "zurückgegeben",
}


class TransitionError(Exception):
    """A refused state change; the message is German and shown to the user."""


def submission_for(municipality_id: int, period: ReportingPeriod) -> Submission:
    """The municipality's submission for ``period``, created as a draft if missing."""
    submission = db.session.scalar(
        select(Submission).where(
            Submission.municipality_id == municipality_id, Submission.period_id == period.id
        )
    )
    if submission is None:
        submission = Submission(municipality_id=municipality_id, period=period, status=DRAFT)
        db.session.add(submission)
        db.session.flush()
    return submission


def transition(submission: Submission, name: str, user: Any, reason: str | None = None) -> None:
    """Move ``submission`` along ``name``; the caller commits.

    Checks the source status, the user's role and, for municipal users, that the
    submission is their own. Returning needs a reason.
    """
    step = TRANSITIONS.get(name)
    if step is None:
        raise TransitionError(f"Unbekannter Schritt: {name}")
    if user.role not in step.roles:
        raise TransitionError(f"Ihre Rolle darf eine Meldung nicht {step.label}.")
    if user.role == MUNICIPAL_STAFF and submission.municipality_id != user.municipality_id:
        raise TransitionError("Sie können nur Meldungen Ihrer eigenen Kommune bearbeiten.")
    if submission.status not in step.sources:
        raise TransitionError(
            f"Eine Meldung im Status „{STATUS_LABELS[submission.status]}“ kann nicht "
            f"{step.done} werden."
        )
    if name == "return" and not (reason or "").strip():
        raise TransitionError("Bitte einen Grund für die Rückgabe angeben.")

    old = submission.status
    submission.status = step.target
    if name == "submit":
        submission.submitted_at, submission.submitted_by_id = utcnow(), user.id
    else:
        submission.reviewed_at, submission.reviewed_by_id = utcnow(), user.id
    if name == "return":
        submission.return_reason = reason.strip()
    audit.record(
        f"submission_{name}",
        "submission",
        submission.id,
        submission.municipality_id,
        old={"status": old},
        new={"status": step.target, **({"reason": reason.strip()} if reason else {})},
    )


def grant_exception(submission: Submission, until: date, user: Any) -> None:
    """District only: let the municipality edit until ``until`` despite the lock."""
    if user.role != DISTRICT_ADMIN:
        raise TransitionError("Nur die Kreisverwaltung kann eine Ausnahme gewähren.")
    old = submission.exception_until
    submission.exception_until = until
    if submission.status in (SUBMITTED, APPROVED):
        transition(submission, "return", user, reason=f"Wieder geöffnet bis {until:%d.%m.%Y}")
    audit.record(
        "submission_exception",
        "submission",
        submission.id,
        submission.municipality_id,
        old={"exception_until": old and old.isoformat()},
        new={"exception_until": until.isoformat()},
    )


def edit_deadline(period: ReportingPeriod) -> date | None:
    """Last day municipal users may edit: the deadline plus the grace period."""
    if period.deadline is None:
        return None
    return period.deadline + timedelta(days=current_app.config["KIM_GRACE_DAYS"])


def lock_reason(
    user: Any, municipality_id: int, period: ReportingPeriod, today: date | None = None
) -> str | None:
    """Why ``user`` may not change the municipality's figures of ``period``, or None.

    The district is never locked out (its changes are audited). A municipal user
    is locked once the report is submitted or approved, when the quarter is
    closed, or after the deadline plus grace, unless the district granted an
    exception that still runs.
    """
    if user.role == DISTRICT_ADMIN:
        return None
    if user.role != MUNICIPAL_STAFF or user.municipality_id != municipality_id:
        return "Sie dürfen die Zahlen dieser Kommune nicht ändern."
    today = today or date.today()
    submission = db.session.scalar(
        select(Submission).where(
            Submission.municipality_id == municipality_id, Submission.period_id == period.id
        )
    )
    status = submission.status if submission else None
    if status == SUBMITTED:
        return "Die Meldung ist abgegeben; Änderungen sind erst nach einer Rückgabe möglich."
    if status == APPROVED:
        return "Die Meldung ist freigegeben und damit gesperrt."
    if submission and submission.exception_until and today <= submission.exception_until:
        return None
    if not period.is_open:
        return "Der Meldezeitraum ist geschlossen."
    last_day = edit_deadline(period)
    if last_day is not None and today > last_day:
        return f"Die Meldefrist ist abgelaufen (Bearbeitung bis {last_day:%d.%m.%Y})."
    return None


def on_time(submission: Submission) -> bool | None:
    """Whether the report came by the deadline (None while not yet submitted)."""
    if submission.submitted_at is None:
        return None
    deadline = submission.period.deadline
    return deadline is None or submission.submitted_at.date() <= deadline
