"""The published report as one system of equations, for :mod:`kim_admin.suppression`.

Keys name each published count once, wherever it appears: ``("K", town,
indicator)`` a municipality's figure (Kennzahlen, and the row total of
Zielgruppen), ``("KT", indicator)`` the total over the municipalities (also the
Zeitreihe's total, and a stock's last quarter), ``("G", town, indicator, group)``
and ``("GC", indicator, group)`` the Zielgruppen cells and their totals,
``("Z", period, indicator)`` a quarter of the Zeitreihe, ``("N", town, group)``
and ``("NT",)`` the estimated needs of the Versorgung sheet. Every sum the
workbook shows is one equation, and so is every accounting identity the
validation rules declare (operator "=" between counts, e.g. ``CM_AKT =
prev(CM_AKT) + CM_NEU - CM_ABG``) where it holds on the Zeitreihe's quarters.

**Time series.** Published reports cover whole calendar years only (a fixed grid,
:func:`check_grid`): two published ranges are then equal or disjoint, so
subtracting one published report from another gives no quarter's figures. Not
**Consecutive years.** A stock at the end of a year is shown in that year's report
and ties the next year's report through the same identities (``CM_AKT`` at the
end of 2025 = at the end of 2024 + new − closed in 2025). So the audit of a year
includes the previous year's published workbook as it was published
(:func:`link_previous`): its cells with their shown and hidden state fixed
(:attr:`kim_admin.suppression.Table.fixed`), and the identities between the two,
summed over the year per municipality, target group and total, and between the
previous year's last quarter and this year's first in the Zeitreihe. Each year is
audited together with the year before it, not with all earlier years at once.

**Stored publications.** The first time a year's published state is computed for a
publication (a workbook "für Veröffentlichung", the report for politics or its
preview, a published export; any of them once the year has ended), its table and
hidden cells are stored (:class:`models.PublishedYear`, :func:`store`): the first
publication wins, and later corrections of that year's figures do not rewrite what
was published. The audit of the next year reads the previous year from there
(:func:`stored`: same threshold, width and municipalities), with the values and
hidden cells *as they were published*, which is what the public has seen. A year
with nothing stored was never published (every publication stores its year, and
the first release stores from the start): it ties nothing, and the year after it
is audited alone. Two jobs storing the
same year at once: the unique key (year, threshold, width) lets the first insert
win, the other is dropped.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from kim_admin import suppression
from kim_admin.extensions import db
from kim_admin.monitoring import periods
from kim_admin.monitoring import rules as rule_language
from kim_admin.permissions import is_scoped
from models import AuditEvent, Municipality, PublishedYear, ValidationRule

log = logging.getLogger(__name__)

#: What the Übersicht says about the time grid of published reports.
GRID_NOTE = (
    "Veröffentlicht werden nur ganze Kalenderjahre (Q1–Q4 eines Jahres): veröffentlichte "
    "Zeiträume überschneiden sich nie, so lässt sich kein Quartal als Differenz zweier "
    "Berichte errechnen. Bestände am Jahresende verbinden zwei Jahre: geprüft wird "
    "zusammen mit dem Vorjahr, wie es zuerst veröffentlicht wurde (die erste "
    "Veröffentlichung eines Jahres wird gespeichert; spätere Korrekturen seiner Zahlen "
    "ändern sie nicht; ein nie veröffentlichtes Vorjahr verbindet nichts). Veröffentlicht "
    "wird immer der Bericht über "
    "alle KIM-Kommunen mit freigegebenen Zahlen; veröffentlichte Exporte der Bedarfe und der "
    "Versorgungsmatrix zeigen genau, was dieser Bericht zeigt, Listen der Quartalswerte "
    "werden nicht veröffentlicht."
)
#: A cell a published report does not show at all (official statistics' "x":
#: "Tabellenfach gesperrt, weil Aussage nicht sinnvoll"), see :func:`by_town_and_group`.
NOT_PUBLISHED = "x"
#: The symbol key's line for it.
NOT_PUBLISHED_NOTE = (
    f"{NOT_PUBLISHED} nicht ausgewiesen: Bestände zeigt der veröffentlichte Bericht je Kommune "
    "und je Zielgruppe, nicht je Kommune und Zielgruppe zugleich"
)


@dataclass
class Published:
    """A year's published workbook: its own table (without its previous year), the
    cells it hid, the id of its last quarter (for :meth:`series_key`), and the hidden
    cells its audit left narrower than the width (nothing was left to hide)."""

    table: suppression.Table
    hidden: set[Hashable]
    last_period_id: int
    unprotected: set[Hashable] = field(default_factory=set)

    def series_key(self, indicator: Any) -> tuple:
        """Key of the Zeitreihe's last quarter (see ``ReportData.series_key``)."""
        if indicator.kind == "stock":
            return ("KT", indicator.id)
        return ("Z", self.last_period_id, indicator.id)


