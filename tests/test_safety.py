"""A production that cannot be wiped: no demo data there, an append-only audit trail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from kim_admin import create_app
from kim_admin.audit import record
from kim_admin.extensions import db
from kim_admin.permissions import PERMISSIONS
from kim_admin.reference import load_reference_data
from models import AuditEvent, User


@pytest.fixture
def migrated(db_url: str) -> Iterator[Flask]:
    """An app on a database built by the migrations (as production is), in its context."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": db_url, "SECRET_KEY": "t"})
    with app.app_context():
        upgrade()
        load_reference_data()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("option", [[], ["--if-empty"], ["--force"]])
def test_demo_seed_refused_in_production(db_url, option):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": "p" * 64,
            "KIM_ENV": "production",
        }
    )
    with app.app_context():
        db.create_all()
    try:
        result = app.test_cli_runner().invoke(args=["demo", "seed", *option])
        assert result.exit_code != 0
        assert "nicht erlaubt" in result.output
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(User)) == 0
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _one_event() -> int:
    event = record("login", "user", 1, new={"note": "Beleg"})
    db.session.commit()
    return event.id


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_event",
        "UPDATE audit_event SET action = 'nichts'",
        "UPDATE audit_event SET new_values = NULL",
        "UPDATE audit_event SET user_email = 'jemand@anders.example'",
    ],
)
def test_audit_trail_refuses_changes(migrated, statement):
    event_id = _one_event()
    with pytest.raises(DBAPIError):
        db.session.execute(text(statement))
        db.session.flush()
    db.session.rollback()
    event = db.session.get(AuditEvent, event_id)
    assert event.action == "login" and event.new_values == {"note": "Beleg"}


def test_deleting_a_user_keeps_their_audit_rows(migrated):
    user = User(email="weg@test.example", role="steering_group", name="Weg")
    user.set_password("ein-langes-passwort")
    db.session.add(user)
    db.session.commit()
    event = record("login", "user", user.id)
    event.user_id, event.user_email = user.id, user.email
    db.session.commit()
    db.session.delete(user)
    db.session.commit()  # the foreign key only unlinks the row
    kept = db.session.get(AuditEvent, event.id)
    assert kept.user_id is None and kept.user_email == "weg@test.example"


def test_demo_force_keeps_the_audit_trail(migrated):
    runner = migrated.test_cli_runner()
    assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    result = runner.invoke(args=["demo", "seed", "--force"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    after = db.session.scalar(select(func.count()).select_from(AuditEvent))
    assert after > before
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "demo_reset"))


def test_every_text_field_of_every_form_is_bounded(app, accounts):
    """Each text input of the generated forms has a maximum length (hostile input)."""
    from flask_admin.contrib.sqla import ModelView
    from flask_login import login_user
    from wtforms import PasswordField, StringField, TextAreaField
    from wtforms.validators import Length

    checked = 0
    with app.test_request_context():
        login_user(db.session.scalar(select(User).where(User.email == accounts.district)))
        for view in app.extensions["admin"][0]._views:
            writable = any(
                {"create", "edit"} & table.get(view.resource, frozenset())
                for table in PERMISSIONS.values()
            )
            if not isinstance(view, ModelView) or not writable:
                continue
            form = view.create_form()
            for field in form:
                if isinstance(field, StringField | TextAreaField) and not isinstance(
                    field, PasswordField
                ):
                    bounds = [v.max for v in field.validators if isinstance(v, Length)]
                    assert bounds and 0 < min(bounds) <= 10_000, (view.endpoint, field.name)
                    checked += 1
    assert checked > 20


def test_long_text_is_refused_in_german(as_district):
    response = as_district.post(
        "/target_group/new/", {"name": "Neu", "description": "x" * 10_001, "sort_order": "1"}
    )
    assert response.status_code == 200
    assert "Höchstens 10000 Zeichen." in response.get_data(as_text=True)
