"""The running totals behind the start page's charts (kim_admin.monitoring.totals):
every write path keeps them equal to the figures, and the charts read them."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, select, text

from kim_admin.extensions import db
from kim_admin.monitoring import totals
from models import FigureTotal, MonitoringEntry

from . import factories
from .test_entry_page import _fill, _url
from .test_entry_page import world as world  # noqa: F401 (fixture)
from .test_scale import statements


def stored(app, town: int, period: int, code: str) -> tuple[Decimal, int] | None:
    with app.app_context():
        indicator = factories.indicator(code)
        row = db.session.get(FigureTotal, (town, period, indicator.id))
        return (Decimal(row.value_sum), row.value_count) if row else None


def test_saving_on_the_entry_page_keeps_the_totals(app, world, as_arnsberg):
    form = _fill(app, world, "1", CM_NEU="3")
    assert as_arnsberg.post(_url(world), {**form, "action": "save"}).status_code == 302
    with app.app_context():
        assert totals.differences() == []
        groups = db.session.scalar(
            select(db.func.count())
            .select_from(MonitoringEntry)
            .where(
                MonitoringEntry.indicator_id == factories.indicator("CM_NEU").id,
                MonitoringEntry.municipality_id == world["arnsberg"],
                MonitoringEntry.period_id == world["period"],
            )
        )
    assert groups > 1  # a breakdown by target group: the total sums its rows
    assert stored(app, world["arnsberg"], world["period"], "CM_NEU") == (3 * groups, groups)
    # A correction (the form carries the saved versions): the difference is added.
    form = _fill(app, world, "1", CM_NEU="5")
    as_arnsberg.post(_url(world), {**form, "action": "save"})
    assert stored(app, world["arnsberg"], world["period"], "CM_NEU") == (5 * groups, groups)
    with app.app_context():
        assert totals.differences() == []


def test_orm_changes_and_deletes_keep_the_totals(app, accounts):
    with app.app_context():
        period = factories.period(2024, 1, is_open=False)
        neu, contacts = factories.indicator("CM_NEU"), factories.indicator("BER_KONT")
        first = factories.entry("Arnsberg", period, neu, 4, factories.group(0))
        factories.entry("Arnsberg", period, neu, 2, factories.group(1))
        factories.entry("Arnsberg", period, neu, None, factories.group(2), comment="fehlt")
        empty = factories.entry("Brilon", period, contacts, None, comment="fehlt noch")
        db.session.commit()
        assert totals.differences() == []
        first.value = Decimal(10)
        empty.value = Decimal(7)
        db.session.commit()
        db.session.delete(db.session.get(MonitoringEntry, first.id))
        db.session.commit()
        assert totals.differences() == []
        town = factories.town("Arnsberg").id
        row = db.session.get(FigureTotal, (town, period.id, neu.id))
        assert (row.value_sum, row.value_count) == (2, 1)
        # A rolled-back change leaves the totals as they were.
        factories.entry("Arnsberg", period, neu, 50, factories.group(3))
        db.session.flush()
        db.session.rollback()
        assert totals.differences() == []


def test_rebuild_after_figures_written_in_sql(app, accounts):
    with app.app_context():
        period = factories.period(2024, 3, is_open=False)
        factories.entry("Arnsberg", period, factories.indicator("BER_KONT"), 5)
        db.session.commit()
        db.session.execute(text("UPDATE monitoring_entry SET value = value + 1"))
        db.session.commit()
        assert len(totals.differences()) == 1  # around the ORM: the totals do not know
        assert totals.rebuild() >= 1
        db.session.commit()
        assert totals.differences() == []


def test_check_and_rebuild_commands(app, accounts):
    with app.app_context():
        period = factories.period(2024, 4, is_open=False)
        factories.entry("Brilon", period, factories.indicator("BER_KONT"), 5)
        db.session.commit()
        db.session.execute(delete(FigureTotal))
        db.session.commit()
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["figures", "check-totals"])
    assert refused.exit_code == 1 and "weichen" in refused.output
    rebuilt = runner.invoke(args=["figures", "rebuild-totals"])
    assert rebuilt.exit_code == 0 and "Summen neu berechnet" in rebuilt.output
    checked = runner.invoke(args=["figures", "check-totals"])
    assert checked.exit_code == 0, checked.output


def test_charts_read_the_totals_not_the_figures(app, accounts, as_district):
    with app.app_context():
        period = factories.period(2024, 4, is_open=False)
        factories.entry("Brilon", period, factories.indicator("BER_KONT"), 5)
        db.session.commit()
    for url in ("/", "/dashboard.json"):
        as_district.get(url)
        with statements(app) as sent:
            assert as_district.get(url).status_code == 200
        sums = [s for s in sent if "sum(" in s.lower()]
        assert sums and all("monitoring_entry" not in s for s in sums), url
        assert any("figure_total" in s for s in sums), url
