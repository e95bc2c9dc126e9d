"""Kreis-wide start page sums shared for KIM_CACHE_SECONDS (kim_admin.caching): the
district's charts are computed once for every worker, municipal staff see their own
figures at once, and a cache outage is no error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import select

from kim_admin.extensions import db
from models import MonitoringEntry

from . import factories
from .conftest import logged_in
from .support import make_app
from .test_scale import statements


@contextmanager
def another_app(app, **config) -> Iterator:
    """A second app (another worker) on the test's database; its connections closed after."""
    other = make_app(app.config["SQLALCHEMY_DATABASE_URI"], **config)
    try:
        yield other
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def _world(app) -> int:
    """A closed quarter with one figure of Arnsberg; returns the figure's id."""
    with app.app_context():
        period = factories.period(2024, 4, is_open=False)
        entry = factories.entry("Arnsberg", period, factories.indicator("BER_KONT"), 5)
        db.session.commit()
        return entry.id


def _change(app, entry_id: int, value: int) -> None:
    with app.app_context():
        db.session.get(MonitoringEntry, entry_id).value = Decimal(value)
        db.session.commit()


def _sums(app, session, url: str) -> tuple[str, int]:
    with statements(app) as sent:
        response = session.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True), sum("figure_total" in s for s in sent)


def _values(payload: dict) -> list:
    return [s["values"] for i in payload["indicators"] for s in i["series"]]


def test_district_sums_are_shared_and_say_how_old(app, accounts):
    entry_id = _world(app)
    with another_app(app, KIM_CACHE_SECONDS=60) as shared:
        _shared_and_dated(shared, accounts, entry_id)


def _shared_and_dated(shared, accounts, entry_id: int) -> None:
    district = logged_in(shared, accounts.district)
    first = district.get("/dashboard.json").get_json()
    assert first["as_of"]  # the page says when the shared sums were computed
    _change(shared, entry_id, 9)
    _, queries = _sums(shared, district, "/dashboard.json")
    assert queries == 0  # served from the cache
    assert _values(district.get("/dashboard.json").get_json()) == _values(first)
    html, _ = _sums(shared, district, "/")
    assert "Stand:" in html and "60 Sekunden" in html
    # Municipal staff see their own town's figures at once, never a shared copy.
    arnsberg = logged_in(shared, accounts.arnsberg)
    own = arnsberg.get("/dashboard.json").get_json()
    assert own["as_of"] is None
    assert any(9 in [v for v in values if v is not None] for values in _values(own))
    _change(shared, entry_id, 11)
    assert any(
        11 in [v for v in values if v is not None]
        for values in _values(arnsberg.get("/dashboard.json").get_json())
    )


def test_without_sharing_every_request_computes(app, accounts):
    entry_id = _world(app)
    district = logged_in(app, accounts.district)  # the test configuration: 0 seconds
    district.get("/dashboard.json")
    _change(app, entry_id, 9)
    _, queries = _sums(app, district, "/dashboard.json")
    assert queries > 0
    assert district.get("/dashboard.json").get_json()["as_of"] is None


def test_workers_share_the_sums_through_redis(app, accounts):
    _world(app)
    config = {
        "KIM_CACHE_SECONDS": 60,
        "KIM_CACHE_URL": "redis://127.0.0.1:6379/3",
        "KIM_JOBS_QUEUE": f"test-{uuid.uuid4().hex}",  # this test's keys only
    }
    with another_app(app, **config) as one, another_app(app, **config) as two:
        with statements(one) as first:
            logged_in(one, accounts.district)  # the login ends on the start page
        with statements(two) as second:
            _sums(two, logged_in(two, accounts.district), "/dashboard.json")
    assert any("figure_total" in s for s in first)
    assert not any("figure_total" in s for s in second)


def test_unreachable_cache_is_no_error(app, accounts):
    _world(app)
    with another_app(app, KIM_CACHE_SECONDS=60, KIM_CACHE_URL="redis://127.0.0.1:1/0") as broken:
        district = logged_in(broken, accounts.district)
        html, queries = _sums(broken, district, "/")
        assert queries > 0 and "Kennzahlen der letzten" in html
        with broken.app_context():
            assert db.session.scalar(select(MonitoringEntry.value)) == 5