def previous(key: Any) -> tuple:
    """The key of a cell of the previous year's workbook in this year's table."""
    return ("prev", key)


def check_grid(first: Any, last: Any) -> str | None:
    """Why the range cannot be published (German), or None if it is one calendar year."""
    if first.year == last.year and first.quarter == 1 and last.quarter == 4:
        return None
    return (
        "Für die Veröffentlichung bitte genau ein Kalenderjahr wählen (Q1 bis Q4 eines "
        "Jahres): Überschneidende veröffentlichte Zeiträume ließen sich voneinander abziehen."
    )


def by_town_and_group(indicator: Any) -> bool:
    """Whether a published report shows the indicator per municipality *and* target group.

    Flows only. A stock per municipality and target group ties consecutive years
    to the flows between them in cells so small that protecting them hid most of a
    Kreis's case figures (measured on synthetic figures of twelve towns audited with
    the previous year: 217 of 396 town × target-group case cells hidden secondarily,
    against 56 for one year alone). So a stock is published per municipality and per
    target group (Kreis-wide); the sheet shows :data:`NOT_PUBLISHED` in between.
    """
    return indicator.by_target_group and indicator.kind == "flow"


def check_scope(data: Any, user: Any) -> str | None:
    """:func:`check_choice` for a report's data."""
    return check_choice(data.town_ids, data.options.approved_only, user)


def check_choice(town_ids: Any, approved_only: bool, user: Any) -> str | None:
    """Why these municipalities and this data basis cannot be published (German), or None.

    A publication always covers every KIM municipality, with approved figures only:
    two published workbooks over different sets of municipalities could be
    subtracted (the Kreis total minus the total without one town is that town), and
    a figure that can still change would be published twice.
    """
    if is_scoped(user, "municipality"):
        return (
            "Veröffentlicht wird nur der Bericht über alle KIM-Kommunen: Bitte wenden Sie "
            "sich an die Kreisverwaltung oder die Steuerungsgruppe."
        )
    if set(town_ids) != set(participant_ids()):
        return (
            "Für die Veröffentlichung bitte alle KIM-Kommunen wählen: Berichte über "
            "unterschiedliche Kommunen ließen sich voneinander abziehen."
        )
    if not approved_only:
        return (
            "Veröffentlicht werden nur freigegebene Zahlen: Bitte „nur freigegebene "
            "Meldungen“ wählen."
        )
    return None


def participant_ids() -> list[int]:
    """The KIM municipalities: the fixed set every publication covers."""
    return list(
        db.session.scalars(select(Municipality.id).where(Municipality.kim_participant.is_(True)))
    )


def linear(tree: ast.expr) -> tuple[dict[tuple[str, int], float], float] | None:
    """An expression as ``{(code, lag): coefficient}`` plus a constant; None if not linear.

    ``lag`` is 0 for ``CODE`` and 1 for ``prev(CODE)``.
    """
    if isinstance(tree, ast.Constant):
        return {}, float(tree.value)
    if isinstance(tree, ast.Name):
        return {(tree.id, 0): 1.0}, 0.0
    if isinstance(tree, ast.Call):
        return {(tree.args[0].id, 1): 1.0}, 0.0
    if isinstance(tree, ast.UnaryOp):
        inner = linear(tree.operand)
        if inner is None or not isinstance(tree.op, ast.USub | ast.UAdd):
            return inner
        sign = -1.0 if isinstance(tree.op, ast.USub) else 1.0
        return {k: sign * c for k, c in inner[0].items()}, sign * inner[1]
    if isinstance(tree, ast.BinOp):
        left, right = linear(tree.left), linear(tree.right)
        if left is None or right is None:
            return None
        if isinstance(tree.op, ast.Add | ast.Sub):
            sign = 1.0 if isinstance(tree.op, ast.Add) else -1.0
            terms = dict(left[0])
            for key, coefficient in right[0].items():
                terms[key] = terms.get(key, 0.0) + sign * coefficient
            return terms, left[1] + sign * right[1]
        if isinstance(tree.op, ast.Mult):
            if not left[0]:
                return {k: left[1] * c for k, c in right[0].items()}, left[1] * right[1]
            if not right[0]:
                return {k: right[1] * c for k, c in left[0].items()}, right[1] * left[1]
            return None
        if isinstance(tree.op, ast.Div) and not right[0] and right[1]:
            return {k: c / right[1] for k, c in left[0].items()}, left[1] / right[1]
    return None


