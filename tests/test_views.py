"""The district admin works end to end in every master-data view, in German,
and bad input comes back with German errors beside the fields and nothing lost."""

from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import func, select

from kim_admin.extensions import db
from models import (
    Indicator,
    Municipality,
    Partner,
    Post,
    ReportingPeriod,
    Room,
    TargetGroup,
    User,
)

from . import factories

LEAKS = (
    "IntegrityError",
    "Traceback",
    "sqlite3",
    "psycopg",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "constraint",
    "CONSTRAINT",
)


def field_error(html: str, field_id: str) -> str:
    """The error text rendered beside the input ``field_id`` (empty if none)."""
    start = html.find(f'id="{field_id}"')
    if start < 0:
        return ""
    group = html[start : html.find('<div class="form-group', start)]
    match = re.search(r'<div class="invalid-feedback">(.*?)</div>', group, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", match.group(1)).strip() if match else ""


def input_value(html: str, field_id: str) -> str | None:
    match = re.search(rf'<input[^>]*id="{field_id}"[^>]*value="([^"]*)"', html)
    return match.group(1) if match else None


def ids(app) -> dict[str, int]:
    """Ids of reference rows used as relation values in forms, and of an open quarter."""
    with app.app_context():
        period = factories.period(2025, 3)
        db.session.commit()
        return {
            "town": factories.town("Arnsberg").id,
            "other": factories.town("Meschede").id,
            "group": factories.group().id,
            "indicator": factories.indicator("BER_KONT").id,
            "period": period.id,
        }


# endpoint, model, form for create, form changes for edit, attribute to check.
# Figures are not among them: they are entered on the data-entry page only (one write
# path, tests/test_reporting.py); their generic list reads and exports.
CASES = [
    (
        "municipality",
        Municipality,
        lambda i: {"name": "Testhausen", "ags": "05958999", "population": "1234"},
        {"population": "1300"},
        ("population", 1300),
    ),
    (
        "target_group",
        TargetGroup,
        lambda i: {"name": "Pendler", "legal_area": "SGB III", "active": "y", "sort_order": "20"},
        {"name": "Pendlerinnen"},
        ("name", "Pendlerinnen"),
    ),
    (
        "room",
        Room,
        lambda i: {
            "municipality": i["town"],
            "name": "Raum 1",
            "kind": "buero",
            "seats": "3",
            "active": "y",
        },
        {"seats": "5"},
        ("seats", 5),
    ),
    (
        "post",
        Post,
        lambda i: {
            "title": "CM Test",
            "municipality": i["town"],
            "employer_type": "kommune",
            "function": "case_management",
            "baustein": "2",
            "fte": "0,75",
            "status": "besetzt",
            "valid_from": "2025-01-01",
            "target_groups": [i["group"]],
        },
        {"fte": "0,5"},
        ("fte", 0.5),
    ),
    (
        "partner",
        Partner,
        lambda i: {
            "name": "JMD Test",
            "kind": "jmd",
            "municipalities": [i["town"]],
            "target_groups": [i["group"]],
            "email": "jmd@test.example",
            "active": "y",
        },
        {"phone": "02931 123"},
        ("phone", "02931 123"),
    ),
    (
        "indicator",
        Indicator,
        lambda i: {
            "code": "TEST_X",
            "name": "Testkennzahl",
            "unit": "Anzahl",
            "field_of_action": "3",
            "kind": "flow",
            "decimal_places": "0",
            "min_value": "0",
            "max_value": "500",
            "active": "y",
            "sort_order": "99",
        },
        {"max_value": "600"},
        ("max_value", 600),
    ),
    (
        "reporting_period",
        ReportingPeriod,
        lambda i: {"year": "2030", "quarter": "2", "deadline": "2030-07-15"},
        {"is_open": "y"},
        ("is_open", True),
    ),
    (
        "user",
        User,
        lambda i: {
            "email": "neu@test.example",
            "name": "Neu",
            "role": "municipal_staff",
            "municipality": i["town"],
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
        {"name": "Neu Geändert"},
        ("name", "Neu Geändert"),
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "model", "make", "change", "check"), CASES, ids=[c[0] for c in CASES]
)
def test_district_admin_crud(app, as_district, endpoint, model, make, change, check):
    form = make(ids(app))
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(model))

    page = as_district.get(f"/{endpoint}/new/")
    assert page.status_code == 200
    created = as_district.post(f"/{endpoint}/new/", form)
    assert created.status_code == 302, field_errors_of(created)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(model)) == before + 1
        row_id = db.session.scalar(select(func.max(model.id)))

    listing = as_district.get(f"/{endpoint}/")
    assert listing.status_code == 200
    assert as_district.get(f"/{endpoint}/details/?id={row_id}").status_code == 200
    assert as_district.get(f"/{endpoint}/edit/?id={row_id}").status_code == 200

    edited = as_district.post(f"/{endpoint}/edit/?id={row_id}", {**form, **change})
    assert edited.status_code == 302, field_errors_of(edited)
    attribute, expected = check
    with app.app_context():
        assert getattr(db.session.get(model, row_id), attribute) == expected

    deleted = as_district.post(f"/{endpoint}/delete/", {"id": row_id})
    assert deleted.status_code == 302
    with app.app_context():
        assert db.session.get(model, row_id) is None


