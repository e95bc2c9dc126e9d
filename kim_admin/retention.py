"""Retention of the audit trail: ``flask audit purge``.

Login, logout, failed and throttled logins are personal data kept for
``KIM_AUDIT_LOGIN_DAYS`` (default 365) days. Everything else (data changes, exports,
workflow steps) is kept for at least ``KIM_AUDIT_CHANGE_YEARS`` (default 6) years and
purged only once older. The table refuses DELETE by trigger; the purge lifts that
trigger, deletes and recreates it (:mod:`kim_admin.audit_guard`) in one transaction,
so no other connection ever sees the table unguarded, and records itself in the trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, insert

from models import AuditEvent
from models._common import utcnow

from . import audit_guard
from .extensions import db

#: Actions that are about signing in, not about data.
LOGIN_ACTIONS = ("login", "logout", "login_failed", "login_throttled")


class RetentionError(Exception):
    """Settings that would purge too much; the message is German."""


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


def cutoffs(now: datetime | None = None) -> tuple[datetime, datetime]:
    """(login events before, other events before) which the purge deletes."""
    login_days = current_app.config["KIM_AUDIT_LOGIN_DAYS"]
    change_years = current_app.config["KIM_AUDIT_CHANGE_YEARS"]
    if login_days < 1 or change_years < 1:
        raise RetentionError(
            "KIM_AUDIT_LOGIN_DAYS und KIM_AUDIT_CHANGE_YEARS müssen mindestens 1 sein."
        )
    now = now or utcnow()
    return now - timedelta(days=login_days), _years_before(now, change_years)


def purge(now: datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns the numbers deleted per kind."""
    login_before, change_before = cutoffs(now)
    table = AuditEvent.__table__
    with db.engine.connect() as conn:
        dialect = conn.dialect.name
        with conn.begin():
            if dialect == "sqlite":
                # pysqlite opens a transaction only before DML: without this, the
                # DROP TRIGGER below would be committed on its own.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            guards = audit_guard.DELETE_GUARDS[
                "postgresql" if dialect == "postgresql" else "sqlite"
            ]
            for name in guards:
                conn.exec_driver_sql(audit_guard.drop_trigger(dialect, name))
            logins = conn.execute(
                delete(table).where(
                    table.c.action.in_(LOGIN_ACTIONS), table.c.created_at < login_before
                )
            ).rowcount
            changes = conn.execute(
                delete(table).where(
                    table.c.action.not_in(LOGIN_ACTIONS), table.c.created_at < change_before
                )
            ).rowcount
            for name in guards:
                conn.exec_driver_sql(audit_guard.create_trigger(dialect, name))
            counts = {"login_events": logins, "changes": changes}
            conn.execute(
                insert(table).values(
                    created_at=utcnow(),
                    user_email="Kommandozeile",
                    action="audit_purge",
                    object_type="audit_event",
                    new_values={
                        **counts,
                        "login_events_before": login_before.isoformat(timespec="seconds"),
                        "changes_before": change_before.isoformat(timespec="seconds"),
                    },
                )
            )
    return counts
