"""What the steering group's pages read: problems aggregated, measures on the matrix.

Each function costs a fixed number of queries however many towns, quarters or
measures there are, and is scoped like every other page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import selectinload

from kim_admin.extensions import db
from kim_admin.permissions import apply_scope
from models import (
    OPEN_MEASURE_STATUSES,
    PROBLEM_CATEGORIES,
    PROBLEM_FREQUENCIES,
    Measure,
    ReportingPeriod,
    StructuralProblem,
    TargetGroup,
)
from models.steering import measure_structural_problem

ALL_GROUPS = "alle Zielgruppen"


@dataclass
class ProblemGroup:
    """Structural problems of one category and target group, across towns and quarters."""

    category: str
    group: str
    reports: int
    towns: int
    quarters: int
    first: str
    last: str
    #: The most frequent "how often" any town reported (German label).
    frequency: str
    measures: list[Measure] = field(default_factory=list)

    @property
    def category_label(self) -> str:
        return dict(PROBLEM_CATEGORIES).get(self.category, self.category)


def _frequency_rank() -> Any:
    """``how often`` as a number (0 = rare), so the database can take the largest."""
    return case(
        {code: n for n, (code, _) in enumerate(PROBLEM_FREQUENCIES)},
        value=StructuralProblem.frequency,
        else_=0,
    )


def problem_overview(user: Any, year: int | None = None) -> list[ProblemGroup]:
    """Structural problems grouped by category and target group (most towns first)."""
    p = StructuralProblem
    period_key = ReportingPeriod.year * 10 + ReportingPeriod.quarter
    query = (
        select(
            p.category,
            p.target_group_id,
            func.count(p.id),
            func.count(p.municipality_id.distinct()),
            func.count(p.period_id.distinct()),
            func.min(period_key),
            func.max(period_key),
            func.max(_frequency_rank()),
        )
        .join(ReportingPeriod, ReportingPeriod.id == p.period_id)
        .group_by(p.category, p.target_group_id)
    )
    if year is not None:
        query = query.where(ReportingPeriod.year == year)
    query = apply_scope(query, p, "structural_problem", user)
    groups = {g.id: g.name for g in db.session.scalars(select(TargetGroup))}
    labels = [label for _, label in PROBLEM_FREQUENCIES]
    found: dict[tuple[str, int | None], ProblemGroup] = {}
    for category, group_id, n, towns, quarters, first, last, rank in db.session.execute(query):
        found[(category, group_id)] = ProblemGroup(
            category,
            groups.get(group_id, ALL_GROUPS) if group_id else ALL_GROUPS,
            n,
            towns,
            quarters,
            f"Q{first % 10}/{first // 10}",
            f"Q{last % 10}/{last // 10}",
            labels[int(rank or 0)],
        )
    # The measures linked to any problem of a group, in one query.
    linked = db.session.execute(
        select(p.category, p.target_group_id, Measure)
        .join(
            measure_structural_problem, measure_structural_problem.c.structural_problem_id == p.id
        )
        .join(Measure, Measure.id == measure_structural_problem.c.measure_id)
        .distinct()
        .order_by(Measure.title)
    ).all()
    for category, group_id, measure in linked:
        entry = found.get((category, group_id))
        if entry is not None and measure not in entry.measures:
            entry.measures.append(measure)
    return sorted(found.values(), key=lambda g: (-g.towns, -g.reports, g.category_label, g.group))


def problem_years() -> list[int]:
    """Years in which any structural problem was reported, newest first."""
    return list(
        db.session.scalars(
            select(ReportingPeriod.year)
            .join(StructuralProblem, StructuralProblem.period_id == ReportingPeriod.id)
            .distinct()
            .order_by(ReportingPeriod.year.desc())
        )
    )


def open_measures_by_cell(
    user: Any, cells: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], list[Measure]]:
    """Open measures (geplant, in Arbeit) per coverage cell (municipality, target group).

    A municipal user sees only the measures that name their own town.
    """
    wanted = set(cells)
    towns = {town for town, _ in wanted}
    if not towns:
        return {}
    query = (
        select(Measure)
        .where(
            Measure.status.in_(OPEN_MEASURE_STATUSES),
            Measure.gap_municipality_id.in_(towns),
        )
        .options(selectinload(Measure.municipalities))
        .order_by(Measure.due_on, Measure.title)
    )
    query = apply_scope(query, Measure, "measure", user)
    result: dict[tuple[int, int], list[Measure]] = defaultdict(list)
    for measure in db.session.scalars(query):
        cell = (measure.gap_municipality_id, measure.gap_target_group_id)
        if cell in wanted:
            result[cell].append(measure)
    return dict(result)


def measures_for_report() -> list[Measure]:
    """Every measure with what the report shows of it, in status order."""
    order = case(
        {"in_arbeit": 0, "geplant": 1, "erledigt": 2, "verworfen": 3},
        value=Measure.status,
        else_=4,
    )
    return list(
        db.session.scalars(
            select(Measure)
            .options(
                selectinload(Measure.municipalities),
                selectinload(Measure.target_groups),
                selectinload(Measure.responsible_post),
                selectinload(Measure.responsible_partner),
                selectinload(Measure.gap_municipality),
                selectinload(Measure.gap_target_group),
            )
            .order_by(order, Measure.due_on, Measure.title)
        )
    )
