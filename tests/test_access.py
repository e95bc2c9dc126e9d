"""One access test over every admin endpoint × role × own/foreign object.

The cases are generated from ``kim_admin.permissions`` (the permission table and
the municipal scope), not written by hand: a view or action added to the table
is tested automatically, and so is any endpoint the table does not grant.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import openpyxl
import pytest
from flask import Flask
from flask_login import login_user
from sqlalchemy import func, select

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
from models import (
    AuditEvent,
    Decision,
    Indicator,
    Measure,
    Meeting,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    Notification,
    Partner,
    Post,
    PostFunding,
    PostVacancy,
    ReportingPeriod,
    Room,
    StructuralProblem,
    Submission,
    TargetGroup,
    User,
    ValidationRule,
)
from views.base import scoped_lookup

from . import factories
from .conftest import Accounts, app_on, build_image, create_accounts
from .database import Image, TestDatabase
from .support import Session, make_app

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
    "post_funding",
    "post_vacancy",
    "notification",
    "meeting",
    "decision",
    "measure",
    "structural_problem",
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


def build_world() -> dict:
    """Rows of Arnsberg (A) and Meschede (B) for every resource; users per role.

    Runs in an app context on the reference world; returns the ids the cases address."""
    towns = {name: factories.town(name) for name in ("Arnsberg", "Meschede")}
    group = factories.group()
    indicator = factories.indicator("BER_KONT")
    period = factories.period(2026, 1)
    create_accounts()
    rows: dict[str, dict[str, object]] = {}
    for name, town in towns.items():
        marker = name.upper()
        rows.setdefault("room", {})[name] = factories.room(town, f"{marker}-room")
        post = rows.setdefault("post", {})[name] = factories.post(town, f"{marker}-post")
        rows.setdefault("post_funding", {})[name] = factories.funding(
            post, 2026, notice_number=f"{marker}-post_funding"
        )
        rows.setdefault("post_vacancy", {})[name] = factories.vacancy(
            post, date(2026, 2, 1), note=f"{marker}-post_vacancy"
        )
        rows.setdefault("monitoring_entry", {})[name] = factories.entry(
            town, period, indicator, 4, comment=f"{marker}-monitoring_entry"
        )
        rows.setdefault("needs_assessment", {})[name] = factories.needs(
            town, group, 2026, estimated_people=12, notes=f"{marker}-needs_assessment"
        )
        rows.setdefault("submission", {})[name] = factories.submission(
            town, period, "returned", return_reason=f"{marker}-submission"
        )
        meeting = factories.meeting(f"{marker}-meeting", municipalities=[town])
        rows.setdefault("meeting", {})[name] = meeting
        rows.setdefault("decision", {})[name] = factories.decision(meeting, f"{marker}-decision")
        rows.setdefault("measure", {})[name] = factories.measure(
            f"{marker}-measure", municipalities=[town]
        )
        rows.setdefault("structural_problem", {})[name] = factories.structural_problem(
            town, period, description=f"{marker}-structural_problem"
        )
    factories.partner("Partner-Kreisweit")
    db.session.add(AuditEvent(action="test", object_type="partner"))
    district = db.session.scalar(select(User).where(User.email == Accounts().district))
    db.session.add(
        Notification(key="test", kind="submitted", user=district, municipality=towns["Arnsberg"])
    )
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
        ("notification", Notification),
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
        "post_funding": {
            "post": world["ids"]["post"][town],
            "year": "2027",
            "baustein": "2",
            "funded_fte": "0,5",
            "funded_from": "2027-01-01",
            "funded_until": "2027-12-31",
            "grant_amount": "1000",
        },
        "post_vacancy": {"post": world["ids"]["post"][town], "vacant_from": "2027-01-01"},
        "notification": {"state": "sent"},
        "meeting": {"held_on": "2026-03-02", "place": "Kreishaus", "municipalities": [t]},
        "decision": {"meeting": world["ids"]["meeting"][town], "title": "Neuer Beschluss"},
        "measure": {"title": "Neue Maßnahme", "status": "geplant", "municipalities": [t]},
        "structural_problem": {
            "municipality": t,
            "period": world["period"],
            "category": "kinderbetreuung",
            "frequency": "haeufig",
            "description": "Keine Kinderbetreuung während der Sprachkurse",
        },
        "validation_rule": {
            "name": "Neue Regel",
            "left_side": "VERM",
            "operator": "<=",
            "right_side": "BER_KONT",
            "severity": "warning",
            "message": "Mehr Vermittlungen als Kontakte?",
        },
    }[resource]


# Tables every request may write: the audit trail logs accesses.
NOT_COMPARED = {"audit_event"}
# Columns any request may change: a login session notes its last activity once a minute
# (kim_admin.sessions.TOUCH_AFTER), so a module running longer than that touches them.
VOLATILE = {"login_session": {"last_seen_at"}}


def snapshot() -> dict:
    """Every row of every table except those in NOT_COMPARED."""
    state = {}
    for table in db.metadata.sorted_tables:
        if table.name in NOT_COMPARED:
            continue
        columns = [c for c in table.columns if c.name not in VOLATILE.get(table.name, ())]
        rows = db.session.execute(select(*columns).order_by(*table.primary_key.columns)).all()
        state[table.name] = [tuple(map(str, row)) for row in rows]
    return state


def session_for(app: Flask, role: str) -> Session:
    session = Session(app.test_client())
    if role == "anonymous":
        session.token = session.csrf_of("/login")
    else:
        session.login(getattr(Accounts(), role))
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
def access_world(
    database: TestDatabase, reference_image: Image, tmp_path_factory
) -> tuple[Image, dict]:
    """The world of this module, built once: its image and the ids the cases address."""
    world: dict = {}
    image = build_image(
        database,
        reference_image,
        "access",
        lambda app: world.update(build_world()),
        tmp_path_factory.mktemp("access-build"),
    )
    return image, world


@dataclass
class Shared:
    """One app on one copy of the world for every reading and refused case."""

    database: TestDatabase
    image: Image
    url: str
    app: Flask
    token: int = 0
    sessions: dict[str, Session] = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # what no read or refused request may change

    def restore(self) -> None:
        """Put the world back (also after a case that changed it, so that the next
        cases do not fail for it), and log every role in again: the image holds no
        login sessions."""
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        self.token = self.database.restore(self.image, self.url)
        for role in ROLES:  # logging in changes the users' rows: before the snapshot
            self.sessions[role] = session_for(self.app, role)
        with self.app.app_context():
            self.state = snapshot()

    def current(self) -> Shared:
        """This world, restored first if another test reset the (PostgreSQL) database."""
        if not self.database.still_holds(self.url, self.token):
            self.restore()
        return self


@pytest.fixture(scope="module")
def shared(database: TestDatabase, access_world, tmp_path_factory) -> Iterator[Shared]:
    """One world for all reading and refused cases (they must not change it)."""
    image, _ = access_world
    url = database.url(tmp_path_factory.mktemp("access"))
    world = Shared(database, image, url, make_app(url))
    world.restore()
    yield world
    with world.app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("case", READ_OR_REFUSED, ids=case_id)
def test_access(shared, access_world, case):
    shared = shared.current()
    app, world = shared.app, access_world[1]
    role, resource, endpoint, variant = case
    session = shared.sessions[role]
    outcome = expected(*case)
    response = request(session, case, world)
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
        follow = session.get(response.headers["Location"])
        check_no_foreign_rows(role, resource, follow.get_data(as_text=True))
    with app.app_context():
        after = snapshot()
    changed = sorted(name for name in after if after[name] != shared.state.get(name))
    if changed:
        shared.restore()
    assert changed == [], "a read or refused request changed data"


# The model of each resource, to check what an allowed write did.
MODELS = {
    "municipality": Municipality,
    "target_group": TargetGroup,
    "room": Room,
    "post": Post,
    "partner": Partner,
    "indicator": Indicator,
    "reporting_period": ReportingPeriod,
    "monitoring_entry": MonitoringEntry,
    "submission": Submission,
    "needs_assessment": NeedsAssessment,
    "validation_rule": ValidationRule,
    "user": User,
    "audit_event": AuditEvent,
    "post_funding": PostFunding,
    "post_vacancy": PostVacancy,
    "notification": Notification,
    "meeting": Meeting,
    "decision": Decision,
    "measure": Measure,
    "structural_problem": StructuralProblem,
}


def rows_per_town(resource: str) -> dict:
    """How many rows of a municipally scoped resource each municipality has."""
    model = MODELS[resource]
    column = getattr(model, SCOPED_BY_MUNICIPALITY[resource])
    return dict(db.session.execute(select(column, func.count()).group_by(column)).all())


@pytest.fixture
def fresh_world(database: TestDatabase, access_world, tmp_path) -> Iterator[tuple[Flask, dict]]:
    """A fresh app on a fresh copy of this module's world (for a case that changes it)."""
    image, world = access_world
    with app_on(database, image, tmp_path) as app:
        yield app, world


