"""The evaluation report (Evaluationsbericht): one xlsx workbook for a range of quarters.

The sheets are those of DOMAIN.md §6. Figures are aggregated in the database
(``GROUP BY``), so a report costs a fixed number of queries however many
municipalities it covers; only the raw-data sheet reads every figure, streamed
from a server-side cursor. Flows are summed over the range, stocks are taken at
the range's last quarter. Totals rows are computed here, not left to formulas
that a viewer might not recalculate. The workbook is written in xlsxwriter's
``constant_memory`` mode, sheet by sheet and row by row.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import IO, Any

from sqlalchemy import select

from kim_admin.extensions import db
from kim_admin.permissions import MUNICIPAL_STAFF
from models import Municipality, ReportingPeriod

from .data import ReportData, ReportError, ReportOptions, period_key
from .sheets import SHEETS, ReportWriter

__all__ = [
    "SHEETS",
    "ReportData",
    "ReportError",
    "ReportOptions",
    "ReportWriter",
    "build",
    "default_options",
    "filename",
    "scoped_options",
]


def scoped_options(options: ReportOptions, user: Any) -> ReportOptions:
    """A municipal user's report covers their own municipality, whatever was asked."""
    if user.role == MUNICIPAL_STAFF:
        return replace(options, municipality_ids=(user.municipality_id,))
    return options


def filename(first: ReportingPeriod, last: ReportingPeriod) -> str:
    """``KIM-Evaluationsbericht_2025-Q1_2025-Q4.xlsx``."""
    return f"KIM-Evaluationsbericht_{first.year}-Q{first.quarter}_{last.year}-Q{last.quarter}.xlsx"


def build(options: ReportOptions, user: Any, target: str | IO[bytes]) -> ReportData:
    """Write the report for ``options`` as seen by ``user`` into ``target``."""
    data = ReportData(scoped_options(options, user), user)
    ReportWriter(data, user, target).write()
    return data


def default_options(user: Any) -> dict[str, Any]:
    """Form defaults: the last four completed quarters, all KIM participants."""
    today = date.today()
    current = today.year * 10 + (today.month - 1) // 3 + 1
    periods = db.session.scalars(
        select(ReportingPeriod).order_by(
            ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc()
        )
    ).all()
    recent = ([p for p in periods if period_key(p) < current] or periods)[:4]
    towns = db.session.scalars(
        select(Municipality.id).where(Municipality.kim_participant.is_(True))
    ).all()
    if user.role == MUNICIPAL_STAFF:
        towns = [user.municipality_id]
    return {
        "first": recent[-1].id if recent else None,
        "last": recent[0].id if recent else None,
        "municipalities": list(towns),
    }
