"""Target groups (Zielgruppen) of the integration work."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kim_admin.extensions import db

from ._common import check_choice

LEGAL_AREAS = [
    ("SGB II", "SGB II"),
    ("SGB III", "SGB III"),
    ("SGB VIII", "SGB VIII"),
    ("SGB XII", "SGB XII"),
    ("AsylbLG", "AsylbLG"),
    ("AufenthG/StAG", "AufenthG/StAG"),
]


class TargetGroup(db.Model):
    """A group of people the KIM work is aimed at, e.g. young adults 18-27."""

    __tablename__ = "target_group"
    __table_args__ = (check_choice("legal_area", LEGAL_AREAS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    # Main legal area (Rechtskreis); optional because some groups span several.
    legal_area: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)

    def __str__(self) -> str:
        return self.name
