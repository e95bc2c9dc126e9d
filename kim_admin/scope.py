"""What a user may reach, for custom pages: one function per scoped concept.

List views share :func:`permissions.apply_scope` through ``views.base``; the
custom pages (entry, Meldestand, report, coverage, dashboard) ask these
functions instead of building their own queries, so that "which municipalities
may this user pick" has one answer everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from models import Municipality

from .extensions import db
from .permissions import apply_scope, is_scoped


def municipalities_query(user: Any, *, participants_only: bool = False) -> Any:
    """``select(Municipality)`` limited to what ``user`` may reach, by name.

    ``participants_only`` keeps the KIM participants for users who see every
    municipality; a municipal user always gets their own, participant or not.
    """
    query = select(Municipality).order_by(Municipality.name)
    if participants_only and not is_scoped(user, "municipality"):
        query = query.where(Municipality.kim_participant.is_(True))
    return apply_scope(query, Municipality, "municipality", user)


def reachable_municipalities(user: Any, *, participants_only: bool = False) -> list[Municipality]:
    """The municipalities ``user`` may pick (a municipal user: only their own)."""
    return db.session.scalars(municipalities_query(user, participants_only=participants_only)).all()


def reachable_municipality_ids(user: Any, wanted: Iterable[int]) -> tuple[list[int], list[int]]:
    """Split ``wanted`` ids into those ``user`` may reach and the rest (foreign or unknown)."""
    wanted = list(dict.fromkeys(wanted))
    reachable = set(
        db.session.scalars(
            municipalities_query(user)
            .with_only_columns(Municipality.id)
            .where(Municipality.id.in_(wanted))
        )
    )
    return [i for i in wanted if i in reachable], [i for i in wanted if i not in reachable]