def field_errors_of(response) -> str:
    html = response.get_data(as_text=True)
    return " | ".join(re.findall(r'<div class="invalid-feedback">(.*?)</div>', html, re.S))[:500]


@pytest.mark.parametrize(
    "endpoint",
    [
        "municipality",
        "target_group",
        "room",
        "post",
        "partner",
        "indicator",
        "reporting_period",
        "monitoring_entry",
        "submission",
        "user",
        "audit_event",
    ],
)
def test_list_pages_are_german(as_district, endpoint):
    html = as_district.get(f"/{endpoint}/").get_data(as_text=True)
    assert 'lang="de"' in html
    assert "Liste" in html and "Stammdaten" in html and "Abmelden" in html
    assert "Create" not in html and "Delete" not in html and "List (" not in html


def test_post_list_labels_and_formats(app, as_district):
    i = ids(app)
    with app.app_context():
        db.session.add(
            Post(
                title="Koordination",
                municipality_id=i["town"],
                employer_type="kreis",
                function="koordination",
                baustein="1",
                fte=0.5,
                status="besetzt",
            )
        )
        db.session.commit()
    html = as_district.get("/post/").get_data(as_text=True)
    for label in ("Bezeichnung", "Kommune", "Funktion", "Baustein", "Stellenanteil (VZÄ)"):
        assert label in html
    assert "0,50" in html
    assert "Baustein 1 – Strategische Steuerung" in html


def test_filter_and_search(app, as_district):
    i = ids(app)
    with app.app_context():
        db.session.add_all(
            [
                Room(name="Raum Neheim", municipality_id=i["town"], kind="buero"),
                Room(name="Raum Freienohl", municipality_id=i["other"], kind="buero"),
            ]
        )
        db.session.commit()
    searched = as_district.get("/room/?search=Neheim").get_data(as_text=True)
    assert "Raum Neheim" in searched and "Raum Freienohl" not in searched
    page = as_district.get("/room/").get_data(as_text=True)
    assert "Filter hinzufügen" in page


# --- bad input -------------------------------------------------------------


