"""Helpers shared by the model modules: timestamps and coded choices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, MetaData, Table

Choices = Sequence[tuple[str, str]]


def utcnow() -> datetime:
    """Return the current time in UTC (naive, as stored in the database)."""
    return datetime.now(UTC).replace(tzinfo=None)


def check_choice(column: str, choices: Choices, name: str | None = None) -> CheckConstraint:
    """A CHECK constraint that keeps ``column`` to the codes of ``choices``."""
    codes = ", ".join(f"'{code}'" for code, _label in choices)
    return CheckConstraint(f"{column} IN ({codes})", name=name or f"{column}_valid")


def link_table(metadata: MetaData, left: str, right: str) -> Table:
    """A many-to-many table ``<left>_<right>`` whose rows go with either side."""
    return Table(
        f"{left}_{right}",
        metadata,
        Column(f"{left}_id", ForeignKey(f"{left}.id", ondelete="CASCADE"), primary_key=True),
        Column(
            f"{right}_id",
            ForeignKey(f"{right}.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        ),
    )
