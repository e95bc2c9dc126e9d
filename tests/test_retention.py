"""Audit retention: `flask audit purge` keeps what it must, and the append-only
triggers are back afterwards, exactly as the migration created them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from kim_admin import audit_guard, retention
from kim_admin.extensions import db
from models import AuditEvent

from .support import make_app

NOW = datetime(2026, 11, 25, 12, 0)
LOGIN_KINDS = ["login", "logout", "login_failed", "login_throttled"]
CHANGE_KINDS = ["create", "update", "delete", "export", "submit", "password_change_failed"]
# age in days -> (login events kept?, other events kept?) with the defaults (365 days, 6 years)
AGES = {
    1: (True, True),
    364: (True, True),
    366: (False, True),
    3 * 365: (False, True),
    6 * 365 - 1: (False, True),
    6 * 365 + 2: (False, False),
}


@pytest.fixture
def migrated(db_url: str) -> Iterator[Flask]:
    """An empty database built by the migrations (so with their triggers)."""
    app = make_app(db_url)
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _triggers(conn) -> dict[str, str]:
    """Name -> definition of the triggers on audit_event, as the database reports them."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE tgrelid = 'audit_event'::regclass AND NOT tgisinternal"
            )
        )
    else:
        rows = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'audit_event'"
            )
        )
    return dict(rows.all())


def _add_events() -> None:
    rows = [
        {
            "created_at": NOW - timedelta(days=age),
            "action": action,
            "object_type": "user",
            "object_id": f"{action}:{age}",
            "user_email": "kreis@test.example",
        }
        for age in AGES
        for action in LOGIN_KINDS + CHANGE_KINDS
    ]
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEvent.__table__), rows)


def _remaining() -> set[str]:
    return set(
        db.session.scalars(select(AuditEvent.object_id).where(AuditEvent.object_id.contains(":")))
    )


def test_purge_keeps_what_it_must_and_restores_the_guard(migrated: Flask):
    with migrated.app_context():
        _add_events()
        with db.engine.connect() as conn:
            created = _triggers(conn)
        assert set(created) == set(audit_guard.TRIGGERS[db.engine.dialect.name])

        counts = retention.purge(now=NOW)

        expected = {
            f"{action}:{age}"
            for age, (login_kept, change_kept) in AGES.items()
            for action in LOGIN_KINDS + CHANGE_KINDS
            if (login_kept if action in LOGIN_KINDS else change_kept)
        }
        assert _remaining() == expected
        assert counts == {"login_events": 4 * len(LOGIN_KINDS), "changes": len(CHANGE_KINDS)}
        # The purge is recorded in the trail it purged.
        record = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit_purge")
        ).one()
        assert record.new_values["login_events"] == 16
        assert record.user_email == "Kommandozeile"

        # The triggers are back, exactly as the migration created them, and they work.
        with db.engine.connect() as conn:
            assert _triggers(conn) == created
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_event"))
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE audit_event SET action = 'x'"))
        db.session.remove()


def test_purge_is_one_transaction(migrated: Flask, monkeypatch):
    """A failure after the guard is lifted leaves guard and rows as they were."""
    with migrated.app_context():
        _add_events()
        with db.engine.connect() as conn:
            created = _triggers(conn)

        def broken(dialect: str, name: str) -> str:
            raise RuntimeError("Abbruch mitten in der Bereinigung")

        monkeypatch.setattr(audit_guard, "create_trigger", broken)
        with pytest.raises(RuntimeError, match="Abbruch"):
            retention.purge(now=NOW)
        with db.engine.connect() as conn:
            assert _triggers(conn) == created
        assert len(_remaining()) == len(AGES) * (len(LOGIN_KINDS) + len(CHANGE_KINDS))
        db.session.remove()


def test_purge_command_uses_configured_retention(migrated: Flask):
    migrated.config.update(KIM_AUDIT_LOGIN_DAYS=2, KIM_AUDIT_CHANGE_YEARS=10)
    with migrated.app_context():
        rows = [
            {"created_at": datetime.now() - timedelta(days=3), "action": "login"},  # noqa: DTZ005
            {"created_at": datetime.now() - timedelta(days=7 * 365), "action": "update"},  # noqa: DTZ005
        ]
        with db.engine.begin() as conn:
            conn.execute(insert(AuditEvent.__table__), rows)
    result = migrated.test_cli_runner().invoke(args=["audit", "purge"])
    assert result.exit_code == 0, result.output
    assert "1 Anmeldeereignisse und 0 ältere Einträge gelöscht" in result.output
    migrated.config.update(KIM_AUDIT_CHANGE_YEARS=0)
    refused = migrated.test_cli_runner().invoke(args=["audit", "purge"])
    assert refused.exit_code != 0 and "mindestens 1" in refused.output
