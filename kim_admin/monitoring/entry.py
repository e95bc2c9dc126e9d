"""The data-entry form's logic and the one write path of figures.

:func:`write_figures` is the only function that changes a figure: the entry
page, the Excel import and the CLI call it, and nothing else writes
``MonitoringEntry`` rows. It applies the indicator's range, decimals and
target-group breakdown, the value column's bounds, the lock and the optimistic
version check; the audit trail records each changed row (``kim_admin.audit``).
Testable without HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from kim_admin.audit import record
from kim_admin.extensions import db
from kim_admin.formatting import de_number, parse_decimal
from models import VALUE_MAX, AuditEvent, Indicator, MonitoringEntry, ReportingPeriod, TargetGroup

from . import periods
from .indicators import indicators_valid_in
from .rules import Finding, check_rules
from .workflow import lock_reason, submission_for, transition

#: Longest text accepted in a value input (a number needs far fewer characters).
MAX_VALUE_TEXT = 40
#: Longest comment per value (the input's maxlength says the same).
MAX_COMMENT = 500


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

    @property
    def label(self) -> str:
        """``CM_NEU – Geduldete`` or ``BER_KONT – gesamt``."""
        group = self.target_group.name if self.target_group else "gesamt"
        return f"{self.indicator.code} – {group}"


@dataclass
class Posted:
    """What the user typed into one cell."""

    text: str
    comment: str
    version: int


@dataclass
class SaveResult:
    """Errors per cell key (``_form`` for the whole save); empty when saved."""

    errors: dict[str, str] = field(default_factory=dict)
    saved: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


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
    indicators = db.session.scalars(indicators_valid_in(period)).all()
    groups = db.session.scalars(
        select(TargetGroup)
        .where(TargetGroup.active.is_(True))
        .order_by(TargetGroup.sort_order, TargetGroup.name)
    ).all()
    current = _entries(municipality_id, period)
    before = _entries(municipality_id, periods.previous(period))
    result = []
    for indicator in indicators:
        for group in groups if indicator.by_target_group else [None]:
            key = (indicator.id, group.id if group else None)
            prev = before.get(key)
            result.append(Cell(indicator, group, current.get(key), prev.value if prev else None))
    return result


def parse_value(text: str | None, indicator: Indicator) -> Decimal | None:
    """A typed value as a Decimal (German comma accepted); ValueError in German.

    The text is bounded before it is parsed, and the number before any
    arithmetic, so no input can make the decimal module fail or store a value
    the database cannot hold.
    """
    text = (text or "").strip()
    if len(text) > MAX_VALUE_TEXT:
        raise ValueError("Die Eingabe ist zu lang für eine Zahl.")
    try:
        value = parse_decimal(text)
    except ValueError as exc:
        raise ValueError("Bitte eine Zahl eingeben.") from exc
    if value is None:
        return None
    if value < 0:
        raise ValueError("Der Wert darf nicht negativ sein.")
    if value > VALUE_MAX:
        raise ValueError(f"Der Wert ist zu groß (höchstens {de_number(int(VALUE_MAX))}).")
    places = indicator.decimal_places
    try:
        if places == 0 and value != value.to_integral_value():
            raise ValueError("Bitte eine ganze Zahl eingeben.")
        if value != value.quantize(Decimal(1).scaleb(-places)):
            raise ValueError(f"Höchstens {places} Nachkommastellen.")
    except InvalidOperation as exc:  # unreachable within the bounds above; never a 500
        raise ValueError("Bitte eine Zahl eingeben.") from exc
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


def write_figures(
    municipality_id: int,
    period: ReportingPeriod,
    posted: Mapping[str, Posted],
    user: Any,
) -> SaveResult:
    """Validate everything, then write all changed cells in one transaction; commit.

    Nothing is written when the quarter is locked for ``user`` or any cell has
    an error. A cell changed by someone else since the form was loaded (its
    version moved on) is a conflict: the save is refused and the message shows
    both values. Keys that name no cell of the form (a deactivated indicator, a
    crafted field) are ignored. The quarter gets a draft submission with its
    first figure.
    """
    result = SaveResult()
    reason = lock_reason(user, municipality_id, period)
    if reason:
        result.errors["_form"] = reason
        return result
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
        comment = (data.comment or "").strip() or None
        if comment and len(comment) > MAX_COMMENT:
            result.errors[cell.key] = (
                f"Der Kommentar ist zu lang (höchstens {MAX_COMMENT} Zeichen)."
            )
            continue
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
                by_target_group=cell.target_group is not None,
                created_by_id=user.id,
            )
            db.session.add(entry)
        entry.value, entry.comment, entry.updated_by_id = value, comment, user.id
    if changes:
        submission_for(municipality_id, period)  # the quarter now has a draft
    try:
        db.session.commit()
    except (StaleDataError, IntegrityError, DataError):
        # Someone saved the same cells between our read and our write, or the
        # database refused a value; nothing of this save is stored.
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
    acknowledged the warnings; commit. Returns the check either way; a refused
    transition (wrong status, locked) raises :class:`~.workflow.TransitionError`."""
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


@dataclass(frozen=True)
class Change:
    """One change of a figure, as the audit trail recorded it."""

    at: Any
    who: str
    action: str
    old_value: str | None
    new_value: str | None
    old_comment: str | None
    new_comment: str | None


def history(entry: MonitoringEntry) -> list[Change]:
    """Who changed the figure when, from what to what (newest first)."""
    events = db.session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.object_type == "monitoring_entry",
            AuditEvent.object_id == str(entry.id),
            AuditEvent.action.in_(("create", "update")),
        )
        .order_by(AuditEvent.id.desc())
    )
    changes = []
    places = entry.indicator.decimal_places
    for event in events:
        old, new = event.old_values or {}, event.new_values or {}
        if event.action == "update" and not ({"value", "comment"} & set(new)):
            continue
        changes.append(
            Change(
                at=event.created_at,
                who=event.user_email or "",
                action="erfasst" if event.action == "create" else "geändert",
                old_value=_audit_number(old.get("value"), places) if "value" in old else None,
                new_value=_audit_number(new["value"], places) if "value" in new else None,
                old_comment=old.get("comment"),
                new_comment=new.get("comment") if "comment" in new else None,
            )
        )
    return changes


def _audit_number(raw: Any, places: int) -> str:
    if raw is None:
        return "leer"
    try:
        return de_number(Decimal(str(raw)), places)
    except (InvalidOperation, ValueError):
        return str(raw)
