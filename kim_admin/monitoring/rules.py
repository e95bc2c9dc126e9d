"""Plausibility rules: a tiny, safe expression language over indicator codes.

An expression is built from indicator codes (``CM_NEU``), ``prev(CODE)`` for the
previous quarter, numbers, ``+ - * /`` and parentheses. It is parsed with
:mod:`ast` and only those node types are accepted; nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from kim_admin.extensions import db
from models import ValidationRule

COMPARE: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    "=": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
    "!=": operator.ne,
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


#: Longest expression (the columns hold 500 characters).
MAX_EXPRESSION = 500
#: Largest number a rule may contain (figures end at 9,999,999,999.99).
MAX_CONSTANT = 10**12


class RuleSyntaxError(ValueError):
    """The expression is not valid; the message is German."""


class Missing(Exception):
    """A referenced value is not (yet) entered: the rule cannot be checked."""


def parse(expression: str) -> ast.expr:
    """Parse and check an expression; raises :class:`RuleSyntaxError`."""
    if len(expression) > MAX_EXPRESSION:
        raise RuleSyntaxError(f"Der Ausdruck ist zu lang (höchstens {MAX_EXPRESSION} Zeichen).")
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise RuleSyntaxError(f"Ausdruck nicht lesbar: {expression}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (
                isinstance(node.func, ast.Name)
                and node.func.id == "prev"
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Name)
                and not node.keywords
            ):
                raise RuleSyntaxError("Erlaubt ist nur prev(KÜRZEL) als Funktion.")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise RuleSyntaxError("Erlaubt sind nur + - * /.")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                raise RuleSyntaxError("Erlaubt sind nur Zahlen und Kennzahl-Kürzel.")
            if not math.isfinite(node.value) or abs(node.value) > MAX_CONSTANT:
                raise RuleSyntaxError("Zahlen im Ausdruck dürfen höchstens 1.000.000.000.000 sein.")
        elif not isinstance(
            node, ast.Name | ast.UnaryOp | ast.USub | ast.UAdd | ast.Load | ast.operator
        ):
            raise RuleSyntaxError(f"Nicht erlaubt im Ausdruck: {type(node).__name__}")
    return tree


def codes_in(expression: str) -> set[str]:
    """Indicator codes an expression refers to (current or previous quarter)."""
    return {
        node.id
        for node in ast.walk(parse(expression))
        if isinstance(node, ast.Name) and node.id != "prev"
    }


def current_codes_in(expression: str) -> set[str]:
    """Codes an expression reads from the quarter being entered (not inside ``prev``).

    These are the cells a user can change to satisfy the rule, so the entry page
    highlights them when the rule fails.
    """
    tree = parse(expression)
    previous = {
        id(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call) and node.args
    }
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id != "prev" and id(node) not in previous
    }


def evaluate(
    tree: ast.expr, current: Mapping[str, Decimal | None], previous: Mapping[str, Decimal | None]
) -> Decimal:
    """The value of a parsed expression; raises :class:`Missing` on a gap."""
    if isinstance(tree, ast.Constant):
        return Decimal(str(tree.value))
    if isinstance(tree, ast.Name):
        value = current.get(tree.id)
        if value is None:
            raise Missing(tree.id)
        return value
    if isinstance(tree, ast.Call):
        value = previous.get(tree.args[0].id)
        if value is None:
            raise Missing(f"prev({tree.args[0].id})")
        return value
    if isinstance(tree, ast.UnaryOp):
        value = evaluate(tree.operand, current, previous)
        return -value if isinstance(tree.op, ast.USub) else value
    if isinstance(tree, ast.BinOp):
        left = evaluate(tree.left, current, previous)
        right = evaluate(tree.right, current, previous)
        if isinstance(tree.op, ast.Div) and right == 0:
            raise Missing("Division durch 0")
        return _ARITHMETIC[type(tree.op)](left, right)
    raise RuleSyntaxError("Ungültiger Ausdruck")


@dataclass(frozen=True)
class Finding:
    """A rule that does not hold (for one target group, or for the totals)."""

    rule_name: str
    blocking: bool
    message: str
    target_group: str | None
    left: Decimal | None  # None when the rule could not be evaluated
    right: Decimal | None
    #: Target group id of the scope (None: totals or a rule without breakdown).
    group_id: int | None = None
    #: The rule as written, to show both sides with their values.
    left_side: str = ""
    operator: str = ""
    right_side: str = ""
    #: Codes of the current quarter the rule reads: the cells that can fix it.
    codes: tuple[str, ...] = ()
    #: A warning explained by a comment on one of its cells (set by the entry form).
    explained: bool = False


def check_rules(
    values: Mapping[tuple[str, int | None], Decimal | None],
    previous: Mapping[tuple[str, int | None], Decimal | None],
    by_group: Mapping[str, bool],
    group_names: Mapping[int, str],
) -> list[Finding]:
    """Check every active rule against one municipality's quarter.

    ``values`` and ``previous`` map (code, target group id or None) to a value.
    A rule whose codes are all broken down by target group is checked per group;
    otherwise on totals (the sum over groups where a code is broken down).
    Rules that refer to values not entered yet are skipped: completeness is
    checked separately.
    """
    findings = []
    rules = db.session.scalars(
        select(ValidationRule).where(ValidationRule.active.is_(True)).order_by(ValidationRule.id)
    )
    for rule in rules:
        try:
            left, right = parse(rule.left_side), parse(rule.right_side)
            codes = codes_in(rule.left_side) | codes_in(rule.right_side)
        except RuleSyntaxError:
            findings.append(_unusable(rule))
            continue
        if codes and all(by_group.get(code) for code in codes):
            scopes = [(gid, name) for gid, name in group_names.items()]
        else:
            scopes = [(None, None)]
        for group_id, group_name in scopes:
            cur = _view(values, codes, group_id, by_group)
            prev = _view(previous, codes, group_id, by_group)
            try:
                lhs, rhs = evaluate(left, cur, prev), evaluate(right, cur, prev)
            except Missing:
                continue
            except ArithmeticError:  # e.g. an overflow of the decimal context
                findings.append(_unusable(rule, group_name, group_id))
                continue
            if not COMPARE[rule.operator](lhs, rhs):
                findings.append(
                    Finding(
                        rule.name,
                        rule.severity == "blocking",
                        rule.message,
                        group_name,
                        lhs,
                        rhs,
                        group_id,
                        rule.left_side,
                        rule.operator,
                        rule.right_side,
                        tuple(
                            sorted(
                                current_codes_in(rule.left_side) | current_codes_in(rule.right_side)
                            )
                        ),
                    )
                )
    return findings


@dataclass(frozen=True)
class Expectation:
    """What an equality rule expects of one input, e.g. the continued stock."""

    #: The expected value from the stored figures (None while a term is missing).
    value: Decimal | None
    #: For a plain sum (``+``/``-`` of codes, ``prev`` and numbers): the part that
    #: does not change while typing (previous quarter, numbers) ...
    constant: Decimal | None
    #: ... and the typed terms as (sign, code, group id or None for the total), so
    #: the page can recompute the expectation while the clerk types.
    terms: tuple[tuple[int, str, int | None], ...] = ()


def _plain_sum(tree: ast.expr, sign: int = 1) -> list[tuple[int, ast.expr]] | None:
    """The signed terms of a sum or difference; None for anything else (``*``, ``/``)."""
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Add | ast.Sub):
        left = _plain_sum(tree.left, sign)
        right = _plain_sum(tree.right, sign if isinstance(tree.op, ast.Add) else -sign)
        return None if left is None or right is None else left + right
    if isinstance(tree, ast.UnaryOp):
        return _plain_sum(tree.operand, -sign if isinstance(tree.op, ast.USub) else sign)
    if isinstance(tree, ast.Name | ast.Call | ast.Constant):
        return [(sign, tree)]
    return None


def expectations(
    values: Mapping[tuple[str, int | None], Decimal | None],
    previous: Mapping[tuple[str, int | None], Decimal | None],
    by_group: Mapping[str, bool],
    group_names: Mapping[int, str],
) -> dict[tuple[str, int | None], Expectation]:
    """What equality rules expect of a single code, per (code, group id).

    A rule ``CM_AKT = prev(CM_AKT) + CM_NEU - CM_ABG`` makes its right side the
    expected value of ``CM_AKT``; the entry page shows it beside the input so a
    clerk sees the figure the rule wants before saving (and, for a plain sum,
    while typing).
    """
    expected: dict[tuple[str, int | None], Expectation] = {}
    rules = db.session.scalars(
        select(ValidationRule)
        .where(ValidationRule.active.is_(True), ValidationRule.operator == "=")
        .order_by(ValidationRule.id)
    )
    for rule in rules:
        try:
            target, right = parse(rule.left_side), parse(rule.right_side)
            codes = codes_in(rule.right_side) | codes_in(rule.left_side)
        except RuleSyntaxError:
            continue
        if not isinstance(target, ast.Name):
            continue
        if codes and all(by_group.get(code) for code in codes):
            scopes: list[int | None] = list(group_names)
        else:
            scopes = [None]
        terms = _plain_sum(right)
        for group_id in scopes:
            if group_id is None and by_group.get(target.id):
                continue  # a total is not typed, so there is no input to show it beside
            if (target.id, group_id) in expected:
                continue
            cur = _view(values, codes, group_id, by_group)
            prev = _view(previous, codes, group_id, by_group)
            try:
                value: Decimal | None = evaluate(right, cur, prev)
            except (Missing, ArithmeticError):
                value = None
            constant: Decimal | None = None
            typed: list[tuple[int, str, int | None]] = []
            if terms is not None:
                constant = Decimal(0)
                for sign, term in terms:
                    if isinstance(term, ast.Name):
                        typed.append((sign, term.id, group_id))
                        continue
                    try:
                        constant += sign * evaluate(term, {}, prev)
                    except (Missing, ArithmeticError):
                        constant, typed = None, []
                        break
            expected[(target.id, group_id)] = Expectation(value, constant, tuple(typed))
    return expected


def _unusable(
    rule: ValidationRule, group_name: str | None = None, group_id: int | None = None
) -> Finding:
    """A rule that cannot be evaluated is reported (as a warning), never a crash."""
    return Finding(
        rule.name,
        False,
        f"Die Prüfregel „{rule.name}“ kann nicht ausgewertet werden; bitte die "
        "Kreisverwaltung informieren.",
        group_name,
        None,
        None,
        group_id,
    )


def _view(values, codes, group_id, by_group) -> dict[str, Decimal | None]:
    """Values of ``codes`` for one group (or totals when ``group_id`` is None)."""
    out: dict[str, Decimal | None] = {}
    for code in codes:
        if group_id is not None:
            out[code] = values.get((code, group_id))
        elif by_group.get(code):
            parts = [v for (c, g), v in values.items() if c == code and g is not None]
            out[code] = sum(parts, Decimal(0)) if parts and None not in parts else None
        else:
            out[code] = values.get((code, None))
    return out


SEED_RULES = [
    (
        "Abschlüsse höchstens Bestand + Zugänge",
        "CM_ABG",
        "<=",
        "prev(CM_AKT) + CM_NEU",
        "blocking",
        "Es können nicht mehr Fälle abgeschlossen werden, als am Ende des Vorquartals aktiv "
        "waren und im Quartal neu hinzukamen.",
    ),
    (
        "Bestand fortgeschrieben",
        "CM_AKT",
        "=",
        "prev(CM_AKT) + CM_NEU - CM_ABG",
        "warning",
        "Die aktiven Fälle entsprechen nicht „aktive Fälle Vorquartal + neue − abgeschlossene "
        "Fälle“. Bitte prüfen oder im Kommentar erklären.",
    ),
]
