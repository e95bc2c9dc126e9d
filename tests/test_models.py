"""Constraints live in the database: each is checked without any form in between."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kim_admin.extensions import db
from kim_admin.permissions import MUNICIPAL_STAFF
from models import (
    MonitoringEntry,
    Municipality,
    Post,
    ReportingPeriod,
    TargetGroup,
    User,
)

from . import factories


def _refused(obj) -> None:
    db.session.add(obj)
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def cell(ctx):
    """A municipality, a period and two indicators (one by target group)."""
    period = factories.period(2025, 1, is_open=False)
    db.session.commit()
    by_group, total = factories.indicator("CM_NEU"), factories.indicator("BER_KONT")
    return factories.town("Arnsberg"), period, by_group, total, factories.group()


def test_ags_is_unique(ctx):
    _refused(Municipality(name="Doppelt", ags="05958004", population=1))


def test_ags_has_eight_digits(ctx):
    _refused(Municipality(name="Kurz", ags="0595", population=1))


def test_period_year_quarter_unique(ctx):
    db.session.add(ReportingPeriod(year=2025, quarter=2))
    db.session.commit()
    _refused(ReportingPeriod(year=2025, quarter=2))


def test_quarter_range(ctx):
    _refused(ReportingPeriod(year=2025, quarter=5))


def test_value_not_negative(cell):
    town, period, _, total, _ = cell
    _refused(MonitoringEntry(municipality=town, period=period, indicator=total, value=-1))


def test_one_entry_per_cell_with_target_group(cell):
    town, period, by_group, _, group = cell
    db.session.add(
        MonitoringEntry(
            municipality=town, period=period, indicator=by_group, target_group=group, value=1
        )
    )
    db.session.commit()
    _refused(
        MonitoringEntry(
            municipality=town, period=period, indicator=by_group, target_group=group, value=2
        )
    )


def test_one_entry_per_cell_without_target_group(cell):
    """A plain UNIQUE would let two rows with a NULL target group through."""
    town, period, _, total, _ = cell
    db.session.add(MonitoringEntry(municipality=town, period=period, indicator=total, value=1))
    db.session.commit()
    _refused(MonitoringEntry(municipality=town, period=period, indicator=total, value=2))


def test_other_target_group_is_another_cell(cell):
    town, period, by_group, _, group = cell
    other = db.session.scalars(select(TargetGroup).where(TargetGroup.id != group.id)).first()
    db.session.add_all(
        [
            MonitoringEntry(
                municipality=town, period=period, indicator=by_group, target_group=group
            ),
            MonitoringEntry(
                municipality=town, period=period, indicator=by_group, target_group=other
            ),
        ]
    )
    db.session.commit()
    assert db.session.query(MonitoringEntry).count() == 2


def test_entry_version_guards_concurrent_update(cell, app):
    """Optimistic locking: a stale version cannot overwrite a newer one."""
    from sqlalchemy.orm import Session
    from sqlalchemy.orm.exc import StaleDataError

    town, period, _, total, _ = cell
    entry = MonitoringEntry(municipality=town, period=period, indicator=total, value=1)
    db.session.add(entry)
    db.session.commit()
    assert entry.version == 1
    with Session(db.engine) as other:
        theirs = other.get(MonitoringEntry, entry.id)
        theirs.value = Decimal(5)
        other.commit()
    entry.value = Decimal(7)
    with pytest.raises(StaleDataError):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(MonitoringEntry, entry.id).value == 5


def test_municipal_user_needs_municipality(ctx):
    user = User(email="ohne@test.example", role=MUNICIPAL_STAFF, password_hash="x")
    _refused(user)


def test_unknown_role_refused(ctx):
    _refused(User(email="rolle@test.example", role="superuser", password_hash="x"))


@pytest.mark.parametrize("fte", ["1.50", "0.01"])
def test_fte_range(ctx, fte):
    _refused(
        Post(
            title="Zu viel",
            function="koordination",
            baustein="1",
            employer_type="kreis",
            fte=Decimal(fte),
        )
    )


def test_post_dates_ordered(ctx):
    _refused(
        Post(
            title="Rückwärts",
            function="koordination",
            baustein="1",
            employer_type="kreis",
            fte=Decimal("1"),
            valid_from=date(2025, 6, 1),
            valid_until=date(2025, 1, 1),
        )
    )


def test_partner_employer_must_be_named(ctx):
    _refused(
        Post(
            title="Ohne Träger",
            function="case_management",
            baustein="2",
            employer_type="partner",
            fte=Decimal("0.5"),
        )
    )


def test_unknown_room_kind_refused(ctx):
    from models import Room

    town = db.session.scalars(select(Municipality)).first()
    _refused(Room(name="X", municipality=town, kind="keller"))


def test_quarter_bounds():
    period = ReportingPeriod(year=2024, quarter=1)
    assert (period.starts_on, period.ends_on) == (date(2024, 1, 1), date(2024, 3, 31))
    period.quarter = 4
    assert period.ends_on == date(2024, 12, 31)
    assert str(period) == "Q4/2024"
