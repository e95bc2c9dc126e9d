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
    FigureTotal,
    Indicator,
    Municipality,
    Post,
    ReportingPeriod,
    Submission,
)

from .extensions import db
from .monitoring import periods as quarters
from .monitoring import totals as figure_totals
from .monitoring.status import RECEIVED, RETURNED
from .monitoring.status import label as status_label
from .monitoring.workflow import edit_deadline, lock_reason
from .permissions import MUNICIPAL_STAFF, apply_scope
from .scope import municipalities_query, reachable_municipalities

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


#: Rows of the start page's status table; the Meldestand page shows every municipality.
STATUS_ROWS = 12


def needing_attention(statuses: list[TownStatus], limit: int = STATUS_ROWS) -> list[TownStatus]:
    """All rows when they fit, else the overdue ones first, then the other open ones."""
    if len(statuses) <= limit:
        return statuses
    ranked = [s for s in statuses if s.overdue] + [s for s in statuses if s.open and not s.overdue]
    return ranked[:limit]


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
        select(Indicator.code, FigureTotal.period_id, figure_totals.summed())
        .join(Indicator, Indicator.id == FigureTotal.indicator_id)
        .where(
            Indicator.code.in_(CASE_CODES),
            FigureTotal.period_id.in_([p.id for p in periods]),
        )
        .group_by(Indicator.code, FigureTotal.period_id),
        FigureTotal,
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


#: Most municipalities a chart draws: more lines than this nobody can tell apart.
CHART_TOWNS = 10
#: Label of the line that sums every municipality of the user's scope.
TOTAL_LABEL = "Kreis insgesamt"

# One look per line: colour (each at least 3:1 against white, WCAG 1.4.11), dash
# pattern and point style, so that no line is told apart by colour alone.
LINE_COLOURS = (
    "#0072B2",  # blue 5.1:1
    "#C2410C",  # orange 5.2:1
    "#047857",  # green 5.5:1
    "#7E22CE",  # purple 7.0:1
    "#B91C1C",  # red 6.5:1
    "#4D7C0F",  # olive 5.4:1
    "#0E7490",  # teal 5.4:1
    "#A16207",  # ochre 4.9:1
    "#BE185D",  # magenta 6.0:1
    "#57534E",  # grey 7.6:1
)
LINE_DASHES = (
    (),
    (8, 4),
    (2, 3),
    (10, 3, 2, 3),
    (4, 4),
    (12, 6),
    (2, 6),
    (6, 2, 2, 2, 2, 2),
    (16, 4),
    (1, 2),
)
POINT_STYLES = (
    "circle",
    "triangle",
    "rect",
    "rectRot",
    "crossRot",
    "star",
    "cross",
    "rectRounded",
    "line",
    "dash",
)
TOTAL_STYLE = {"colour": "#000000", "dash": [], "point": "circle", "width": 4}


def line_style(n: int) -> dict[str, Any]:
    """The look of the ``n``-th line of a chart (colour, dash, point style)."""
    return {
        "colour": LINE_COLOURS[n % len(LINE_COLOURS)],
        "dash": list(LINE_DASHES[n % len(LINE_DASHES)]),
        "point": POINT_STYLES[n % len(POINT_STYLES)],
        "width": 2,
    }


def per_thousand(value: float | None, population: int | None) -> float | None:
    """``value`` per 1,000 inhabitants, one decimal (as the chart computes it)."""
    if value is None or not population:
        return None
    return round(value / population * 1000, 1)


