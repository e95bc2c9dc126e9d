"""Indicators (Kennzahlen) of the quarterly monitoring."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Index, Numeric, String, Text, and_, or_
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from kim_admin.extensions import db

from ._common import check_choice

INDICATOR_KINDS = [
    ("flow", "Bewegungsgröße (Summe je Quartal)"),
    ("stock", "Bestandsgröße (Stand Quartalsende)"),
]
FIELDS_OF_ACTION = [
    ("1", "1 – Bedarfserhebung"),
    ("2", "2 – Stellen"),
    ("3", "3 – Strategische Steuerung"),
    ("4", "4 – Steuerungsgruppe"),
]

# A quarter as one sortable number, year * 10 + quarter (Q3/2025 → 20253), the same
# key as kim_admin.monitoring.periods.key; bounded like the reporting periods' years.
QUARTER_KEY_MIN = 20001
QUARTER_KEY_MAX = 21004


def quarter_key(day: date) -> int:
    """The quarter key of the quarter ``day`` falls in."""
    return day.year * 10 + (day.month - 1) // 3 + 1


def _quarter_key_check(column: str) -> CheckConstraint:
    return CheckConstraint(
        f"{column} IS NULL OR ({column} BETWEEN {QUARTER_KEY_MIN} AND {QUARTER_KEY_MAX}"
        f" AND {column} % 10 BETWEEN 1 AND 4)",
        name=f"{column}_quarter",
    )


class Indicator(db.Model):
    """A figure each municipality reports per quarter.

    *flow* indicators are counted per quarter and summed over a year; *stock*
    indicators are the state at quarter end and a year takes the last quarter.
    """

    __tablename__ = "indicator"
    __table_args__ = (
        check_choice("kind", INDICATOR_KINDS),
        check_choice("field_of_action", FIELDS_OF_ACTION),
        CheckConstraint("decimal_places BETWEEN 0 AND 2", name="decimal_places_range"),
        CheckConstraint(
            "min_value IS NULL OR max_value IS NULL OR min_value <= max_value",
            name="range_ordered",
        ),
        # Target of the figures' composite key (indicator, broken down or not): a
        # figure's target group must match its indicator's breakdown.
        Index("uq_indicator_id_by_target_group", "id", "by_target_group", unique=True),
        _quarter_key_check("valid_from"),
        _quarter_key_check("valid_to"),
        CheckConstraint(
            "valid_from IS NULL OR valid_to IS NULL OR valid_from <= valid_to",
            name="validity_ordered",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(String(40), default="Anzahl")
    field_of_action: Mapped[str] = mapped_column(String(1), default="3")
    kind: Mapped[str] = mapped_column(String(10), default="flow")
    by_target_group: Mapped[bool] = mapped_column(default=False)
    # 0 for counts; FTE figures need 2.
    decimal_places: Mapped[int] = mapped_column(default=0)
    min_value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    max_value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    # The quarters the indicator is reported in (quarter keys, both inclusive; none =
    # open-ended). Ending an indicator sets valid_to, so the quarters before keep it
    # in their entry forms, templates and reports (kim_admin.monitoring.indicators).
    valid_from: Mapped[int | None]
    valid_to: Mapped[int | None]
    # Indexed: the list of figures sorts by it through an inner join.
    sort_order: Mapped[int] = mapped_column(default=0, index=True)

    def valid_in(self, first: int, last: int | None = None) -> bool:
        """Whether the indicator is reported in any quarter from ``first`` to ``last``."""
        last = first if last is None else last
        return (self.valid_from is None or self.valid_from <= last) and (
            self.valid_to is None or self.valid_to >= first
        )

    @hybrid_property
    def active(self) -> bool:  # type: ignore[override]
        """Reported in the current quarter (derived from the validity, never stored)."""
        return self.valid_in(quarter_key(date.today()))

    @active.inplace.expression
    @classmethod
    def _active_expression(cls) -> Any:
        key = quarter_key(date.today())
        return and_(
            or_(cls.valid_from.is_(None), cls.valid_from <= key),
            or_(cls.valid_to.is_(None), cls.valid_to >= key),
        )

    @active.inplace.setter
    def _active_setter(self, value: bool) -> None:
        """``active=False`` ends the indicator with the last quarter before today;
        ``active=True`` makes it open-ended again (for seeds and older callers)."""
        if value:
            self.valid_to = None
        else:
            now = quarter_key(date.today())
            before = now - 1 if now % 10 > 1 else now - 7  # Q1 → Q4 of the year before
            if self.valid_from is not None and self.valid_from > before:
                raise ValueError("Die Kennzahl beginnt erst später; bitte „Gültig ab“ ändern.")
            self.valid_to = before

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"
