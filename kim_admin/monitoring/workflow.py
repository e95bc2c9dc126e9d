"""The reporting cycle: the submission state machine, locks, exceptions, rates.

Plain functions, called by the views, the import and the CLI alike; every
transition is written to the audit trail. Refused steps raise
:class:`TransitionError` with a German message. The caller commits.

Modelled on DHIS2's data approval: an approved report is locked for everyone,
the district included, until the district un-approves it with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from kim_admin import audit
from kim_admin.extensions import db
from kim_admin.formatting import local_time
from kim_admin.notifications import outbox
from kim_admin.permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF
from models import Municipality, ReportingPeriod, Submission
from models._common import utcnow

from . import periods, status
from .status import APPROVED, DRAFT, RECEIVED, RETURNED, SUBMITTED


@dataclass(frozen=True)
class Transition:
    """One allowed step: from which statuses, to which, and who may take it."""

    name: str
    label: str  # infinitive: "Ihre Rolle darf eine Meldung nicht <label>."
    done: str  # participle: "… kann nicht <done> werden."
    sources: frozenset[str | None]
    target: str
    roles: frozenset[str]
    needs_reason: bool = False


TRANSITIONS = {
    t.name: t
    for t in (
        Transition(
            "submit",
            "einreichen",
            "eingereicht",
            frozenset({DRAFT, RETURNED}),
            SUBMITTED,
            frozenset({MUNICIPAL_STAFF, DISTRICT_ADMIN}),
        ),
        Transition(
            "withdraw",
            "zurückziehen",
            "zurückgezogen",
            frozenset({SUBMITTED}),
            DRAFT,
            frozenset({MUNICIPAL_STAFF}),
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
            frozenset({SUBMITTED}),
            RETURNED,
            frozenset({DISTRICT_ADMIN}),
            needs_reason=True,
        ),
        # Un-approving: back to review, or straight back to the municipality.
        Transition(
            "unapprove",
            "entsperren",
            "entsperrt",
            frozenset({APPROVED}),
            SUBMITTED,
            frozenset({DISTRICT_ADMIN}),
            needs_reason=True,
        ),
        Transition(
            "unapprove_return",
            "entsperren und zurückgeben",
            "entsperrt und zurückgegeben",
            frozenset({APPROVED}),
            RETURNED,
            frozenset({DISTRICT_ADMIN}),
            needs_reason=True,
        ),
    )
}


class TransitionError(Exception):
    """A refused state change; the message is German and shown to the user."""


def find_submission(municipality_id: int, period: ReportingPeriod) -> Submission | None:
    """The municipality's submission for ``period``, if any."""
    return db.session.scalar(
        select(Submission).where(
            Submission.municipality_id == municipality_id, Submission.period_id == period.id
        )
    )


def submission_for(municipality_id: int, period: ReportingPeriod) -> Submission:
    """The municipality's submission for ``period``, created as a draft if missing."""
    submission = find_submission(municipality_id, period)
    if submission is None:
        submission = Submission(municipality_id=municipality_id, period=period, status=DRAFT)
        db.session.add(submission)
        db.session.flush()
    return submission


