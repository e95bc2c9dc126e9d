"""Small-number suppression for published figures, with an exact disclosure audit.

Counts from 1 to ``threshold - 1`` (default: 1 and 2, as in the Bundesagentur für
Arbeit's statistics) are hidden as "." (*primary suppression*). That alone is not
enough when sums are published too: a reader can solve every equation a workbook
shows at once. This module models a published workbook as a :class:`Table` — the
exact value of every published count, and the linear equations between them
(cells and their totals, accounting identities such as "active cases = active
cases of the previous quarter + new − closed") — and asks what a reader knows:

* every shown value exactly;
* counts are not negative;
* zeros are shown and never hidden, so a "." is at least 1;
* every equation of the table.

For each hidden cell :func:`audit` computes the smallest and largest value
consistent with all of that: two linear programs per cell (SciPy's HiGHS), over
the connected part of the system the cell belongs to. Counts are integers, so the
bounds are rounded inwards (``ceil`` of the minimum, ``floor`` of the maximum),
which can only make the audit stricter. A table may be published when every hidden
cell's interval is at least ``width`` wide (*interval protection*, τ-ARGUS's
protection levels in their simplest, symmetric form); :func:`protect` hides further
cells (*secondary suppression*) until it is, preferring small values over large
ones and cells over totals, deterministically for the same data.

Every published figure comes from one such table per calendar year, the published
evaluation report (:mod:`kim_admin.report.publication`): published exports of
needs and coverage show its cells as it shows them, and lists of quarterly figures
are not published at all — audited together with the report, a town's quarters
hid almost twice as many of the report's cells (measured: 368 instead of 200 of
663 in a Kreis of twelve towns).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: How a hidden value is shown (as in the Bundesagentur für Arbeit's tables).
SUPPRESSED = "."
#: Slack for floating-point results of the solver.
EPSILON = 1e-6
#: At most this many pairs of cheap "spread" programs per part of the system ...
SPREAD_ROUNDS = 40
#: ... each pair going on only while the last one settled at least this many cells.
SPREAD_WORTH = 4


def primary(value: float | None, threshold: int) -> bool:
    """Whether a count is too small to publish (0 and empty cells are shown)."""
    return value is not None and 0 < value < threshold


@dataclass
class Table:
    """A published table as a system of linear equations over its cells.

    ``values`` maps the key of every published count to its exact value (None for
    an empty cell, which counts as a known 0). A value shown in several places has
    one key. ``equations`` are ``(coefficients, constant)`` pairs meaning
    ``sum(coefficient × value) = constant``; keys not in ``values`` are not allowed.
    """

    values: dict[Hashable, float | None] = field(default_factory=dict)
    equations: list[tuple[dict[Hashable, float], float]] = field(default_factory=list)
    #: Keys of totals: hidden as secondary cells only when nothing else will do.
    totals: set[Hashable] = field(default_factory=set)
    #: Cells published earlier (the previous year's workbook): whether each was
    #: hidden there. Their state is a fact: :func:`protect` counts them in the audit
    #: but never hides or shows one of them anew.
    fixed: dict[Hashable, bool] = field(default_factory=dict)
    #: Hidden cells of an earlier publication that its own audit found protected, and
    #: the indexes of that publication's equations here (see :meth:`include`).
    audited: set[Hashable] = field(default_factory=set)
    audited_equations: set[int] = field(default_factory=set)

    def line(self, cells: Iterable[Hashable], total: Hashable) -> None:
        """The cells add up to the total."""
        coefficients: dict[Hashable, float] = defaultdict(float)
        for key in cells:
            coefficients[key] += 1
        coefficients[total] -= 1
        self.totals.add(total)
        self.equation(coefficients)

    def equation(self, coefficients: Mapping[Hashable, float], constant: float = 0.0) -> None:
        """``sum(coefficient × value) = constant`` (zero coefficients dropped)."""
        kept = {k: c for k, c in coefficients.items() if c}
        missing = [k for k in kept if k not in self.values]
        if missing:
            raise KeyError(f"unknown cells in an equation: {missing[:3]}")
        if kept:
            self.equations.append((kept, constant))

    def include(
        self,
        other: Table,
        wrap: Any,
        hidden: Iterable[Hashable],
        protected: Iterable[Hashable] = (),
    ) -> None:
        """Add an earlier published table as fixed cells, its keys as ``wrap(key)``.

        ``hidden`` are the keys (of ``other``) that its publication hid, ``protected``
        those of them its publication's audit found wide enough, with ``other``'s
        equations and more (see :func:`protect` for what that saves).
        """
        hidden = set(hidden)
        for key, value in other.values.items():
            self.values[wrap(key)] = value
            self.fixed[wrap(key)] = key in hidden
        self.totals.update(wrap(k) for k in other.totals)
        self.audited.update(wrap(k) for k in hidden.intersection(protected))
        for coefficients, constant in other.equations:
            self.audited_equations.add(len(self.equations))
            self.equations.append(({wrap(k): c for k, c in coefficients.items()}, constant))

    def holds(self, coefficients: Mapping[Hashable, float], constant: float = 0.0) -> bool:
        """Whether an equation holds on the exact values (empty cells as 0)."""
        total = sum(c * (self.values.get(k) or 0) for k, c in coefficients.items())
        return abs(total - constant) <= EPSILON


@dataclass(frozen=True)
class Interval:
    """What a reader can work out about a hidden cell: ``low`` ≤ value ≤ ``high``.

    With ``exact`` False, the audit stopped as soon as it had found feasible values
    at least the protection width apart: the true interval is at least this wide.
    """

    low: float
    high: float
    exact: bool = True
    #: Indexes of the table's equations that hold the bounds (nonzero duals).
    binding: frozenset[int] = field(default=frozenset(), compare=False)

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass
class Protection:
    """The outcome of :func:`protect`."""

    hidden: set[Hashable]
    primary: set[Hashable]
    secondary: set[Hashable]
    #: Hidden cells whose interval stays narrower than the width (nothing left to hide).
    unprotected: set[Hashable]
    intervals: dict[Hashable, Interval]
    rounds: int
    #: Cells of an earlier publication that it hid (see :attr:`Table.fixed`).
    earlier: set[Hashable] = field(default_factory=set)

    @property
    def audited(self) -> set[Hashable]:
        """Every hidden cell the audit counted: this table's and the earlier ones."""
        return self.hidden | self.earlier


