"""The evaluation report (Evaluationsbericht): one xlsx workbook for a range of quarters.

The sheets are those of DOMAIN.md §6. Figures are aggregated in the database
(``GROUP BY``), so a report costs a fixed number of queries however many
municipalities it covers; only the raw-data sheet reads every figure, streamed
from a server-side cursor. Flows are summed over the range, stocks are taken at
the range's last quarter. Totals rows are computed here, not left to formulas
that a viewer might not recalculate. Quarters without every municipality's
approved report are marked provisional ("p"), see :mod:`.data`. The workbook is
written in xlsxwriter's ``constant_memory`` mode, sheet by sheet and row by row.
"""

from __future__ import annotations

from typing import IO, Any

from kim_admin import scope
from kim_admin.monitoring import periods
from models import ReportingPeriod

from .data import (
    DISTRICT,
    SOURCE,
    ReportData,
    ReportError,
    ReportOptions,
    last_complete_period,
    period_key,
    published_year,
)
from .sheets import SHEETS, SYMBOL_KEY, Progress, ReportWriter, no_progress

__all__ = [
    "DISTRICT",
    "SHEETS",
    "SOURCE",
    "SYMBOL_KEY",
    "ReportData",
    "ReportError",
    "ReportOptions",
    "ReportWriter",
    "Progress",
    "build",
    "default_options",
    "default_range",
    "last_complete_year",
    "filename",
    "last_complete_period",
    "period_key",
    "published_year",
]

#: Quarters in the default range.
DEFAULT_QUARTERS = 4


def filename(first: ReportingPeriod, last: ReportingPeriod) -> str:
    """``KIM-Evaluationsbericht_2025-Q1_2025-Q4.xlsx``."""
    return f"KIM-Evaluationsbericht_{first.year}-Q{first.quarter}_{last.year}-Q{last.quarter}.xlsx"


def build(
    options: ReportOptions,
    user: Any,
    target: str | IO[bytes],
    progress: Progress = no_progress,
) -> ReportData:
    """Write the report for ``options`` as seen by ``user`` into ``target``.

    ``progress(percent, step)`` is told how far the work is (a job shows it).
    Raises :class:`ReportError` (German) for a municipality ``user`` may not reach.
    """
    progress(2, "Daten werden gelesen")
    data = ReportData(options, user)
    start = 10
    if options.publish:
        # The disclosure audit solves linear programs: the longest step of a published
        # report (seconds at NRW scale), so it gets its own place on the scale.
        progress(start, "Geheimhaltung wird geprüft (Offenlegungsprüfung)")
        data.protection()
        start = 50
    ReportWriter(data, user, target, progress, start).write()
    return data


def default_range(municipality_ids: list[int]) -> list[ReportingPeriod]:
    """Four quarters ending at the last one every municipality has approved.

    Without such a quarter: the four up to the last quarter that has ended (or
    the latest stored), which the report then marks as provisional.
    """
    last = last_complete_period(municipality_ids)
    if last is None:
        last = next(iter(periods.ended() or periods.newest_first()), None)
    return periods.recent(last, DEFAULT_QUARTERS)


def last_complete_year() -> list[ReportingPeriod]:
    """Q1 to Q4 of the latest calendar year that has ended and whose four quarters are
    stored: the default range of a published report (published reports cover one
    calendar year, see :func:`.publication.check_grid`). Empty if there is none."""
    by_year: dict[int, list[ReportingPeriod]] = {}
    for period in periods.ended():  # the latest first
        by_year.setdefault(period.year, []).append(period)
    for year in sorted(by_year, reverse=True):
        quarters = sorted(by_year[year], key=lambda p: p.quarter)
        if [p.quarter for p in quarters] == [1, 2, 3, 4]:
            return quarters
    return []


def default_options(user: Any) -> dict[str, Any]:
    """Form defaults: the KIM participants ``user`` may reach, :func:`default_range`, and
    for a published report :func:`last_complete_year`."""
    towns = [t.id for t in scope.reachable_municipalities(user, participants_only=True)]
    recent = default_range(towns)
    year = last_complete_year()
    return {
        "first": recent[0].id if recent else None,
        "last": recent[-1].id if recent else None,
        "municipalities": towns,
        "published_first": year[0].id if year else None,
        "published_last": year[-1].id if year else None,
    }
