"""The coverage matrix (Versorgungsmatrix, Handlungsfeld 3): need against supply.

For each municipality × target group of a year: the estimated need (from the
needs assessment), the FTE of the posts serving that group there, the partners
serving it, and the rooms of the municipality. Two flags point at what the
steering group has to act on:

* **Lücke** (gap): a need is recorded (more than 0 people) but no post and no
  partner serves the group there, neither locally nor district-wide.
* **Parallelstruktur** (parallel structure): two or more partners of the same
  kind serve the group there (district-wide partners count everywhere; the kind
  "Sonstige" is no kind of its own), or posts of two or more employers in the
  municipality serve it.

A post serving several target groups counts with its full FTE for each of them.
Posts at district level (no municipality) serve every municipality; they are
shown beside the local FTE. Everything is read with a fixed number of queries
and scoped like every other page: a municipal user sees their own municipality
and their own posts only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, or_, select

from models import (
    EMPLOYER_TYPES,
    PARTNER_KINDS,
    Municipality,
    NeedsAssessment,
    Partner,
    Post,
    Room,
    TargetGroup,
    partner_municipality,
    partner_target_group,
    post_target_group,
)

from . import exports
from .extensions import db
from .permissions import apply_scope
from .scope import municipalities_query

GAP = "Lücke"
PARALLEL = "Parallelstruktur"
# Partners of kind "sonstige" have nothing in common but not fitting elsewhere.
NOT_A_KIND = "sonstige"


@dataclass
class CoverageRow:
    """One municipality × target group of the matrix."""

    municipality: Municipality
    group: TargetGroup
    need: int | None = None
    priority: str | None = None
    local_fte: float = 0.0
    filled_fte: float = 0.0
    district_fte: float = 0.0
    employers: set[tuple[str, int | None]] = field(default_factory=set)
    partners: list[Partner] = field(default_factory=list)
    rooms: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def served(self) -> bool:
        """Whether any post or partner serves the group here."""
        return bool(self.local_fte or self.district_fte or self.partners)

    @property
    def gap(self) -> bool:
        return bool(self.need) and not self.served

    @property
    def parallel(self) -> bool:
        return bool(self.reasons)

    @property
    def flags(self) -> list[str]:
        """The German flags of this cell."""
        return [name for name, on in ((GAP, self.gap), (PARALLEL, self.parallel)) if on]


def year_bounds(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


def matrix(
    year: int,
    user: Any,
    municipality_ids: Iterable[int] | None = None,
    group_ids: Iterable[int] | None = None,
) -> list[CoverageRow]:
    """The coverage of ``year`` for the municipalities ``user`` may see (or a choice of them)."""
    session = db.session
    towns_query = municipalities_query(user)
    if municipality_ids is not None:
        towns_query = towns_query.where(Municipality.id.in_(list(municipality_ids)))
    towns = session.scalars(towns_query).all()
    groups_query = select(TargetGroup).where(TargetGroup.active.is_(True))
    if group_ids is not None:
        groups_query = groups_query.where(TargetGroup.id.in_(list(group_ids)))
    groups = session.scalars(groups_query.order_by(TargetGroup.sort_order, TargetGroup.name)).all()
    town_ids = [t.id for t in towns]
    cells = {(t.id, g.id): CoverageRow(t, g) for t in towns for g in groups}

    # Columns, not model objects: 396 towns × 11 groups of objects cost more than the page.
    for town_id, group_id, people, priority in session.execute(
        select(
            NeedsAssessment.municipality_id,
            NeedsAssessment.target_group_id,
            NeedsAssessment.estimated_people,
            NeedsAssessment.priority,
        ).where(NeedsAssessment.year == year, NeedsAssessment.municipality_id.in_(town_ids))
    ):
        cell = cells.get((town_id, group_id))
        if cell:
            cell.need, cell.priority = people, priority

    first, last = year_bounds(year)
    posts = apply_scope(
        select(
            Post.municipality_id,
            Post.employer_type,
            Post.employer_partner_id,
            Post.fte,
            Post.status,
            post_target_group.c.target_group_id,
        )
        .join(post_target_group, post_target_group.c.post_id == Post.id)
        .where(
            or_(Post.municipality_id.in_(town_ids), Post.municipality_id.is_(None)),
            or_(Post.valid_from.is_(None), Post.valid_from <= last),
            or_(Post.valid_until.is_(None), Post.valid_until >= first),
        ),
        Post,
        "post",
        user,
    )
    for town_id, employer, partner_id, fte, status, group_id in session.execute(posts):
        fte = float(fte)
        targets = [town_id] if town_id is not None else town_ids
        for target in targets:
            cell = cells.get((target, group_id))
            if cell is None:
                continue
            if town_id is None:
                cell.district_fte += fte
                continue
            cell.local_fte += fte
            if status == "besetzt":
                cell.filled_fte += fte
            cell.employers.add((employer, partner_id if employer == "partner" else None))

    served_towns: dict[int, list[int]] = defaultdict(list)
    for partner_id, town_id in session.execute(select(partner_municipality)):
        served_towns[partner_id].append(town_id)
    served_groups: dict[int, list[int]] = defaultdict(list)
    for partner_id, group_id in session.execute(select(partner_target_group)):
        served_groups[partner_id].append(group_id)
    for partner in session.scalars(
        select(Partner).where(Partner.active.is_(True)).order_by(Partner.name)
    ):
        for town_id in served_towns.get(partner.id) or town_ids:
            for group_id in served_groups.get(partner.id, []):
                cell = cells.get((town_id, group_id))
                if cell:
                    cell.partners.append(partner)

    rooms = dict(
        session.execute(
            select(Room.municipality_id, func.count(Room.id))
            .where(Room.municipality_id.in_(town_ids), Room.active.is_(True))
            .group_by(Room.municipality_id)
        ).all()
    )
    kinds = dict(PARTNER_KINDS)
    employer_labels = dict(EMPLOYER_TYPES)
    for cell in cells.values():
        cell.rooms = rooms.get(cell.municipality.id, 0)
        by_kind: dict[str, int] = defaultdict(int)
        for partner in cell.partners:
            by_kind[partner.kind] += 1
        for kind, count in sorted(by_kind.items()):
            if count >= 2 and kind != NOT_A_KIND:
                cell.reasons.append(f"{count} Partner der Art {kinds.get(kind, kind)}")
        if len(cell.employers) >= 2:
            labels = sorted({employer_labels.get(e, e) for e, _ in cell.employers})
            cell.reasons.append(
                f"Stellen von {len(cell.employers)} Anstellungsträgern ({', '.join(labels)})"
            )
    return [cells[(t.id, g.id)] for t in towns for g in groups]


def default_year() -> int:
    """The latest year with a needs assessment, else the current year."""
    latest = db.session.scalar(select(func.max(NeedsAssessment.year)))
    return latest or date.today().year


def columns() -> list[exports.Column]:
    """The columns of the matrix in exports (and the report's "Versorgung" sheet)."""
    return [
        exports.Column("Kommune", lambda r: r.municipality.name, width=24),
        exports.Column("Zielgruppe", lambda r: r.group.name, width=36),
        exports.Column("Geschätzter Bedarf (Personen)", lambda r: r.need, exports.INTEGER),
        exports.Column("Priorität", lambda r: r.priority, width=10),
        exports.Column("VZÄ vor Ort", lambda r: r.local_fte, exports.TWO_DECIMALS),
        exports.Column("davon besetzt", lambda r: r.filled_fte, exports.TWO_DECIMALS),
        exports.Column("VZÄ Kreisebene", lambda r: r.district_fte, exports.TWO_DECIMALS),
        exports.Column("Partner", lambda r: ", ".join(p.name for p in r.partners), width=48),
        exports.Column("Räume", lambda r: r.rooms, exports.INTEGER, width=8),
        exports.Column("Hinweis", lambda r: ", ".join(r.flags), width=22),
        exports.Column("Begründung", lambda r: "; ".join(r.reasons), width=48),
    ]
