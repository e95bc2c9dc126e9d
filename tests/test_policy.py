"""Who may do what, written by hand from DOMAIN.md §2, role by role.

``test_access.py`` derives its expectations from ``kim_admin.permissions``, so it
cannot notice a wrong grant: a table that gave the steering group full rights
would produce a matrix that agrees with it. This file does not read the table.
Every expectation here is a sentence of DOMAIN.md §2 turned into requests:
if the table and the domain disagree, these tests fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import func, select

from kim_admin.extensions import db
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    Partner,
    Post,
    PostFunding,
    ReportingPeriod,
    Room,
    TargetGroup,
    User,
)

from . import factories
from .support import Session

# The master-data lists every role but the municipal one reads (DOMAIN.md §4).
MASTER_DATA = ["municipality", "target_group", "room", "post", "partner", "indicator"]


@dataclass
class World:
    """Ids of one row per municipality (Arnsberg = own town of ``as_arnsberg``)."""

    arnsberg: int
    meschede: int
    own_room: int
    foreign_room: int
    own_post: int
    foreign_post: int
    period: int
    indicator: int


@pytest.fixture
def world(app: Flask, accounts) -> World:
    """Rooms and posts of Arnsberg and Meschede, a partner and an open quarter."""
    with app.app_context():
        rooms = [factories.room(town, f"{town.upper()}-Raum") for town in ("Arnsberg", "Meschede")]
        posts = [
            factories.post(town, f"{town.upper()}-Stelle") for town in ("Arnsberg", "Meschede")
        ]
        factories.partner("Caritas Testverband", "wohlfahrtsverband", ["Arnsberg"])
        period = factories.period(2026, 1, is_open=True)
        world = World(
            arnsberg=factories.town("Arnsberg").id,
            meschede=factories.town("Meschede").id,
            own_room=rooms[0].id,
            foreign_room=rooms[1].id,
            own_post=posts[0].id,
            foreign_post=posts[1].id,
            period=period.id,
            indicator=factories.indicator("BER_KONT").id,
        )
        db.session.commit()
        return world


def count(app: Flask, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def population(app: Flask, town_id: int) -> int:
    with app.app_context():
        return db.session.get(Municipality, town_id).population


def text(session: Session, path: str) -> str:
    response = session.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def new_forms(world: World, town_id: int) -> dict[str, dict]:
    """A valid "create" form for each kind of master data."""
    return {
        "municipality": {"name": "Neustadt", "ags": "05958990", "population": "10"},
        "target_group": {"name": "Neue Gruppe", "sort_order": "1", "active": "y"},
        "room": {"municipality": town_id, "name": "Neuer Raum", "kind": "buero"},
        "post": {
            "title": "Neue Stelle",
            "municipality": town_id,
            "employer_type": "kommune",
            "function": "case_management",
            "baustein": "2",
            "fte": "0,5",
            "status": "vakant",
        },
        "partner": {"name": "Neuer Partner", "kind": "sonstige"},
        "indicator": {
            "code": "NEU_X",
            "name": "Neu",
            "unit": "Anzahl",
            "field_of_action": "3",
            "kind": "flow",
            "decimal_places": "0",
            "sort_order": "1",
        },
        "reporting_period": {"year": "2031", "quarter": "1"},
    }


MODELS = {
    "municipality": Municipality,
    "target_group": TargetGroup,
    "room": Room,
    "post": Post,
    "partner": Partner,
    "indicator": Indicator,
    "reporting_period": ReportingPeriod,
}


def figures_form(world: World) -> tuple[str, dict]:
    """A save on the data-entry page: Arnsberg's contacts in the open quarter."""
    key = f"{world.indicator}-0"
    url = f"/erfassung/?municipality={world.arnsberg}&period={world.period}"
    return url, {"action": "save", f"value-{key}": "5", f"comment-{key}": "", f"version-{key}": "0"}


# --- anyone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/room/", "/municipality/", "/user/", "/audit_event/", "/erfassung/"]
)
def test_nobody_gets_in_without_logging_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# --- Steuerungsgruppe: reads everything, changes no master data and no figures ----------


