"""Quarter arithmetic: the only place that knows how quarters follow each other."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from kim_admin.extensions import db
from models import ReportingPeriod


def key(period: ReportingPeriod) -> int:
    """A sortable number: Q3/2025 → 20253."""
    return period.year * 10 + period.quarter


def key_column():
    """:func:`key` as an SQL expression, for ranges and ordering in queries."""
    return ReportingPeriod.year * 10 + ReportingPeriod.quarter


def quarter_of(day: date) -> tuple[int, int]:
    """(year, quarter) that ``day`` falls in."""
    return day.year, (day.month - 1) // 3 + 1


def bounds(year: int, quarter: int) -> tuple[date, date]:
    """First and last day of a quarter."""
    first = date(year, 3 * quarter - 2, 1)
    last = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return first, last - timedelta(days=1)


def shift(year: int, quarter: int, by: int) -> tuple[int, int]:
    """The quarter ``by`` quarters after (or before, if negative) the given one."""
    index = year * 4 + quarter - 1 + by
    return index // 4, index % 4 + 1


def has_ended(period: ReportingPeriod, today: date | None = None) -> bool:
    """Whether the quarter's last day lies before ``today``."""
    return bounds(period.year, period.quarter)[1] < (today or date.today())


def find(year: int, quarter: int) -> ReportingPeriod | None:
    """The stored quarter, if any."""
    return db.session.scalar(
        select(ReportingPeriod).where(
            ReportingPeriod.year == year, ReportingPeriod.quarter == quarter
        )
    )


def previous(period: ReportingPeriod) -> ReportingPeriod | None:
    """The quarter before ``period``, if it is stored."""
    return find(*shift(period.year, period.quarter, -1))


def newest_first() -> list[ReportingPeriod]:
    """Every stored quarter, the latest first."""
    return db.session.scalars(
        select(ReportingPeriod).order_by(
            ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc()
        )
    ).all()


def between(first: ReportingPeriod, last: ReportingPeriod) -> list[ReportingPeriod]:
    """The stored quarters from ``first`` to ``last``, oldest first."""
    return db.session.scalars(
        select(ReportingPeriod)
        .where(key_column().between(key(first), key(last)))
        .order_by(ReportingPeriod.year, ReportingPeriod.quarter)
    ).all()


def current(today: date | None = None) -> ReportingPeriod | None:
    """The quarter being reported now: the latest open one, else the latest begun."""
    today = today or date.today()
    latest_open = db.session.scalar(
        select(ReportingPeriod)
        .where(ReportingPeriod.is_open.is_(True))
        .order_by(ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc())
        .limit(1)
    )
    if latest_open is not None:
        return latest_open
    year, quarter = quarter_of(today)
    return db.session.scalar(
        select(ReportingPeriod)
        .where(key_column() <= year * 10 + quarter)
        .order_by(ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc())
        .limit(1)
    )


def recent(upto: ReportingPeriod | None, count: int) -> list[ReportingPeriod]:
    """The ``count`` stored quarters up to ``upto``, oldest first."""
    if upto is None:
        return []
    periods = db.session.scalars(
        select(ReportingPeriod)
        .where(key_column() <= key(upto))
        .order_by(ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc())
        .limit(count)
    ).all()
    return list(reversed(periods))


def ended(today: date | None = None) -> list[ReportingPeriod]:
    """Stored quarters that have ended, the latest first."""
    year, quarter = quarter_of(today or date.today())
    return db.session.scalars(
        select(ReportingPeriod)
        .where(key_column() < year * 10 + quarter)
        .order_by(ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc())
    ).all()
