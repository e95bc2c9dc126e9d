"""Submission statuses: codes, German labels and badge colours (the only place).

Templates and views ask this module (``label``, ``badge``, the sets below);
they never compare status literals themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

DRAFT = "draft"
SUBMITTED = "submitted"
APPROVED = "approved"
RETURNED = "returned"
#: No submission row: nothing entered yet.
MISSING = None


@dataclass(frozen=True)
class Status:
    """One status as users see it."""

    code: str | None
    label: str
    badge: str  # Bootstrap colour of its badge

    @property
    def css(self) -> str:
        """A class name for tables: ``status-draft``, ``status-missing``."""
        return f"status-{self.code or 'missing'}"


STATUSES: dict[str | None, Status] = {
    s.code: s
    for s in (
        Status(MISSING, "fehlt", "light"),
        Status(DRAFT, "Entwurf", "secondary"),
        Status(SUBMITTED, "eingereicht", "primary"),
        Status(APPROVED, "freigegeben", "success"),
        Status(RETURNED, "zurückgegeben", "warning"),
    )
}

#: (code, label) pairs of stored statuses, for the model's check constraint and filters.
CHOICES = [(code, s.label) for code, s in STATUSES.items() if code is not None]
#: A municipality may still change its figures in these statuses.
EDITABLE = frozenset({MISSING, DRAFT, RETURNED})
#: The report has arrived (it counts for the reporting rate).
RECEIVED = frozenset({SUBMITTED, APPROVED})


def get(code: str | None) -> Status:
    """The status of ``code`` (unknown codes are shown as they are)."""
    return STATUSES.get(code) or Status(code, code or "", "light")


def label(code: str | None) -> str:
    """German label: ``eingereicht``."""
    return get(code).label


def badge(code: str | None) -> str:
    """Bootstrap colour of the badge: ``success`` for approved."""
    return get(code).badge
