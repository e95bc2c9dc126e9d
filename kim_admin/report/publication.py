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
yet covered: a stock at the end of a year (shown in that year's report) ties the
next year's report through the same identities; the audit of one year does not
include the previous year's published figures. Where the quarter before the range
is needed (the first quarter's identity, a municipality's stock over the range),
no equation is added. Assuming the worst instead — the stock before the range
known exactly — was tried and left out: with zeros shown it pins cells that no
secondary suppression can open (new cases 0 and stock 0 shown, so closed cases =
the known stock), and it triples the suppression of an HSK report.
"""

from __future__ import annotations

import ast
from typing import Any

from sqlalchemy import select

from kim_admin import suppression
from kim_admin.extensions import db
from kim_admin.monitoring import rules as rule_language
from models import ValidationRule

#: What the Übersicht says about the time grid of published reports.
GRID_NOTE = (
    "Veröffentlicht werden nur ganze Kalenderjahre (Q1–Q4 eines Jahres): veröffentlichte "
    "Zeiträume überschneiden sich nie, so lässt sich kein Quartal als Differenz zweier "
    "Berichte errechnen."
)


def check_grid(first: Any, last: Any) -> str | None:
    """Why the range cannot be published (German), or None if it is one calendar year."""
    if first.year == last.year and first.quarter == 1 and last.quarter == 4:
        return None
    return (
        "Für die Veröffentlichung bitte genau ein Kalenderjahr wählen (Q1 bis Q4 eines "
        "Jahres): Überschneidende veröffentlichte Zeiträume ließen sich voneinander abziehen."
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
        if i.by_target_group:
            for t in data.towns:
                for g in data.groups:
                    values[("G", t.id, i.id, g.id)] = data.group_values.get((t.id, i.id, g.id))
            for g in data.groups:
                values[("GC", i.id, g.id)] = data.group_total(i, g)
    needs = [("N", c.municipality.id, c.group.id) for c in data.coverage]
    for key, cell in zip(needs, data.coverage, strict=True):
        values[key] = cell.need
    values[("NT",)] = data.need_total()

    for i in counts:
        table.line([("K", t.id, i.id) for t in data.towns], ("KT", i.id))
        if i.by_target_group:
            for g in data.groups:
                table.line([("G", t.id, i.id, g.id) for t in data.towns], ("GC", i.id, g.id))
            for t in data.towns:
                table.line([("G", t.id, i.id, g.id) for g in data.groups], ("K", t.id, i.id))
            table.line([("GC", i.id, g.id) for g in data.groups], ("KT", i.id))
        if i.kind == "flow":
            table.line([("Z", p.id, i.id) for p in data.periods], ("KT", i.id))
    table.line(needs, ("NT",))
    # Figures the Zielgruppen sheet shows as totals are totals there, too.
    table.totals.update(("K", t.id, i.id) for i in counts if i.by_target_group for t in data.towns)

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