def audit(
    table: Table,
    hidden: Iterable[Hashable],
    width: float | None = None,
    cells: Iterable[Hashable] | None = None,
    trust_earlier: bool = False,
) -> dict[Hashable, Interval]:
    """The interval a reader can work out for each hidden cell (see the module doc).

    With ``width``, a cell's linear programs are skipped once feasible values at
    least ``width`` apart are known (from the solutions found for other cells);
    its interval is then marked not exact. ``cells`` restricts the work to these
    hidden cells (the others are left out of the answer). With ``trust_earlier``,
    parts of the system that an earlier publication's audit already covered are
    left out of the answer (see :func:`_audited_before`).
    """
    hidden = {k for k in hidden if table.values.get(k) is not None}
    result: dict[Hashable, Interval] = {}
    wanted = hidden if cells is None else hidden.intersection(cells)
    for variables, rows in _components(table, hidden):
        targets = [k for k in variables if k in wanted]
        if trust_earlier and _audited_before(table, variables, rows):
            continue
        if targets:
            result.update(_solve(table, variables, rows, width, targets))
    return result


def _audited_before(table: Table, variables: list, rows: list) -> bool:
    """Whether a part of the system was audited when the earlier year was published.

    True when its hidden cells are all cells of the earlier publication that its
    audit found protected (:attr:`Table.audited`) and each of its equations is one
    of that publication's own (:attr:`Table.audited_equations`): no cell of this
    year and no equation linking the years touches it. Every equation holding one
    of these cells is in the part, the shown values are the published ones, and
    that audit had the same equations over the same hidden cells, and perhaps more
    (its own previous year): what a reader can work out here is at most what they
    could then, and every interval was at least the width then.
    """
    audited, earlier = table.audited, table.audited_equations
    return all(k in audited for k in variables) and all(row[2] in earlier for row in rows)


