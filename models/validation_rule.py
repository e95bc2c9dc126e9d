"""Plausibility rules over the monitoring figures, maintained by the district."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from kim_admin.extensions import db

from ._common import check_choice

RULE_OPERATORS = [
    ("<=", "≤ (höchstens)"),
    ("<", "< (kleiner als)"),
    ("=", "= (gleich)"),
    (">=", "≥ (mindestens)"),
    (">", "> (größer als)"),
    ("!=", "≠ (ungleich)"),
]
RULE_SEVERITIES = [
    ("blocking", "blockierend (Meldung nicht möglich)"),
    ("warning", "Warnung (muss bestätigt werden)"),
]


class ValidationRule(db.Model):
    """``left operator right``, e.g. ``CM_ABG <= prev(CM_AKT) + CM_NEU``.

    Both sides are expressions over indicator codes of the same municipality and
    quarter; ``prev(CODE)`` is the previous quarter's value. Where every code is
    broken down by target group, the rule is checked per target group.
    """

    __tablename__ = "validation_rule"
    __table_args__ = (
        check_choice("operator", RULE_OPERATORS),
        check_choice("severity", RULE_SEVERITIES),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    left_side: Mapped[str] = mapped_column(String(500))
    operator: Mapped[str] = mapped_column(String(2))
    right_side: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(10), default="blocking")
    message: Mapped[str] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(default=True)

    def __str__(self) -> str:
        return self.name
