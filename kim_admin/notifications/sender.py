"""Delivery of the outbox: claim a row, send it, mark it; retry with backoff.

Delivery is *at least once*, with at most one duplicate per crash. Each row is
claimed on its own (``pending`` → ``sending``, committed) before its mail goes
out, and marked ``sent`` (committed) right after. A crash between the two
leaves exactly that one row ``sending``; once it is older than
``KIM_NOTIFY_CLAIM_MINUTES`` the next run sends it again. Rows claimed but not
yet sent cannot exist, so no other mail is repeated. We chose this over
at-most-once because a lost return notice (the municipality missing its new
due date) costs more than a reminder read twice. The claim is a conditional
UPDATE, so two runs at the same time never send the same row twice either.

A failure (server down, timeout, temporary refusal) puts the row back with the
next attempt ``KIM_NOTIFY_RETRY_MINUTES × 2^(attempts-1)`` later (at most a
day); after ``KIM_NOTIFY_MAX_ATTEMPTS`` attempts, or at once on a permanent
refusal (5xx), it is ``failed``. The district sees every error under
Verwaltung → Benachrichtigungen. When the server cannot be reached the run
stops, and every other due row counts the same failed attempt.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import select, update

from kim_admin.extensions import db
from models import Notification, NotificationPreference
from models._common import utcnow

from . import events, mail, outbox

log = logging.getLogger(__name__)

#: The longest wait between two attempts.
MAX_BACKOFF = timedelta(days=1)


@dataclass
class Result:
    """What one run did, for the command's output."""

    sent: int = 0
    skipped: int = 0
    retry: int = 0
    failed: int = 0
    released: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, again: bool, error: str | None = None) -> None:
        """Count a failed attempt: to be retried, or given up."""
        if again:
            self.retry += 1
        else:
            self.failed += 1
        if error:
            self.errors.append(error)


def wants(row: Notification) -> bool:
    """Whether the recipient still wants a mail of this kind (must-know ones: always)."""
    switch = events.kind(row.kind).switch
    if switch is None:
        return True
    preference = db.session.get(NotificationPreference, row.user_id)
    return preference is None or bool(getattr(preference, switch))


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    minutes = float(current_app.config["KIM_NOTIFY_RETRY_MINUTES"])
    return min(timedelta(minutes=minutes * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def release_stale(now: datetime) -> int:
    """Rows left ``sending`` by a crashed run go back to the queue (at least once)."""
    limit = now - timedelta(minutes=float(current_app.config["KIM_NOTIFY_CLAIM_MINUTES"]))
    result = db.session.execute(
        update(Notification)
        .where(Notification.state == events.SENDING, Notification.claimed_at < limit)
        .values(state=events.PENDING, next_attempt_at=now)
    )
    db.session.commit()
    return result.rowcount


def claim(row_id: int, now: datetime) -> bool:
    """Take row ``row_id`` for this run; False if another run was faster."""
    result = db.session.execute(
        update(Notification)
        .where(Notification.id == row_id, Notification.state == events.PENDING)
        .values(state=events.SENDING, claimed_at=now, attempts=Notification.attempts + 1)
    )
    db.session.commit()
    return result.rowcount == 1


def _failed(row: Notification, exc: Exception, now: datetime, permanent: bool) -> bool:
    """Record a failed attempt; True if the row will be tried again."""
    error = str(exc) if isinstance(exc, mail.ServerUnavailable) else f"{type(exc).__name__}: {exc}"
    again = _schedule_retry(row, error, now, permanent)
    db.session.commit()
    return again


def postpone_due(error: str, now: datetime, tried: int) -> list[bool]:
    """The server is unreachable: every due row but ``tried`` counts an attempt with ``error``.

    So the page shows every mail the outage holds back, and they retry (and
    finally fail) together instead of one after the other. Returns, per row,
    whether it will be tried again.
    """
    due = db.session.scalars(
        select(Notification)
        .where(
            Notification.state == events.PENDING,
            Notification.next_attempt_at <= now,
            Notification.id != tried,
        )
        .with_for_update(skip_locked=True)
    ).all()
    again = []
    for row in due:
        row.attempts += 1
        again.append(_schedule_retry(row, error, now, permanent=False))
    db.session.commit()
    return again


def _schedule_retry(row: Notification, error: str, now: datetime, permanent: bool) -> bool:
    """Note a failed attempt on ``row`` (not committed); True if it will be tried again."""
    row.last_error = error[:500]
    if permanent or row.attempts >= int(current_app.config["KIM_NOTIFY_MAX_ATTEMPTS"]):
        row.state = events.FAILED
        return False
    row.state = events.PENDING
    row.next_attempt_at = now + backoff(row.attempts)
    return True


def send(smtp: smtplib.SMTP | None, message: EmailMessage) -> smtplib.SMTP:
    """Send ``message`` on ``smtp`` (connecting first if None); returns the connection.

    A server that closed a connection kept open between mails (a limit of mails per
    connection, an idle timeout) gets one fresh connection before it counts as down.
    """
    if smtp is None:
        smtp = mail.connect()
        smtp.send_message(message)
        return smtp
    try:
        smtp.send_message(message)
    except smtplib.SMTPServerDisconnected:
        smtp.close()
        smtp = mail.connect()
        smtp.send_message(message)
    return smtp


def deliver(now: datetime | None = None) -> Result:
    """Send every due row of the outbox once, oldest first; commits per row."""
    mail.check_settings()
    now = now or utcnow()
    result = Result(released=release_stale(now))
    smtp: smtplib.SMTP | None = None
    last_id = 0
    try:
        while True:
            row_id = db.session.scalar(
                select(Notification.id)
                .where(
                    Notification.state == events.PENDING,
                    Notification.next_attempt_at <= now,
                    Notification.id > last_id,
                )
                .order_by(Notification.id)
                .limit(1)
            )
            if row_id is None:
                break
            last_id = row_id
            if not claim(row_id, now):
                continue
            row = db.session.get(Notification, row_id, populate_existing=True)
            if not (outbox.still_addressed(row) and wants(row)):
                row.state = events.SKIPPED
                db.session.commit()
                result.skipped += 1
                continue
            try:
                message = mail.build(row)
            except Exception as exc:  # a broken template: no retry would mend it
                log.exception("Could not build notification %s", row.id)
                result.count(_failed(row, exc, now, permanent=True), row.last_error)
                continue
            try:
                smtp = send(smtp, message)
            except (mail.ServerUnavailable, smtplib.SMTPServerDisconnected, OSError) as exc:
                # Unreachable, refused TLS or login, timed out: the rest waits for the next run.
                result.count(_failed(row, exc, now, permanent=False), row.last_error)
                log.warning("Mail server unavailable, stopping this run: %s", exc)
                if smtp is not None:
                    smtp.close()
                    smtp = None
                for again in postpone_due(row.last_error or "", now, row.id):
                    result.count(again)
                break
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                result.count(
                    _failed(row, exc, now, permanent=all(c >= 500 for c in codes)), row.last_error
                )
            except smtplib.SMTPResponseException as exc:
                # 5xx: the server refuses for good (unknown recipient, policy).
                result.count(_failed(row, exc, now, permanent=exc.smtp_code >= 500), row.last_error)
            except smtplib.SMTPException as exc:
                # Anything else the protocol raises: this mail is tried again later.
                result.count(_failed(row, exc, now, permanent=False), row.last_error)
            else:
                row.state = events.SENT
                row.sent_at = utcnow()
                row.last_error = None
                db.session.commit()
                result.sent += 1
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
    return result
