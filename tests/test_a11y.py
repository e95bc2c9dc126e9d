"""Accessibility: axe-core finds no WCAG 2.1 A/AA violation on any page, for any role.

The pages and their states (opened filters and pickers, failed saves, error pages) come
from ``tests/crawl.py``, which walks the app's URL map, so new pages are checked
without being listed here. axe-core is the npm package in ``tests/axe``
(``npm ci --prefix tests/axe``), injected into each page by Playwright.
"""

from __future__ import annotations

import pytest

from . import crawl

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def walked(database, reference_image, tmp_path_factory) -> dict[str, list[crawl.State]]:
    return crawl.walk(database, reference_image, tmp_path_factory)


@pytest.mark.parametrize("role", list(crawl.ROLES))
def test_no_axe_violations(walked: dict[str, list[crawl.State]], role: str) -> None:
    """Every state of every page this role reaches passes axe (wcag2a/aa, wcag21a/aa)."""
    states = walked[role]
    assert states, f"no page visited for {role}"
    problems = [line for state in states for line in state.describe_violations()]
    assert problems == [], "\n".join(problems)