def transition(
    submission: Submission,
    name: str,
    user: Any,
    reason: str | None = None,
    due: date | None = None,
    today: date | None = None,
) -> None:
    """Move ``submission`` along ``name``; the caller commits.

    Checks the source status, the user's role, that a municipal user acts on
    their own municipality and, for a submission, that the quarter is not
    locked for them. Returns and un-approvals need a reason. A return that
    comes when the municipality could no longer edit (quarter closed or past
    its deadline) needs a new due date ``due``, until which it may edit again.
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
            f"Eine Meldung im Status „{status.label(submission.status)}“ kann nicht "
            f"{step.done} werden."
        )
    reason = (reason or "").strip() or None
    if step.needs_reason and not reason:
        raise TransitionError("Bitte einen Grund angeben.")
    today = today or date.today()
    period = submission.period
    if name == "submit" and user.role == MUNICIPAL_STAFF:
        why = _date_lock(submission, period, today)
        if why:
            raise TransitionError(why)
    if step.target == RETURNED:
        if due is not None:
            check_due_date(due, period, today)
        elif _date_lock(submission, period, today, ignore_exception=True) and not (
            submission.exception_until and submission.exception_until >= today
        ):
            raise TransitionError(
                "Die Meldefrist ist abgelaufen: Bitte eine neue Frist angeben, bis zu der "
                "die Kommune ändern kann."
            )

    old = {"status": submission.status}
    submission.status = step.target
    now = utcnow()
    if name == "submit":
        submission.submitted_at, submission.submitted_by_id = now, user.id
        if submission.first_submitted_at is None:
            submission.first_submitted_at = now
    elif name == "withdraw":
        submission.submitted_at = submission.submitted_by_id = None
    else:
        submission.reviewed_at, submission.reviewed_by_id = now, user.id
    new: dict[str, Any] = {"status": step.target}
    if reason:
        new["reason"] = reason
    if step.target == RETURNED:
        submission.return_reason = reason
        if due is not None:
            old["exception_until"] = _iso(submission.exception_until)
            submission.exception_until = due
            new["exception_until"] = due.isoformat()
    audit.record(
        f"submission_{name}",
        "submission",
        submission.id,
        submission.municipality_id,
        old=old,
        new=new,
    )
    outbox.transition_made(submission, name, reason)


def check_due_date(due: date, period: ReportingPeriod, today: date | None = None) -> None:
    """A due date the district sets must lie ahead and not before the quarter's end."""
    today = today or date.today()
    if due < today:
        raise TransitionError("Das Datum liegt in der Vergangenheit.")
    if due < period.ends_on:
        raise TransitionError(
            f"Das Datum liegt vor dem Ende des Quartals ({period.ends_on:%d.%m.%Y})."
        )


def grant_exception(
    submission: Submission, until: date, user: Any, today: date | None = None
) -> None:
    """District only: let the municipality edit until ``until`` despite the lock.

    A submitted report is returned with it; an approved one must be un-approved first.
    """
    if user.role != DISTRICT_ADMIN:
        raise TransitionError("Nur die Kreisverwaltung kann eine Ausnahme gewähren.")
    if submission.status == APPROVED:
        raise TransitionError(
            "Die Meldung ist freigegeben. Bitte zuerst die Freigabe mit Begründung aufheben."
        )
    check_due_date(until, submission.period, today)
    old = submission.exception_until
    if submission.status == SUBMITTED:
        transition(
            submission,
            "return",
            user,
            reason=f"Wieder geöffnet bis {until:%d.%m.%Y}",
            due=until,
            today=today,
        )
    submission.exception_until = until
    audit.record(
        "submission_exception",
        "submission",
        submission.id,
        submission.municipality_id,
        old={"exception_until": _iso(old)},
        new={"exception_until": until.isoformat()},
    )
    outbox.exception_granted(submission, until)


def revoke_exception(submission: Submission, user: Any) -> None:
    """District only: end an exception (the normal locks apply again)."""
    if user.role != DISTRICT_ADMIN:
        raise TransitionError("Nur die Kreisverwaltung kann eine Ausnahme aufheben.")
    if submission.exception_until is None:
        raise TransitionError("Für diese Meldung besteht keine Ausnahme.")
    old = submission.exception_until
    submission.exception_until = None
    audit.record(
        "submission_exception_revoked",
        "submission",
        submission.id,
        submission.municipality_id,
        old={"exception_until": old.isoformat()},
        new={"exception_until": None},
    )


def grace_days() -> int:
    """Days after the deadline during which municipalities may still edit."""
    return int(current_app.config["KIM_GRACE_DAYS"])


def edit_deadline(period: ReportingPeriod) -> date | None:
    """Last day municipal users may edit: the deadline plus the grace period."""
    if period.deadline is None:
        return None
    return period.deadline + timedelta(days=grace_days())