def protect(
    table: Table,
    threshold: int,
    width: float | None = None,
) -> Protection:
    """Hide the small counts and enough others that every hidden interval is ``width`` wide.

    ``width`` defaults to ``threshold``. Zeros are never hidden (the audit counts on
    every "." being at least 1). Each round, for each cell still too narrow, one more
    value is hidden from an equation that holds its bound (the linear programs'
    nonzero duals; else one of its own, else any of its part of the system): the
    cheapest by information loss —
    cells before totals, then cells that would not be alone in another equation,
    then the smallest value, then the table's order — at most one per equation and
    round. Then the narrow and the new cells are audited again.

    Cells of an earlier publication (:attr:`Table.fixed`) keep their state: the
    hidden ones must stay protected too, but only this table's cells can be hidden
    to protect them. A part of the system made only of that publication's protected
    cells and its own equations was audited when it was published and is not
    audited again (:func:`_audited_before`; its cells have no entry in
    ``intervals``). The result names this table's cells only (and ``earlier``).
    """
    width = threshold if width is None else width
    order = {key: n for n, key in enumerate(table.values)}
    fixed = table.fixed
    first = {
        key for key, value in table.values.items() if key not in fixed and primary(value, threshold)
    }
    hidden = first | {key for key, was_hidden in fixed.items() if was_hidden}
    by_key: dict[Hashable, list[int]] = defaultdict(list)
    for n, (coefficients, _) in enumerate(table.equations):
        for key in coefficients:
            by_key[key].append(n)

    def cost(key: Hashable) -> tuple:
        # A cell that would be the only hidden one in another of its equations is
        # given away there at once and needs a partner of its own: those go last.
        lonely = sum(
            1
            for n in by_key[key]
            if not any(k in hidden for k in table.equations[n][0] if k != key)
        )
        return (key in table.totals, lonely > 0, table.values[key], lonely, order[key])

    def candidates(equations: Iterable[int]) -> list[Hashable]:
        found = {
            k
            for n in equations
            for k in table.equations[n][0]
            if k not in hidden and k not in fixed and (table.values.get(k) or 0) > 0
        }
        return sorted(found, key=cost)

    def around(key: Hashable) -> Iterable[int]:
        """Every equation reachable from ``key`` through hidden cells (its part)."""
        seen, todo = set(), [key]
        reached: set[Hashable] = {key}
        while todo:
            for n in by_key[todo.pop()]:
                if n in seen:
                    continue
                seen.add(n)
                for k in table.equations[n][0]:
                    if k in hidden and k not in reached:
                        reached.add(k)
                        todo.append(k)
        return sorted(seen)

    # Parts made of an earlier publication's protected cells and its own equations
    # alone were audited when it was published: left out (not in ``intervals``).
    # Only this table's cells are hidden anew, so such a part stays as it is.
    intervals = audit(table, hidden, width, trust_earlier=True)
    rounds = 0
    while True:
        rounds += 1
        narrow = sorted(
            (k for k, iv in intervals.items() if iv.width < width - EPSILON),
            key=lambda k: order[k],
        )
        # At most one new cell per equation and round: two narrow cells of one
        # equation are often both served by the first one's partner.
        served: set[int] = set()
        added: set[Hashable] = set()
        for key in narrow:
            # First the cells of the equations that hold the bounds (the linear
            # programs' nonzero duals: the bound is a combination of them, so hiding
            # a cell elsewhere cannot widen it), then its own equations, then any
            # equation of its part of the system.
            pick: list[Hashable] = []
            for equations in (intervals[key].binding, by_key[key]):
                pick = pick or candidates(equations)
            if not pick:
                pick = candidates(around(key))
            if not pick:
                continue  # perhaps another cell's partner opens it; else unprotected
            through = set(by_key[pick[0]]) & set(by_key[key])
            if through & served:
                continue
            hidden.add(pick[0])
            added.add(pick[0])
            served.update(through)
        if not added:
            break
        # Hiding a cell only widens the others' intervals: cells wide enough stay so,
        # and only the narrow ones and the new ones are audited again.
        intervals |= audit(table, hidden, width, cells=[*narrow, *added])
    # A secondary cell that the rest of the table determines exactly protects nothing
    # and tells the reader nothing new: it is shown.
    given_away = {
        k for k in narrow if k not in first and k not in fixed and intervals[k].width < EPSILON
    }
    hidden -= given_away
    unprotected = set(narrow) - given_away
    own = hidden - set(fixed)
    return Protection(
        hidden=own,
        primary=first,
        secondary=own - first,
        unprotected=unprotected,
        intervals=intervals,
        rounds=rounds,
        earlier=hidden & set(fixed),
    )


