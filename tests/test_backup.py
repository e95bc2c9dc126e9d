"""Backups: a full round trip on the database under test (SQLite, or PostgreSQL with
KIM_TEST_DATABASE_URL), into an empty database, then the app starts and a user logs in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from kim_admin import demo
from kim_admin.extensions import db
from kim_admin.reference import load_reference_data
from models import AuditEvent, MonitoringEntry

from .support import make_app


@pytest.fixture
def target_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database on the same server (a file next to it on SQLite)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"{url.database}_restore"
    server = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def _fingerprint(app: Flask) -> dict:
    """Rows per table, and checksums of the figures and of the audit trail."""
    with app.app_context():
        counts = {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        figures = db.session.execute(
            select(MonitoringEntry.id, MonitoringEntry.value).order_by(MonitoringEntry.id)
        ).all()
        trail = db.session.execute(
            select(AuditEvent.id, AuditEvent.action, AuditEvent.created_at).order_by(AuditEvent.id)
        ).all()
        revision = db.session.scalar(text("SELECT version_num FROM alembic_version"))
        db.session.remove()
        db.engine.dispose()
    return {
        "counts": counts,
        "figures": hashlib.sha256(repr([(i, str(v)) for i, v in figures]).encode()).hexdigest(),
        "figure_sum": sum(v for _, v in figures if v is not None),
        "trail": hashlib.sha256(repr(trail).encode()).hexdigest(),
        "revision": revision,
    }


def test_round_trip(db_url: str, target_url: str, tmp_path: Path):
    source = make_app(db_url)
    with source.app_context():
        upgrade()
        load_reference_data()
        demo.seed()
        db.session.commit()
        db.session.remove()
    before = _fingerprint(source)
    assert before["counts"]["monitoring_entry"] > 100
    assert before["counts"]["audit_event"] > 0 and before["counts"]["user"] > 0

    dump = tmp_path / "kim.backup"
    result = source.test_cli_runner().invoke(args=["backup", "create", str(dump)])
    assert result.exit_code == 0, result.output
    assert "Sicherung geschrieben" in result.output
    # A second backup never overwrites the first.
    again = source.test_cli_runner().invoke(args=["backup", "create", str(dump)])
    assert again.exit_code != 0 and "gibt es schon" in again.output

    restored = make_app(target_url)
    result = restored.test_cli_runner().invoke(args=["backup", "restore", str(dump)])
    assert result.exit_code == 0, result.output
    assert _fingerprint(restored) == before

    # The app starts on it, is ready, and a demo user logs in.
    client = restored.test_client()
    assert client.get("/readyz").status_code == 200
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post(
        "/login",
        data={
            "email": "kreis@hsk-demo.example",
            "password": demo.DEMO_PASSWORD,
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    # The audit trail is still append-only after the restore.
    with restored.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_event"))
        # A restore into a database that has tables is refused.
        db.engine.dispose()
    refused = restored.test_cli_runner().invoke(args=["backup", "restore", str(dump)])
    assert refused.exit_code != 0 and "nicht leer" in refused.output
    with restored.app_context():
        db.engine.dispose()
    with source.app_context():
        db.engine.dispose()


def test_restore_refuses_missing_or_foreign_file(db_url: str, tmp_path: Path):
    app = make_app(db_url)
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["backup", "restore", str(tmp_path / "nichts.backup")])
    assert missing.exit_code != 0 and "gibt es nicht" in missing.output
    foreign = tmp_path / "foreign.backup"
    foreign.write_text("kein Backup")
    result = runner.invoke(args=["backup", "restore", str(foreign)])
    assert result.exit_code != 0
    with app.app_context():
        db.engine.dispose()
