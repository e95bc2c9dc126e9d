"""The start page (Handlungsfelder cockpit) and its JSON endpoint, per role and scope."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from kim_admin import dashboard
from kim_admin.extensions import db
from models import (
    Indicator,
    MonitoringEntry,
    Municipality,
    Post,
    ReportingPeriod,
    Submission,
    TargetGroup,
    User,
)

PARTICIPANTS = [
    "Arnsberg",
    "Bestwig",
    "Hallenberg",
    "Medebach",
    "Meschede",
    "Schmallenberg",
    "Sundern (Sauerland)",
]


@pytest.fixture
def cockpit(app, accounts):
    """Two closed quarters with figures and an open, overdue one with mixed statuses."""
    today = date.today()
    with app.app_context():
        towns = {m.name: m for m in db.session.scalars(select(Municipality))}
        codes = {i.code: i for i in db.session.scalars(select(Indicator))}
        group = db.session.scalars(select(TargetGroup)).first()
        periods = [
            ReportingPeriod(year=2024, quarter=3),
            ReportingPeriod(year=2024, quarter=4),
            ReportingPeriod(year=2025, quarter=1, is_open=True, deadline=today - timedelta(days=3)),
        ]
        db.session.add_all(periods)
        values = {}
        for n, name in enumerate(["Arnsberg", "Meschede", "Bestwig"], start=1):
            for k, period in enumerate(periods[:2], start=1):
                for code, group_ in (("CM_NEU", group), ("CM_AKT", group), ("BER_KONT", None)):
                    value = 10 * n + k + len(code)
                    values[(name, str(period), code)] = value
                    db.session.add(
                        MonitoringEntry(
                            municipality=towns[name],
                            period=period,
                            indicator=codes[code],
                            target_group=group_,
                            value=Decimal(value),
                        )
                    )
        db.session.add_all(
            [
                Submission(municipality=towns["Arnsberg"], period=periods[2], status="submitted"),
                Submission(municipality=towns["Meschede"], period=periods[2], status="returned"),
                Submission(municipality=towns["Bestwig"], period=periods[2], status="approved"),
            ]
        )
        for town, baustein, fte, status in (
            ("Arnsberg", "2", "1.00", "besetzt"),
            ("Meschede", "2", "0.50", "vakant"),
            (None, "1", "0.75", "besetzt"),
        ):
            db.session.add(
                Post(
                    title=f"Stelle {town}",
                    municipality=towns.get(town),
                    employer_type="kommune" if town else "kreis",
                    function="case_management" if town else "koordination",
                    baustein=baustein,
                    fte=Decimal(fte),
                    status=status,
                )
            )
        db.session.commit()
    return {"values": values}


def test_json_covers_participants_for_district_and_steering(app, cockpit, as_district, as_steering):
    for session in (as_district, as_steering):
        data = session.get("/dashboard.json").get_json()
        assert data["periods"] == ["Q3/2024", "Q4/2024", "Q1/2025"]
        new_cases = next(i for i in data["indicators"] if i["code"] == "CM_NEU")
        assert [s["municipality"] for s in new_cases["series"]] == PARTICIPANTS
        series = {s["municipality"]: s for s in new_cases["series"]}
        values = cockpit["values"]
        assert series["Meschede"]["values"] == [
            values[("Meschede", "Q3/2024", "CM_NEU")],
            values[("Meschede", "Q4/2024", "CM_NEU")],
            None,
        ]
        assert series["Arnsberg"]["population"] == 74300
        # FTE indicators are not charted as counts.
        assert "VZAE_BES" not in [i["code"] for i in data["indicators"]]


def test_json_of_municipal_user_is_own_only(cockpit, as_arnsberg):
    response = as_arnsberg.get("/dashboard.json")
    assert response.status_code == 200
    data = response.get_json()
    towns = {s["municipality"] for i in data["indicators"] for s in i["series"]}
    assert towns == {"Arnsberg"}
    assert "Meschede" not in response.get_data(as_text=True)
    page = as_arnsberg.get("/").get_data(as_text=True)
    assert "Meschede" not in page and "Bestwig" not in page


def test_json_needs_login(client, cockpit):
    response = client.get("/dashboard.json")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_page_shows_open_and_overdue_reports(cockpit, as_district):
    html = as_district.get("/").get_data(as_text=True)
    assert "Meldungen Q1/2025" in html
    # Seven participants: Arnsberg submitted, Bestwig approved, five still open and late.
    assert "5 offen" in html and "5 überfällig" in html
    assert "2 eingereicht oder freigegeben" in html
    assert "canvas" in html and 'data-code="CM_NEU"' in html
    assert "Daten als Tabelle" in html  # the table fallback of each chart


def test_cases_and_fte(app, cockpit, accounts):
    with app.app_context():
        district = db.session.scalar(select(User).where(User.email == accounts.district))
        periods = dashboard.recent_periods(dashboard.current_period(), 3)
        cases = {c["code"]: c for c in dashboard.case_figures(district, periods)}
        values = cockpit["values"]
        new_now = sum(values[(t, "Q4/2024", "CM_NEU")] for t in ("Arnsberg", "Meschede", "Bestwig"))
        new_before = sum(
            values[(t, "Q3/2024", "CM_NEU")] for t in ("Arnsberg", "Meschede", "Bestwig")
        )
        # The open quarter has no figures yet: the last complete pair is compared.
        assert cases["CM_NEU"]["period"] == "Q4/2024" and cases["CM_NEU"]["previous"] == "Q3/2024"
        assert cases["CM_NEU"]["value"] == new_now
        assert cases["CM_NEU"]["change"] == new_now - new_before
        fte = {
            label.split(" –")[0]: (total, filled)
            for label, total, filled in dashboard.fte_by_baustein(district)
        }
        assert fte["Baustein 2"] == (1.5, 1.0) and fte["Baustein 1"] == (0.75, 0.75)
        arnsberg = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        own = {
            label.split(" –")[0]: (total, filled)
            for label, total, filled in dashboard.fte_by_baustein(arnsberg)
        }
        assert own["Baustein 2"] == (1.0, 1.0) and own["Baustein 1"] == (0.0, 0.0)
        own_cases = {c["code"]: c for c in dashboard.case_figures(arnsberg, periods)}
        assert own_cases["CM_NEU"]["value"] == values[("Arnsberg", "Q4/2024", "CM_NEU")]


def test_what_is_due_for_a_municipality(app, cockpit, accounts, as_arnsberg):
    html = as_arnsberg.get("/").get_data(as_text=True)
    assert "Was von uns fällig ist: Q1/2025" in html
    assert "eingereicht" in html and "nichts weiter zu tun" in html
    session_meschede = type(as_arnsberg)(app.test_client())
    session_meschede.login(accounts.meschede)
    html = session_meschede.get("/").get_data(as_text=True)
    assert "zurückgegeben" in html and "überschritten" in html
    assert "Zahlen erfassen und melden" in html
