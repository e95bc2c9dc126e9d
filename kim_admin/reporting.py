"""The reporting cycle's rules, shared by views, imports and the CLI."""

from __future__ import annotations

from sqlalchemy import select

from models import ReportingPeriod, Submission

from .extensions import db

# Statuses in which a municipality may still change its figures.
EDITABLE_STATUSES = {None, "draft", "returned"}


class PeriodLocked(Exception):
    """A municipal user tried to change figures of a locked quarter."""


def municipality_may_edit(municipality_id: int, period: ReportingPeriod) -> bool:
    """Whether the municipality may still change its figures of ``period``.

    Only while the quarter is open and the report is neither submitted nor
    approved (a returned report is editable again).
    """
    if not period.is_open:
        return False
    status = db.session.scalar(
        select(Submission.status).where(
            Submission.municipality_id == municipality_id, Submission.period_id == period.id
        )
    )
    return status in EDITABLE_STATUSES