def test_steering_group_reads_every_municipality(world, as_steering):
    for resource in MASTER_DATA:
        text(as_steering, f"/{resource}/")
    rooms = text(as_steering, "/room/")
    assert "ARNSBERG-Raum" in rooms and "MESCHEDE-Raum" in rooms
    posts = text(as_steering, "/post/")
    assert "ARNSBERG-Stelle" in posts and "MESCHEDE-Stelle" in posts
    assert "Meschede" in text(as_steering, f"/municipality/details/?id={world.meschede}")
    assert "MESCHEDE-Raum" in text(as_steering, f"/room/details/?id={world.foreign_room}")
    text(as_steering, "/meldestand/")


def test_steering_group_downloads_exports_and_the_report(world, as_steering):
    csv = text(as_steering, "/room/export/csv/")
    assert "ARNSBERG-Raum" in csv and "MESCHEDE-Raum" in csv
    assert as_steering.get("/post/export/xlsx/").status_code == 200
    assert as_steering.get("/municipality/export/xlsx/").status_code == 200
    text(as_steering, "/bericht/")


def test_steering_group_cannot_edit_a_municipality(app, world, as_steering):
    before = population(app, world.arnsberg)
    assert as_steering.get(f"/municipality/edit/?id={world.arnsberg}").status_code == 403
    response = as_steering.post(
        f"/municipality/edit/?id={world.arnsberg}",
        {"name": "Arnsberg", "ags": "05958004", "population": "1"},
    )
    assert response.status_code == 403
    assert population(app, world.arnsberg) == before
    deleted = as_steering.post("/municipality/delete/", {"id": world.meschede})
    assert deleted.status_code == 403
    with app.app_context():
        assert db.session.get(Municipality, world.meschede) is not None


@pytest.mark.parametrize("resource", [*MASTER_DATA, "reporting_period"])
def test_steering_group_creates_no_master_data(app, world, as_steering, resource):
    model = MODELS[resource]
    before = count(app, model)
    assert as_steering.get(f"/{resource}/new/").status_code == 403
    form = new_forms(world, world.arnsberg)[resource]
    assert as_steering.post(f"/{resource}/new/", form).status_code == 403
    assert count(app, model) == before


def test_steering_group_changes_no_room_or_post(app, world, as_steering):
    edit = {"municipality": world.arnsberg, "name": "Umbenannt", "kind": "buero"}
    assert as_steering.post(f"/room/edit/?id={world.own_room}", edit).status_code == 403
    assert as_steering.post("/room/delete/", {"id": world.own_room}).status_code == 403
    assert as_steering.post("/post/delete/", {"id": world.own_post}).status_code == 403
    with app.app_context():
        assert db.session.get(Room, world.own_room).name == "ARNSBERG-Raum"
        assert db.session.get(Post, world.own_post) is not None


def test_steering_group_cannot_write_figures(app, world, as_steering):
    url, form = figures_form(world)
    assert as_steering.post(url, form).status_code == 403
    assert count(app, MonitoringEntry) == 0


def test_steering_group_sees_no_users_and_no_audit_log(world, as_steering):
    for path in ("/user/", "/user/new/", "/audit_event/", "/audit_event/export/csv/"):
        assert as_steering.get(path).status_code == 403, path


def test_only_the_district_sees_the_mail_outbox(world, as_district, as_steering, as_arnsberg):
    """Failed notifications are the district's to follow up; the outbox names every user."""
    assert as_district.get("/notification/").status_code == 200
    assert as_district.get("/notification/export/xlsx/").status_code == 200
    for session in (as_steering, as_arnsberg):
        assert session.get("/notification/").status_code == 403
        assert session.get("/notification/export/csv/").status_code == 403
    assert as_district.post("/notification/new/", {"state": "sent"}).status_code == 403


# --- Kommune: shared master data, its own rooms and posts, nothing of other towns -------


def test_municipal_staff_reads_shared_master_data(world, as_arnsberg):
    assert "Geduldete" in text(as_arnsberg, "/target_group/")
    assert "BER_KONT" in text(as_arnsberg, "/indicator/")
    assert "Caritas Testverband" in text(as_arnsberg, "/partner/")


