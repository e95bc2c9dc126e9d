"""One access test over every admin endpoint × role × own/foreign object.

The cases are generated from ``kim_admin.permissions`` (the permission table and
the municipal scope), not written by hand: a view or action added to the table
is tested automatically, and so is any endpoint the table does not grant.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from decimal import Decimal

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import select

from kim_admin import create_app
from kim_admin.extensions import db
from kim_admin.permissions import (
    CREATE,
    DELETE,
    EDIT,
    EXPORT,
    MUNICIPAL_STAFF,
    PERMISSIONS,
    READ,
    SCOPED_BY_MUNICIPALITY,
    STEERING_GROUP,
)
from kim_admin.reference import load_reference_data
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    Partner,
    Post,
    ReportingPeriod,
    Room,
    Submission,
    TargetGroup,
    User,
    ValidationRule,
)

from .conftest import reset_database, url_under_test
from .support import PASSWORD, Session

# Every Flask-Admin model view of the app, by endpoint.
RESOURCES = [
    "municipality",
    "target_group",
    "room",
    "post",
    "partner",
    "indicator",
    "reporting_period",
    "monitoring_entry",
    "submission",
    "needs_assessment",
    "validation_rule",
    "user",
    "audit_event",
]
ROLES = ["anonymous", "district", "arnsberg", "meschede", "steering"]
TOWN_OF = {"arnsberg": "Arnsberg", "meschede": "Meschede"}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    needs: tuple[str, ...]  # any one of these permissions grants it
    on_object: bool  # addresses one row (own or foreign)
    writes: bool


ENDPOINTS = [
    Endpoint("list", "GET", "/{r}/", (READ,), False, False),
    Endpoint("details", "GET", "/{r}/details/?id={id}", (READ,), True, False),
    Endpoint("create_form", "GET", "/{r}/new/", (CREATE,), False, False),
    Endpoint("create", "POST", "/{r}/new/", (CREATE,), False, True),
    Endpoint("edit_form", "GET", "/{r}/edit/?id={id}", (EDIT,), True, False),
    Endpoint("edit", "POST", "/{r}/edit/?id={id}", (EDIT,), True, True),
    Endpoint("delete", "POST", "/{r}/delete/", (DELETE,), True, True),
    Endpoint("action_delete", "POST", "/{r}/action/", (DELETE,), True, True),
    Endpoint("export_csv", "GET", "/{r}/export/csv/", (EXPORT,), False, False),
    Endpoint("export_xlsx", "GET", "/{r}/export/xlsx/", (EXPORT,), False, False),
    Endpoint(
        "ajax_lookup",
        "GET",
        "/{r}/ajax/lookup/?name=municipality&query=",
        (CREATE, EDIT),
        False,
        False,
    ),
    Endpoint("ajax_update", "POST", "/{r}/ajax/update/", (EDIT,), True, True),
]

ROLE_CODES = {
    "district": "district_admin",
    "arnsberg": MUNICIPAL_STAFF,
    "meschede": MUNICIPAL_STAFF,
    "steering": STEERING_GROUP,
}


def expected(role: str, resource: str, endpoint: Endpoint, variant: str) -> str:
    """What should happen, derived from the permission table and the scope."""
    if role == "anonymous":
        return "login"
    granted = PERMISSIONS[ROLE_CODES[role]].get(resource, frozenset())
    if not any(need in granted for need in endpoint.needs):
        return "forbidden"
    scoped = ROLE_CODES[role] == MUNICIPAL_STAFF and resource in SCOPED_BY_MUNICIPALITY
    if scoped and variant == "foreign" and (endpoint.on_object or endpoint.writes):
        return "refused"  # missing row, or the foreign municipality is not a valid choice
    return "allowed"


CASES = [
    (role, resource, endpoint, variant)
    for role, resource, endpoint in itertools.product(ROLES, RESOURCES, ENDPOINTS)
    for variant in (("own", "foreign") if endpoint.on_object or endpoint.writes else ("any",))
]


def case_id(case) -> str:
    role, resource, endpoint, variant = case
    return f"{role}-{resource}-{endpoint.name}-{variant}"


READ_OR_REFUSED = [c for c in CASES if not (expected(*c) == "allowed" and c[2].writes)]
ALLOWED_WRITES = [c for c in CASES if expected(*c) == "allowed" and c[2].writes]


# --- the world -------------------------------------------------------------


def build_world(app: Flask) -> dict:
    """Rows of Arnsberg (A) and Meschede (B) for every resource; users per role."""
    with app.app_context():
        db.create_all()
        load_reference_data()
        towns = {
            m.name: m
            for m in db.session.scalars(
                select(Municipality).where(Municipality.name.in_(["Arnsberg", "Meschede"]))
            )
        }
        group = db.session.scalars(select(TargetGroup)).first()
        indicator = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        period = ReportingPeriod(year=2026, quarter=1, is_open=True)
        db.session.add(period)
        for email, role, town in (
            ("kreis@test.example", "district_admin", None),
            ("steuerung@test.example", STEERING_GROUP, None),
            ("arnsberg@test.example", MUNICIPAL_STAFF, "Arnsberg"),
            ("meschede@test.example", MUNICIPAL_STAFF, "Meschede"),
        ):
            user = User(email=email, role=role, municipality=towns.get(town), name=email[:5])
            user.set_password(PASSWORD)
            db.session.add(user)
        rows: dict[str, dict[str, object]] = {}
        for name, town in towns.items():
            marker = name.upper()
            rows.setdefault("room", {})[name] = Room(
                name=f"{marker}-room", municipality=town, kind="buero"
            )
            rows.setdefault("post", {})[name] = Post(
                title=f"{marker}-post",
                municipality=town,
                employer_type="kommune",
                function="case_management",
                baustein="2",
                fte=Decimal("0.5"),
            )
            rows.setdefault("monitoring_entry", {})[name] = MonitoringEntry(
                municipality=town,
                period=period,
                indicator=indicator,
                value=Decimal(4),
                comment=f"{marker}-monitoring_entry",
            )
            rows.setdefault("needs_assessment", {})[name] = NeedsAssessment(
                municipality=town,
                target_group=group,
                year=2026,
                estimated_people=12,
                notes=f"{marker}-needs_assessment",
            )
            rows.setdefault("submission", {})[name] = Submission(
                municipality=town,
                period=period,
                status="returned",
                return_reason=f"{marker}-submission",
            )
        for per_town in rows.values():
            db.session.add_all(per_town.values())
        partner = Partner(name="Partner-Kreisweit", kind="sonstige")
        db.session.add_all([partner, AuditEvent(action="test", object_type="partner")])
        db.session.commit()

        ids: dict[str, dict[str, int]] = {
            resource: {town: row.id for town, row in per_town.items()}
            for resource, per_town in rows.items()
        }
        ids["municipality"] = {name: m.id for name, m in towns.items()}
        for resource, model in (
            ("target_group", TargetGroup),
            ("partner", Partner),
            ("indicator", Indicator),
            ("reporting_period", ReportingPeriod),
            ("user", User),
            ("audit_event", AuditEvent),
            ("validation_rule", ValidationRule),
        ):
            first = db.session.scalar(select(model.id).order_by(model.id))
            ids[resource] = {"Arnsberg": first, "Meschede": first}
        return {
            "ids": ids,
            "towns": {name: m.id for name, m in towns.items()},
            "group": group.id,
            "indicator": indicator.id,
            "period": period.id,
        }


def form_for(resource: str, world: dict, town: str) -> dict:
    """A valid create/edit form naming ``town`` wherever a municipality is asked for."""
    t = world["towns"][town]
    return {
        "municipality": {"name": "Neustadt", "ags": "05958990", "population": "10"},
        "target_group": {"name": "Neue Gruppe", "sort_order": "1", "active": "y"},
        "room": {"municipality": t, "name": "Neuer Raum", "kind": "buero"},
        "post": {
            "title": "Neue Stelle",
            "municipality": t,
            "employer_type": "kommune",
            "function": "case_management",
            "baustein": "2",
            "fte": "0,5",
            "status": "vakant",
        },
        "partner": {"name": "Neuer Partner", "kind": "sonstige", "municipalities": [t]},
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
        "monitoring_entry": {
            "municipality": t,
            "period": world["period"],
            "indicator": world["indicator"],
            "target_group": world["group"],
            "value": "7",
            "comment": "neu",
        },
        "submission": {"exception_until": "2030-01-31"},
        "needs_assessment": {
            "municipality": t,
            "target_group": world["group"],
            "year": "2027",
            "estimated_people": "5",
            "priority": "hoch",
        },
        "user": {
            "email": "neu@test.example",
            "role": MUNICIPAL_STAFF,
            "municipality": t,
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
        "audit_event": {"action": "erfunden"},
        "validation_rule": {
            "name": "Neue Regel",
            "left_side": "VERM",
            "operator": "<=",
            "right_side": "BER_KONT",
            "severity": "warning",
            "message": "Mehr Vermittlungen als Kontakte?",
        },
    }[resource]


def snapshot() -> dict:
    """Every row of every table except the audit trail (which logs accesses)."""
    state = {}
    for table in db.metadata.sorted_tables:
        if table.name == "audit_event":
            continue
        rows = db.session.execute(select(table).order_by(*table.primary_key.columns)).all()
        state[table.name] = [tuple(map(str, row)) for row in rows]
    return state


def make_app(url: str) -> Flask:
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "t"})


def session_for(app: Flask, role: str) -> Session:
    session = Session(app.test_client())
    if role == "anonymous":
        session.token = session.csrf_of("/login")
    else:
        session.login(
            f"{'kreis' if role == 'district' else role}@test.example".replace(
                "steering@", "steuerung@"
            )
        )
    return session


def request(session: Session, case, world: dict):
    role, resource, endpoint, variant = case
    own_town = TOWN_OF.get(role, "Arnsberg")
    other_town = "Meschede" if own_town == "Arnsberg" else "Arnsberg"
    town = other_town if variant == "foreign" else own_town
    row_id = world["ids"][resource][town]
    path = endpoint.path.format(r=resource, id=row_id)
    if endpoint.method == "GET":
        return session.get(path)
    data = {
        "create": lambda: form_for(resource, world, town),
        "edit": lambda: form_for(resource, world, town),
        "delete": lambda: {"id": row_id},
        "action_delete": lambda: {"action": "delete", "rowid": row_id},
        "ajax_update": lambda: {"list_form_pk": row_id, "active": "y", "comment": "x"},
    }[endpoint.name]()
    return session.post(path, data)


def foreign_marker(role: str) -> str | None:
    if role not in TOWN_OF:
        return None
    return "MESCHEDE-" if role == "arnsberg" else "ARNSBERG-"


def workbook_text(data: bytes) -> str:
    """Every cell of an xlsx file as one text, to look for foreign names in it."""
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    return "\n".join(
        str(value) for sheet in book for row in sheet.iter_rows(values_only=True) for value in row
    )


def check_no_foreign_rows(role: str, resource: str, body: str) -> None:
    marker = foreign_marker(role)
    if marker is None:
        return
    assert marker not in body
    if resource in SCOPED_BY_MUNICIPALITY:
        other = "Meschede" if role == "arnsberg" else "Arnsberg"
        assert other not in body, f"{other} shown to {role}"


# --- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One world for all reading and refused cases (they must not change it)."""
    url = url_under_test(tmp_path_factory.mktemp("access"))
    reset_database(url)
    app = make_app(url)
    world = build_world(app)
    sessions: dict[str, Session] = {}
    yield app, world, sessions
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("case", READ_OR_REFUSED, ids=case_id)
def test_access(shared, case):
    app, world, sessions = shared
    role, resource, endpoint, variant = case
    if role not in sessions:
        sessions[role] = session_for(app, role)
    outcome = expected(*case)
    with app.app_context():
        before = snapshot()
    response = request(sessions[role], case, world)
    if endpoint.name == "export_xlsx" and response.status_code == 200:
        body = workbook_text(response.data)  # the cells, not the compressed bytes
    else:
        body = response.get_data(as_text=True)

    if outcome == "login":
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
    elif outcome == "forbidden":
        assert response.status_code == 403
    elif outcome == "refused":
        # Indistinguishable from a missing row (302 back to the list) or an
        # invalid choice (200, the form again); never a foreign row's data.
        assert response.status_code in (200, 302, 404)
    else:
        assert response.status_code in (200, 302, 404), body[:300]
        if (
            endpoint.name in ("list", "details", "export_csv", "export_xlsx")
            and response.status_code == 302
        ):
            pytest.fail(f"{role} could not open {resource} {endpoint.name}")
    check_no_foreign_rows(role, resource, body)
    if response.status_code == 302 and outcome != "login":
        follow = sessions[role].get(response.headers["Location"])
        check_no_foreign_rows(role, resource, follow.get_data(as_text=True))
    with app.app_context():
        assert snapshot() == before, "a read or refused request changed data"


