"""Migrations: one head, upgrade from empty on both backends, no drift from the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from kim_admin.config import PROJECT_ROOT
from kim_admin.extensions import db

from .support import make_app


@pytest.fixture
def empty_app(db_url: str) -> Iterator[Flask]:
    """An app on an empty database, inside its context; its connections closed after."""
    app = make_app(db_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_single_head():
    script = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    assert len(script.get_heads()) == 1


def test_upgrade_from_empty_matches_models(empty_app):
    assert inspect(db.engine).get_table_names() == []
    upgrade()
    tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_downgrade_to_empty(empty_app):
    upgrade()
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}


def test_published_year_migration_up_and_down(empty_app):
    """The stored publications come and go with their revision, the revisions before stay."""
    upgrade(revision="5e7b1c0d4a18")
    assert "published_year" not in inspect(db.engine).get_table_names()
    upgrade(revision="74d3fe732687")
    unique = inspect(db.engine).get_unique_constraints("published_year")
    assert [c["column_names"] for c in unique] == [["year", "threshold", "width"]]
    downgrade(revision="5e7b1c0d4a18")
    tables = inspect(db.engine).get_table_names()
    assert "published_year" not in tables and "report_document" in tables