def identities(expressions: list[tuple[str, str]]) -> list[dict[tuple[str, int], float]]:
    """The homogeneous linear identities among ``(left, right)`` rule expressions.

    A rule with a constant term is left out: summed over municipalities its
    constant would change with their number.
    """
    found = []
    for left, right in expressions:
        try:
            sides = linear(rule_language.parse(left)), linear(rule_language.parse(right))
        except rule_language.RuleSyntaxError:
            continue
        if sides[0] is None or sides[1] is None or sides[0][1] != sides[1][1]:
            continue
        terms = dict(sides[0][0])
        for key, coefficient in sides[1][0].items():
            terms[key] = terms.get(key, 0.0) - coefficient
        terms = {k: c for k, c in terms.items() if c}
        if terms:
            found.append(terms)
    return found


def rule_identities() -> list[dict[tuple[str, int], float]]:
    """The accounting identities of the active validation rules (operator "=")."""
    rows = db.session.execute(
        select(ValidationRule.left_side, ValidationRule.right_side).where(
            ValidationRule.active.is_(True), ValidationRule.operator == "="
        )
    ).all()
    return identities([(left, right) for left, right in rows])


def build_table(data: Any, rules: list[dict[tuple[str, int], float]]) -> suppression.Table:
    """The published counts of a report and every equation between them.

    ``data`` is a :class:`~kim_admin.report.data.ReportData` (or anything with the
    same attributes: the benchmark builds one without a database).
    """
    table = suppression.Table()
    values = table.values
    counts = [i for i in data.indicators if not i.decimal_places]
    for i in counts:
        for t in data.towns:
            values[("K", t.id, i.id)] = data.range_values.get((t.id, i.id))
        values[("KT", i.id)] = data.total(i)
        for p in data.periods:
            values.setdefault(data.series_key(p, i), data.series.get((p.id, i.id)))
        if by_town_and_group(i):
            for t in data.towns:
                for g in data.groups:
                    values[("G", t.id, i.id, g.id)] = data.group_values.get((t.id, i.id, g.id))
        if i.by_target_group:
            for g in data.groups:
                values[("GC", i.id, g.id)] = data.group_total(i, g)
    needs = [("N", c.municipality.id, c.group.id) for c in data.coverage]
    for key, cell in zip(needs, data.coverage, strict=True):
        values[key] = cell.need
    values[("NT",)] = data.need_total()

    for i in counts:
        table.line([("K", t.id, i.id) for t in data.towns], ("KT", i.id))
        if by_town_and_group(i):
            for g in data.groups:
                table.line([("G", t.id, i.id, g.id) for t in data.towns], ("GC", i.id, g.id))
            for t in data.towns:
                table.line([("G", t.id, i.id, g.id) for g in data.groups], ("K", t.id, i.id))
        if i.by_target_group:
            table.line([("GC", i.id, g.id) for g in data.groups], ("KT", i.id))
        if i.kind == "flow":
            table.line([("Z", p.id, i.id) for p in data.periods], ("KT", i.id))
    table.line(needs, ("NT",))
    # Figures the Zielgruppen sheet shows as totals are totals there, too.
    table.totals.update(
        ("K", t.id, i.id) for i in counts if by_town_and_group(i) for t in data.towns
    )

    # Accounting identities on consecutive quarters of the Zeitreihe, where they hold.
    by_code = {i.code: i for i in counts}
    for terms in rules:
        if any(code not in by_code for code, _ in terms):
            continue
        for n in range(1, len(data.periods)):
            equation: dict = {}
            for (code, lag), coefficient in terms.items():
                key = data.series_key(data.periods[n - lag], by_code[code])
                equation[key] = equation.get(key, 0.0) + coefficient
            if all(values.get(k) is not None for k in equation) and table.holds(equation):
                table.equation(equation)
    return table