@pytest.mark.parametrize("case", ALLOWED_WRITES, ids=case_id)
def test_allowed_write(tmp_path, case):
    """Writes the table grants go through (fresh world each, since they change it)."""
    url = url_under_test(tmp_path)
    reset_database(url)
    app = make_app(url)
    world = build_world(app)
    session = session_for(app, case[0])
    with app.app_context():
        before = snapshot()
    response = request(session, case, world)
    assert response.status_code in (200, 302, 404)
    endpoint = case[2]
    with app.app_context():
        after = snapshot()
        if after == before and endpoint.name != "ajax_update":  # no inline editing yet
            # Not refused by the access rules, but by the data (e.g. a municipality
            # still in use): then the user is told why, in German.
            page = response
            if response.status_code == 302:
                page = session.get(response.headers["Location"])
            assert "alert-danger" in page.get_data(as_text=True), case_id(case)
        if case[0] in TOWN_OF and endpoint.name in ("create", "edit"):
            # A municipal user's rows always carry their own municipality.
            own = world["towns"][TOWN_OF[case[0]]]
            rows = db.session.scalars(select(MonitoringEntry.municipality_id)).all()
            assert set(rows) <= {own, *world["towns"].values()}
            assert rows.count(own) >= 1
        db.session.remove()
        db.engine.dispose()


