"""The data-entry form's logic: cells, parsing, drafts with optimistic locking,
and the checks before a submission. Testable without HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from models import Indicator, MonitoringEntry, ReportingPeriod, TargetGroup

from .audit import record
from .extensions import db
from .formatting import de_number, parse_decimal
from .reporting import submission_for, transition
from .rules import Finding, check_rules


@dataclass
class Cell:
    """One input of the form: an indicator, optionally for one target group."""

    indicator: Indicator
    target_group: TargetGroup | None
    entry: MonitoringEntry | None
    previous: Decimal | None

    @property
    def key(self) -> str:
        return f"{self.indicator.id}-{self.target_group.id if self.target_group else 0}"

    @property
    def version(self) -> int:
        return self.entry.version if self.entry else 0


@dataclass
class Posted:
    """What the user typed into one cell."""

    text: str
    comment: str
    version: int


@dataclass
class SaveResult:
    """Errors per cell key; empty when everything was saved."""

    errors: dict[str, str] = field(default_factory=dict)
    saved: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def previous_period(period: ReportingPeriod) -> ReportingPeriod | None:
    """The quarter before ``period``, if it exists."""
    year, quarter = (
        (period.year, period.quarter - 1) if period.quarter > 1 else (period.year - 1, 4)
    )
    return db.session.scalar(
        select(ReportingPeriod).where(
            ReportingPeriod.year == year, ReportingPeriod.quarter == quarter
        )
    )


def _entries(municipality_id: int, period: ReportingPeriod | None) -> dict[tuple, Any]:
    if period is None:
        return {}
    rows = db.session.scalars(
        select(MonitoringEntry).where(
            MonitoringEntry.municipality_id == municipality_id,
            MonitoringEntry.period_id == period.id,
        )
    )
    return {(e.indicator_id, e.target_group_id): e for e in rows}


def cells(municipality_id: int, period: ReportingPeriod) -> list[Cell]:
    """Every input of the form, in indicator order (two queries for the entries)."""
    indicators = db.session.scalars(
        select(Indicator)
        .where(Indicator.active.is_(True))
        .order_by(Indicator.sort_order, Indicator.code)
    ).all()
    groups = db.session.scalars(
        select(TargetGroup)
        .where(TargetGroup.active.is_(True))
        .order_by(TargetGroup.sort_order, TargetGroup.name)
    ).all()
    current = _entries(municipality_id, period)
    before = _entries(municipality_id, previous_period(period))
    result = []
    for indicator in indicators:
        for group in groups if indicator.by_target_group else [None]:
            key = (indicator.id, group.id if group else None)
            prev = before.get(key)
            result.append(Cell(indicator, group, current.get(key), prev.value if prev else None))
    return result


def parse_value(text: str, indicator: Indicator) -> Decimal | None:
    """A typed value as a Decimal (German comma accepted); ValueError in German."""
    try:
        value = parse_decimal(text)
    except ValueError as exc:
        raise ValueError("Bitte eine Zahl eingeben.") from exc
    if value is None:
        return None
    places = indicator.decimal_places
    if places == 0 and value != value.to_integral_value():
        raise ValueError("Bitte eine ganze Zahl eingeben.")
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"Höchstens {places} Nachkommastellen.")
    if value < 0:
        raise ValueError("Der Wert darf nicht negativ sein.")
    low, high = indicator.min_value, indicator.max_value
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"Erlaubt: {range_text(indicator)}.")
    return value


def range_text(indicator: Indicator) -> str:
    """``0 bis 100`` in German notation, or ``ab 0``."""
    places = indicator.decimal_places
    low = de_number(indicator.min_value, places) if indicator.min_value is not None else None
    high = de_number(indicator.max_value, places) if indicator.max_value is not None else None
    if low is not None and high is not None:
        return f"{low} bis {high}"
    if low is not None:
        return f"ab {low}"
    if high is not None:
        return f"bis {high}"
    return "beliebig"


def save_draft(
    municipality_id: int, period: ReportingPeriod, posted: dict[str, Posted], user: Any
) -> SaveResult:
    """Validate everything, then write all changed cells in one transaction.

    Nothing is written when any cell has an error. A cell changed by someone
    else since the form was loaded (its version moved on) is a conflict: the
    save is refused and the message shows both values.
    """
    result = SaveResult()
    changes: list[tuple[Cell, Decimal | None, str | None]] = []
    for cell in cells(municipality_id, period):
        data = posted.get(cell.key)
        if data is None:
            continue
        try:
            value = parse_value(data.text, cell.indicator)
        except ValueError as exc:
            result.errors[cell.key] = str(exc)
            continue
        comment = data.comment.strip() or None
        stored_value = cell.entry.value if cell.entry else None
        stored_comment = cell.entry.comment if cell.entry else None
        if value == stored_value and comment == stored_comment:
            continue
        if data.version != cell.version:
            who = cell.entry.updated_by if cell.entry else None
            result.errors[cell.key] = (
                f"Inzwischen von {who.name or who.email if who else 'jemand anderem'} "
                f"geändert: gespeichert ist {_shown(stored_value, cell)}, Ihre Eingabe ist "
                f"{_shown(value, cell)}. Bitte prüfen und erneut speichern."
            )
            continue
        changes.append((cell, value, comment))
    if result.errors:
        return result

    for cell, value, comment in changes:
        entry = cell.entry
        if entry is None:
            entry = MonitoringEntry(
                municipality_id=municipality_id,
                period_id=period.id,
                indicator_id=cell.indicator.id,
                target_group_id=cell.target_group.id if cell.target_group else None,
                created_by_id=user.id,
            )
            db.session.add(entry)
        entry.value, entry.comment, entry.updated_by_id = value, comment, user.id
    if changes:
        submission_for(municipality_id, period)  # the quarter now has a draft
    try:
        db.session.commit()
    except (StaleDataError, IntegrityError):
        # Someone saved the same cells between our read and our write.
        db.session.rollback()
        result.errors["_form"] = (
            "Die Zahlen wurden gerade von jemand anderem gespeichert. Bitte laden Sie die "
            "Seite neu; Ihre Eingaben sind unten noch sichtbar."
        )
        return result
    result.saved = len(changes)
    return result


def _shown(value: Decimal | None, cell: Cell) -> str:
    return "leer" if value is None else de_number(value, cell.indicator.decimal_places)


def gaps(entry_cells: list[Cell]) -> list[Cell]:
    """Cells with neither a value nor a comment explaining the gap."""
    return [
        c
        for c in entry_cells
        if c.entry is None or (c.entry.value is None and not (c.entry.comment or "").strip())
    ]


def findings(entry_cells: list[Cell]) -> list[Finding]:
    """Rule violations of the stored figures of one municipality's quarter."""
    values, previous, by_group, group_names = {}, {}, {}, {}
    for c in entry_cells:
        gid = c.target_group.id if c.target_group else None
        by_group[c.indicator.code] = c.indicator.by_target_group
        if c.target_group:
            group_names[c.target_group.id] = c.target_group.name
        values[(c.indicator.code, gid)] = c.entry.value if c.entry else None
        previous[(c.indicator.code, gid)] = c.previous
    return check_rules(values, previous, by_group, group_names)


@dataclass
class SubmitCheck:
    """What stands in the way of a submission."""

    gaps: list[Cell]
    blocking: list[Finding]
    warnings: list[Finding]

    def refused(self, acknowledged: bool) -> bool:
        return bool(self.gaps or self.blocking or (self.warnings and not acknowledged))


def submit(
    municipality_id: int, period: ReportingPeriod, user: Any, acknowledged: bool = False
) -> SubmitCheck:
    """Submit the quarter if it is complete, passes every blocking rule and the user
    acknowledged the warnings; commit. Returns the check either way."""
    entry_cells = cells(municipality_id, period)
    found = findings(entry_cells)
    check = SubmitCheck(
        gaps(entry_cells), [f for f in found if f.blocking], [f for f in found if not f.blocking]
    )
    if check.refused(acknowledged):
        return check
    submission = submission_for(municipality_id, period)
    transition(submission, "submit", user)
    if check.warnings:
        record(
            "warnings_acknowledged",
            "submission",
            submission.id,
            municipality_id,
            new={
                "warnings": [
                    f"{w.rule_name} ({w.target_group or 'gesamt'})" for w in check.warnings
                ]
            },
        )
    db.session.commit()
    return check