def test_municipal_staff_sees_only_own_rooms_and_posts(world, as_arnsberg):
    rooms = text(as_arnsberg, "/room/")
    assert "ARNSBERG-Raum" in rooms and "MESCHEDE-Raum" not in rooms
    posts = text(as_arnsberg, "/post/")
    assert "ARNSBERG-Stelle" in posts and "MESCHEDE-Stelle" not in posts
    assert "ARNSBERG-Raum" in text(as_arnsberg, f"/room/details/?id={world.own_room}")
    searched = text(as_arnsberg, "/room/?search=MESCHEDE")
    assert "MESCHEDE-Raum" not in searched
    exported = text(as_arnsberg, "/room/export/csv/")
    assert "ARNSBERG-Raum" in exported and "MESCHEDE" not in exported


@pytest.mark.parametrize(("resource", "row"), [("room", "foreign_room"), ("post", "foreign_post")])
def test_municipal_staff_cannot_open_another_towns_row(world, as_arnsberg, resource, row):
    """Another town's row looks like a missing one: 404, or back to the own list."""
    response = as_arnsberg.get(f"/{resource}/details/?id={getattr(world, row)}")
    assert response.status_code in (302, 404)
    assert "MESCHEDE" not in response.get_data(as_text=True)
    if response.status_code == 302:
        follow = as_arnsberg.get(response.headers["Location"])
        assert "MESCHEDE" not in follow.get_data(as_text=True)


@pytest.mark.parametrize("resource", [*MASTER_DATA, "reporting_period"])
def test_municipal_staff_creates_no_master_data(app, world, as_arnsberg, resource):
    model = MODELS[resource]
    before = count(app, model)
    form = new_forms(world, world.arnsberg)[resource]  # even for their own town
    assert as_arnsberg.post(f"/{resource}/new/", form).status_code == 403
    assert count(app, model) == before


def test_municipal_staff_cannot_change_own_rooms_or_posts(app, world, as_arnsberg):
    edit = {"municipality": world.arnsberg, "name": "Umbenannt", "kind": "buero"}
    assert as_arnsberg.get(f"/room/edit/?id={world.own_room}").status_code == 403
    assert as_arnsberg.post(f"/room/edit/?id={world.own_room}", edit).status_code == 403
    assert as_arnsberg.post("/room/delete/", {"id": world.own_room}).status_code == 403
    assert as_arnsberg.post("/post/delete/", {"id": world.own_post}).status_code == 403
    with app.app_context():
        assert db.session.get(Room, world.own_room).name == "ARNSBERG-Raum"
        assert db.session.get(Post, world.own_post) is not None


def test_municipal_staff_sees_no_users_municipalities_or_audit_log(world, as_arnsberg):
    for path in (
        "/user/",
        "/municipality/",
        f"/municipality/details/?id={world.arnsberg}",
        "/municipality/export/csv/",
        "/audit_event/",
    ):
        assert as_arnsberg.get(path).status_code == 403, path


def test_municipal_staff_cannot_open_another_towns_figures(world, as_arnsberg):
    url = f"/erfassung/?municipality={world.meschede}&period={world.period}"
    response = as_arnsberg.get(url)
    assert response.status_code == 404
    assert "Meschede" not in response.get_data(as_text=True)


# --- Kreisverwaltung: everything ---------------------------------------------------------


def test_district_edits_municipalities(app, world, as_district):
    response = as_district.post(
        f"/municipality/edit/?id={world.arnsberg}",
        {"name": "Arnsberg", "ags": "05958004", "population": "74400", "kim_participant": "y"},
    )
    assert response.status_code == 302
    assert population(app, world.arnsberg) == 74400


@pytest.mark.parametrize("resource", [*MASTER_DATA, "reporting_period"])
def test_district_creates_master_data(app, world, as_district, resource):
    model = MODELS[resource]
    before = count(app, model)
    form = new_forms(world, world.meschede)[resource]  # any town
    assert as_district.post(f"/{resource}/new/", form).status_code == 302
    assert count(app, model) == before + 1


