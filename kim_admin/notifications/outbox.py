"""Who is told what: outbox rows for transitions and for the calendar.

A transition (:mod:`kim_admin.monitoring.workflow`) calls :func:`transition_made`
or :func:`exception_granted`; they add one :class:`models.Notification` per
recipient to the caller's session, so the rows commit or roll back with the
transition and no mail leaves inside the request. :func:`schedule` adds the
date-driven ones (quarter opened, reminders, overdue) when ``flask notify run``
starts. Each row's ``key`` names event and recipient; the unique index on it
means one mail per event and person, however often the run repeats.

Recipients are strictly scoped: a municipality's events go to the active
municipal users of exactly that municipality, a submission to the active
district admins; nobody else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kim_admin.extensions import db
from kim_admin.monitoring.status import RECEIVED
from kim_admin.permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF
from models import Municipality, Notification, ReportingPeriod, Submission, User

from . import events

#: Workflow transitions and the notification each one sends (withdrawing sends none).
TRANSITION_KINDS = {
    "submit": events.SUBMITTED,
    "approve": events.APPROVED,
    "return": events.RETURNED,
    "unapprove": events.UNAPPROVED,
    "unapprove_return": events.UNAPPROVED,
}
#: Kinds that go to the district rather than to the municipality.
TO_DISTRICT = frozenset({events.SUBMITTED})


def municipal_users(municipality_id: int) -> list[User]:
    """The active municipal users of exactly this municipality."""
    return db.session.scalars(
        select(User)
        .where(
            User.role == MUNICIPAL_STAFF,
            User.municipality_id == municipality_id,
            User.active.is_(True),
        )
        .order_by(User.id)
    ).all()


def district_admins() -> list[User]:
    """The active users of the district administration."""
    return db.session.scalars(
        select(User).where(User.role == DISTRICT_ADMIN, User.active.is_(True)).order_by(User.id)
    ).all()


def recipients(kind: str, municipality_id: int) -> list[User]:
    """Who is told of an event of ``kind`` about ``municipality_id``."""
    if kind in TO_DISTRICT:
        return district_admins()
    return municipal_users(municipality_id)


def still_addressed(row: Notification) -> bool:
    """Whether the recipient of ``row`` is still the right one, at sending time.

    A user deactivated, moved to another municipality or given another role
    after the event gets nothing.
    """
    user = row.user
    if user is None or not user.active:
        return False
    if row.kind in TO_DISTRICT:
        return user.role == DISTRICT_ADMIN
    return user.role == MUNICIPAL_STAFF and user.municipality_id == row.municipality_id


def _add(
    kind: str,
    event_key: str,
    submission: Submission,
    reason: str | None = None,
    due: date | None = None,
) -> list[Notification]:
    rows = [
        Notification(
            key=f"{event_key}:u{user.id}",
            kind=kind,
            user_id=user.id,
            municipality_id=submission.municipality_id,
            period_id=submission.period_id,
            reason=reason,
            due=due,
        )
        for user in recipients(kind, submission.municipality_id)
    ]
    db.session.add_all(rows)
    return rows


def transition_made(submission: Submission, name: str, reason: str | None = None) -> None:
    """Queue the mails of workflow step ``name`` (in the caller's transaction)."""
    kind = TRANSITION_KINDS.get(name)
    if kind is None:
        return
    # Every transition is its own event: the same step may happen again later.
    event_key = f"{kind}:s{submission.id}:{secrets.token_hex(6)}"
    due = submission.exception_until if kind == events.RETURNED else None
    _add(kind, event_key, submission, reason, due)


def exception_granted(submission: Submission, until: date) -> None:
    """Queue the mails of an exception; it replaces the mail of the return it made."""
    for row in list(db.session.new):
        if (
            isinstance(row, Notification)
            and row.kind == events.RETURNED
            and row.municipality_id == submission.municipality_id
            and row.period_id == submission.period_id
        ):
            db.session.expunge(row)
    event_key = f"{events.EXCEPTION}:s{submission.id}:{secrets.token_hex(6)}"
    _add(events.EXCEPTION, event_key, submission, due=until)


# --- the calendar ------------------------------------------------------------------


def reminder_days() -> list[int]:
    """Days before the deadline on which reminders go out, e.g. ``[14, 3]``."""
    return sorted({int(d) for d in current_app.config["KIM_REMINDER_DAYS"]}, reverse=True)


@dataclass(frozen=True)
class Due:
    """One date-driven mail that the calendar asks for."""

    key: str
    kind: str
    user_id: int
    municipality_id: int
    period_id: int
    due: date | None


def _calendar(period: ReportingPeriod, today: date, grace_days: int) -> list[tuple[str, str]]:
    """(kind, key prefix) of the date-driven events of ``period`` that are due today."""
    deadline = period.deadline
    due = []
    if deadline is None or today <= deadline:
        due.append((events.OPENED, f"opened:p{period.id}"))
    if deadline is not None and today <= deadline:
        reached = [d for d in reminder_days() if deadline - timedelta(days=d) <= today]
        if reached:
            # After a pause of the timer only the nearest reminder goes out, not all.
            days = min(reached)
            # The deadline is part of the key: a deadline moved later reminds again.
            due.append((events.REMINDER, f"reminder-{days}:p{period.id}:{deadline:%Y%m%d}"))
    if deadline is not None and deadline < today <= deadline + timedelta(days=grace_days):
        due.append((events.OVERDUE, f"overdue:p{period.id}:{deadline:%Y%m%d}"))
    return due


def calendar_due(today: date) -> list[Due]:
    """Every date-driven mail due ``today``: open quarters, KIM municipalities that
    have not submitted, their active municipal users."""
    open_periods = db.session.scalars(
        select(ReportingPeriod).where(ReportingPeriod.is_open.is_(True))
    ).all()
    if not open_periods:
        return []
    towns = db.session.scalars(
        select(Municipality.id).where(Municipality.kim_participant.is_(True))
    ).all()
    received = set(
        db.session.execute(
            select(Submission.municipality_id, Submission.period_id).where(
                Submission.period_id.in_([p.id for p in open_periods]),
                Submission.status.in_(RECEIVED),
            )
        ).all()
    )
    users_by_town: dict[int, list[int]] = {}
    for user_id, town_id in db.session.execute(
        select(User.id, User.municipality_id).where(
            User.role == MUNICIPAL_STAFF,
            User.active.is_(True),
            User.municipality_id.in_(towns),
        )
    ):
        users_by_town.setdefault(town_id, []).append(user_id)
    result = []
    for period in open_periods:
        due_events = _calendar(period, today, int(current_app.config["KIM_GRACE_DAYS"]))
        for kind, prefix in due_events:
            for town_id in towns:
                if (town_id, period.id) in received:
                    continue
                for user_id in users_by_town.get(town_id, []):
                    result.append(
                        Due(
                            f"{prefix}:m{town_id}:u{user_id}",
                            kind,
                            user_id,
                            town_id,
                            period.id,
                            period.deadline,
                        )
                    )
    return result


def schedule(today: date | None = None) -> int:
    """Add the date-driven mails due ``today`` that are not in the outbox yet; commits.

    Returns how many rows were added. Keys already present (sent, skipped,
    failed or waiting) are left alone: a repeated run adds nothing. Should a run
    started by hand meet the timer's, the slower one's insert violates the
    unique key; it then starts over and finds the rows there.
    """
    try:
        return _schedule(today or date.today())
    except IntegrityError:
        db.session.rollback()
        return _schedule(today or date.today())


def _schedule(today: date) -> int:
    wanted = calendar_due(today)
    if not wanted:
        return 0
    existing = set()
    keys = [w.key for w in wanted]
    for start in range(0, len(keys), 500):
        existing.update(
            db.session.scalars(
                select(Notification.key).where(Notification.key.in_(keys[start : start + 500]))
            )
        )
    new = [w for w in wanted if w.key not in existing]
    opening = {(w.user_id, w.period_id) for w in new if w.kind == events.OPENED}
    db.session.add_all(
        Notification(
            key=w.key,
            kind=w.kind,
            user_id=w.user_id,
            municipality_id=w.municipality_id,
            period_id=w.period_id,
            due=w.due,
            # A quarter opened within a reminder's window: the opening mail says it all.
            state=events.SKIPPED
            if w.kind == events.REMINDER and (w.user_id, w.period_id) in opening
            else events.PENDING,
        )
        for w in new
    )
    db.session.commit()
    return len(new)
