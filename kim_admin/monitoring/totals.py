"""Running totals of the figures per municipality, quarter and indicator.

The start page's charts and case figures sum the figures of the last eight
quarters by indicator, town and quarter. Read from the figures themselves, that
is 200,000 rows per request at NRW scale (396 municipalities). :class:`~models.
FigureTotal` keeps each sum instead: every flush that adds, changes or deletes
a figure adds the differences to the totals of the cells it touched, in the same
transaction (an upsert that adds, so two sessions saving figures of one cell at
once both count, in whichever order they commit).

Figures written around the ORM (the benchmark's generator, a migration) call
:func:`rebuild`; ``flask figures rebuild-totals`` does it by hand, and
:func:`differences` says whether the totals agree with the figures.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, event, func, inspect, select
from sqlalchemy.orm import Session

from kim_admin.extensions import db
from models import FigureTotal, MonitoringEntry

KEY = ("municipality_id", "period_id", "indicator_id")


def _old(obj: Any, name: str) -> Any:
    """An attribute's value before this flush (the loaded one, if it changed)."""
    history = inspect(obj).attrs[name].history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else getattr(obj, name)


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    """before_flush: what each figure counted before this flush, and which figures
    count anew (their keys are known only after the flush: a new figure may name its
    town or quarter through a relation)."""
    before = session.info.setdefault("kim_totals_before", [])
    after = session.info.setdefault("kim_totals_after", [])
    for obj in session.new:
        if isinstance(obj, MonitoringEntry):
            after.append(obj)
    for obj in session.deleted:
        if isinstance(obj, MonitoringEntry):
            before.append((tuple(_old(obj, k) for k in KEY), _old(obj, "value")))
    for obj in session.dirty:
        if isinstance(obj, MonitoringEntry) and session.is_modified(obj):
            before.append((tuple(_old(obj, k) for k in KEY), _old(obj, "value")))
            after.append(obj)


def _write(session: Session, flush_context: Any) -> None:
    """after_flush: add the differences to the totals (in the flush's transaction)."""
    before = session.info.pop("kim_totals_before", [])
    after = session.info.pop("kim_totals_after", [])
    changes: dict[tuple, list] = defaultdict(lambda: [Decimal(0), 0])

    def add(key: tuple, value: Any, sign: int) -> None:
        if value is not None and None not in key:
            changes[key][0] += sign * Decimal(value)
            changes[key][1] += sign

    for key, value in before:
        add(key, value, -1)
    for obj in after:
        add(tuple(getattr(obj, k) for k in KEY), obj.value, 1)
    rows = [
        dict(zip(KEY, key, strict=True), value_sum=total, value_count=count)
        for key, (total, count) in changes.items()
        if total or count
    ]
    if rows:
        session.connection().execute(_upsert(session), rows)


def _upsert(session: Session) -> Any:
    """INSERT … ON CONFLICT DO UPDATE adding to the stored total (PostgreSQL, SQLite)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(FigureTotal)
    return statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={
            "value_sum": FigureTotal.value_sum + statement.excluded.value_sum,
            "value_count": FigureTotal.value_count + statement.excluded.value_count,
        },
    )


def _discard(session: Session, *args: Any) -> None:
    """after_soft_rollback: forget differences that were never written."""
    session.info.pop("kim_totals_before", None)
    session.info.pop("kim_totals_after", None)


def _aggregate() -> Any:
    """Every cell's total, computed from the figures."""
    return select(
        MonitoringEntry.municipality_id,
        MonitoringEntry.period_id,
        MonitoringEntry.indicator_id,
        func.coalesce(func.sum(MonitoringEntry.value), 0),
        func.count(MonitoringEntry.value),
    ).group_by(
        MonitoringEntry.municipality_id, MonitoringEntry.period_id, MonitoringEntry.indicator_id
    )


def rebuild(session: Session | None = None) -> int:
    """Compute every total afresh from the figures; returns the number of cells."""
    session = session or db.session
    session.execute(delete(FigureTotal))
    session.execute(
        FigureTotal.__table__.insert().from_select([*KEY, "value_sum", "value_count"], _aggregate())
    )
    return session.scalar(select(func.count()).select_from(FigureTotal)) or 0


def differences(session: Session | None = None) -> list[tuple]:
    """Cells whose stored total disagrees with the figures: ``(key, stored, computed)``."""
    session = session or db.session
    computed = {tuple(r[:3]): (Decimal(r[3]), r[4]) for r in session.execute(_aggregate())}
    stored = {
        (r.municipality_id, r.period_id, r.indicator_id): (Decimal(r.value_sum), r.value_count)
        for r in session.scalars(select(FigureTotal))
    }
    zero = (Decimal(0), 0)
    return [
        (key, stored.get(key, zero), computed.get(key, zero))
        for key in sorted(set(computed) | set(stored))
        if stored.get(key, zero) != computed.get(key, zero)
    ]


def summed() -> Any:
    """``SUM`` of the totals as a column: empty where no figure has a value."""
    from sqlalchemy import case

    return func.sum(case((FigureTotal.value_count > 0, FigureTotal.value_sum)))


def init_app(app: Any) -> None:
    """Listen to the app's scoped session (once per process: the session is shared)."""
    for name, listener in (
        ("before_flush", _collect),
        ("after_flush", _write),
        ("after_soft_rollback", _discard),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
