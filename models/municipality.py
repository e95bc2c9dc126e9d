"""Municipalities (Kommunen) of the district."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from kim_admin.extensions import db


class Municipality(db.Model):
    """A town of the Kreis, identified by its official municipality key (AGS)."""

    __tablename__ = "municipality"
    __table_args__ = (
        CheckConstraint("length(ags) = 8", name="ags_length"),
        CheckConstraint("population >= 0", name="population_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    ags: Mapped[str] = mapped_column(String(8), unique=True)
    population: Mapped[int] = mapped_column(default=0)
    kim_participant: Mapped[bool] = mapped_column(default=False)

    def __str__(self) -> str:
        return self.name