@pytest.mark.parametrize("case", ALLOWED_WRITES, ids=case_id)
def test_allowed_write(fresh_world, case):
    """Writes the table grants go through (each from the clean world, since they change it)."""
    app, world = fresh_world
    role, resource, endpoint, _ = case
    session = session_for(app, role)
    scoped = role in TOWN_OF and resource in SCOPED_BY_MUNICIPALITY
    with app.app_context():
        before = snapshot()
        towns_before = rows_per_town(resource) if scoped else {}
    response = request(session, case, world)
    assert response.status_code in (200, 302, 404)
    with app.app_context():
        after = snapshot()
        if after == before and endpoint.name != "ajax_update":  # no inline editing yet
            # Not refused by the access rules, but by the data (e.g. a municipality
            # still in use): then the user is told why, in German.
            page = response
            if response.status_code == 302:
                page = session.get(response.headers["Location"])
            assert "alert-danger" in page.get_data(as_text=True), case_id(case)
        if scoped and endpoint.name in ("create", "edit"):
            # A municipal user's rows always carry their own municipality.
            own = world["towns"][TOWN_OF[role]]
            towns_after = rows_per_town(resource)
            assert {t: n for t, n in towns_after.items() if t != own} == {
                t: n for t, n in towns_before.items() if t != own
            }
            assert towns_after.get(own, 0) >= 1


