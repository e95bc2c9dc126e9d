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
from dataclasses import dataclass, field, replace
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
from .rules import Finding, check_rules, expectations
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

    @property
    def title(self) -> str:
        """What a person calls the cell: ``Neue Case-Management-Fälle – Geduldete``."""
        group = self.target_group.name if self.target_group else "gesamt"
        return f"{self.indicator.name} – {group}"

    @property
    def comment(self) -> str:
        """The stored comment, stripped ("" when there is none)."""
        return ((self.entry.comment if self.entry else None) or "").strip()


@dataclass
class MatrixRow:
    """One indicator of the entry matrix: its cells by target group id (None: total)."""

    indicator: Indicator
    by_group: dict[int | None, Cell]

    @property
    def broken_down(self) -> bool:
        return self.indicator.by_target_group

    @property
    def total(self) -> Decimal | None:
        """Sum of the stored values of a broken-down indicator (None if none is stored)."""
        stored = [
            c.entry.value for c in self.by_group.values() if c.entry and c.entry.value is not None
        ]
        return sum(stored, Decimal(0)) if stored else None


def matrix(entry_cells: list[Cell]) -> tuple[list[TargetGroup], list[MatrixRow]]:
    """The cells as indicator rows × target-group columns, as the Excel template has them.

    Indicators without a breakdown have only the total cell (key None); the
    columns are the target groups of the broken-down indicators, in form order.
    """
    groups: dict[int, TargetGroup] = {}
    rows: dict[int, MatrixRow] = {}
    for c in entry_cells:
        row = rows.setdefault(c.indicator.id, MatrixRow(c.indicator, {}))
        gid = c.target_group.id if c.target_group else None
        row.by_group[gid] = c
        if c.target_group is not None:
            groups.setdefault(c.target_group.id, c.target_group)
    return list(groups.values()), list(rows.values())


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


def _rule_inputs(entry_cells: list[Cell]) -> tuple[dict, dict, dict, dict]:
    """The stored figures as the rule engine reads them."""
    values, previous, by_group, group_names = {}, {}, {}, {}
    for c in entry_cells:
        gid = c.target_group.id if c.target_group else None
        by_group[c.indicator.code] = c.indicator.by_target_group
        if c.target_group:
            group_names[c.target_group.id] = c.target_group.name
        values[(c.indicator.code, gid)] = c.entry.value if c.entry else None
        previous[(c.indicator.code, gid)] = c.previous
    return values, previous, by_group, group_names


def finding_cells(finding: Finding, entry_cells: list[Cell]) -> list[Cell]:
    """The cells of this quarter a finding reads: those that can fix (or explain) it.

    A finding of one target group names that group's cells; a finding on totals
    names every cell of its codes.
    """
    return [
        c
        for c in entry_cells
        if c.indicator.code in finding.codes
        and (
            finding.group_id is None
            or (c.target_group is not None and c.target_group.id == finding.group_id)
        )
    ]


def findings(entry_cells: list[Cell]) -> list[Finding]:
    """Rule violations of the stored figures of one municipality's quarter.

    A warning counts as explained (``explained=True``) once one of its cells
    carries a comment: the rules' messages ask the municipality to "check or
    explain in the comment", and an explained warning needs no acknowledgement
    before submitting. Blocking findings are never explained away.
    """
    found = check_rules(*_rule_inputs(entry_cells))
    return [
        replace(f, explained=True)
        if not f.blocking and any(c.comment for c in finding_cells(f, entry_cells))
        else f
        for f in found
    ]


@dataclass(frozen=True)
class Expected:
    """The value a rule expects of a cell, and how the page recomputes it while typing."""

    value: Decimal | None
    constant: Decimal | None  # None: no live sum
    inputs: tuple[tuple[int, str], ...]  # (sign, cell key) of the typed terms

    @property
    def live(self) -> bool:
        return self.constant is not None


