"""The start page's figures (the Handlungsfelder cockpit), scoped like everything else.

Every function takes the user and reads only what :func:`permissions.apply_scope`
lets them reach: the district and the steering group see every KIM municipality,
a municipal user their own. The charts are drawn in the browser from
:func:`chart_data`, served as JSON by the start page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, or_, select

from models import (
    BAUSTEINE,
    Indicator,
    MonitoringEntry,
    Municipality,
    Post,
    ReportingPeriod,
    Submission,
)

from .extensions import db
from .monitoring import periods as quarters
from .monitoring.status import RECEIVED, RETURNED
from .monitoring.status import label as status_label
from .monitoring.workflow import edit_deadline, lock_reason
from .permissions import MUNICIPAL_STAFF, apply_scope
from .scope import reachable_municipalities

# Indicators compared quarter on quarter at the top of the page.
CASE_CODES = ("CM_NEU", "CM_AKT")
# Quarters shown in the charts.
CHART_QUARTERS = 8


def current_period(today: date | None = None) -> ReportingPeriod | None:
    """The quarter being reported now (see :func:`kim_admin.monitoring.periods.current`)."""
    return quarters.current(today)


def recent_periods(upto: ReportingPeriod | None, count: int = CHART_QUARTERS) -> list:
    """The ``count`` quarters up to ``upto``, oldest first."""
    return quarters.recent(upto, count)


def towns_of(user: Any) -> list[Municipality]:
    """The municipalities on the user's dashboard: KIM participants, or their own."""
    return reachable_municipalities(user, participants_only=True)


@dataclass
class TownStatus:
    """One municipality's report of the current quarter."""

    town: Municipality
    status: str | None
    overdue: bool

    @property
    def label(self) -> str:
        return status_label(self.status)

    @property
    def open(self) -> bool:
        return self.status not in RECEIVED


def submission_status(user: Any, period: ReportingPeriod | None, today: date | None = None):
    """Per municipality: the status of the current quarter and whether it is overdue."""
    if period is None:
        return []
    today = today or date.today()
    towns = towns_of(user)
    statuses = dict(
        db.session.execute(
            apply_scope(
                select(Submission.municipality_id, Submission.status).where(
                    Submission.period_id == period.id
                ),
                Submission,
                "submission",
                user,
            )
        ).all()
    )
    late = period.deadline is not None and today > period.deadline
    rows = []
    for town in towns:
        status = statuses.get(town.id)
        rows.append(TownStatus(town, status, late and status not in RECEIVED))
    return rows


def fte_by_baustein(user: Any, today: date | None = None) -> list[tuple[str, float, float]]:
    """(Baustein, FTE of all current posts, FTE filled) of the posts the user may see."""
    today = today or date.today()
    query = apply_scope(
        select(
            Post.baustein,
            func.sum(Post.fte),
            func.sum(case((Post.status == "besetzt", Post.fte), else_=0)),
        )
        .where(
            or_(Post.valid_from.is_(None), Post.valid_from <= today),
            or_(Post.valid_until.is_(None), Post.valid_until >= today),
        )
        .group_by(Post.baustein),
        Post,
        "post",
        user,
    )
    sums = {
        b: (float(total or 0), float(filled or 0)) for b, total, filled in db.session.execute(query)
    }
    return [(label, *sums.get(code, (0.0, 0.0))) for code, label in BAUSTEINE]


def case_figures(user: Any, periods: list[ReportingPeriod]) -> list[dict[str, Any]]:
    """New and active cases of the latest quarter with figures, and of the one before.

    ``periods`` are the last few quarters, oldest first; while the current quarter
    is still being reported, the comparison shows the last complete pair.
    """
    if not periods:
        return []
    query = apply_scope(
        select(Indicator.code, MonitoringEntry.period_id, func.sum(MonitoringEntry.value))
        .join(Indicator, Indicator.id == MonitoringEntry.indicator_id)
        .where(
            Indicator.code.in_(CASE_CODES),
            MonitoringEntry.period_id.in_([p.id for p in periods]),
        )
        .group_by(Indicator.code, MonitoringEntry.period_id),
        MonitoringEntry,
        "monitoring_entry",
        user,
    )
    sums = {(code, pid): float(v) for code, pid, v in db.session.execute(query) if v is not None}
    names = dict(
        db.session.execute(
            select(Indicator.code, Indicator.name).where(Indicator.code.in_(CASE_CODES))
        ).all()
    )
    reported = [p for p in periods if any((code, p.id) in sums for code in CASE_CODES)]
    current = reported[-1] if reported else periods[-1]
    earlier = [p for p in periods if quarters.key(p) < quarters.key(current)]
    previous = earlier[-1] if earlier else None
    result = []
    for code in CASE_CODES:
        if code not in names:
            continue
        now = sums.get((code, current.id))
        before = sums.get((code, previous.id)) if previous else None
        result.append(
            {
                "code": code,
                "name": names[code],
                "period": str(current),
                "previous": str(previous) if previous else None,
                "value": now,
                "before": before,
                "change": now - before if now is not None and before is not None else None,
            }
        )
    return result


def chart_data(user: Any, today: date | None = None) -> dict[str, Any]:
    """Each main indicator per quarter and municipality, for the charts (one query)."""
    periods = recent_periods(current_period(today))
    towns = towns_of(user)
    indicators = db.session.scalars(
        select(Indicator)
        .where(Indicator.active.is_(True), Indicator.decimal_places == 0)
        .order_by(Indicator.sort_order, Indicator.code)
    ).all()
    values: dict[tuple[int, int, int], float] = {}
    if periods and towns:
        query = apply_scope(
            select(
                MonitoringEntry.indicator_id,
                MonitoringEntry.municipality_id,
                MonitoringEntry.period_id,
                func.sum(MonitoringEntry.value),
            )
            .where(
                MonitoringEntry.period_id.in_([p.id for p in periods]),
                MonitoringEntry.municipality_id.in_([t.id for t in towns]),
            )
            .group_by(
                MonitoringEntry.indicator_id,
                MonitoringEntry.municipality_id,
                MonitoringEntry.period_id,
            ),
            MonitoringEntry,
            "monitoring_entry",
            user,
        )
        for indicator_id, town_id, period_id, total in db.session.execute(query):
            if total is not None:
                values[(indicator_id, town_id, period_id)] = float(total)
    return {
        "periods": [str(p) for p in periods],
        "indicators": [
            {
                "code": i.code,
                "name": i.name,
                "unit": i.unit,
                "kind": i.kind,
                "series": [
                    {
                        "municipality": t.name,
                        "population": t.population,
                        "values": [values.get((i.id, t.id, p.id)) for p in periods],
                    }
                    for t in towns
                ],
            }
            for i in indicators
        ],
    }


def due_from(user: Any, period: ReportingPeriod | None, today: date | None = None):
    """What a municipality still owes for the current quarter (None if nothing)."""
    if period is None or user.role != MUNICIPAL_STAFF:
        return None
    today = today or date.today()
    submission = db.session.scalar(
        select(Submission).where(
            Submission.period_id == period.id,
            Submission.municipality_id == user.municipality_id,
        )
    )
    status = submission.status if submission else None
    last_day = edit_deadline(period)
    return {
        "period": period,
        "status": status_label(status),
        "done": status in RECEIVED,
        "returned": submission.return_reason if submission and status == RETURNED else None,
        "deadline": period.deadline,
        "days_left": (period.deadline - today).days if period.deadline else None,
        "last_day": last_day,
        "locked": lock_reason(user, user.municipality_id, period, today),
    }