def _add_if_it_holds(table: suppression.Table, equation: dict) -> None:
    """Add an identity where every cell has a value and it holds on them."""
    values = table.values
    if all(k in values and values[k] is not None for k in equation) and table.holds(equation):
        table.equation(equation)


def link_previous(
    table: suppression.Table,
    data: Any,
    earlier: Published,
    rules: list[dict[tuple[str, int], float]],
) -> None:
    """Add the previous year's published workbook and the identities that tie it to this one.

    ``earlier`` is the previous year's publication (same municipalities and data
    basis), stored or recomputed.
    """
    table.include(
        earlier.table, previous, earlier.hidden, protected=earlier.hidden - earlier.unprotected
    )
    counts = {i.code: i for i in data.indicators if not i.decimal_places}

    def add(equation: dict) -> None:
        _add_if_it_holds(table, equation)

    for terms in rules:
        if any(code not in counts for code, _ in terms):
            continue
        # The Zeitreihe: this year's first quarter and the previous year's last.
        equation: dict = {}
        for (code, lag), coefficient in terms.items():
            indicator = counts[code]
            key = (
                data.series_key(data.periods[0], indicator)
                if lag == 0
                else previous(earlier.series_key(indicator))
            )
            equation[key] = equation.get(key, 0.0) + coefficient
        add(equation)
        # The identity summed over the year: it telescopes when every stock appears as
        # a difference (``c × CODE − c × prev(CODE)``) and every flow without a lag.
        yearly = _yearly(terms, counts)
        if yearly is None:
            continue
        indicators = [counts[code] for code in yearly]
        cells: list[tuple] = [("K", t.id) for t in data.towns] + [("KT",)]
        if all(i.by_target_group for i in indicators):
            cells += [("GC", g.id) for g in data.groups]
        if all(by_town_and_group(i) for i in indicators):
            cells += [("G", t.id, g.id) for t in data.towns for g in data.groups]
        for cell in cells:
            equation = {}
            for code, (now, before) in yearly.items():
                key = _key(cell, counts[code].id)
                equation[key] = equation.get(key, 0.0) + now
                if before:
                    equation[previous(key)] = equation.get(previous(key), 0.0) + before
            add(equation)


def _key(cell: tuple, indicator_id: int) -> tuple:
    """``("K", town)`` + indicator -> ``("K", town, indicator)`` (and so on)."""
    kind, *rest = cell
    return (kind, indicator_id) if not rest else (kind, rest[0], indicator_id, *rest[1:])


def _yearly(
    terms: dict[tuple[str, int], float], counts: dict[str, Any]
) -> dict[str, tuple[float, float]] | None:
    """An identity summed over a year's quarters, as code -> (this year, previous year).

    A stock ``c × CODE − c × prev(CODE)`` sums to ``c × (end − end of previous year)``;
    a flow ``c × CODE`` to ``c ×`` the year's sum. Anything else does not telescope
    into published cells: None.
    """
    result: dict[str, tuple[float, float]] = {}
    for code in {code for code, _ in terms}:
        now, before = terms.get((code, 0), 0.0), terms.get((code, 1), 0.0)
        if counts[code].kind == "stock":
            if now != -before:
                return None
            result[code] = (now, before)
        elif before:
            return None
        else:
            result[code] = (now, 0.0)
    return result


# --- stored publications -----------------------------------------------------------------


def _tuple(value: Any) -> Any:
    """A key read back from JSON: lists become tuples again (nested too)."""
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    """A cell value for JSON (database decimals as floats)."""
    return float(value) if isinstance(value, Decimal) else value


def dump(published: Published) -> dict[str, Any]:
    """The columns of :class:`models.PublishedYear` for a publication, deterministically:
    cells in the table's order, equations by cell position, key sets in that order."""
    table = published.table
    position = {key: n for n, key in enumerate(table.values)}

    def keys(chosen: Iterable[Hashable]) -> list:
        return [list(k) for k in sorted(chosen, key=position.__getitem__)]

    return {
        "cells": [[list(key), _plain(value)] for key, value in table.values.items()],
        "equations": [
            [[[position[k], c] for k, c in coefficients.items()], constant]
            for coefficients, constant in table.equations
        ],
        "totals": keys(table.totals),
        "hidden": keys(published.hidden),
        "unprotected": keys(published.unprotected),
    }


