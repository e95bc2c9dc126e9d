"""Stored publications: a year's published state is stored once and read by the next year."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from kim_admin import report, suppression
from kim_admin.extensions import db
from kim_admin.report import publication
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    PublishedYear,
    TargetGroup,
    User,
)

from .test_suppression import _approved_year

#: One town's cases in 2024 and 2025; the stock follows the district's rule.
FIGURES = {
    2024: {"CM_NEU": [5, 6, 7, 8], "CM_ABG": [4, 5, 6, 5], "CM_AKT": [11, 12, 13, 16]},
    2025: {"CM_NEU": [4, 5, 6, 7], "CM_ABG": [1, 0, 0, 1], "CM_AKT": [19, 24, 30, 36]},
}


@pytest.fixture
def two_years(app):
    """Approved figures of Hallenberg in 2024 and 2025 (both years have ended)."""
    with app.app_context():
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Hallenberg"))
        group = db.session.scalars(select(TargetGroup)).first()
        ids = {year: _approved_year(town, group, year, series) for year, series in FIGURES.items()}
        db.session.commit()
        return {"periods": ids, "town": town.id}


def _data(year_periods, email):
    user = db.session.scalar(select(User).where(User.email == email))
    options = report.ReportOptions(
        year_periods[0],
        year_periods[-1],
        tuple(publication.participant_ids()),
        publish=True,
    )
    return report.ReportData(options, user)


@pytest.fixture
def protect_calls(monkeypatch):
    """How often :func:`suppression.protect` ran (each is one year's protection)."""
    calls = []
    real = suppression.protect

    def counted(table, *args, **kwargs):
        calls.append(len(table.values))
        return real(table, *args, **kwargs)

    monkeypatch.setattr(suppression, "protect", counted)
    return calls


def _stored_years() -> list[int]:
    return sorted(db.session.scalars(select(PublishedYear.year)))


def test_a_publication_is_stored_once_and_read_as_published(
    app, two_years, accounts, protect_calls
):
    with app.app_context():
        earlier = _data(two_years["periods"][2024], accounts.steering)
        hidden_2024 = earlier.hidden_cells()
        own_2024 = earlier.own_publication().table
        assert _stored_years() == [2024]
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.object_type == "published_year")
        )
        assert event.new_values["year"] == 2024 and event.user_email == accounts.steering
        # A correction of 2024 after its publication: the stored state does not follow.
        akt = db.session.scalar(select(Indicator).where(Indicator.code == "CM_AKT"))
        entry = db.session.scalar(
            select(MonitoringEntry).where(
                MonitoringEntry.period_id == two_years["periods"][2024][-1],
                MonitoringEntry.indicator_id == akt.id,
            )
        )
        entry.value = Decimal(17)
        db.session.commit()
        again = _data(two_years["periods"][2024], accounts.steering)
        assert again.hidden_cells() is not None
        stored = db.session.scalars(select(PublishedYear)).all()
        assert len(stored) == 1 and stored[0].year == 2024
        protect_calls.clear()

        data = _data(two_years["periods"][2025], accounts.steering)
        joint = data.publication_table()
        data.protection()
        # Only 2025 was protected: 2024 came from the store ...
        assert len(protect_calls) == 1
        # ... with the values and hidden cells as they were published.
        assert joint.values[publication.previous(("KT", akt.id))] == 16
        assert again.publication_table().values[("KT", akt.id)] == 17
        earlier_hidden = {k[1] for k, was_hidden in joint.fixed.items() if was_hidden}
        assert earlier_hidden == hidden_2024
        assert {k[1]: v for k, v in joint.values.items() if k[0] == "prev"} == own_2024.values
        assert _stored_years() == [2024, 2025]


def test_a_year_never_published_ties_nothing(app, two_years, accounts, protect_calls):
    """Every publication stores its year: one that is not stored was never published,
    so the next year is audited alone; once the earlier year is published, with it."""
    with app.app_context():
        alone = _data(two_years["periods"][2025], accounts.steering)
        hidden_alone = alone.hidden_cells()
        assert not alone.publication_table().fixed
        assert len(protect_calls) == 1  # 2024 is not protected for it
        assert _stored_years() == [2025]

        db.session.execute(db.delete(PublishedYear))
        db.session.commit()
        _data(two_years["periods"][2024], accounts.steering).protection()
        assert _stored_years() == [2024]
        protect_calls.clear()
        linked = _data(two_years["periods"][2025], accounts.steering)
        table = linked.publication_table()
        assert table.fixed and all(key[0] == "prev" for key in table.fixed)
        linked.hidden_cells()
        assert len(protect_calls) == 1  # 2025 alone: 2024 came from the store
        assert hidden_alone  # small counts: something is hidden either way
        intervals = suppression.audit(table, linked.protection().audited)
        assert min(iv.width for iv in intervals.values()) >= 3
        assert not linked.protection().unprotected


def test_a_second_store_of_the_same_year_is_dropped(app, two_years, accounts):
    with app.app_context():
        data = _data(two_years["periods"][2024], accounts.steering)
        mine = data.own_publication()
        # Another job stored the year between our look and our insert.
        theirs = publication.Published(mine.table, set(), mine.last_period_id)
        towns = data.town_ids
        assert publication._insert(2024, 3, 3, towns, theirs, None) is False  # data's own store
        db.session.execute(db.delete(PublishedYear))
        db.session.commit()
        assert publication._insert(2024, 3, 3, towns, theirs, None) is True
        assert publication._insert(2024, 3, 3, towns, mine, None) is False
        assert publication.store(2024, 3, 3, towns, mine) is False
        assert db.session.scalar(select(func.count(PublishedYear.id))) == 1
        # The first one stays.
        assert publication.stored(2024, 3, 3, towns).hidden == set()
        # Another threshold is another publication; other municipalities do not match.
        assert publication.store(2024, 4, 4, towns, mine) is True
        assert publication.stored(2024, 3, 3, towns[1:]) is None
        assert publication.stored(2023, 3, 3, towns) is None


def test_dump_and_load_give_the_table_back():
    table = suppression.Table(values={("K", 1, 2): 3, ("KT", 2): 7.5, ("Z", 9, 2): None})
    table.values[("N", 1, 4)] = 4
    table.line([("K", 1, 2), ("N", 1, 4)], ("KT", 2))
    table.equation({("Z", 9, 2): 1.0, ("K", 1, 2): -2.0}, -6.0)
    published = publication.Published(table, {("K", 1, 2), ("N", 1, 4)}, 9, {("N", 1, 4)})
    columns = json.loads(json.dumps(publication.dump(published)))
    assert columns == publication.dump(published) | {
        "cells": [[["K", 1, 2], 3], [["KT", 2], 7.5], [["Z", 9, 2], None], [["N", 1, 4], 4]]
    }
    back = publication.load(columns, 9)
    assert back.table.values == table.values
    assert list(back.table.values) == list(table.values)
    assert back.table.equations == table.equations
    assert back.table.totals == table.totals
    assert back.hidden == published.hidden
    assert back.unprotected == {("N", 1, 4)}
    assert back.series_key(type("I", (), {"kind": "flow", "id": 2})()) == ("Z", 9, 2)


def test_a_year_that_has_not_ended_is_not_stored(app, two_years, accounts, monkeypatch):
    """Its figures may still come in: a publication of it would not be the year's."""
    monkeypatch.setattr("kim_admin.monitoring.periods.has_ended", lambda period: False)
    with app.app_context():
        assert _data(two_years["periods"][2025], accounts.steering).protection() is not None
        assert _stored_years() == []
