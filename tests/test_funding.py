"""Funding (Förderung): months and FTE funded against filled, amounts granted against
forwarded, the Zahlenmäßiger Nachweis read back, the scope; and the validity period
of indicators in the entry form, the template, the rules and the report."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from fractions import Fraction

import openpyxl
import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text

from kim_admin import funding, report
from kim_admin.extensions import db
from kim_admin.monitoring import entry, template
from kim_admin.monitoring.indicators import indicators_valid_in
from models import (
    AuditEvent,
    FundingForward,
    Indicator,
    PostFunding,
    PostVacancy,
    User,
    ValidationRule,
)

from . import factories
from .support import make_app

YEAR = 2025


def _user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


# --- month arithmetic ----------------------------------------------------------------


def test_months_pro_rata_by_days():
    days = funding.days_between(date(2025, 3, 15), date(2025, 12, 31), 2025)
    assert funding.months(days, 2025) == Fraction(17, 31) + 9
    assert funding.round2(funding.months(days, 2025)) == Decimal("9.55")
    # A whole year is twelve months, a leap year's February counts by its 29 days.
    assert funding.months(funding.days_between(None, None, 2025), 2025) == 12
    february = funding.days_between(date(2024, 2, 15), date(2024, 2, 29), 2024)
    assert funding.months(february, 2024) == Fraction(15, 29)
    # Dates outside the year are cut off; a period ending before the year is empty.
    assert funding.days_between(date(2024, 7, 1), date(2026, 6, 30), 2025) == (
        funding.days_between(None, None, 2025)
    )
    assert funding.days_between(date(2020, 1, 1), date(2024, 12, 31), 2025) == set()


# --- a constructed funding year ------------------------------------------------------


@pytest.fixture
def year_world(app, accounts):
    """Three funded posts of 2025 (see the numbers in the tests)."""
    with app.app_context():
        caritas = factories.partner("Caritas Arnsberg", "wohlfahrtsverband", ["Arnsberg"])
        # Arnsberg, full time, exists 16.03.–15.10., vacant in June.
        a = factories.post(
            "Arnsberg",
            "ARNSBERG-CM",
            fte=Decimal("1.00"),
            status="besetzt",
            valid_from=date(2025, 3, 16),
            valid_until=date(2025, 10, 15),
        )
        # Kreis level, part time (0.5), funded for 1.0 from July, vacant from 20.11. on.
        b = factories.post(
            None,
            '=HYPERLINK("http://x")',
            function="koordination",
            baustein="1",
            fte=Decimal("0.50"),
            status="vakant",
        )
        # Meschede, 0.75 the whole year.
        c = factories.post("Meschede", "MESCHEDE-CM", fte=Decimal("0.75"), status="besetzt")
        db.session.add_all(
            [
                PostVacancy(post=a, vacant_from=date(2025, 6, 1), vacant_until=date(2025, 6, 30)),
                PostVacancy(post=b, vacant_from=date(2025, 11, 20)),
                # Another year's vacancy does not count.
                PostVacancy(post=c, vacant_from=date(2024, 1, 1), vacant_until=date(2024, 12, 31)),
            ]
        )
        fa = PostFunding(
            post=a,
            year=YEAR,
            baustein="2",
            funded_fte=Decimal("1.00"),
            funded_from=date(2025, 1, 1),
            funded_until=date(2025, 12, 31),
            grant_amount=Decimal("60000.00"),
            notice_number="51.2-KIM-2025/07",
            notice_date=date(2025, 2, 3),
        )
        fa.forwards = [
            FundingForward(
                municipality=factories.town("Arnsberg"),
                amount=Decimal("50000.00"),
                forwarded_on=date(2025, 4, 1),
            ),
            FundingForward(partner=caritas, amount=Decimal("5000.00"), reference="=1+1"),
        ]
        fb = PostFunding(
            post=b,
            year=YEAR,
            baustein="1",
            funded_fte=Decimal("1.00"),
            funded_from=date(2025, 7, 1),
            funded_until=date(2025, 12, 31),
            grant_amount=Decimal("28500.00"),
        )
        fc = PostFunding(
            post=c,
            year=YEAR,
            baustein="2",
            funded_fte=Decimal("0.75"),
            funded_from=date(2025, 1, 1),
            funded_until=date(2025, 12, 31),
            grant_amount=Decimal("30000.00"),
        )
        db.session.add_all([fa, fb, fc])
        db.session.commit()
        return {"a": fa.id, "b": fb.id, "c": fc.id}


def _rows(app, email):
    with app.app_context():
        data = funding.funding_year(YEAR, _user(email), today=date(2025, 12, 1))
        return data, {r.funding.id: r for r in data.rows}


def test_months_and_fte_funded_against_filled(app, accounts, year_world):
    data, rows = _rows(app, accounts.district)
    a, b, c = rows[year_world["a"]], rows[year_world["b"]], rows[year_world["c"]]
    # A: funded all year; filled 16/31 of March, April, May, July-September, 15/31 of
    # October (June vacant): 6 months, so 0.5 FTE on average.
    assert a.months_funded == 12 and a.months_filled == 6
    assert a.fte_filled == Fraction(1, 2) and a.fte_months_filled == 6
    # B: funded July-December for 1.0; a 0.5 post filled until 19.11.
    assert b.months_funded == 6
    assert b.months_filled == 4 + Fraction(19, 30)
    assert funding.round2(b.months_filled) == Decimal("4.63")
    assert funding.round2(b.fte_months_filled) == Decimal("2.32")
    assert funding.round2(b.fte_filled) == Decimal("0.39")
    assert b.fte_months_funded == 6
    # C: a vacancy in another year changes nothing.
    assert c.months_filled == 12 and c.fte_filled == Fraction(3, 4)
    # B is vacant now with an open vacancy: no hint; A's status is filled: no hint.
    assert b.hints == [] and a.hints == []


def test_amounts_granted_against_forwarded_and_totals(app, accounts, year_world):
    data, rows = _rows(app, accounts.district)
    a = rows[year_world["a"]]
    assert (a.granted, a.forwarded, a.remaining) == (
        Decimal("60000.00"),
        Decimal("55000.00"),
        Decimal("5000.00"),
    )
    groups = {g.label.split(" –")[0]: g for g in data.bausteine}
    assert list(groups) == ["Baustein 1", "Baustein 2"]
    two = groups["Baustein 2"]
    assert (two.months_funded, two.months_filled) == (24, 18)
    assert (two.granted, two.forwarded, two.remaining) == (
        Decimal("90000.00"),
        Decimal("55000.00"),
        Decimal("35000.00"),
    )
    assert two.fte_funded == Decimal("1.75")
    assert data.total.granted == Decimal("118500.00")


def test_hint_for_vacant_post_without_vacancy_period(app, accounts, year_world):
    with app.app_context():
        db.session.execute(text("DELETE FROM post_vacancy"))
        db.session.commit()
    _, rows = _rows(app, accounts.district)
    assert rows[year_world["b"]].hints == [
        "Stelle ist nicht besetzt, aber kein Vakanzzeitraum erfasst"
    ]
    assert rows[year_world["a"]].months_filled == 7


def test_municipal_user_sees_own_posts_only(app, accounts, year_world, as_arnsberg):
    data, rows = _rows(app, accounts.arnsberg)
    assert list(rows) == [year_world["a"]]
    page = as_arnsberg.get(f"/foerderung/?year={YEAR}").get_data(as_text=True)
    assert "ARNSBERG-CM" in page and "MESCHEDE" not in page and "Meschede" not in page
    assert "HYPERLINK" not in page  # the Kreis-level post
    # The Nachweis is the Kreis' statement: no export for a town.
    assert as_arnsberg.get(f"/foerderung/export/xlsx/?year={YEAR}").status_code == 403
    # The list and a foreign row's details: only their own.
    listing = as_arnsberg.get("/post_funding/").get_data(as_text=True)
    assert "ARNSBERG-CM" in listing and "MESCHEDE-CM" not in listing
    foreign = as_arnsberg.get(f"/post_funding/details/?id={year_world['c']}")
    assert "MESCHEDE-CM" not in foreign.get_data(as_text=True)
    vacancies = as_arnsberg.get("/post_vacancy/").get_data(as_text=True)
    assert "ARNSBERG-CM" in vacancies and "MESCHEDE-CM" not in vacancies


def test_page_shows_the_year(accounts, year_world, as_steering):
    page = as_steering.get(f"/foerderung/?year={YEAR}").get_data(as_text=True)
    assert "Summe Baustein 2 – Case Management" in page
    assert "60.000,00" in page and "55.000,00" in page and "4,63" in page
    assert "Zahlenmäßiger Nachweis" in page
    # Without a year: the latest funding year up to today.
    assert f'<option selected value="{YEAR}">' in as_steering.get("/foerderung/").get_data(
        as_text=True
    )


def test_nachweis_export_read_back(app, accounts, year_world, as_steering):
    response = as_steering.get(f"/foerderung/export/xlsx/?year={YEAR}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith(
        f'filename="Zahlenmaessiger_Nachweis_{YEAR}.xlsx"'
    )
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert book.sheetnames == ["Zahlenmäßiger Nachweis", "Weiterleitungen"]
    sheet = book["Zahlenmäßiger Nachweis"]
    assert sheet.freeze_panes == "C7"
    # No formula anywhere: typed text stays text, totals are values.
    for ws in book:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell.coordinate
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][:2] == ("Förderjahr", YEAR)
    head = rows[funding.HEADER_ROW]
    assert head[:3] == ("Baustein", "Stelle", "Kommune")
    col = {label: i for i, label in enumerate(head)}
    body = rows[funding.HEADER_ROW + 1 :]
    by_title = {r[1]: r for r in body if r[1]}
    b = by_title['=HYPERLINK("http://x")']
    assert b[col["Kommune"]] == "Kreisebene"
    assert b[col["Monate besetzt"]] == pytest.approx(4.63)
    assert b[col["VZÄ besetzt (Durchschnitt)"]] == pytest.approx(0.39)
    a = by_title["ARNSBERG-CM"]
    assert a[col["Bescheid-Nr."]] == "51.2-KIM-2025/07"
    assert a[col["Bescheid vom"]].date() == date(2025, 2, 3)
    assert sheet.cell(funding.HEADER_ROW + 2, col["Bescheid vom"] + 1).number_format == (
        "dd.mm.yyyy"
    )
    assert a[col["Weitergeleitet (EUR)"]] == 55000
    assert a[col["Beim Kreis verblieben (EUR)"]] == 5000
    totals = {r[0]: r for r in body if r[0] and (r[0].startswith("Summe") or r[0] == "Gesamt")}
    two = totals["Summe Baustein 2 – Case Management"]
    assert two[col["Monate gefördert"]] == 24 and two[col["Monate besetzt"]] == 18
    assert two[col["Bewilligt (EUR)"]] == 90000
    assert totals["Gesamt"][col["Bewilligt (EUR)"]] == 118500
    forwards = list(book["Weiterleitungen"].iter_rows(values_only=True))
    assert forwards[0][:3] == ("Baustein", "Stelle", "Empfänger")
    assert {(r[2], r[3], r[5], r[6]) for r in forwards[1:-1]} == {
        ("Arnsberg", "Kommune", 50000, ""),
        ("Caritas Arnsberg", "Träger", 5000, "=1+1"),
    }
    assert forwards[-1][0] == "Gesamt" and forwards[-1][5] == 55000
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.object_type == "funding_year")
        )
        assert event is not None and event.action == "export"


# --- the funding form ------------------------------------------------------------------


def _form(post_id: int, **fields) -> dict:
    return {
        "post": post_id,
        "year": "2026",
        "baustein": "2",
        "funded_fte": "0,5",
        "funded_from": "2026-01-01",
        "funded_until": "2026-12-31",
        "grant_amount": "1.000,50",
        "notice_number": "A-1",
        **fields,
    }


def test_district_enters_funding_with_forwards(app, accounts, as_district):
    with app.app_context():
        post = factories.post("Arnsberg", "Neue Stelle")
        meschede = factories.town("Meschede").id
        arnsberg = factories.town("Arnsberg").id
        db.session.commit()
        post_id = post.id
    base = _form(post_id)
    # A period outside the year, and money sent to another town: refused in German,
    # nothing lost.
    page = as_district.post("/post_funding/new/", {**base, "funded_until": "2027-03-31"}).get_data(
        as_text=True
    )
    assert "muss im Förderjahr 2026 liegen" in page and 'value="A-1"' in page
    forward = {"forwards-0-municipality": meschede, "forwards-0-amount": "100"}
    page = as_district.post("/post_funding/new/", {**base, **forward}).get_data(as_text=True)
    assert "können nur an Arnsberg" in page
    too_much = {"forwards-0-municipality": arnsberg, "forwards-0-amount": "2000"}
    page = as_district.post("/post_funding/new/", {**base, **too_much}).get_data(as_text=True)
    assert "nicht mehr weitergeleitet werden als bewilligt" in page
    good = {"forwards-0-municipality": arnsberg, "forwards-0-amount": "800,25"}
    response = as_district.post("/post_funding/new/", {**base, **good})
    assert response.status_code == 302
    with app.app_context():
        saved = db.session.scalar(select(PostFunding))
        assert saved.grant_amount == Decimal("1000.50")
        assert [(f.municipality_id, f.amount) for f in saved.forwards] == [
            (arnsberg, Decimal("800.25"))
        ]


# --- the validity period of indicators -------------------------------------------------


@pytest.fixture
def ended_q2(app):
    """BER_KONT reported until Q2/2026; VERM from Q2/2026 on; Q1 to Q3/2026 stored."""
    with app.app_context():
        factories.indicator("BER_KONT").valid_to = 20262
        factories.indicator("VERM").valid_from = 20262
        quarters = [factories.period(2026, q, is_open=True) for q in (1, 2, 3)]
        db.session.commit()
        return [p.id for p in quarters]


def _codes(cells) -> set[str]:
    return {c.indicator.code for c in cells}


def test_indicator_valid_in_its_quarters_only(app, ended_q2):
    from models import ReportingPeriod

    with app.app_context():
        q1, q2, q3 = (db.session.get(ReportingPeriod, i) for i in ended_q2)
        town = factories.town("Arnsberg")
        # The entry form (and with it the template and the rules).
        assert "BER_KONT" in _codes(entry.cells(town.id, q1))
        assert "BER_KONT" in _codes(entry.cells(town.id, q2))
        assert "BER_KONT" not in _codes(entry.cells(town.id, q3))
        assert "VERM" not in _codes(entry.cells(town.id, q1))
        assert "VERM" in _codes(entry.cells(town.id, q3))
        q1_sheet = openpyxl.load_workbook(io.BytesIO(template.build(town, q1))).active
        q3_sheet = openpyxl.load_workbook(io.BytesIO(template.build(town, q3))).active
        assert "BER_KONT" in [c.value for c in q1_sheet["A"]]
        assert "BER_KONT" not in [c.value for c in q3_sheet["A"]]
        # A range shows every indicator valid in any of its quarters.
        codes = set(
            db.session.scalars(indicators_valid_in(q1, q3).with_only_columns(Indicator.code))
        )
        assert {"BER_KONT", "VERM"} <= codes
        # "active" is derived: valid in today's quarter.
        ended = factories.indicator("BER_KONT")
        assert ended.active is (date.today() <= date(2026, 6, 30))
        assert db.session.scalar(
            select(Indicator.code).where(Indicator.active, Indicator.code == "BER_KONT")
        ) == ("BER_KONT" if ended.active else None)


def test_rules_skip_an_ended_indicator(app, accounts, ended_q2):
    from models import ReportingPeriod

    with app.app_context():
        q1, _, q3 = (db.session.get(ReportingPeriod, i) for i in ended_q2)
        factories.indicator("VERM").valid_from = None
        db.session.add(
            ValidationRule(
                name="Vermittlungen höchstens Kontakte",
                left_side="VERM",
                operator="<=",
                right_side="BER_KONT",
                severity="blocking",
                message="Mehr Vermittlungen als Kontakte?",
            )
        )
        town = factories.town("Arnsberg")
        for period in (q1, q3):
            factories.entry(town, period, factories.indicator("VERM"), 5)
        factories.entry(town, q1, factories.indicator("BER_KONT"), 1)
        db.session.commit()
        names = lambda p: [f.rule_name for f in entry.findings(entry.cells(town.id, p))]  # noqa: E731
        assert "Vermittlungen höchstens Kontakte" in names(q1)
        assert "Vermittlungen höchstens Kontakte" not in names(q3)


def _report_codes(app, accounts, first: int, last: int) -> set[str]:
    with app.app_context():
        options = report.ReportOptions(
            first, last, (factories.town("Arnsberg").id,), approved_only=False
        )
        data = report.ReportData(options, _user(accounts.district))
        return {i.code for i in data.indicators}


def test_report_keeps_an_ended_indicator_for_its_quarters(app, accounts, ended_q2):
    q1, _, q3 = ended_q2
    assert "BER_KONT" in _report_codes(app, accounts, q1, q1)
    assert "BER_KONT" not in _report_codes(app, accounts, q3, q3)
    assert "BER_KONT" in _report_codes(app, accounts, q1, q3)


def test_indicator_form_sets_the_validity(app, accounts, as_district):
    with app.app_context():
        indicator_id = factories.indicator("FALLKONF").id
    page = as_district.get(f"/indicator/edit/?id={indicator_id}").get_data(as_text=True)
    assert "Gültig bis Quartal" in page and ">Q2/2026</option>" in page
    form = {
        "code": "FALLKONF",
        "name": "Fallkonferenzen",
        "unit": "Anzahl",
        "field_of_action": "3",
        "kind": "flow",
        "decimal_places": "0",
        "sort_order": "6",
        "valid_from": "20253",
        "valid_to": "20252",
    }
    page = as_district.post(f"/indicator/edit/?id={indicator_id}", form).get_data(as_text=True)
    assert "nicht kleiner sein als" in page
    response = as_district.post(
        f"/indicator/edit/?id={indicator_id}", {**form, "valid_to": "20262"}
    )
    assert response.status_code == 302
    with app.app_context():
        saved = db.session.get(Indicator, indicator_id)
        assert (saved.valid_from, saved.valid_to) == (20253, 20262)


def test_migration_ends_inactive_indicators_after_their_last_figure(db_url):
    """active=False becomes valid_to = the last quarter with a figure (else before the
    first stored quarter), so old quarters keep the indicator and later ones do not."""
    app = make_app(db_url)
    with app.app_context():
        try:
            upgrade(revision="c29aba94f5ff")
            db.session.execute(
                text(
                    "INSERT INTO indicator (code, name, unit, field_of_action, kind, "
                    "by_target_group, decimal_places, active, sort_order) VALUES "
                    "('ON', 'an', 'x', '1', 'flow', false, 0, true, 1), "
                    "('USED', 'genutzt', 'x', '1', 'flow', false, 0, false, 2), "
                    "('NEVER', 'nie', 'x', '1', 'flow', false, 0, false, 3)"
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO municipality (name, ags, population, kim_participant) "
                    "VALUES ('X', '05958004', 1, true)"
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO reporting_period (year, quarter, is_open) "
                    "VALUES (2025, 3, false), (2025, 4, false)"
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO monitoring_entry (municipality_id, period_id, indicator_id, "
                    "value, created_at, updated_at, version, by_target_group) SELECT m.id, p.id, "
                    "i.id, 5, '2025-10-01', '2025-10-01', 1, false FROM municipality m, "
                    "reporting_period p, indicator i WHERE p.quarter = 3 AND i.code = 'USED'"
                )
            )
            db.session.commit()
            upgrade()
            rows = dict(db.session.execute(select(Indicator.code, Indicator.valid_to)).all())
            assert rows == {"ON": None, "USED": 20253, "NEVER": 20252}
        finally:
            db.session.remove()
            db.engine.dispose()


def test_demo_has_a_funding_year_and_reseeds(app):
    """The demo grants every funded post and forwards a town's or Träger's share; a
    forced reseed empties the funding tables first (a post with a grant is kept else)."""
    from kim_admin import demo

    with app.app_context():
        today = date(2026, 5, 15)
        demo.seed(today=today)
        district = db.session.scalar(select(User).where(User.role == "district_admin"))
        data = funding.funding_year(2026, district, today=today)
        assert len(data.rows) > 10
        assert {g.label[:10] for g in data.bausteine} == {"Baustein 1", "Baustein 2", "Baustein 3"}
        assert Decimal(0) < data.total.forwarded < data.total.granted
        demo.seed(force=True, today=today)  # the users are new ones, too
        district = db.session.scalar(select(User).where(User.role == "district_admin"))
        assert len(funding.funding_year(2026, district, today=today).rows) == len(data.rows)


def test_active_is_derived_from_the_validity():
    """``active`` reads the validity for today's quarter; setting it ends the indicator
    with the quarter before today's, or opens it again."""
    from models.indicator import quarter_key

    now = quarter_key(date.today())
    indicator = Indicator(code="X", name="x", valid_from=None, valid_to=None)
    assert indicator.active is True
    indicator.active = False
    assert indicator.valid_to == (now - 1 if now % 10 > 1 else now - 7)
    assert indicator.active is False and indicator.valid_in(indicator.valid_to)
    indicator.active = True
    assert indicator.valid_to is None
    later = Indicator(code="Y", name="y", valid_from=now + 10)
    assert later.active is False
    with pytest.raises(ValueError, match="beginnt erst später"):
        later.active = False
