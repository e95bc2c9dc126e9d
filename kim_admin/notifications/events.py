"""The kinds of notification and delivery states: codes, German text, opt-out.

Templates, the outbox and the views ask this module; nobody else compares the
codes.
"""

from __future__ import annotations

from dataclasses import dataclass

OPENED = "opened"
REMINDER = "reminder"
OVERDUE = "overdue"
SUBMITTED = "submitted"
RETURNED = "returned"
APPROVED = "approved"
UNAPPROVED = "unapproved"
EXCEPTION = "exception"

#: Which switch of :class:`models.NotificationPreference` silences a kind.
DEADLINE_REMINDERS = "deadline_reminders"
STATUS_UPDATES = "status_updates"


@dataclass(frozen=True)
class Kind:
    """One kind of notification as users see it."""

    code: str
    label: str  # in the failures list
    subject: str  # format string: {town}, {period}
    #: The preference that switches it off; None: a must-know mail, always sent.
    switch: str | None


KIND_LIST = (
    Kind(OPENED, "Quartal geöffnet", "Meldezeitraum {period} ist geöffnet", DEADLINE_REMINDERS),
    Kind(
        REMINDER,
        "Erinnerung an die Frist",
        "Erinnerung: Meldung {period} für {town} bis {due}",
        DEADLINE_REMINDERS,
    ),
    Kind(
        OVERDUE,
        "Frist überschritten",
        "Meldefrist {period} für {town} überschritten",
        DEADLINE_REMINDERS,
    ),
    Kind(SUBMITTED, "Meldung eingereicht", "{town} hat {period} eingereicht", STATUS_UPDATES),
    Kind(RETURNED, "Meldung zurückgegeben", "Meldung {period} für {town} zurückgegeben", None),
    Kind(
        APPROVED, "Meldung freigegeben", "Meldung {period} für {town} freigegeben", STATUS_UPDATES
    ),
    Kind(
        UNAPPROVED,
        "Freigabe aufgehoben",
        "Freigabe der Meldung {period} für {town} aufgehoben",
        None,
    ),
    Kind(
        EXCEPTION,
        "Ausnahme gewährt",
        "Meldung {period} für {town}: Bearbeitung bis {due} möglich",
        None,
    ),
)
KINDS_BY_CODE = {k.code: k for k in KIND_LIST}
#: (code, label) pairs for the model's check constraint and the list's filter.
KINDS = [(k.code, k.label) for k in KIND_LIST]

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"

#: (code, German label) of the delivery states.
STATES = [
    (PENDING, "wartet"),
    (SENDING, "wird gesendet"),
    (SENT, "gesendet"),
    (SKIPPED, "entfällt"),
    (FAILED, "fehlgeschlagen"),
]


def kind(code: str) -> Kind:
    """The kind of ``code``."""
    return KINDS_BY_CODE[code]


def state_label(code: str) -> str:
    """German label of a delivery state."""
    return dict(STATES).get(code, code)
