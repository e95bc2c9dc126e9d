"""Indicators (Kennzahlen) of the quarterly monitoring."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Numeric, String, Text
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
    active: Mapped[bool] = mapped_column(default=True)
    # Indexed: the list of figures sorts by it through an inner join.
    sort_order: Mapped[int] = mapped_column(default=0, index=True)

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"
