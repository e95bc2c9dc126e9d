"""Which indicators a quarter (or a range of quarters) is reported with.

An indicator is valid from its ``valid_from`` quarter to its ``valid_to`` quarter
(both included; none = open-ended). Every place that lists indicators for a
quarter asks :func:`indicators_valid_in`: the data-entry form and with it the
Excel template, the plausibility rules (which see the form's cells), and the
evaluation report. So ending an indicator, or adding one, changes the quarters
from then on and leaves every earlier form and report as it was.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select

from models import Indicator, ReportingPeriod

from . import periods


def valid_between(first: int, last: int) -> Any:
    """SQL condition: the indicator is valid in some quarter from ``first`` to ``last``
    (quarter keys, see :func:`.periods.key`)."""
    return and_(
        or_(Indicator.valid_from.is_(None), Indicator.valid_from <= last),
        or_(Indicator.valid_to.is_(None), Indicator.valid_to >= first),
    )


def indicators_valid_in(period: ReportingPeriod, last: ReportingPeriod | None = None) -> Any:
    """``select(Indicator)`` of the indicators reported in ``period`` (or in any quarter
    from ``period`` to ``last``), in the order of the form."""
    first_key = periods.key(period)
    last_key = periods.key(last) if last is not None else first_key
    return (
        select(Indicator)
        .where(valid_between(first_key, last_key))
        .order_by(Indicator.sort_order, Indicator.code)
    )
