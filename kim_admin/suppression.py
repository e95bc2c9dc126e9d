"""Small-number suppression for published figures (statistical confidentiality).

Counts from 1 to ``threshold - 1`` (default: 1 and 2, as in the Bundesagentur für
Arbeit's statistics) are shown as ".". That alone is not enough when totals are
published too: a row whose total is shown and in which a single value is hidden
gives that value away by subtraction. So every published equation ("these cells
add up to that total", a *line*) must hide either none or at least two of its
cells; where a line hides exactly one, the smallest other value is hidden as well
(*secondary suppression*), and this repeats until every line holds.

Cells are identified by any hashable key; a value that appears in several places
of a workbook (a municipality's total in two sheets) has one key, so it is hidden
everywhere or nowhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

#: How a hidden value is shown (as in the Bundesagentur für Arbeit's tables).
SUPPRESSED = "."


def primary(value: float | None, threshold: int) -> bool:
    """Whether a count is too small to publish (0 and empty cells are shown)."""
    return value is not None and 0 < value < threshold


def protect(
    values: Mapping[Hashable, float | None],
    lines: Iterable[Sequence[Hashable]],
    threshold: int,
    totals: Iterable[Hashable] = (),
) -> set[Hashable]:
    """Keys of the cells to hide: the small counts and enough others to protect them.

    ``values`` holds every published count; ``lines`` lists the equations a
    reader can solve (cells and their total, in one sequence each). A total is
    hidden as a secondary cell only when its line offers nothing else; among the
    others the smallest positive value goes first, since it loses the least.
    """
    lines = [list(line) for line in lines]
    totals = set(totals)
    hidden = {key for key, value in values.items() if primary(value, threshold)}
    changed = True
    while changed:
        changed = False
        for line in lines:
            inside = [key for key in line if key in hidden]
            if len(inside) != 1:
                continue
            candidates = [key for key in line if key not in hidden and values.get(key) is not None]
            if not candidates:
                continue
            pick = min(
                candidates,
                key=lambda key: (key in totals, values[key] == 0, values[key]),
            )
            hidden.add(pick)
            changed = True
    return hidden