def chart_data(
    user: Any, today: date | None = None, selected: list[int] | None = None
) -> dict[str, Any]:
    """Each main indicator per quarter, as lines a person can read (one query).

    Up to :data:`CHART_TOWNS` municipalities each get a line; with more, a chart
    shows the ``selected`` ones (at most :data:`CHART_TOWNS`) or else the ten with
    the highest values of the shown quarters, plus the total of all of them.
    """
    periods = recent_periods(current_period(today))
    towns = towns_of(user)
    by_id = {t.id: t for t in towns}
    chosen = [by_id[i] for i in dict.fromkeys(selected or []) if i in by_id][:CHART_TOWNS]
    indicators = db.session.scalars(
        select(Indicator)
        .where(Indicator.active.is_(True), Indicator.decimal_places == 0)
        .order_by(Indicator.sort_order, Indicator.code)
    ).all()
    period_ids = [p.id for p in periods]
    slot = {pid: n for n, pid in enumerate(period_ids)}
    many = len(towns) > CHART_TOWNS
    mode = "selected" if many and chosen else ("top" if many else "all")
    population = sum(t.population or 0 for t in towns)
    nothing: list[float | None] = [None] * len(periods)

    def figures(*columns: Any, towns_in: list[int] | None = None) -> Any:
        """Sums of the shown quarters' figures of the user's towns, grouped by ``columns``
        (read from the running totals, :mod:`.monitoring.totals`)."""
        query = select(*columns, figure_totals.summed()).where(
            FigureTotal.period_id.in_(period_ids),
            # The user's towns as a subquery, not a list of 396 parameters.
            FigureTotal.municipality_id.in_(
                municipalities_query(user, participants_only=True)
                .with_only_columns(Municipality.id)
                .order_by(None)
            ),
        )
        if towns_in is not None:
            query = query.where(FigureTotal.municipality_id.in_(towns_in))
        query = query.group_by(*columns)
        return db.session.execute(apply_scope(query, FigureTotal, "monitoring_entry", user))

    # Which municipalities each chart shows: all, the picked ones, or the ten with the
    # highest sums (one query grouped by indicator and town: 12 × 396 sums, not 38,000).
    shown: dict[int, list[int]] = {}
    if mode == "all":
        shown = {i.id: [t.id for t in towns] for i in indicators}
    elif mode == "selected":
        shown = {i.id: [t.id for t in chosen] for i in indicators}
    elif periods:
        weights: dict[int, list[tuple[float, str, int]]] = {i.id: [] for i in indicators}
        for indicator_id, town_id, total in figures(
            FigureTotal.indicator_id, FigureTotal.municipality_id
        ):
            if indicator_id in weights and town_id in by_id and total is not None:
                weights[indicator_id].append((-float(total), by_id[town_id].name, town_id))
        shown = {i: [t for _, _, t in sorted(w)[:CHART_TOWNS]] for i, w in weights.items()}
        for i in shown:  # fewer than ten with figures: fill up by name
            extra = [t.id for t in towns if t.id not in shown[i]]
            shown[i] += extra[: CHART_TOWNS - len(shown[i])]
    # indicator id -> town id -> one value per shown quarter (None: nothing reported)
    values: dict[int, dict[int, list[float | None]]] = {i.id: {} for i in indicators}
    totals: dict[int, list[float | None]] = {i.id: list(nothing) for i in indicators}
    if periods and towns:
        wanted = sorted({t for ids in shown.values() for t in ids})
        for indicator_id, town_id, period_id, total in figures(
            FigureTotal.indicator_id,
            FigureTotal.municipality_id,
            FigureTotal.period_id,
            towns_in=wanted,
        ):
            row = values.get(indicator_id)
            if row is None or total is None:
                continue
            if town_id not in row:
                row[town_id] = list(nothing)
            row[town_id][slot[period_id]] = float(total)
        if mode != "all":
            for indicator_id, period_id, total in figures(
                FigureTotal.indicator_id, FigureTotal.period_id
            ):
                if indicator_id in totals and total is not None:
                    totals[indicator_id][slot[period_id]] = float(total)

    def series_of(indicator: Indicator) -> list[dict[str, Any]]:
        rows = values[indicator.id]
        lines = [
            {
                "municipality": by_id[t].name,
                "population": by_id[t].population,
                "values": list(rows.get(t, nothing)),
                "style": line_style(n),
            }
            for n, t in enumerate(shown.get(indicator.id, []))
        ]
        if mode != "all":
            lines.append(
                {
                    "municipality": TOTAL_LABEL,
                    "population": population,
                    "values": totals[indicator.id],
                    "style": TOTAL_STYLE,
                    "total": True,
                }
            )
        for line in lines:
            line["per1000"] = [per_thousand(v, line["population"]) for v in line["values"]]
        return lines

    return {
        "periods": [str(p) for p in periods],
        "mode": mode,
        "towns": len(towns),
        "limit": CHART_TOWNS,
        "indicators": [
            {
                "code": i.code,
                "name": i.name,
                "unit": i.unit,
                "kind": i.kind,
                "series": series_of(i),
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