def expected_values(entry_cells: list[Cell]) -> dict[str, Expected]:
    """Per cell key, what an equality rule expects of it (e.g. the continued stock).

    Only expectations that are known (from the stored figures) or can be
    recomputed on the page (a plain sum whose previous-quarter part is known)
    are returned.
    """
    keys: dict[tuple[str, int | None], str] = {}
    by_code: dict[str, list[str]] = {}
    for c in entry_cells:
        gid = c.target_group.id if c.target_group else None
        keys[(c.indicator.code, gid)] = c.key
        by_code.setdefault(c.indicator.code, []).append(c.key)
    result = {}
    for (code, gid), found in expectations(*_rule_inputs(entry_cells)).items():
        key = keys.get((code, gid))
        if key is None:
            continue
        constant, inputs = found.constant, []
        for sign, term, group in found.terms:
            cells_of_term = [keys[(term, group)]] if (term, group) in keys else by_code.get(term)
            if not cells_of_term:  # an indicator not on the form: no live sum
                constant, inputs = None, []
                break
            inputs += [(sign, k) for k in cells_of_term]
        if found.value is not None or constant is not None:
            result[key] = Expected(found.value, constant, tuple(inputs))
    return result


@dataclass
class RuleItem:
    """One scope (target group or totals) in which a rule fails, with its cells."""

    finding: Finding
    cells: list[Cell]

    @property
    def scope(self) -> str:
        return self.finding.target_group or "insgesamt"

    @property
    def kind(self) -> str:
        """``blocking``, ``warning`` or ``explained`` for this scope's cells."""
        if self.finding.blocking:
            return "blocking"
        return "explained" if self.finding.explained else "warning"


@dataclass
class RuleReport:
    """A failed rule, grouped: one message with every scope it fails in."""

    number: int
    finding: Finding  # the first one; name, severity, message and sides are shared
    items: list[RuleItem]

    @property
    def anchor(self) -> str:
        return f"rule-{self.number}"

    @property
    def explained(self) -> bool:
        """A warning whose every failing scope is explained by a comment."""
        return not self.finding.blocking and all(i.finding.explained for i in self.items)

    @property
    def kind(self) -> str:
        """``blocking``, ``warning`` or ``explained`` (CSS class and wording)."""
        if self.finding.blocking:
            return "blocking"
        return "explained" if self.explained else "warning"


def rule_reports(found: list[Finding], entry_cells: list[Cell]) -> list[RuleReport]:
    """Findings grouped per rule (blocking rules first), numbered for anchors."""
    grouped: dict[tuple[str, bool], list[Finding]] = {}
    for f in found:
        grouped.setdefault((f.rule_name, f.blocking), []).append(f)
    ordered = sorted(grouped.values(), key=lambda fs: not fs[0].blocking)
    return [
        RuleReport(n, fs[0], [RuleItem(f, finding_cells(f, entry_cells)) for f in fs])
        for n, fs in enumerate(ordered, start=1)
    ]


def marked_cells(reports: list[RuleReport]) -> dict[str, list[tuple[RuleReport, RuleItem]]]:
    """Per cell key, the failed rules (and scopes) that name it, to highlight and link it."""
    marked: dict[str, list[tuple[RuleReport, RuleItem]]] = {}
    for report in reports:
        for item in report.items:
            for c in item.cells:
                marks = marked.setdefault(c.key, [])
                if all(r is not report for r, _ in marks):
                    marks.append((report, item))
    return marked


@dataclass
class SubmitCheck:
    """What stands in the way of a submission."""

    gaps: list[Cell]
    blocking: list[Finding]
    warnings: list[Finding]  # those no comment explains

    def refused(self, acknowledged: bool) -> bool:
        return bool(self.gaps or self.blocking or (self.warnings and not acknowledged))


def submit(
    municipality_id: int, period: ReportingPeriod, user: Any, acknowledged: bool = False
) -> SubmitCheck:
    """Submit the quarter if it is complete, passes every blocking rule and the user
    acknowledged the warnings no comment explains; commit. Returns the check either way; a refused
    transition (wrong status, locked) raises :class:`~.workflow.TransitionError`."""
    entry_cells = cells(municipality_id, period)
    found = findings(entry_cells)
    check = SubmitCheck(
        gaps(entry_cells),
        [f for f in found if f.blocking],
        [f for f in found if not f.blocking and not f.explained],
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
