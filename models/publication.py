"""A calendar year's published state, stored when it is first published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import utcnow
from .user import User


class PublishedYear(db.Model):
    """The published workbook of one calendar year, as it was first published.

    The audit of the next year counts on exactly these values and hidden cells (the
    public saw them), see :mod:`kim_admin.report.publication`. Written once per
    year, threshold and width, never changed: later corrections of the year's
    figures do not rewrite what was published.

    Keys of cells are JSON lists (tuples of strings and numbers when read back);
    ``equations`` name cells by their position in ``cells``.
    """

    __tablename__ = "published_year"
    # Too large for a row snapshot in the trail: the store records a short event instead.
    __audit__ = False
    __table_args__ = (
        UniqueConstraint("year", "threshold", "width"),
        CheckConstraint("year BETWEEN 2000 AND 2100", name="year_range"),
        CheckConstraint("threshold >= 1", name="threshold_positive"),
        CheckConstraint("width >= 0", name="width_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int]
    #: Counts from 1 to ``threshold - 1`` were hidden ...
    threshold: Mapped[int]
    #: ... and every hidden cell's feasible interval was at least this wide.
    width: Mapped[int]
    #: The municipalities the publication covered (sorted ids).
    municipality_ids: Mapped[list[int]] = mapped_column(JSON)
    #: ``[key, value]`` of every published count, in the table's order.
    cells: Mapped[list[Any]] = mapped_column(JSON)
    #: ``[[[cell position, coefficient], ...], constant]`` per equation.
    equations: Mapped[list[Any]] = mapped_column(JSON)
    #: Keys of the totals (hidden secondarily only when nothing else would do).
    totals: Mapped[list[Any]] = mapped_column(JSON)
    #: Keys of the cells the publication hid.
    hidden: Mapped[list[Any]] = mapped_column(JSON)
    #: Keys of hidden cells its audit left narrower than the width (nothing left to hide).
    unprotected: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    created_by: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"Veröffentlichung {self.year} (Schwelle {self.threshold}, Breite {self.width})"