def _date_lock(
    submission: Submission | None,
    period: ReportingPeriod,
    today: date,
    ignore_exception: bool = False,
) -> str | None:
    """Why the calendar locks a municipality out of ``period`` (closed, past deadline)."""
    if (
        not ignore_exception
        and submission is not None
        and submission.exception_until
        and today <= submission.exception_until
    ):
        return None
    if not period.is_open:
        return "Der Meldezeitraum ist geschlossen."
    last_day = edit_deadline(period)
    if last_day is not None and today > last_day:
        return f"Die Meldefrist ist abgelaufen (Bearbeitung bis {last_day:%d.%m.%Y})."
    return None


def lock_reason(
    user: Any, municipality_id: int, period: ReportingPeriod, today: date | None = None
) -> str | None:
    """Why ``user`` may not change the municipality's figures of ``period``, or None.

    An approved report is locked for everyone. Otherwise the district may
    change any figure (audited). A municipal user is locked once the report is
    submitted, when the quarter is closed, or after the deadline plus grace,
    unless the district set a due date (exception or return) that still runs.
    """
    if user.role not in (DISTRICT_ADMIN, MUNICIPAL_STAFF) or (
        user.role == MUNICIPAL_STAFF and user.municipality_id != municipality_id
    ):
        return "Sie dürfen die Zahlen dieser Kommune nicht ändern."
    submission = find_submission(municipality_id, period)
    current = submission.status if submission else None
    if current == APPROVED:
        return (
            "Die Meldung ist freigegeben und für alle gesperrt. Änderungen sind erst möglich, "
            "wenn die Kreisverwaltung die Freigabe mit Begründung aufhebt."
        )
    if user.role == DISTRICT_ADMIN:
        return None
    if current == SUBMITTED:
        return (
            "Die Meldung ist eingereicht; Änderungen sind erst nach einer Rückgabe oder "
            "nach dem Zurückziehen der Meldung möglich."
        )
    return _date_lock(submission, period, today or date.today())


def first_submitted(submission: Submission):
    """When the report first came in (a later resubmission does not change it)."""
    return submission.first_submitted_at or submission.submitted_at


def on_time(submission: Submission | None) -> bool | None:
    """Whether the report first came by the deadline (None while never submitted)."""
    if submission is None:
        return None
    first = first_submitted(submission)
    if first is None:
        return None
    deadline = submission.period.deadline
    return deadline is None or local_time(first).date() <= deadline


@dataclass(frozen=True)
class Rate:
    """The reporting rate of one quarter."""

    expected: int
    received: int
    punctual: int
    ended: bool  # a quarter that has not ended is "noch offen"

    @property
    def received_share(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    @property
    def punctual_share(self) -> float:
        return self.punctual / self.expected if self.expected else 0.0


def rates(
    period_list: Iterable[ReportingPeriod],
    towns: Iterable[Municipality],
    by_cell: Mapping[tuple[int, int], Submission],
    today: date | None = None,
) -> dict[int, Rate]:
    """Per quarter: expected, received and punctual reports of ``towns``."""
    towns = list(towns)
    result = {}
    for period in period_list:
        cells = [by_cell.get((t.id, period.id)) for t in towns]
        received = [s for s in cells if s is not None and s.status in RECEIVED]
        result[period.id] = Rate(
            expected=len(towns),
            received=len(received),
            punctual=sum(1 for s in received if on_time(s)),
            ended=periods.has_ended(period, today),
        )
    return result


def submissions_by_cell(
    period_ids: Iterable[int], municipality_ids: Iterable[int]
) -> dict[tuple[int, int], Submission]:
    """Submissions of the given quarters and municipalities, by (municipality, period)."""
    rows = db.session.scalars(
        select(Submission)
        .where(
            Submission.period_id.in_(list(period_ids)),
            Submission.municipality_id.in_(list(municipality_ids)),
        )
        # Each cell asks for its quarter's deadline: loaded with the rows, not one
        # lazy load per cell (3,000 cells at 396 towns).
        .options(selectinload(Submission.period))
    )
    return {(s.municipality_id, s.period_id): s for s in rows}


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None