# --- the linear programs ----------------------------------------------------------------


def _components(table: Table, hidden: set[Hashable]) -> list[tuple[list, list]]:
    """The system reduced to the hidden cells, split into independent parts.

    Returns ``(variables, rows)`` per part; a row is ``(coefficients, constant)``
    over hidden cells only, the shown values moved to the constant. Hidden cells in
    no equation form parts of their own with no rows.
    """
    parent: dict[Hashable, Hashable] = {k: k for k in hidden}

    def find(key: Hashable) -> Hashable:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    reduced = []
    for number, (coefficients, constant) in enumerate(table.equations):
        inside = {}
        for key, coefficient in coefficients.items():
            if key in hidden:
                inside[key] = coefficient
            else:
                constant -= coefficient * (table.values.get(key) or 0)
        if not inside:
            continue
        keys = list(inside)
        for other in keys[1:]:
            a, b = find(keys[0]), find(other)
            if a != b:
                parent[b] = a
        reduced.append((inside, constant, number))
    parts: dict[Hashable, tuple[list, list]] = {}
    # In the table's order, not the set's: string keys hash differently in every
    # process, and the order of the variables decides which optimal point HiGHS
    # returns, hence which cells are hidden secondarily.
    for key in (k for k in table.values if k in hidden):
        parts.setdefault(find(key), ([], []))[0].append(key)
    for row in reduced:
        parts[find(next(iter(row[0])))][1].append(row)
    return list(parts.values())