def test_district_manages_users(app, world, as_district):
    assert "arnsberg@test.example" in text(as_district, "/user/")
    response = as_district.post(
        "/user/new/",
        {
            "email": "neu@test.example",
            "role": "municipal_staff",
            "municipality": world.meschede,
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        created = db.session.scalar(select(User).where(User.email == "neu@test.example"))
        assert created is not None and created.municipality_id == world.meschede


def test_district_reads_the_audit_log_which_nobody_changes(app, world, as_district):
    listing = text(as_district, "/audit_event/")
    assert "Anmeldung" in listing
    with app.app_context():
        event = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id))
    assert as_district.get(f"/audit_event/details/?id={event}").status_code == 200
    assert as_district.post("/audit_event/new/", {"action": "erfunden"}).status_code == 403
    assert as_district.post("/audit_event/delete/", {"id": event}).status_code == 403


# --- Förderung: the district keeps it, the steering group reads it, a town its own -------


@pytest.fixture
def fundings(app: Flask, world: World) -> dict[str, int]:
    """A grant of 2026 for the Arnsberg and the Meschede post."""
    with app.app_context():
        ids = {
            name: factories.funding(
                db.session.get(Post, post_id), 2026, notice_number=f"{name}-Bescheid"
            ).id
            for name, post_id in (("ARNSBERG", world.own_post), ("MESCHEDE", world.foreign_post))
        }
        db.session.commit()
        return ids


def funding_form(post_id: int) -> dict:
    return {
        "post": post_id,
        "year": "2027",
        "baustein": "2",
        "funded_fte": "0,5",
        "funded_from": "2027-01-01",
        "funded_until": "2027-12-31",
        "grant_amount": "1000",
    }


def test_district_enters_funding(app, world, fundings, as_district):
    before = count(app, PostFunding)
    assert (
        as_district.post("/post_funding/new/", funding_form(world.foreign_post)).status_code == 302
    )
    assert count(app, PostFunding) == before + 1
    assert as_district.get("/foerderung/export/xlsx/?year=2026").status_code == 200


def test_steering_group_reads_and_exports_funding_but_changes_none(
    app, world, fundings, as_steering
):
    listing = text(as_steering, "/post_funding/")
    assert "ARNSBERG-Stelle" in listing and "MESCHEDE-Stelle" in listing
    page = text(as_steering, "/foerderung/?year=2026")
    assert "ARNSBERG-Stelle" in page and "MESCHEDE-Stelle" in page
    assert as_steering.get("/foerderung/export/xlsx/?year=2026").status_code == 200
    assert as_steering.get("/post_funding/export/xlsx/").status_code == 200
    before = count(app, PostFunding)
    assert as_steering.post("/post_funding/new/", funding_form(world.own_post)).status_code == 403
    deleted = as_steering.post("/post_funding/delete/", {"id": fundings["ARNSBERG"]})
    assert deleted.status_code == 403
    assert as_steering.post("/post_vacancy/new/", {"post": world.own_post}).status_code == 403
    assert count(app, PostFunding) == before


def test_municipal_staff_reads_own_posts_funding_only(app, world, fundings, as_arnsberg):
    listing = text(as_arnsberg, "/post_funding/")
    assert "ARNSBERG-Bescheid" in listing and "MESCHEDE" not in listing
    page = text(as_arnsberg, "/foerderung/?year=2026")
    assert "ARNSBERG-Stelle" in page and "MESCHEDE" not in page and "Meschede" not in page
    foreign = as_arnsberg.get(f"/post_funding/details/?id={fundings['MESCHEDE']}")
    assert "MESCHEDE" not in foreign.get_data(as_text=True)
    before = count(app, PostFunding)
    assert as_arnsberg.post("/post_funding/new/", funding_form(world.own_post)).status_code == 403
    edit = as_arnsberg.post(
        f"/post_funding/edit/?id={fundings['ARNSBERG']}", funding_form(world.own_post)
    )
    assert edit.status_code == 403
    assert as_arnsberg.post("/post_vacancy/new/", {"post": world.own_post}).status_code == 403
    assert count(app, PostFunding) == before
    # Reading, not pulling the district's statement or lists of it.
    assert as_arnsberg.get("/foerderung/export/xlsx/?year=2026").status_code == 403
    assert as_arnsberg.get("/post_funding/export/csv/").status_code == 403


