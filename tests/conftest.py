"""Fixtures: a fresh app per test, a database per backend, a user per role.

The suite runs on SQLite by default and on PostgreSQL when
``KIM_TEST_DATABASE_URL`` is set (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, inspect, text

from kim_admin import create_app
from kim_admin.extensions import db
from kim_admin.permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF, STEERING_GROUP
from kim_admin.reference import load_reference_data
from models import Municipality, User

from .support import PASSWORD, Session


def url_under_test(tmp_path) -> str:
    """The database under test: PostgreSQL if configured, else a fresh SQLite file."""
    return os.environ.get("KIM_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'test.db'}"


def reset_database(url: str) -> None:
    """Drop every table (and the migration stamp) so a test starts from nothing."""
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for table in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()


@pytest.fixture
def db_url(tmp_path) -> Iterator[str]:
    """URL of an empty database."""
    url = url_under_test(tmp_path)
    reset_database(url)
    yield url


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    """A fresh application with the schema created and the reference data loaded."""
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": "test-secret",
        }
    )
    with app.app_context():
        db.create_all()
        load_reference_data()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Accounts:
    """E-mail addresses of one user per role (all with ``PASSWORD``)."""

    district: str = "kreis@test.example"
    steering: str = "steuerung@test.example"
    arnsberg: str = "arnsberg@test.example"
    meschede: str = "meschede@test.example"


@pytest.fixture
def accounts(app: Flask) -> Accounts:
    """Create one user per role; municipal users for Arnsberg (A) and Meschede (B)."""
    acc = Accounts()
    with app.app_context():
        towns = {m.name: m for m in Municipality.query.all()}
        for email, role, town in (
            (acc.district, DISTRICT_ADMIN, None),
            (acc.steering, STEERING_GROUP, None),
            (acc.arnsberg, MUNICIPAL_STAFF, "Arnsberg"),
            (acc.meschede, MUNICIPAL_STAFF, "Meschede"),
        ):
            user = User(
                email=email,
                role=role,
                name=email.split("@")[0].title(),
                municipality=towns.get(town),
            )
            user.set_password(PASSWORD)
            db.session.add(user)
        db.session.commit()
    return acc


@pytest.fixture
def as_district(app: Flask, accounts: Accounts) -> Session:
    session = Session(app.test_client())
    session.login(accounts.district)
    return session


@pytest.fixture
def as_steering(app: Flask, accounts: Accounts) -> Session:
    session = Session(app.test_client())
    session.login(accounts.steering)
    return session


@pytest.fixture
def as_arnsberg(app: Flask, accounts: Accounts) -> Session:
    session = Session(app.test_client())
    session.login(accounts.arnsberg)
    return session


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Collect garbage after each test, so a leaked connection is reported by the
    test that leaked it rather than by whichever test happens to run next."""
    yield
    gc.collect()