def test_ajax_lookup_finds_only_own_municipality(as_arnsberg, as_district):
    url = "/monitoring_entry/ajax/lookup/?name=municipality&query=e"
    own = as_arnsberg.get(url)
    assert own.status_code == 200
    assert [label for _, label in own.get_json()] == ["Arnsberg"]
    everything = as_district.get(url).get_json()
    assert len(everything) > 5 and "Meschede" in [label for _, label in everything]
    assert as_arnsberg.get(url.replace("query=e", "query=Meschede")).get_json() == []


def test_relation_picker_offers_only_own_municipality(as_arnsberg):
    html = as_arnsberg.get("/monitoring_entry/new/").get_data(as_text=True)
    assert "Meschede" not in html and "Brilon" not in html


# Custom (non-model) pages and the resource each is granted by.
PAGES = [
    ("/", "dashboard"),
    ("/konto/", "account"),
    ("/erfassung/", "data_entry"),
    ("/meldestand/", "meldestand"),
    ("/bericht/", "report"),
    ("/versorgung/", "coverage"),
    ("/versorgung/export/csv/", "coverage"),
    ("/dashboard.json", "dashboard"),
]


@pytest.mark.parametrize(("path", "resource"), PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_custom_pages(app, accounts, path, resource, role):
    session = Session(app.test_client())
    if role != "anonymous":
        session.login(getattr(accounts, role))
    response = session.get(path)
    if role == "anonymous":
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    elif READ in PERMISSIONS[ROLE_CODES[role]].get(resource, frozenset()):
        assert response.status_code == 200
        check_no_foreign_rows(role, "monitoring_entry", response.get_data(as_text=True))
    else:
        assert response.status_code == 403