def test_duplicate_ags(as_district):
    response = as_district.post(
        "/municipality/new/", {"name": "Doppelstadt", "ags": "05958004", "population": "10"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_error(html, "ags") == "Existiert bereits."
    assert input_value(html, "name") == "Doppelstadt"
    assert input_value(html, "ags") == "05958004"


def test_fte_out_of_range(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/post/new/",
        {
            "title": "Zu groß",
            "municipality": i["town"],
            "employer_type": "kreis",
            "function": "koordination",
            "baustein": "1",
            "fte": "1,5",
            "status": "besetzt",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_error(html, "fte") == "Der Stellenanteil muss zwischen 0,05 und 1,00 liegen."
    assert input_value(html, "fte") == "1,5"
    assert input_value(html, "title") == "Zu groß"


def test_end_date_before_start(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/post/new/",
        {
            "title": "Rückwärts",
            "municipality": i["town"],
            "employer_type": "kreis",
            "function": "koordination",
            "baustein": "1",
            "fte": "1",
            "status": "besetzt",
            "valid_from": "2025-06-01",
            "valid_until": "2025-01-31",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_error(html, "valid_until") == "Das Datum darf nicht vor „Von“ liegen."
    assert input_value(html, "valid_from") == "2025-06-01"
    assert input_value(html, "valid_until") == "2025-01-31"


@pytest.mark.parametrize("endpoint", ["partner", "user"])
def test_malformed_email(app, as_district, endpoint):
    i = ids(app)
    form = {
        "partner": {"name": "Ohne Mail", "kind": "sonstige", "email": "kein-at-zeichen"},
        "user": {
            "email": "kein-at-zeichen",
            "role": "steering_group",
            "new_password": "ein-gutes-passwort",
        },
    }[endpoint]
    response = as_district.post(f"/{endpoint}/new/", form)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "gültige E-Mail-Adresse" in field_error(html, "email")
    assert input_value(html, "email") == "kein-at-zeichen"
    assert i  # reference rows exist; nothing was written:
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Partner)) == 0


def test_negative_value(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/room/new/",
        {"municipality": i["town"], "name": "Raum -1", "kind": "buero", "seats": "-1"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_error(html, "seats") == "Der Wert darf nicht negativ sein."
    assert input_value(html, "seats") == "-1"
    assert input_value(html, "name") == "Raum -1"


def test_bad_decimal_text(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/post/new/",
        {
            "title": "Text",
            "municipality": i["town"],
            "employer_type": "kreis",
            "function": "koordination",
            "baustein": "1",
            "fte": "halbe",
            "status": "besetzt",
        },
    )
    html = response.get_data(as_text=True)
    assert field_error(html, "fte") == "Bitte eine Zahl eingeben, z. B. 0,75."
    assert input_value(html, "fte") == "halbe"


def test_database_integrity_error_is_german_and_keeps_input(app, as_district):
    """A duplicate quarter passes the form but not the database's unique constraint."""
    form = {"year": "2030", "quarter": "3"}
    assert as_district.post("/reporting_period/new/", form).status_code == 302
    response = as_district.post("/reporting_period/new/", {**form, "deadline": "2030-10-15"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Ein Datensatz mit diesen Angaben existiert bereits." in html
    assert input_value(html, "deadline") == "2030-10-15"
    assert not any(leak in html for leak in LEAKS)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ReportingPeriod)) == 1


def test_delete_in_use_is_refused_in_german(app, as_district):
    i = ids(app)
    with app.app_context():
        db.session.add(Room(name="Raum", municipality_id=i["town"], kind="buero"))
        db.session.commit()
    response = as_district.post("/municipality/delete/", {"id": i["town"]}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "wird noch von anderen Daten verwendet" in html
    assert not any(leak in html for leak in LEAKS)
    with app.app_context():
        assert db.session.get(Municipality, i["town"]) is not None


def test_post_employer_rules(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/post/new/",
        {
            "title": "Träger fehlt",
            "municipality": i["town"],
            "employer_type": "partner",
            "function": "case_management",
            "baustein": "2",
            "fte": "0,5",
            "status": "vakant",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Bitte den Träger (Kooperationspartner) auswählen." in html
    assert input_value(html, "title") == "Träger fehlt"


def test_user_form_hashes_password(app, as_district):
    i = ids(app)
    response = as_district.post(
        "/user/new/",
        {
            "email": "Person@Test.Example",
            "role": "municipal_staff",
            "municipality": i["town"],
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "person@test.example"))
        # Hashed by set_password with the configured method (scrypt outside the tests).
        assert user.password_hash.startswith(app.config["KIM_PASSWORD_HASH_METHOD"] + "$")
        assert user.check_password("ein-gutes-passwort")
    details = as_district.get(f"/user/details/?id={user.id}").get_data(as_text=True)
    assert user.password_hash.split("$")[-1] not in details
    assert "pbkdf2" not in details and "scrypt" not in details
    assert "session_token" not in details and user.session_token not in details


def test_municipal_user_needs_municipality_in_form(as_district):
    response = as_district.post(
        "/user/new/",
        {
            "email": "ohne@test.example",
            "role": "municipal_staff",
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Benutzer der Rolle Kommune brauchen eine Kommune." in html
    assert input_value(html, "email") == "ohne@test.example"


def test_admin_cannot_demote_self(app, as_district, accounts):
    with app.app_context():
        me = db.session.scalar(select(User).where(User.email == accounts.district))
    response = as_district.post(
        f"/user/edit/?id={me.id}",
        {"email": accounts.district, "role": "steering_group", "active": "y"},
    )
    assert "Die eigene Rolle kann nicht geändert werden." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, me.id).role == "district_admin"


def test_audit_log_is_read_only(as_district):
    assert as_district.get("/audit_event/").status_code == 200
    assert as_district.get("/audit_event/new/").status_code == 403
    assert as_district.post("/audit_event/new/", {"action": "x"}).status_code == 403


def test_details_use_german_formats(app, as_district):
    i = ids(app)
    with app.app_context():
        room = Room(name="Raum D", municipality_id=i["town"], kind="buero", barrier_free=True)
        post = Post(
            title="Kreisstelle",
            employer_type="kreis",
            function="koordination",
            baustein="1",
            fte=0.5,
            status="besetzt",
            valid_from=date(2025, 2, 1),
        )
        db.session.add_all([room, post])
        db.session.commit()
        room_id, post_id = room.id, post.id
    room_page = as_district.get(f"/room/details/?id={room_id}").get_data(as_text=True)
    assert ">ja<" in room_page.replace(" ", "").replace("\n", "") and "True" not in room_page
    post_page = as_district.get(f"/post/details/?id={post_id}").get_data(as_text=True)
    assert "01.02.2025" in post_page and "0,50" in post_page and "Kreisebene" in post_page


def test_required_select_starts_empty(as_district):
    html = as_district.get("/room/new/").get_data(as_text=True)
    assert "– bitte auswählen –" in html
    response = as_district.post(
        "/room/new/", {"name": "Ohne Kommune", "kind": "buero", "municipality": "__None"}
    )
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "municipality") == "Bitte auswählen."
