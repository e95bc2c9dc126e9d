"""What the evaluation report shows, read with a fixed number of queries.

Figures are aggregated in the database (``GROUP BY``), so a report costs the same
number of queries however many municipalities it covers; only the raw-data sheet
reads every figure, streamed from a server-side cursor. Flows are summed over
the range, stocks are taken at the range's last quarter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import aliased

from kim_admin import coverage, suppression
from kim_admin.extensions import db
from kim_admin.monitoring import periods
from kim_admin.monitoring.status import APPROVED
from models import (
    Indicator,
    MonitoringEntry,
    Municipality,
    Partner,
    Post,
    ReportingPeriod,
    Room,
    Submission,
    TargetGroup,
)
from models.partner import partner_municipality, partner_target_group

WHOLE_DISTRICT = "ganzer Kreis"


class ReportError(ValueError):
    """The chosen options cannot make a report (German message)."""


@dataclass(frozen=True)
class ReportOptions:
    """What a report covers."""

    first_period_id: int
    last_period_id: int
    municipality_ids: tuple[int, ...]
    #: Only figures of approved submissions (else every figure entered).
    approved_only: bool = True
    #: The raw-data sheet (one row per figure) may be left out of very large reports.
    include_raw: bool = True
    #: For publication: small counts hidden (with secondary suppression), no raw data.
    publish: bool = False
    #: Counts from 1 to ``threshold - 1`` are hidden in a published report.
    threshold: int = 3


period_key = periods.key


def number(value: Any) -> float | None:
    """A database number as a float for the workbook (None stays None)."""
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else value


class ReportData:
    """Everything the workbook shows, read with a fixed number of queries."""

    def __init__(self, options: ReportOptions, user: Any) -> None:
        self.options = options
        self.user = user
        session = db.session
        bounds = session.scalars(
            select(ReportingPeriod).where(
                ReportingPeriod.id.in_([options.first_period_id, options.last_period_id])
            )
        ).all()
        by_id = {p.id: p for p in bounds}
        if options.first_period_id not in by_id or options.last_period_id not in by_id:
            raise ReportError("Bitte einen gültigen Zeitraum wählen.")
        first, last = by_id[options.first_period_id], by_id[options.last_period_id]
        if period_key(first) > period_key(last):
            raise ReportError("Das erste Quartal liegt nach dem letzten.")
        key = ReportingPeriod.year * 10 + ReportingPeriod.quarter
        self.periods: list[ReportingPeriod] = session.scalars(
            select(ReportingPeriod)
            .where(key.between(period_key(first), period_key(last)))
            .order_by(ReportingPeriod.year, ReportingPeriod.quarter)
        ).all()
        self.first, self.last = first, last
        self.period_ids = [p.id for p in self.periods]
        self.towns: list[Municipality] = session.scalars(
            select(Municipality)
            .where(Municipality.id.in_(options.municipality_ids))
            .order_by(Municipality.name)
        ).all()
        if not self.towns:
            raise ReportError("Bitte mindestens eine Kommune wählen.")
        self.town_ids = [t.id for t in self.towns]
        self.indicators: list[Indicator] = session.scalars(
            select(Indicator)
            .where(Indicator.active.is_(True))
            .order_by(Indicator.sort_order, Indicator.code)
        ).all()
        self.groups: list[TargetGroup] = session.scalars(
            select(TargetGroup).order_by(TargetGroup.sort_order, TargetGroup.name)
        ).all()
        self.submissions: list[Submission] = session.scalars(
            select(Submission).where(
                Submission.period_id.in_(self.period_ids),
                Submission.municipality_id.in_(self.town_ids),
            )
        ).all()
        self._read_figures()
        # Coverage in the year of the range's last quarter (Handlungsfeld 3).
        self.coverage = coverage.matrix(last.year, user, self.town_ids)

    # Figures of the range, restricted to approved submissions if asked.
    def _entries(self, *columns: Any) -> Any:
        query = select(*columns).where(
            MonitoringEntry.period_id.in_(self.period_ids),
            MonitoringEntry.municipality_id.in_(self.town_ids),
        )
        if self.options.approved_only:
            query = query.join(
                Submission,
                and_(
                    Submission.municipality_id == MonitoringEntry.municipality_id,
                    Submission.period_id == MonitoringEntry.period_id,
                    Submission.status == APPROVED,
                ),
            )
        return query

    def _read_figures(self) -> None:
        e = MonitoringEntry
        at_end = func.sum(case((e.period_id == self.last.id, e.value)))
        rows = db.session.execute(
            self._entries(
                e.municipality_id, e.indicator_id, e.target_group_id, func.sum(e.value), at_end
            ).group_by(e.municipality_id, e.indicator_id, e.target_group_id)
        ).all()
        stock = {i.id for i in self.indicators if i.kind == "stock"}
        # (municipality, indicator) -> value, and the same per target group.
        self.range_values: dict[tuple[int, int], float] = {}
        self.group_values: dict[tuple[int, int, int], float] = {}
        for town, indicator, group, total, end in rows:
            value = number(end if indicator in stock else total)
            if value is None:
                continue
            key = (town, indicator)
            self.range_values[key] = self.range_values.get(key, 0) + value
            if group is not None:
                self.group_values[(town, indicator, group)] = value
        series = db.session.execute(
            self._entries(e.period_id, e.indicator_id, func.sum(e.value)).group_by(
                e.period_id, e.indicator_id
            )
        ).all()
        self.series: dict[tuple[int, int], float] = {
            (p, i): number(v) for p, i, v in series if v is not None
        }

    # --- publication --------------------------------------------------------------
    def total(self, indicator: Indicator) -> float | None:
        """The indicator over all chosen municipalities (flows summed, stocks at the end)."""
        present = [
            v for t in self.towns if (v := self.range_values.get((t.id, indicator.id))) is not None
        ]
        return sum(present) if present else None

    def group_total(self, indicator: Indicator, group: TargetGroup) -> float | None:
        """One target group's figure over all chosen municipalities."""
        present = [
            v
            for t in self.towns
            if (v := self.group_values.get((t.id, indicator.id, group.id))) is not None
        ]
        return sum(present) if present else None

    def hidden_cells(self) -> set:
        """Keys of the counts a published report hides (empty for internal reports).

        Keys name each published count once, wherever it appears: ``("K", town,
        indicator)`` a municipality's figure (Kennzahlen, and the row total of
        Zielgruppen), ``("KT", indicator)`` the total over the municipalities
        (also the Zeitreihe's total), ``("G", town, indicator, group)`` and
        ``("GC", indicator, group)`` the Zielgruppen cells and their totals,
        ``("Z", period, indicator)`` a quarter of the Zeitreihe. Every sum the
        workbook shows is one line.
        """
        if not self.options.publish:
            return set()
        values: dict[tuple, float | None] = {}
        lines: list[list[tuple]] = []
        totals: set[tuple] = set()
        for i in (i for i in self.indicators if not i.decimal_places):
            figures = [("K", t.id, i.id) for t in self.towns]
            for t in self.towns:
                values[("K", t.id, i.id)] = self.range_values.get((t.id, i.id))
            values[("KT", i.id)] = self.total(i)
            totals.add(("KT", i.id))
            lines.append([*figures, ("KT", i.id)])
            if i.by_target_group:
                totals.update(figures)
                for g in self.groups:
                    values[("GC", i.id, g.id)] = self.group_total(i, g)
                    totals.add(("GC", i.id, g.id))
                    lines.append(
                        [*[("G", t.id, i.id, g.id) for t in self.towns], ("GC", i.id, g.id)]
                    )
                for t in self.towns:
                    for g in self.groups:
                        values[("G", t.id, i.id, g.id)] = self.group_values.get((t.id, i.id, g.id))
                    row = [("G", t.id, i.id, g.id) for g in self.groups]
                    lines.append([*row, ("K", t.id, i.id)])
                lines.append([*[("GC", i.id, g.id) for g in self.groups], ("KT", i.id)])
            for p in self.periods:
                values[self.series_key(p, i)] = self.series.get((p.id, i.id))
            if i.kind == "flow":
                lines.append([*[("Z", p.id, i.id) for p in self.periods], ("KT", i.id)])
        needs = [("N", c.municipality.id, c.group.id) for c in self.coverage]
        for key, cell in zip(needs, self.coverage, strict=True):
            values[key] = cell.need
        values[("NT",)] = self.need_total()
        lines.append([*needs, ("NT",)])
        totals.add(("NT",))
        return suppression.protect(values, lines, self.options.threshold, totals)

    def need_total(self) -> int | None:
        """Estimated need over the whole coverage matrix."""
        present = [c.need for c in self.coverage if c.need is not None]
        return sum(present) if present else None

    def series_key(self, period: ReportingPeriod, indicator: Indicator) -> tuple:
        """Key of a Zeitreihe cell: a stock's last quarter is the range's total itself."""
        if indicator.kind == "stock" and period.id == self.last.id:
            return ("KT", indicator.id)
        return ("Z", period.id, indicator.id)

    # --- master data, grouped in the database --------------------------------------
    def posts(self, include_district_level: bool) -> list[tuple[Any, ...]]:
        """(municipality, function, Baustein, count, FTE, filled FTE, vacant FTE)."""
        filled = func.sum(case((Post.status == "besetzt", Post.fte), else_=0))
        vacant = func.sum(case((Post.status != "besetzt", Post.fte), else_=0))
        where = Post.municipality_id.in_(self.town_ids)
        if include_district_level:
            where = or_(where, Post.municipality_id.is_(None))
        query = (
            select(
                Post.municipality_id,
                Post.function,
                Post.baustein,
                func.count(Post.id),
                func.sum(Post.fte),
                filled,
                vacant,
            )
            .where(
                where,
                or_(Post.valid_from.is_(None), Post.valid_from <= self.last.ends_on),
                or_(Post.valid_until.is_(None), Post.valid_until >= self.first.starts_on),
            )
            .group_by(Post.municipality_id, Post.function, Post.baustein)
        )
        return db.session.execute(query).all()

    def rooms(self) -> dict[int, tuple[int, int, int]]:
        """municipality -> (active rooms, barrier-free rooms, seats)."""
        query = (
            select(
                Room.municipality_id,
                func.count(Room.id),
                func.sum(case((Room.barrier_free.is_(True), 1), else_=0)),
                func.coalesce(func.sum(Room.seats), 0),
            )
            .where(Room.municipality_id.in_(self.town_ids), Room.active.is_(True))
            .group_by(Room.municipality_id)
        )
        return {town: (n, free, seats) for town, n, free, seats in db.session.execute(query)}

    def partners(self) -> list[tuple[Partner, list[str], list[str]]]:
        """Partners serving a chosen municipality or the whole district, with what they serve.

        Only the chosen municipalities are named: a municipal user's report names
        no other municipality.
        """
        names = {t.id: t.name for t in self.towns}
        served: dict[int, list[int]] = defaultdict(list)
        for partner_id, town_id in db.session.execute(select(partner_municipality)):
            served[partner_id].append(town_id)
        group_names = {g.id: g.name for g in self.groups}
        groups: dict[int, list[str]] = defaultdict(list)
        for partner_id, group_id in db.session.execute(select(partner_target_group)):
            groups[partner_id].append(group_names.get(group_id, ""))
        result = []
        for partner in db.session.scalars(select(Partner).order_by(Partner.name)):
            towns = served.get(partner.id, [])
            chosen = sorted(names[t] for t in towns if t in names)
            if towns and not chosen:
                continue  # serves only municipalities outside the report
            result.append((partner, chosen or [WHOLE_DISTRICT], sorted(groups[partner.id])))
        return result

    def raw_rows(self) -> Iterable[tuple[Any, ...]]:
        """Every figure of the range, one row each, streamed."""
        e = MonitoringEntry
        status = aliased(Submission)
        query = (
            self._entries(
                Municipality.name,
                Municipality.ags,
                ReportingPeriod.year,
                ReportingPeriod.quarter,
                Indicator.code,
                Indicator.name,
                TargetGroup.name,
                e.value,
                status.status,
                e.comment,
                e.updated_at,
            )
            .join(Municipality, Municipality.id == e.municipality_id)
            .join(ReportingPeriod, ReportingPeriod.id == e.period_id)
            .join(Indicator, Indicator.id == e.indicator_id)
            .outerjoin(TargetGroup, TargetGroup.id == e.target_group_id)
            .outerjoin(
                status,
                and_(status.municipality_id == e.municipality_id, status.period_id == e.period_id),
            )
            .order_by(
                Municipality.name,
                ReportingPeriod.year,
                ReportingPeriod.quarter,
                Indicator.sort_order,
                Indicator.code,
                TargetGroup.sort_order,
            )
        )
        return db.session.execute(query.execution_options(yield_per=5000))
