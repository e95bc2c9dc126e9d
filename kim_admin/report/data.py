"""What the evaluation report shows, read with a fixed number of queries.

Figures are aggregated in the database (``GROUP BY``), so a report costs the same
number of queries however many municipalities it covers; only the raw-data sheet
reads every figure, streamed from a server-side cursor. Flows are summed over
the range, stocks are taken at the range's last quarter.

**Provisional quarters.** Only an approved report is final. A quarter of the
range in which not every chosen municipality's report is approved is
*provisional* ("p"), and so is every figure that depends on it: a
municipality's value whose quarters are not all approved, and every total over
such a quarter. Totals are sums over the municipalities that *reported*, never
extrapolated; rates per 1,000 inhabitants divide by the population of the
municipalities that have a value, so that a quarter with one of seven towns in
does not look like a collapse. What "reported" means follows the data basis:

* *only approved reports* (the default): a municipality reported a quarter when
  its report is approved; its other figures are not in the report at all.
* *every figure entered*: a municipality reported a quarter when it has entered
  figures or submitted its report (a submitted report may have gaps explained by
  comments). Its figures count, but stay provisional until approved: they can
  still change. So the same quarter may be complete in coverage ("7 von 7 mit
  Werten") and still provisional ("davon 1 freigegeben").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import aliased

from kim_admin import coverage, scope, suppression
from kim_admin.extensions import db
from kim_admin.formatting import local_time
from kim_admin.monitoring import periods
from kim_admin.monitoring.indicators import indicators_valid_in
from kim_admin.monitoring.status import APPROVED, RECEIVED
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

from . import publication

WHOLE_DISTRICT = "ganzer Kreis"
#: The Kreis whose monitoring this is. No table holds it (the municipalities share
#: its key 05958, but not its name), so it is named here, once.
DISTRICT = "Hochsauerlandkreis"
#: The source line of every sheet, as official statistics tables give it.
SOURCE = f"Quelle: KIM-Monitoring des {DISTRICT}es, eigene Berechnungen"


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
    #: Least width of a hidden cell's feasible interval (None: KIM_SUPPRESSION_WIDTH,
    #: else the threshold).
    width: int | None = None


period_key = periods.key


def number(value: Any) -> float | None:
    """A database number as a float for the workbook (None stays None)."""
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else value


def per_thousand(value: float | None, population: int) -> float | None:
    """``value`` per 1,000 inhabitants (None without a value or a population)."""
    if value is None or not population:
        return None
    return value / population * 1000


def last_complete_period(municipality_ids: Iterable[int]) -> ReportingPeriod | None:
    """The latest quarter in which every one of the municipalities has an approved report.

    This is where a report's default range ends: the last quarter whose figures
    are final for all of them. None if there is no such quarter (or no municipality).
    """
    ids = list(dict.fromkeys(municipality_ids))
    if not ids:
        return None
    complete = (
        select(Submission.period_id)
        .where(Submission.municipality_id.in_(ids), Submission.status == APPROVED)
        .group_by(Submission.period_id)
        .having(func.count(Submission.municipality_id.distinct()) == len(ids))
    )
    return db.session.scalar(
        select(ReportingPeriod)
        .where(ReportingPeriod.id.in_(complete))
        .order_by(periods.key_column().desc())
        .limit(1)
    )


def published_year(year: int, user: Any) -> ReportData | None:
    """The published workbook of a calendar year: every KIM municipality, approved figures.

    This is the one audited table that every published figure comes from: the
    report "für Veröffentlichung", and the published exports of needs and coverage,
    which show its cells as it shows them. None while the year has not ended (its
    figures may still come in, and a partial year published early would be
    audited apart from the whole) or has no quarters. Raises :class:`ReportError`
    for a user who may not publish (see :func:`.publication.check_scope`).
    """
    quarters = db.session.scalars(
        select(ReportingPeriod)
        .where(ReportingPeriod.year == year)
        .order_by(ReportingPeriod.quarter)
    ).all()
    if [p.quarter for p in quarters] != [1, 2, 3, 4] or not periods.has_ended(quarters[-1]):
        return None
    threshold = current_app.config["KIM_SUPPRESSION_THRESHOLD"]
    options = ReportOptions(
        quarters[0].id,
        quarters[-1].id,
        tuple(publication.participant_ids()),
        include_raw=False,
        publish=True,
        threshold=threshold,
    )
    data = ReportData(options, user)
    data.protection()
    return data


class ReportData:
    """Everything the workbook shows, read with a fixed number of queries."""

    def __init__(self, options: ReportOptions, user: Any) -> None:
        self.options = options
        self.user = user
        # The moment the data is read: "Erstellt am" and "Datenstand" (aware, UTC).
        self.read_at = datetime.now(UTC)
        session = db.session
        reachable, foreign = scope.reachable_municipality_ids(user, options.municipality_ids)
        if foreign:
            # Treated like an unknown id: the answer does not say whether it exists.
            raise ReportError("Unbekannte Kommune: Bitte nur Kommunen aus der Liste wählen.")
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
        if options.publish and (refusal := publication.check_grid(first, last)):
            raise ReportError(refusal)
        self._protection: suppression.Protection | None = None
        self._table: suppression.Table | None = None
        #: This year's own table, as :func:`.publication.link_previous` leaves it out.
        self._own: suppression.Table | None = None
        self.periods: list[ReportingPeriod] = periods.between(first, last)
        self.first, self.last = first, last
        self.period_ids = [p.id for p in self.periods]
        self.towns: list[Municipality] = session.scalars(
            select(Municipality).where(Municipality.id.in_(reachable)).order_by(Municipality.name)
        ).all()
        if not self.towns:
            raise ReportError("Bitte mindestens eine Kommune wählen.")
        self.town_ids = [t.id for t in self.towns]
        self.indicators: list[Indicator] = session.scalars(indicators_valid_in(first, last)).all()
        self.groups: list[TargetGroup] = session.scalars(
            select(TargetGroup).order_by(TargetGroup.sort_order, TargetGroup.name)
        ).all()
        self.submissions: list[Submission] = session.scalars(
            select(Submission).where(
                Submission.period_id.in_(self.period_ids),
                Submission.municipality_id.in_(self.town_ids),
            )
        ).all()
        self.by_cell = {(s.municipality_id, s.period_id): s for s in self.submissions}
        if options.publish and (refusal := publication.check_scope(self, user)):
            raise ReportError(refusal)
        self._read_figures()
        self._read_completeness()
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
        # Per quarter and indicator: the sum, and the inhabitants of the municipalities
        # with a value (the rates' denominator), summed in the database in two steps.
        per_town = (
            self._entries(
                e.municipality_id.label("town"),
                e.period_id.label("period"),
                e.indicator_id.label("indicator"),
                func.sum(e.value).label("value"),
            )
            .where(e.value.is_not(None))
            .group_by(e.municipality_id, e.period_id, e.indicator_id)
            .subquery()
        )
        series = db.session.execute(
            select(
                per_town.c.period,
                per_town.c.indicator,
                func.sum(per_town.c.value),
                func.sum(Municipality.population),
            )
            .join(Municipality, Municipality.id == per_town.c.town)
            .group_by(per_town.c.period, per_town.c.indicator)
        ).all()
        self.series: dict[tuple[int, int], float] = {}
        #: Inhabitants of the municipalities with a value, per (quarter, indicator).
        self.series_population: dict[tuple[int, int], int] = {}
        for period, indicator, value, population in series:
            self.series[(period, indicator)] = number(value)
            self.series_population[(period, indicator)] = int(population or 0)
        # Who has entered anything, per quarter: "reported" when every figure counts.
        self.with_figures: dict[int, set[int]] = defaultdict(set)
        if not self.options.approved_only:
            for town, period in db.session.execute(
                self._entries(e.municipality_id, e.period_id).distinct()
            ):
                self.with_figures[period].add(town)

    def _read_completeness(self) -> None:
        """Who is approved and who counts as reported, per quarter (see the module doc)."""
        self.approved: dict[int, set[int]] = {p: set() for p in self.period_ids}
        received: dict[int, set[int]] = {p: set() for p in self.period_ids}
        for (town, period), submission in self.by_cell.items():
            if submission.status == APPROVED:
                self.approved[period].add(town)
            if submission.status in RECEIVED:
                received[period].add(town)
        if self.options.approved_only:
            self.reported = self.approved
        else:
            self.reported = {p: received[p] | self.with_figures[p] for p in self.period_ids}
        expected = set(self.town_ids)
        self.provisional_periods: list[ReportingPeriod] = [
            p for p in self.periods if self.approved[p.id] != expected
        ]
        provisional = {p.id for p in self.provisional_periods}
        # A municipality's range value is final when all of its quarters are approved
        # (flows) or its last quarter is (stocks).
        self._final_flow = {
            t: all(t in self.approved[p] for p in self.period_ids) for t in self.town_ids
        }
        self._final_end = {t: t in self.approved[self.last.id] for t in self.town_ids}
        self._provisional = provisional

    # --- completeness ---------------------------------------------------------------
    def is_provisional(self, period: ReportingPeriod) -> bool:
        """Whether a quarter of the range lacks an approved report of a chosen municipality."""
        return period.id in self._provisional

    def town_provisional(self, town_id: int, indicator: Indicator) -> bool:
        """Whether a municipality's range value of ``indicator`` may still change."""
        final = self._final_end if indicator.kind == "stock" else self._final_flow
        return not final[town_id]

    def total_provisional(self, indicator: Indicator) -> bool:
        """Whether the total of ``indicator`` over the range rests on a provisional quarter."""
        if indicator.kind == "stock":
            return self.is_provisional(self.last)
        return bool(self._provisional)

    def period_label(self, period: ReportingPeriod) -> str:
        """``Q3/2026``, or ``Q3/2026 p`` for a provisional quarter."""
        return f"{period} p" if self.is_provisional(period) else str(period)

    def coverage_line(self, period: ReportingPeriod) -> str:
        """``Q3/2026: 1 von 7 Kommunen freigegeben (vorläufig)``."""
        expected = len(self.towns)
        approved = len(self.approved[period.id])
        if self.options.approved_only:
            text = f"{period}: {approved} von {expected} Kommunen freigegeben"
        else:
            reported = len(self.reported[period.id])
            text = (
                f"{period}: {reported} von {expected} Kommunen mit Werten oder Meldung, "
                f"davon {approved} freigegeben"
            )
        return f"{text} (vorläufig)" if self.is_provisional(period) else text

    def data_status(self) -> str:
        """``Datenstand: 15.01.2026, 14:05 Uhr`` (the moment the data was read, Berlin time)."""
        return f"Datenstand: {local_time(self.read_at):%d.%m.%Y, %H:%M} Uhr"

    # --- rates over the municipalities that reported -----------------------------------
    def series_rate(self, period: ReportingPeriod, indicator: Indicator) -> float | None:
        """A quarter's value per 1,000 inhabitants of the municipalities that have one."""
        key = (period.id, indicator.id)
        return per_thousand(self.series.get(key), self.series_population.get(key, 0))

    def total_rate(self, indicator: Indicator) -> float | None:
        """The range's value per 1,000 inhabitants, over the municipalities that reported.

        A stock is its last quarter's rate; a flow the sum of its quarterly rates, each
        over the municipalities with a value in that quarter. With every municipality
        in every quarter this is simply the total ÷ their population × 1,000.
        """
        if indicator.kind == "stock":
            return self.series_rate(self.last, indicator)
        rates = [r for p in self.periods if (r := self.series_rate(p, indicator)) is not None]
        return sum(rates) if rates else None

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

        See :mod:`.publication` for the keys and equations and
        :func:`kim_admin.suppression.protect` for how the cells are chosen.
        """
        protection = self.protection()
        return protection.hidden if protection else set()

    def protection(self) -> suppression.Protection | None:
        """The suppression of a published report (None for internal ones), computed once."""
        if not self.options.publish:
            return None
        if self._protection is None:
            self._protection = suppression.protect(
                self.publication_table(), self.options.threshold, self.protection_width
            )
            if periods.has_ended(self.last):
                publication.store(
                    self.first.year,
                    self.options.threshold,
                    self.protection_width,
                    self.town_ids,
                    self.own_publication(),
                    self.user,
                )
        return self._protection

    def own_publication(self) -> publication.Published:
        """This year's own published table and what its protection hid."""
        self.publication_table()
        protection = self.protection()
        return publication.Published(
            self._own, protection.hidden, self.last.id, protection.unprotected
        )

    def publication_table(self) -> suppression.Table:
        """The published counts and their equations, with the previous year's workbook.

        The previous year as stored when it was published; a year never published
        ties nothing (see :mod:`.publication`).
        """
        if self._table is None:
            rules = publication.rule_identities()
            table = publication.build_table(self, rules)
            # A copy of this year's part (linking only adds cells and equations).
            self._own = suppression.Table(
                dict(table.values), list(table.equations), set(table.totals)
            )
            earlier = self.earlier_publication()
            if earlier is not None:
                publication.link_previous(table, self, earlier, rules)
            self._table = table
        return self._table

    def earlier_publication(self) -> publication.Published | None:
        """The previous year's publication as it was stored (None: not published)."""
        return publication.stored(
            self.first.year - 1, self.options.threshold, self.protection_width, self.town_ids
        )

    @property
    def protection_width(self) -> int:
        """How wide every hidden cell's feasible interval must be (default: the threshold)."""
        if self.options.width is not None:
            return self.options.width
        configured = current_app.config.get("KIM_SUPPRESSION_WIDTH") if has_app_context() else None
        return int(configured) if configured else self.options.threshold

    def published(self, key: tuple, value: Any) -> Any:
        """``value`` as this publication shows the cell ``key``: itself, or "." where it
        is hidden, not part of the publication, or not the published value."""
        if value is None:
            return None  # nothing entered: nothing to hide
        shown = self.publication_table().values
        if key not in shown or key in self.hidden_cells() or shown[key] != number(value):
            return suppression.SUPPRESSED
        return value

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

    def raw_count(self) -> int:
        """How many rows the raw-data sheet will have (for its progress)."""
        e = MonitoringEntry
        return db.session.scalar(select(func.count()).select_from(self._entries(e.id).subquery()))

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