def load(columns: Any, last_period_id: int) -> Published:
    """A publication from the columns :func:`dump` wrote."""
    table = suppression.Table()
    keys = [_tuple(key) for key, _ in columns["cells"]]
    table.values = {key: value for key, (_, value) in zip(keys, columns["cells"], strict=True)}
    table.equations = [
        ({keys[n]: c for n, c in coefficients}, constant)
        for coefficients, constant in columns["equations"]
    ]
    table.totals = {_tuple(key) for key in columns["totals"]}
    return Published(
        table,
        {_tuple(key) for key in columns["hidden"]},
        last_period_id,
        {_tuple(key) for key in columns["unprotected"]},
    )


def stored(year: int, threshold: int, width: int, town_ids: Iterable[int]) -> Published | None:
    """The stored publication of ``year`` with this threshold, width and municipalities."""
    row = db.session.execute(
        select(
            PublishedYear.municipality_ids,
            PublishedYear.cells,
            PublishedYear.equations,
            PublishedYear.totals,
            PublishedYear.hidden,
            PublishedYear.unprotected,
        ).where(
            PublishedYear.year == year,
            PublishedYear.threshold == threshold,
            PublishedYear.width == width,
        )
    ).first()
    if row is None or sorted(row.municipality_ids) != sorted(town_ids):
        return None
    last = periods.find(year, 4)
    if last is None:
        return None
    return load(row._mapping, last.id)


def is_stored(year: int, threshold: int, width: int) -> bool:
    """Whether a publication of ``year`` with this threshold and width is stored."""
    return (
        db.session.scalar(
            select(PublishedYear.id).where(
                PublishedYear.year == year,
                PublishedYear.threshold == threshold,
                PublishedYear.width == width,
            )
        )
        is not None
    )


def store(
    year: int,
    threshold: int,
    width: int,
    town_ids: Iterable[int],
    published: Published,
    user: Any = None,
) -> bool:
    """Store a year's publication unless one is stored already; True if this call stored it.

    The one write path of :class:`models.PublishedYear`. It writes through a
    connection of its own, committed at once, whatever the caller's session is in
    the middle of (a job's long read, an export being streamed). Should another job
    store the same year at the same moment, the unique key refuses the later insert,
    which is dropped: the first publication wins. On SQLite a writer holding the
    database (the report for politics saves its texts first) is not waited for: the
    year is then stored by its next publication.
    """
    if is_stored(year, threshold, width):
        return False
    return _insert(year, threshold, width, town_ids, published, user)


def _insert(
    year: int, threshold: int, width: int, town_ids: Iterable[int], published: Published, user: Any
) -> bool:
    columns = dump(published)
    town_ids = sorted(town_ids)
    user_id = getattr(user, "id", None)
    engine = _side_engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(PublishedYear).values(
                    year=year,
                    threshold=threshold,
                    width=width,
                    municipality_ids=town_ids,
                    created_by_id=user_id,
                    **columns,
                )
            )
            # The trail names the stored year, not its cells (too large for an event).
            conn.execute(
                insert(AuditEvent).values(
                    action="create",
                    object_type=PublishedYear.__tablename__,
                    object_id=str(year),
                    user_id=user_id,
                    user_email=getattr(user, "email", None),
                    new_values={
                        "year": year,
                        "threshold": threshold,
                        "width": width,
                        "municipalities": len(town_ids),
                        "cells": len(columns["cells"]),
                        "hidden": len(columns["hidden"]),
                    },
                )
            )
    except IntegrityError:
        log.info("publication of %s stored by another job first", year)
        return False
    except OperationalError:
        log.info("publication of %s not stored (database busy)", year)
        return False
    finally:
        if engine is not db.engine:
            engine.dispose()
    return True


def _side_engine() -> Any:
    """The app's engine, except on SQLite: a connection that gives up after 0.2 s
    rather than wait for the caller's own open write (as job bookkeeping does)."""
    if db.engine.dialect.name != "sqlite":
        return db.engine
    return create_engine(db.engine.url, poolclass=NullPool, connect_args={"timeout": 0.2})