def test_scoped_lookup_finds_only_own_municipality(app, accounts):
    """Every ajax lookup (``scoped_lookup``) finds only rows the user may reach."""
    loader = scoped_lookup("municipality", Municipality, ["name"])
    with app.app_context():
        users = {u.email: u for u in db.session.scalars(select(User))}
        meschede = factories.town("Meschede")
    with app.test_request_context():
        login_user(users[accounts.arnsberg])
        assert [str(m) for m in loader.get_list("e")] == ["Arnsberg"]
        assert loader.get_list("Meschede") == []
        assert loader.get_one(meschede.id) is None
    with app.test_request_context():
        login_user(users[accounts.district])
        found = [str(m) for m in loader.get_list("e")]
        assert len(found) > 5 and "Meschede" in found
        assert loader.get_one(meschede.id) is not None


# Every page on which a municipal user picks a municipality: the model forms the table
# lets them create rows in, and the data-entry page.
PICKERS = [
    f"/{resource}/new/"
    for resource in SCOPED_BY_MUNICIPALITY
    if CREATE in PERMISSIONS[MUNICIPAL_STAFF].get(resource, frozenset())
] + ["/erfassung/"]


@pytest.mark.parametrize("path", PICKERS)
def test_relation_picker_offers_only_own_municipality(as_arnsberg, path):
    response = as_arnsberg.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Arnsberg" in html
    assert "Meschede" not in html and "Brilon" not in html


# Custom (non-model) pages and the resource each is granted by.
PAGES = [
    ("/", "dashboard"),
    ("/konto/", "account"),
    ("/konto/benachrichtigungen/", "account"),
    ("/erfassung/", "data_entry"),
    ("/meldestand/", "meldestand"),
    ("/bericht/", "report"),
    ("/versorgung/", "coverage"),
    ("/versorgung/export/csv/", "coverage"),
    ("/foerderung/", "funding_year"),
    ("/foerderung/?year=2026", "funding_year"),
    ("/dashboard.json", "dashboard"),
    ("/probleme/", "problem_overview"),
    ("/bericht-pdf/", "report_pdf"),
]


@pytest.mark.parametrize(("path", "resource"), PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_custom_pages(app, accounts, path, resource, role):
    session = session_for(app, role)
    response = session.get(path)
    if role == "anonymous":
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    elif READ in PERMISSIONS[ROLE_CODES[role]].get(resource, frozenset()):
        assert response.status_code == 200
        check_no_foreign_rows(role, "monitoring_entry", response.get_data(as_text=True))
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_funding_year_export(app, accounts, role):
    """The Zahlenmäßiger Nachweis (a custom page's export) by the table's EXPORT grant."""
    response = session_for(app, role).get("/foerderung/export/xlsx/?year=2026")
    if role == "anonymous":
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    elif EXPORT in PERMISSIONS[ROLE_CODES[role]].get("funding_year", frozenset()):
        assert response.status_code == 200
        openpyxl.load_workbook(io.BytesIO(response.data))
    else:
        assert response.status_code == 403