def _solve(table: Table, variables: list, rows: list, width: float | None, targets: list) -> dict:
    """Smallest and largest value of each target of one part (two LPs each)."""
    import numpy as np
    from scipy.sparse import csr_array

    if not rows:
        return {key: Interval(1.0, math.inf) for key in targets}
    index = {key: n for n, key in enumerate(variables)}
    data, cols, pointers, constants = [], [], [0], []
    for inside, constant, _ in rows:
        for key, coefficient in inside.items():
            cols.append(index[key])
            data.append(coefficient)
        pointers.append(len(cols))
        constants.append(constant)
    matrix = csr_array((data, cols, pointers), shape=(len(rows), len(variables)))
    program = _program(matrix, np.array(constants))
    # Feasible values seen so far, per variable (the true values are feasible).
    true = np.array([float(table.values[k]) for k in variables])
    seen_low, seen_high = true.copy(), true.copy()

    def saw(solution: Any) -> bool:
        nonlocal seen_low, seen_high
        if solution.status == 0:
            seen_low = np.minimum(seen_low, solution.x)
            seen_high = np.maximum(seen_high, solution.x)
        return solution.status == 0

    def lp(objective: Any, upper: Any = None) -> Any:
        return program.solve(objective, upper)

    def spread(n: int) -> tuple[int, int]:
        return math.ceil(seen_low[n] - EPSILON), math.floor(seen_high[n] + EPSILON)

    # One equation alone already caps a cell when its hidden cells all count alike
    # (cells of a line whose total is shown): each is at most the rest minus one per
    # other hidden cell. Where that cap is narrow, no program is needed to say so;
    # where a feasible point reaches it, it is the maximum.
    cap: dict[int, tuple[float, int]] = {}
    for inside, constant, number in rows:
        weights = set(inside.values())
        if len(weights) != 1:
            continue
        (weight,) = weights
        highest = constant / weight - (len(inside) - 1)
        for key in inside:
            n = index[key]
            if n not in cap or highest < cap[n][0]:
                cap[n] = (highest, number)

    def settled(n: int) -> bool:
        if width is not None:
            return spread(n)[1] - spread(n)[0] >= width
        return seen_low[n] <= 1 + EPSILON and n in cap and seen_high[n] >= cap[n][0] - EPSILON

    # Cheap points spread over many cells at once: the pending cells all as low as
    # possible, then all as high as possible below a cap; again while that settles
    # enough of them. Feasible points of a capped problem are feasible points of the
    # real one, so what they show is true.
    reach = width if width is not None else 3
    upper = np.array([cap[n][0] if n in cap else true[n] + reach for n in range(len(true))])
    upper = np.maximum(upper, true)
    pending = [index[k] for k in targets]
    for _ in range(SPREAD_ROUNDS):
        if len(pending) <= 2:
            break
        weights = np.zeros(len(variables))
        weights[pending] = 1.0
        saw(lp(weights))
        saw(lp(-weights, upper))
        left = [n for n in pending if not settled(n)]
        if len(pending) - len(left) < SPREAD_WORTH:
            break  # two more programs would settle fewer cells than they cost
        pending = left
    result = {}
    for key in targets:
        n = index[key]
        if width is not None and n in cap and math.floor(cap[n][0] + EPSILON) - 1 < width:
            highest, number = cap[n]
            result[key] = Interval(
                1.0, float(math.floor(highest + EPSILON)), False, frozenset({number})
            )
            continue
        low_seen, high_seen = spread(n)
        if width is not None and high_seen - low_seen >= width:
            result[key] = Interval(float(low_seen), float(high_seen), exact=False)
            continue
        if width is None and settled(n):
            result[key] = Interval(1.0, float(math.floor(cap[n][0] + EPSILON)))
            continue
        objective = np.zeros(len(variables))
        objective[n] = 1.0
        high = lp(-objective)
        if high.status not in (0, 3):
            raise RuntimeError(f"disclosure audit: no solution for {key!r} ({high.message})")
        saw(high)
        highest = math.inf if high.status == 3 else math.floor(-high.fun + EPSILON)
        if width is not None and highest - low_seen >= width:
            result[key] = Interval(float(low_seen), float(highest), exact=False)
            continue
        if width is not None and highest - 1 < width:
            # Too narrow whatever the minimum: what holds the maximum is what matters.
            result[key] = Interval(float(low_seen), float(highest), False, _binding(rows, high))
            continue
        if seen_low[n] <= 1 + EPSILON:
            # A feasible point already sits on the bound 1: that is the minimum.
            result[key] = Interval(1.0, float(highest), True, _binding(rows, high))
            continue
        low = lp(objective)
        if not saw(low):
            raise RuntimeError(f"disclosure audit: no solution for {key!r} ({low.message})")
        lowest = float(math.ceil(low.fun - EPSILON))
        binding = _binding(rows, high) | _binding(rows, low)
        result[key] = Interval(lowest, float(highest), True, binding)
    return result


def _binding(rows: list, solution: Any) -> frozenset[int]:
    """Indexes of the table's equations with a nonzero dual in an optimal solution."""
    import numpy as np

    if solution.status != 0:
        return frozenset()
    return frozenset(rows[r][2] for r in np.flatnonzero(np.abs(solution.marginals) > EPSILON))


@dataclass
class _Solution:
    """What the audit reads of a solved program (SciPy's status codes: 0 optimal,
    2 infeasible, 3 unbounded, 4 anything else)."""

    status: int
    message: str = ""
    x: Any = None
    fun: float = math.nan
    #: The duals of the equations.
    marginals: Any = None


def _program(matrix: Any, rhs: Any) -> Any:
    """The programs of one part: ``matrix @ x = rhs``, ``x ≥ 1``, objectives to come."""
    try:
        return _Highs(matrix, rhs)
    except ImportError:  # pragma: no cover (SciPy without its HiGHS bindings' module)
        return _Linprog(matrix, rhs)