# --- Handlungsfeld 4: the steering group's workspace (DOMAIN.md §2) -----------------------

WORKSPACE_FORMS = {
    "meeting": {"held_on": "2026-03-02", "place": "Kreishaus Meschede"},
    "measure": {"title": "Kinderbetreuung im Sprachkurs", "status": "geplant"},
}


@pytest.mark.parametrize("resource", ["meeting", "measure"])
def test_steering_group_writes_its_workspace(app, world, as_steering, resource):
    form = dict(WORKSPACE_FORMS[resource], municipalities=[world.arnsberg])
    assert as_steering.post(f"/{resource}/new/", form).status_code == 302
    assert as_steering.get(f"/{resource}/").status_code == 200
    assert text(as_steering, "/probleme/")


def test_steering_group_writes_decisions(app, world, as_steering):
    with app.app_context():
        meeting = factories.meeting("Kreishaus")
        db.session.commit()
        meeting_id = meeting.id
    response = as_steering.post("/decision/new/", {"meeting": meeting_id, "title": "Beschluss 1"})
    assert response.status_code == 302
    assert "Beschluss 1" in text(as_steering, "/decision/")


def test_steering_group_reads_but_does_not_report_structural_problems(app, world, as_steering):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world.period)
        factories.structural_problem("Meschede", period, description="MESCHEDE-Problem")
        db.session.commit()
    assert "MESCHEDE-Problem" in text(as_steering, "/structural_problem/")
    form = {
        "municipality": world.arnsberg,
        "period": world.period,
        "category": "wohnen",
        "frequency": "selten",
        "description": "x",
    }
    assert as_steering.post("/structural_problem/new/", form).status_code == 403


def test_municipal_staff_reports_problems_and_reads_measures_of_their_town(app, world, as_arnsberg):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world.period)
        factories.structural_problem("Meschede", period, description="MESCHEDE-Problem")
        factories.measure("ARNSBERG-Maßnahme", municipalities=["Arnsberg"])
        factories.measure("MESCHEDE-Maßnahme", municipalities=["Meschede"])
        db.session.commit()
    form = {
        "municipality": world.arnsberg,
        "period": world.period,
        "category": "wohnen",
        "frequency": "selten",
        "description": "ARNSBERG-Problem",
    }
    assert as_arnsberg.post("/structural_problem/new/", form).status_code == 302
    problems = text(as_arnsberg, "/structural_problem/")
    assert "ARNSBERG-Problem" in problems and "MESCHEDE" not in problems
    measures = text(as_arnsberg, "/measure/")
    assert "ARNSBERG-Maßnahme" in measures and "MESCHEDE" not in measures
    # Reading only: no measure, meeting or decision of their own, no overview across towns.
    assert as_arnsberg.post("/measure/new/", WORKSPACE_FORMS["measure"]).status_code == 403
    assert as_arnsberg.post("/meeting/new/", WORKSPACE_FORMS["meeting"]).status_code == 403
    for path in ("/meeting/", "/decision/", "/probleme/"):
        assert as_arnsberg.get(path).status_code == 403, path


def test_district_does_everything_in_the_workspace(app, world, as_district):
    form = dict(WORKSPACE_FORMS["measure"], municipalities=[world.meschede])
    assert as_district.post("/measure/new/", form).status_code == 302
    problem = {
        "municipality": world.meschede,
        "period": world.period,
        "category": "wohnen",
        "frequency": "selten",
        "description": "Kreis trägt nach",
    }
    assert as_district.post("/structural_problem/new/", problem).status_code == 302
    assert "Kreis trägt nach" in text(as_district, "/structural_problem/")
    assert text(as_district, "/probleme/")
