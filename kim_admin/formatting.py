"""German display formats: dates as 31.12.2025, decimals with a comma."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.numbers import NumberPattern, parse_pattern
from flask import Flask, current_app, has_app_context
from flask_babel import format_datetime

from .monitoring import status
from .permissions import role_label


def de_date(value: date | None) -> str:
    """``31.12.2025``."""
    return value.strftime("%d.%m.%Y") if value else ""


def de_datetime(value: datetime | None) -> str:
    """``31.12.2025 14:05`` in the Kreis' time zone (values are stored in UTC)."""
    return format_datetime(value, "dd.MM.yyyy HH:mm") if value else ""


def time_zone() -> ZoneInfo:
    """The Kreis' time zone (``BABEL_DEFAULT_TIMEZONE``, Europe/Berlin)."""
    name = current_app.config.get("BABEL_DEFAULT_TIMEZONE") if has_app_context() else None
    return _zone(name or "Europe/Berlin")


@lru_cache(maxsize=4)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(value: datetime) -> datetime:
    """A stored time (naive values are UTC) in the Kreis' time zone."""
    return value.replace(tzinfo=value.tzinfo or UTC).astimezone(time_zone())


@lru_cache(maxsize=1)
def _german() -> Locale:
    return Locale.parse("de_DE")


@lru_cache(maxsize=8)
def _number_pattern(places: int | None) -> NumberPattern:
    """The parsed pattern for ``places`` decimals (None: the locale's own)."""
    if places is None:
        return _german().decimal_formats[None]
    return parse_pattern("#,##0" + ("." + "0" * places if places else ""))


def de_number(value: int | float | Decimal | None, places: int | None = None) -> str:
    """``1.234,5``: German separators; ``places`` fixes the number of decimals.

    Locale and pattern are parsed once: ``babel.numbers.format_decimal`` parses
    both on every call, which a page of thousands of figures pays thousands of times.
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return _number_pattern(places).apply(value, _german())
    # The same digits as Babel's pattern (a float read as its shortest decimal, halves
    # rounded to even), formatted by Python and given German separators: Babel's
    # ``apply`` takes about 50 µs a number, which a start page of 2,000 numbers feels.
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return _number_pattern(places).apply(value, _german())
    if places is None:  # the locale's own "#,##0.###": up to three decimals
        text = f"{number.quantize(_THOUSANDTH, ROUND_HALF_EVEN):,f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    else:
        text = f"{number.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):,f}"
    return text.translate(_GERMAN_SEPARATORS)


_THOUSANDTH = Decimal("0.001")
_GERMAN_SEPARATORS = str.maketrans({",": ".", ".": ","})


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+$")


def parse_decimal(text: str) -> Decimal | None:
    """Read a number as people type it here: ``2,5``, ``1.234,5``, ``1.234`` or ``2.5``.

    A comma is the decimal mark (dots are then thousands separators); without a
    comma, dots in groups of three are thousands separators, otherwise a dot is
    the decimal mark. Empty input is None; anything else raises ValueError.
    """
    raw = text.strip().replace(" ", "").replace("\u202f", "").replace("\xa0", "")
    if raw == "":
        return None
    if "," in raw:
        raw = raw.replace(".", "").replace(",", ".")
    elif _THOUSANDS.match(raw):
        raw = raw.replace(".", "")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(raw) from exc
    if not value.is_finite():
        raise ValueError(raw)
    return value


def init_app(app: Flask) -> None:
    """Register the filters for templates."""
    app.add_template_filter(de_date, "de_date")
    app.add_template_filter(de_datetime, "de_datetime")
    app.add_template_filter(de_number, "de_number")
    app.add_template_global(role_label, "kim_role_label")
    app.add_template_global(status.get, "kim_status")
