"""Fixtures: a fresh app per test on a fresh copy of one shared world, a user per role.

The suite runs on SQLite by default and on PostgreSQL when
``KIM_TEST_DATABASE_URL`` is set (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
The schema and the reference data are built once per session and restored before
every test (``tests/database.py``), which costs milliseconds instead of a ``create_all``.
A test uses either ``app`` (that world) or ``db_url`` (an empty database), not both:
on PostgreSQL they are the same database.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kim_admin.extensions import db
from kim_admin.reference import load_reference_data

from . import factories
from .database import Image, TestDatabase
from .support import Session, make_app


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what is alive after collection (modules, parametrised cases): see below."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Collect garbage after each test, so a leaked connection is reported by the
    test that leaked it rather than by whichever test happens to run next.

    Twice, because an app's engines are freed one round after the app (Flask-SQLAlchemy
    holds them in a weak dictionary)."""
    yield
    gc.collect()
    gc.collect()


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    """Once pytest has let go of a test's fixture values, free them and freeze what is
    left, so that the next test's collections walk only that test's objects (walking
    the whole heap after every test cost 30-90 ms each, a fifth of the suite)."""
    gc.collect()
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Let pytest's last collection see every object again."""
    gc.unfreeze()


# --- the database ------------------------------------------------------------


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabase]:
    """The backend under test and the images of worlds restored into it."""
    backend = TestDatabase(
        os.environ.get("KIM_TEST_DATABASE_URL") or None, tmp_path_factory.mktemp("images")
    )
    yield backend
    backend.close()


def build_image(
    database: TestDatabase, base: Image | None, name: str, build, workdir: Path
) -> Image:
    """Restore ``base`` (or start empty), let ``build(app)`` add rows, save the result."""
    url = database.url(workdir)
    if base is None:
        database.empty(url)
    else:
        database.restore(base, url)
    app = make_app(url)
    try:
        with app.app_context():
            if base is None:
                db.create_all()
            build(app)
            db.session.remove()
    finally:
        with app.app_context():
            db.engine.dispose()
    return database.capture(url, name)


@pytest.fixture(scope="session")
def reference_image(database: TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The schema and the HSK reference data (DOMAIN.md §3, §4), built once."""

    def build(app: Flask) -> None:
        load_reference_data()

    return build_image(database, None, "reference", build, tmp_path_factory.mktemp("reference"))


@pytest.fixture
def db_url(database: TestDatabase, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database."""
    url = database.url(tmp_path)
    database.empty(url)
    yield url


@contextmanager
def app_on(database: TestDatabase, image: Image, tmp_path: Path, **config) -> Iterator[Flask]:
    """A fresh application on a fresh copy of ``image``; its connections closed after."""
    url = database.url(tmp_path)
    database.restore(image, url)
    app = make_app(url, **config)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(database: TestDatabase, reference_image: Image, tmp_path: Path) -> Iterator[Flask]:
    """A fresh application on a database holding the schema and the reference data."""
    with app_on(database, reference_image, tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- users and their sessions ----------------------------------------------------


@dataclass
class Accounts:
    """E-mail addresses of one user per role (all with ``PASSWORD``)."""

    district: str = "kreis@test.example"
    steering: str = "steuerung@test.example"
    arnsberg: str = "arnsberg@test.example"
    meschede: str = "meschede@test.example"


def create_accounts(acc: Accounts | None = None) -> Accounts:
    """One user per role (municipal users for Arnsberg and Meschede); needs an app context."""
    acc = acc or Accounts()
    factories.district_admin(acc.district)
    factories.steering_member(acc.steering)
    factories.municipal_staff("Arnsberg", acc.arnsberg)
    factories.municipal_staff("Meschede", acc.meschede)
    db.session.commit()
    return acc


@pytest.fixture
def accounts(app: Flask) -> Accounts:
    """Create one user per role; municipal users for Arnsberg (A) and Meschede (B)."""
    with app.app_context():
        return create_accounts()


def logged_in(app: Flask, email: str) -> Session:
    session = Session(app.test_client())
    session.login(email)
    return session


@pytest.fixture
def as_district(app: Flask, accounts: Accounts) -> Session:
    return logged_in(app, accounts.district)


@pytest.fixture
def as_steering(app: Flask, accounts: Accounts) -> Session:
    return logged_in(app, accounts.steering)


@pytest.fixture
def as_arnsberg(app: Flask, accounts: Accounts) -> Session:
    return logged_in(app, accounts.arnsberg)
