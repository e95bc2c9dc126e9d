"""German number formatting: the fast path gives exactly Babel's digits."""

from __future__ import annotations

import random
from decimal import Decimal

from babel import Locale
from babel.numbers import parse_pattern

from kim_admin.formatting import de_number


def babel(value, places):
    locale = Locale.parse("de_DE")
    pattern = (
        locale.decimal_formats[None]
        if places is None
        else parse_pattern("#,##0" + ("." + "0" * places if places else ""))
    )
    return pattern.apply(value, locale)


def test_de_number_matches_babel_digit_for_digit():
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    values = [0, 1, -1, 1234567, -0.0, 0.0005, -0.0005, 2.675, 1.005, 0.125, -2.5, 1e15]
    values += [Decimal("-0.001"), Decimal("12.50"), Decimal("-1234.565"), Decimal("0.0000")]
    for _ in range(3000):
        values.append(rng.randint(-(10**9), 10**9))
        values.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)))
        values.append(Decimal(rng.randint(-(10**9), 10**9)).scaleb(-rng.randint(0, 5)))
    for value in values:
        for places in (None, 0, 1, 2, 3):
            assert de_number(value, places) == babel(value, places), (value, places)


def test_de_number_examples():
    assert de_number(Decimal("1234.5"), 2) == "1.234,50"
    assert de_number(1234.5) == "1.234,5"
    assert de_number(2.675, 2) == "2,68"  # halves to even on the decimal shown
    assert de_number(None) == ""