class _Highs:
    """One HiGHS instance per part, solved again for every objective.

    Each of a part's programs differs from the last only in its objective (and the
    spread programs' upper bounds), so HiGHS starts from the last optimal basis
    instead of from scratch, and the model is handed over once, not per program
    (measured on the synthetic NRW-scale report, ``python -m bench.run case audit
    396 0``: 24.8 s CPU with a fresh ``scipy.optimize.linprog`` per program, 4.4 s
    so, with the same cells hidden).
    The bindings are SciPy's own (``scipy.optimize._highspy``, what ``linprog``
    calls; SciPy is pinned), else :class:`_Linprog` does the same, slower.
    """

    def __init__(self, matrix: Any, rhs: Any) -> None:
        import numpy as np
        from scipy.optimize._highspy import _core

        self._core = _core
        columns = matrix.tocsc()
        columns.sort_indices()
        size = columns.shape[1]
        self.size = size
        lp = _core.HighsLp()
        lp.num_col_ = size
        lp.num_row_ = columns.shape[0]
        lp.a_matrix_.num_col_ = size
        lp.a_matrix_.num_row_ = columns.shape[0]
        lp.a_matrix_.format_ = _core.MatrixFormat.kColwise
        lp.a_matrix_.start_ = columns.indptr.astype(np.int32)
        lp.a_matrix_.index_ = columns.indices.astype(np.int32)
        lp.a_matrix_.value_ = columns.data.astype(np.float64)
        lp.col_cost_ = np.zeros(size)
        lp.col_lower_ = np.ones(size)
        lp.col_upper_ = np.full(size, _core.kHighsInf)
        lp.row_lower_ = np.asarray(rhs, dtype=np.float64)
        lp.row_upper_ = np.asarray(rhs, dtype=np.float64)
        self.highs = _core._Highs()
        self.highs.setOptionValue("output_flag", False)
        if self.highs.passModel(lp) == _core.HighsStatus.kError:
            raise RuntimeError("disclosure audit: HiGHS refused a program")
        self.columns = np.arange(size, dtype=np.int32)
        self.ones = np.ones(size)
        self.limited = False

    def solve(self, objective: Any, upper: Any = None) -> _Solution:
        """Minimise ``objective @ x``, with ``x ≤ upper`` if given."""
        import numpy as np

        core, highs = self._core, self.highs
        if upper is not None or self.limited:
            limit = np.full(self.size, core.kHighsInf) if upper is None else upper
            highs.changeColsBounds(self.size, self.columns, self.ones, limit.astype(np.float64))
            self.limited = upper is not None
        highs.changeColsCost(self.size, self.columns, np.asarray(objective, dtype=np.float64))
        if highs.run() == core.HighsStatus.kError:
            return _Solution(4, "HiGHS failed")
        status = highs.getModelStatus()
        if status == core.HighsModelStatus.kOptimal:
            solution = highs.getSolution()
            return _Solution(
                0,
                x=np.array(solution.col_value),
                fun=highs.getObjectiveValue(),
                marginals=np.array(solution.row_dual),
            )
        unbounded = (core.HighsModelStatus.kUnbounded, core.HighsModelStatus.kUnboundedOrInfeasible)
        if status in unbounded:
            # The true values are feasible: "unbounded or infeasible" is unbounded.
            return _Solution(3, "unbounded")
        if status == core.HighsModelStatus.kInfeasible:
            return _Solution(2, "infeasible")
        return _Solution(4, highs.modelStatusToString(status))


class _Linprog:
    """The same programs through ``scipy.optimize.linprog``, each solved from scratch."""

    def __init__(self, matrix: Any, rhs: Any) -> None:
        self.matrix, self.rhs = matrix, rhs

    def solve(self, objective: Any, upper: Any = None) -> _Solution:
        import numpy as np
        from scipy.optimize import linprog

        ones = np.ones(self.matrix.shape[1])
        bounds = (1.0, None) if upper is None else list(zip(ones, upper, strict=True))
        found = linprog(objective, A_eq=self.matrix, b_eq=self.rhs, bounds=bounds, method="highs")
        if found.status != 0:
            return _Solution(found.status, found.message)
        return _Solution(0, x=found.x, fun=found.fun, marginals=found.eqlin.marginals)
