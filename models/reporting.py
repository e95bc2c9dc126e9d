"""The reporting cycle: periods, monitoring figures and submissions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    DDL,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db
from kim_admin.monitoring.status import CHOICES as SUBMISSION_STATUSES

from ._common import check_choice, utcnow
from .indicator import Indicator
from .municipality import Municipality
from .target_group import TargetGroup
from .user import User

__all__ = ["SUBMISSION_STATUSES", "VALUE_MAX", "MonitoringEntry", "ReportingPeriod", "Submission"]

#: The largest figure the ``Numeric(12, 2)`` value column holds on every backend.
VALUE_MAX = Decimal("9999999999.99")


def _has_target_group(context) -> bool:
    """Default of ``MonitoringEntry.by_target_group``: whether the row names a group."""
    return context.get_current_parameters().get("target_group_id") is not None


class ReportingPeriod(db.Model):
    """A quarter for which municipalities report, open or closed."""

    __tablename__ = "reporting_period"
    __table_args__ = (
        UniqueConstraint("year", "quarter"),
        CheckConstraint("quarter BETWEEN 1 AND 4", name="quarter_range"),
        CheckConstraint("year BETWEEN 2000 AND 2100", name="year_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int]
    quarter: Mapped[int]
    is_open: Mapped[bool] = mapped_column(default=False)
    deadline: Mapped[date | None]

    @property
    def starts_on(self) -> date:
        """First day of the quarter."""
        from kim_admin.monitoring.periods import bounds  # the package imports the models

        return bounds(self.year, self.quarter)[0]

    @property
    def ends_on(self) -> date:
        """Last day of the quarter."""
        from kim_admin.monitoring.periods import bounds

        return bounds(self.year, self.quarter)[1]

    def __str__(self) -> str:
        return f"Q{self.quarter}/{self.year}"


class MonitoringEntry(db.Model):
    """One reported figure: municipality × quarter × indicator (× target group)."""

    __tablename__ = "monitoring_entry"
    __table_args__ = (
        CheckConstraint("value IS NULL OR value >= 0", name="value_non_negative"),
        CheckConstraint(f"value IS NULL OR value <= {VALUE_MAX}", name="value_max"),
        # A figure of an indicator broken down by target group names a group, and a
        # figure of any other indicator names none: ``by_target_group`` mirrors the
        # group's presence, and the composite key ties it to the indicator's flag.
        CheckConstraint(
            "(by_target_group AND target_group_id IS NOT NULL) "
            "OR (NOT by_target_group AND target_group_id IS NULL)",
            name="target_group_matches",
        ),
        ForeignKeyConstraint(
            ["indicator_id", "by_target_group"],
            ["indicator.id", "indicator.by_target_group"],
            name="fk_monitoring_entry_indicator_breakdown",
            ondelete="RESTRICT",
        ),
        # One figure per cell. Plain UNIQUE treats NULLs as distinct, so an
        # entry without target group gets its own partial index.
        Index(
            "uq_monitoring_entry_cell",
            "municipality_id",
            "period_id",
            "indicator_id",
            "target_group_id",
            unique=True,
            sqlite_where=text("target_group_id IS NOT NULL"),
            postgresql_where=text("target_group_id IS NOT NULL"),
        ),
        Index(
            "uq_monitoring_entry_cell_total",
            "municipality_id",
            "period_id",
            "indicator_id",
            unique=True,
            sqlite_where=text("target_group_id IS NULL"),
            postgresql_where=text("target_group_id IS NULL"),
        ),
        # The list of figures at a million rows: each offered sort walks an index
        # (the primary key breaks ties), and a filter on a relation plus the
        # default sort reads one index range (migration 5ca1e1d3c0de).
        Index("ix_monitoring_entry_updated_at_id", "updated_at", "id"),
        Index("ix_monitoring_entry_value_id", "value", "id"),
        Index("ix_monitoring_entry_municipality_updated", "municipality_id", "updated_at", "id"),
        Index("ix_monitoring_entry_period_updated", "period_id", "updated_at", "id"),
        Index("ix_monitoring_entry_indicator_updated", "indicator_id", "updated_at", "id"),
        Index("ix_monitoring_entry_target_group_updated", "target_group_id", "updated_at", "id"),
        # The start page's charts sum recent quarters by indicator and town: an
        # index-only scan on PostgreSQL (the value is included).
        Index(
            "ix_monitoring_entry_chart",
            "period_id",
            "indicator_id",
            "municipality_id",
            postgresql_include=["value"],
        ),
        # The comment search (ILIKE '%…%'): a trigram index on PostgreSQL, a plain
        # one elsewhere (SQLite has no trigram index; it scans either way).
        Index(
            "ix_monitoring_entry_comment_trgm",
            "comment",
            postgresql_using="gin",
            postgresql_ops={"comment": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # ``active_history``: the value before a change is loaded even when the row was
    # expired, so the running totals (kim_admin.monitoring.totals) know what it was.
    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True, active_history=True
    )
    period_id: Mapped[int] = mapped_column(
        ForeignKey("reporting_period.id", ondelete="RESTRICT"), index=True, active_history=True
    )
    # References the indicator through the composite key below, together with
    # ``by_target_group`` (one foreign key, so that joins need no ``onclause``).
    indicator_id: Mapped[int] = mapped_column(index=True, active_history=True)
    target_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_group.id", ondelete="RESTRICT")
    )
    by_target_group: Mapped[bool] = mapped_column(default=_has_target_group)
    # Empty while a draft leaves a gap; a comment must then explain it.
    value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), active_history=True)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # Optimistic locking: SQLAlchemy bumps it on every UPDATE and refuses stale ones.
    version: Mapped[int] = mapped_column(default=1)

    municipality: Mapped[Municipality] = relationship()
    period: Mapped[ReportingPeriod] = relationship()
    indicator: Mapped[Indicator] = relationship(
        primaryjoin="MonitoringEntry.indicator_id == Indicator.id",
        foreign_keys=[indicator_id],
    )
    target_group: Mapped[TargetGroup | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    updated_by: Mapped[User | None] = relationship(foreign_keys=[updated_by_id])

    __mapper_args__ = {"version_id_col": version}

    def __str__(self) -> str:
        group = f" / {self.target_group.name}" if self.target_group else ""
        return f"{self.municipality} {self.period} {self.indicator.code}{group}"


# The trigram index needs its extension wherever the schema is made without the
# migrations (tests, ``db.create_all``); the migration creates it too.
event.listen(
    MonitoringEntry.__table__,
    "before_create",
    DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"),
)


class Submission(db.Model):
    """The state of one municipality's report for one quarter."""

    __tablename__ = "submission"
    __table_args__ = (
        UniqueConstraint("municipality_id", "period_id"),
        check_choice("status", SUBMISSION_STATUSES),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    period_id: Mapped[int] = mapped_column(
        ForeignKey("reporting_period.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # The first submission decides "on time"; a resubmission after a return keeps it.
    first_submitted_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    return_reason: Mapped[str | None] = mapped_column(Text)
    # Set by the district (an exception, or the new due date of a late return): the
    # municipality may change its figures until this day although the quarter is
    # closed or its deadline has passed.
    exception_until: Mapped[date | None]

    municipality: Mapped[Municipality] = relationship()
    period: Mapped[ReportingPeriod] = relationship()
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])

    def __str__(self) -> str:
        return f"{self.municipality} {self.period}"


class FigureTotal(db.Model):
    """The sum of a municipality's figures of one indicator in one quarter.

    Kept by :mod:`kim_admin.monitoring.totals` on every change of a figure (one
    upsert per changed cell, in the same transaction), so that the start page's
    charts and case figures read a few rows per town and quarter instead of every
    figure of the last eight quarters. ``value_count`` counts the figures with a
    value: with none, the sum is empty (None), as ``SUM`` over empty values is.
    """

    __tablename__ = "figure_total"
    #: Derived data: the figures themselves are audited.
    __audit__ = False
    __table_args__ = (
        # The charts: recent quarters, summed by indicator and town (index-only on
        # PostgreSQL, the sums included).
        Index(
            "ix_figure_total_chart",
            "period_id",
            "indicator_id",
            "municipality_id",
            postgresql_include=["value_sum", "value_count"],
        ),
    )

    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="CASCADE"), primary_key=True
    )
    period_id: Mapped[int] = mapped_column(
        ForeignKey("reporting_period.id", ondelete="CASCADE"), primary_key=True
    )
    indicator_id: Mapped[int] = mapped_column(
        ForeignKey("indicator.id", ondelete="CASCADE"), primary_key=True
    )
    value_sum: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=0)
    value_count: Mapped[int] = mapped_column(default=0)
