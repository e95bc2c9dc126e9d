"""Browser tests: rooms and posts through the real web interface, per role.

The district admin creates a room; a municipal user only reads their own
municipality's rooms; the steering group reads everything but gets no controls
to change it. A quarterly report goes through its whole cycle: drafted and
submitted by the municipality, returned by the district, corrected, resubmitted,
approved and then locked. The steering group's evaluation report is made by a job
while the page shows its progress, then downloaded without a reload; the dashboard's
charts are drawn.
Every page must load without CSP violations, script errors or
failed requests (the favicon included).

Each test's app is served by Werkzeug on a free localhost port in a background
thread, and Debian's chromium (``/usr/bin/chromium``) is driven headless through
Playwright's sync API. No browser is downloaded; if chromium is missing, the
test is skipped.

Run them alone with ``pytest tests/test_browser.py`` or leave it out with
``pytest -m "not browser"``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from kim_admin import report
from kim_admin.extensions import db
from kim_admin.monitoring import status as statuses
from kim_admin.report import publication
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    Post,
    ReportingPeriod,
    Room,
    Submission,
)

from .support import PASSWORD

if TYPE_CHECKING:
    from .conftest import Accounts

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots for humans; the folder is git-ignored.
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Upper bound for any single browser action or navigation (milliseconds).
TIMEOUT_MS = 15_000
# Chromium's console wording when the Content-Security-Policy blocks something.
CSP_MARKERS = ("Content Security Policy", "Refused to")
# Reports every CSP violation of a page to the console, in case Chromium says nothing.
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => {
  const what = `${event.violatedDirective} ${event.blockedURI}`;
  console.error(`Content Security Policy violation: ${what}`);
});
"""
# Row controls that change data: Flask-Admin's pencil and trash icons and their targets.
EDIT_CONTROLS = ".fa-pencil, .glyphicon-pencil, a[href*='/edit/']"
DELETE_CONTROLS = ".fa-trash, .glyphicon-trash, form[action*='/delete/']"


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        # shutdown() waits for serve_forever() to return; server_close() closes the socket.
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def page(live_server: str) -> Iterator[sync_api.Page]:
    """A fresh page of a headless chromium; browser and Playwright are closed afterwards.

    Depends on ``live_server`` so that the browser, with its keep-alive connections,
    is closed before the server is shut down.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            try:
                yield context.new_page()
            finally:
                context.close()
        finally:
            browser.close()


@dataclass
class PageProblems:
    """What went wrong in a page while a test drove it."""

    csp: list[str] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def assert_clean(self, expected_failures: tuple[str, ...] = ()) -> None:
        """No CSP violation, no uncaught error, no failed request but the expected ones."""
        assert self.csp == []
        assert self.js_errors == []
        assert [f for f in self.failed if not f.endswith(expected_failures)] == []


def watch(page: sync_api.Page) -> PageProblems:
    """Record CSP violations, uncaught script errors and failed requests of ``page``."""
    problems = PageProblems()
    page.add_init_script(CSP_REPORTER)

    def on_console(message: sync_api.ConsoleMessage) -> None:
        if any(marker in message.text for marker in CSP_MARKERS):
            problems.csp.append(f"{page.url}: {message.text}")

    def on_response(response: sync_api.Response) -> None:
        if response.status >= 400:
            problems.failed.append(f"{response.status} {response.url}")

    def on_request_failed(request: sync_api.Request) -> None:
        # Navigating on aborts what the previous page still loaded; that is no error.
        if request.failure != "net::ERR_ABORTED":
            problems.failed.append(f"{request.failure} {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.js_errors.append(f"{page.url}: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    return problems


def login(page: sync_api.Page, base_url: str, email: str) -> None:
    """Log in through the login form and check the favicon the page links to."""
    page.goto(f"{base_url}/login")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None
    favicon = page.request.get(f"{base_url}{icon}")
    assert favicon.status == 200, icon
    assert favicon.headers["content-type"].startswith("image/svg+xml")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    sync_api.expect(page.get_by_text("Sie sind angemeldet.")).to_be_visible()
    sync_api.expect(page).not_to_have_url(re.compile(r"/login"))


def test_district_admin_creates_room(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """Log in, open the room list, create a room with the form and find it in list and DB."""
    expect = sync_api.expect
    room_name = "Beratungsraum Neheim Test"
    # Uncaught JavaScript errors (e.g. a broken Select2) fail the test at the end.
    problems = watch(page)
    login(page, live_server, accounts.district)

    # Room list, then Flask-Admin's "Erstellen" tab.
    page.goto(f"{live_server}/room/")
    expect(page.locator("h1")).to_contain_text("Räume")
    page.locator(".nav-tabs").get_by_role("link", name="Erstellen", exact=True).click()
    expect(page).to_have_url(re.compile(r"^[^?]*/room/new/"))

    # The selects are enhanced by Select2 (3.x in Flask-Admin), which hides the original
    # <select> but keeps it in the DOM as the field the form submits. Choosing on it is
    # the robust way; force=True skips Playwright's visibility check, and the change
    # event it dispatches makes Select2 update its display. Arnsberg is the first option
    # and preselected, so pick another town first to make the choice a real change.
    municipality = page.locator("#municipality")
    chosen_town = page.locator("#s2id_municipality .select2-chosen")
    municipality.select_option(label="Meschede", force=True)
    expect(chosen_town).to_have_text("Meschede")
    municipality.select_option(label="Arnsberg", force=True)
    expect(municipality).to_have_value(str(_municipality_id(app, "Arnsberg")))
    expect(chosen_town).to_have_text("Arnsberg")
    page.fill("#name", room_name)
    page.fill("#address", "Hauptstraße 1, 59755 Arnsberg")
    page.locator("#kind").select_option(label="Gruppenraum", force=True)
    expect(page.locator("#s2id_kind .select2-chosen")).to_have_text("Gruppenraum")
    page.fill("#seats", "12")
    page.check("#barrier_free")
    page.fill("#availability", "Di 9–12 Uhr")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "room-form.png"), full_page=True)

    # "Speichern" is Flask-Admin's German label of the plain save button (an <input>);
    # the other two submit buttons ("Speichern und ...") stay on a form.
    page.locator('input[type="submit"][value="Speichern"]').click()

    # Back on the list (path /room/, not /room/new/?url=/room/...): the new room is
    # shown, with its town in the "Kommune" column of the same row.
    expect(page.get_by_text("Eintrag wurde erfolgreich erstellt.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"^[^?]*/room/(\?.*)?$"))
    row = page.locator("table tbody tr").filter(has_text=room_name)
    expect(row).to_have_count(1)
    headers = [text.strip() for text in page.locator("table thead th").all_inner_texts()]
    assert "Kommune" in headers, headers
    expect(row.locator("td").nth(headers.index("Kommune"))).to_have_text("Arnsberg")
    expect(row.locator("td").nth(headers.index("Art"))).to_have_text("Gruppenraum")
    page.screenshot(path=str(ARTIFACTS / "room-list.png"), full_page=True)
    problems.assert_clean()

    # The list shows the room, so the POST (and its commit) has completed.
    with app.app_context():
        room = db.session.scalar(db.select(Room).where(Room.name == room_name))
        assert room is not None
        assert room.municipality.name == "Arnsberg"
        assert room.address == "Hauptstraße 1, 59755 Arnsberg"
        assert room.kind == "gruppenraum"
        assert room.seats == 12
        assert room.barrier_free is True
        assert room.availability == "Di 9–12 Uhr"
        assert room.active is True
        db.session.remove()


def test_municipal_user_sees_only_own_rooms(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """Arnsberg's staff read Arnsberg's rooms, nothing of other towns, and change nothing."""
    expect = sync_api.expect
    rooms = _add_rooms(
        app,
        {
            "Arnsberg": ["Raum Ahorn", "Raum Birke", "Raum Eiche"],
            "Meschede": ["Raum Fichte", "Raum Linde"],
            "Brilon": ["Raum Tanne", "Raum Ulme"],
        },
    )
    own = rooms["Arnsberg"]
    foreign = {**rooms["Meschede"], **rooms["Brilon"]}
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)

    page.goto(f"{live_server}/room/")
    expect(page.locator("h1")).to_contain_text("Räume")
    tabs = page.locator(".nav-tabs")
    expect(tabs.locator(".nav-link.active")).to_have_text(f"Liste ({len(own)})")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(len(own))
    for name in own:
        expect(rows.filter(has_text=name)).to_be_visible()
    html = page.content()
    for name in foreign:
        assert name not in html, name
    # Read-only: no create tab, no pencil or trash in the rows, no bulk actions.
    expect(tabs.get_by_text("Erstellen", exact=True)).to_have_count(0)
    expect(page.locator(EDIT_CONTROLS)).to_have_count(0)
    expect(page.locator(DELETE_CONTROLS)).to_have_count(0)
    expect(page.get_by_text("Mit Auswahl")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "municipal-rooms.png"), full_page=True)

    # The eye icon opens the details of an own room, again without an edit tab.
    rows.filter(has_text="Raum Birke").locator("a[title='Eintrag ansehen']").click()
    expect(page).to_have_url(re.compile(rf"/room/details/\?id={own['Raum Birke']}(&|$)"))
    details = page.locator("table.searchable")
    expect(details).to_contain_text("Raum Birke")
    expect(details).to_contain_text("Arnsberg")
    expect(page.locator(".nav-tabs").get_by_text("Bearbeiten", exact=True)).to_have_count(0)
    expect(page.locator(EDIT_CONTROLS)).to_have_count(0)

    # A Meschede room's details, asked for directly: back to the list, nothing shown.
    page.goto(f"{live_server}/room/details/?id={foreign['Raum Fichte']}")
    expect(page.get_by_text("Eintrag existiert nicht.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"^[^?]*/room/(\?.*)?$"))
    assert "Raum Fichte" not in page.content()

    # Creating and editing are refused outright.
    assert _status(page, f"{live_server}/room/new/") == 403
    assert _status(page, f"{live_server}/room/edit/?id={own['Raum Birke']}") == 403
    problems.assert_clean(expected_failures=("/room/new/", f"/room/edit/?id={own['Raum Birke']}"))


def test_steering_group_sees_no_edit_controls(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """The steering group reads rooms and posts of every town but cannot change any."""
    expect = sync_api.expect
    rooms = _add_rooms(
        app,
        {
            "Arnsberg": ["Raum Ahorn", "Raum Birke"],
            "Meschede": ["Raum Fichte"],
            "Brilon": ["Raum Tanne"],
        },
    )
    _add_posts(
        app,
        {
            "Stelle Koordination Arnsberg": "Arnsberg",
            "Stelle Case Management Meschede": "Meschede",
            "Stelle Case Management Brilon": "Brilon",
            "Stelle Koordination Kreis": None,
        },
    )
    problems = watch(page)
    login(page, live_server, accounts.steering)

    for path, title, names in (
        ("/room/", "Räume", [name for town in rooms.values() for name in town]),
        (
            "/post/",
            "Stellen",
            [
                "Stelle Koordination Arnsberg",
                "Stelle Case Management Meschede",
                "Stelle Case Management Brilon",
                "Stelle Koordination Kreis",
            ],
        ),
    ):
        page.goto(f"{live_server}{path}")
        expect(page.locator("h1")).to_contain_text(title)
        tabs = page.locator(".nav-tabs")
        expect(tabs.locator(".nav-link.active")).to_have_text(f"Liste ({len(names)})")
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(len(names))
        for name in names:
            expect(rows.filter(has_text=name)).to_be_visible()
        headers = [text.strip() for text in page.locator("table thead th").all_inner_texts()]
        towns = {
            text.strip()
            for text in rows.locator(
                f"td:nth-child({headers.index('Kommune') + 1})"
            ).all_inner_texts()
        }
        assert {"Arnsberg", "Meschede", "Brilon"} <= towns, towns
        expect(tabs.get_by_text("Erstellen", exact=True)).to_have_count(0)
        expect(page.locator(EDIT_CONTROLS)).to_have_count(0)
        expect(page.locator(DELETE_CONTROLS)).to_have_count(0)
        expect(page.get_by_text("Mit Auswahl")).to_have_count(0)
        expect(page.locator("input.action-rowtoggle, input.action-checkbox")).to_have_count(0)
        if path == "/room/":
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "steering-rooms.png"), full_page=True)

    # Details of a Meschede room: shown, but with no way to edit.
    page.goto(f"{live_server}/room/")
    page.locator("table tbody tr").filter(has_text="Raum Fichte").locator(
        "a[title='Eintrag ansehen']"
    ).click()
    expect(page).to_have_url(re.compile(rf"/room/details/\?id={rooms['Meschede']['Raum Fichte']}"))
    expect(page.locator("table.searchable")).to_contain_text("Meschede")
    expect(page.locator(".nav-tabs").get_by_text("Bearbeiten", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Bearbeiten")).to_have_count(0)
    expect(page.locator(EDIT_CONTROLS)).to_have_count(0)

    edit_path = f"/room/edit/?id={rooms['Meschede']['Raum Fichte']}"
    assert _status(page, f"{live_server}{edit_path}") == 403
    problems.assert_clean(expected_failures=(edit_path,))


def test_whole_reporting_cycle(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """Draft, submit, return, correct, resubmit, approve: each step by its role, in the UI.

    One browser page; users change by logging out through the user menu and in again.
    """
    expect = sync_api.expect
    period_id = _open_period(app)
    town_id = _municipality_id(app, "Arnsberg")
    entry_url = f"{live_server}/erfassung/?municipality={town_id}&period={period_id}"
    reason = "Bitte Beratungskontakte prüfen"
    status = page.locator("#status")
    values = page.locator('input[name^="value-"]')
    # BER_KONT is not broken down by target group: one input, named for screen readers
    # by indicator, target group and unit.
    contacts = page.get_by_label("Beratungskontakte, gesamt, Kontakte", exact=True)
    problems = watch(page)
    ARTIFACTS.mkdir(exist_ok=True)

    # 1. Arnsberg fills in every figure, saves the draft, then submits.
    login(page, live_server, accounts.arnsberg)
    page.goto(entry_url)
    expect(status).to_have_text("fehlt")
    expect(page.locator("#lock")).to_have_count(0)
    count = values.count()
    assert count > 1
    for value in values.all():
        value.fill("0")
    contacts.fill("12")
    page.get_by_role("button", name="Entwurf speichern", exact=True).click()
    expect(page.get_by_text(f"Entwurf gespeichert ({count} Werte geändert).")).to_be_visible()
    expect(status).to_have_text("Entwurf")
    expect(contacts).to_have_value("12")
    _submit_report(page)
    expect(page.locator("#lock")).to_contain_text("eingereicht")
    page.screenshot(path=str(ARTIFACTS / "cycle-submitted.png"), full_page=True)

    # 2. The district returns it with a reason.
    _logout(page)
    login(page, live_server, accounts.district)
    page.goto(entry_url)
    expect(status).to_have_text(statuses.label(statuses.SUBMITTED))
    page.fill("#reason", reason)
    page.get_by_role("button", name="Zurückgeben", exact=True).click()
    expect(page.get_by_text("Meldung zurückgegeben.")).to_be_visible()
    expect(status).to_have_text("zurückgegeben")

    # 3. Arnsberg reads the reason, corrects the contacts and submits again.
    _logout(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(entry_url)
    expect(status).to_have_text("zurückgegeben")
    expect(page.get_by_role("status").filter(has_text=reason)).to_have_text(
        f"Zurückgegeben: {reason}"
    )
    expect(page.locator("#lock")).to_have_count(0)
    expect(contacts).to_have_value("12")
    expect(contacts).to_be_editable()
    contacts.fill("15")
    _submit_report(page)
    expect(contacts).to_have_value("15")

    # 4. The district approves.
    _logout(page)
    login(page, live_server, accounts.district)
    page.goto(entry_url)
    expect(status).to_have_text(statuses.label(statuses.SUBMITTED))
    page.get_by_role("button", name="Freigeben", exact=True).click()
    expect(page.get_by_text("Meldung freigegeben.")).to_be_visible()
    expect(status).to_have_text("freigegeben")

    # 5. Arnsberg finds the report locked: read-only figures, no buttons to change them.
    _logout(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(entry_url)
    expect(status).to_have_text("freigegeben")
    expect(page.locator("#lock")).to_contain_text("freigegeben")
    expect(values).to_have_count(count)
    expect(page.locator('input[name^="value-"]:not([readonly])')).to_have_count(0)
    expect(page.locator('input[name^="comment-"]:not([readonly])')).to_have_count(0)
    expect(contacts).to_have_value("15")
    expect(contacts).not_to_be_editable()
    for name in ("Entwurf speichern", "Meldung einreichen", "Freigeben", "Zurückgeben"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.locator('button[name="action"]')).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "cycle-approved.png"), full_page=True)
    problems.assert_clean()

    with app.app_context():
        contact_values = db.session.scalars(
            db.select(MonitoringEntry.value)
            .join(Indicator)
            .where(
                Indicator.code == "BER_KONT",
                MonitoringEntry.municipality_id == town_id,
                MonitoringEntry.period_id == period_id,
            )
        ).all()
        assert contact_values == [Decimal(15)]
        submission = db.session.scalar(
            db.select(Submission).where(
                Submission.municipality_id == town_id, Submission.period_id == period_id
            )
        )
        assert submission is not None
        assert submission.status == "approved"
        assert submission.return_reason == reason
        steps = db.session.scalars(
            db.select(AuditEvent.action)
            .where(
                AuditEvent.object_type == "submission",
                AuditEvent.object_id == str(submission.id),
                AuditEvent.action.startswith("submission_"),
            )
            .order_by(AuditEvent.id)
        ).all()
        assert steps == [
            "submission_submit",
            "submission_return",
            "submission_submit",
            "submission_approve",
        ]
        db.session.remove()


def _status(page: sync_api.Page, url: str) -> int:
    """The HTTP status with which the browser received ``url``."""
    response = page.goto(url)
    assert response is not None
    return response.status


def _add_rooms(app: Flask, names: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Store rooms per town; return their ids as ``{town: {room name: id}}``."""
    with app.app_context():
        towns = {m.name: m for m in db.session.scalars(db.select(Municipality))}
        created = {
            town: {name: Room(name=name, municipality=towns[town], seats=8) for name in rooms}
            for town, rooms in names.items()
        }
        db.session.add_all(room for rooms in created.values() for room in rooms.values())
        db.session.commit()
        ids = {
            town: {name: room.id for name, room in rooms.items()} for town, rooms in created.items()
        }
        db.session.remove()
    return ids


def _add_posts(app: Flask, posts: dict[str, str | None]) -> None:
    """Store a half-time post per title, in the given town (None: at Kreis level)."""
    with app.app_context():
        towns = {m.name: m for m in db.session.scalars(db.select(Municipality))}
        db.session.add_all(
            Post(
                title=title,
                municipality=towns[town] if town else None,
                employer_type="kreis",
                function="case_management",
                baustein="2",
                fte=Decimal("0.50"),
                status="besetzt",
            )
            for title, town in posts.items()
        )
        db.session.commit()
        db.session.remove()


def _municipality_id(app: Flask, name: str) -> int:
    """The primary key of the municipality called ``name``."""
    with app.app_context():
        town_id = db.session.scalar(db.select(Municipality.id).where(Municipality.name == name))
        db.session.remove()
    assert town_id is not None
    return town_id


def _submit_report(page: sync_api.Page) -> None:
    """Click "Meldung einreichen", accept the one confirmation and see the report submitted."""
    questions: list[str] = []

    def accept(dialog: sync_api.Dialog) -> None:
        questions.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Meldung einreichen", exact=True).click()
    sync_api.expect(page.get_by_text("Die Meldung wurde eingereicht")).to_be_visible()
    sync_api.expect(page.locator("#status")).to_have_text(statuses.label(statuses.SUBMITTED))
    assert questions == [
        "confirm: Meldung einreichen? Danach prüft die Kreisverwaltung; ändern können Sie die "
        "Zahlen erst nach Zurückziehen oder Rückgabe."
    ]


def _logout(page: sync_api.Page) -> None:
    """Log out through the user menu's "Abmelden" (a POST form in the dropdown)."""
    # The dropdown opens by Bootstrap's script: on a busy machine a click can come
    # before the script has bound it, so open it until the entry shows.
    page.wait_for_load_state("load")
    button = page.get_by_role("button", name="Abmelden", exact=True)
    for _ in range(5):
        page.locator("#user-menu").click()
        try:
            button.wait_for(state="visible", timeout=3000)
            break
        except sync_api.TimeoutError:
            continue
    button.click()
    sync_api.expect(page.get_by_text("Sie sind abgemeldet.")).to_be_visible()
    sync_api.expect(page).to_have_url(re.compile(r"/login"))


def _open_period(app: Flask) -> int:
    """Store an open quarter whose deadline is a month ahead; return its id."""
    with app.app_context():
        period = ReportingPeriod(
            year=2026, quarter=2, is_open=True, deadline=date.today() + timedelta(days=30)
        )
        db.session.add(period)
        db.session.commit()
        period_id = period.id
        db.session.remove()
    return period_id


# --- evaluation report and dashboard -------------------------------------------------


def _report_world(app: Flask) -> dict[str, int]:
    """Two approved quarters of 2025 with figures for Arnsberg and Meschede, and the four
    quarters of 2024 (without figures), the last whole year, for a published report."""
    with app.app_context():
        towns = {
            m.name: m
            for m in db.session.scalars(
                select(Municipality).where(Municipality.name.in_(["Arnsberg", "Meschede"]))
            )
        }
        contacts = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        year = [ReportingPeriod(year=2024, quarter=q) for q in (1, 2, 3, 4)]
        periods = [ReportingPeriod(year=2025, quarter=q) for q in (1, 2)]
        db.session.add_all(year + periods)
        for n, (_name, town) in enumerate(sorted(towns.items()), start=1):
            for k, period in enumerate(periods, start=1):
                db.session.add(
                    MonitoringEntry(
                        municipality=town, period=period, indicator=contacts, value=10 * n + k
                    )
                )
                db.session.add(Submission(municipality=town, period=period, status="approved"))
        db.session.commit()
        ids = {
            "first": periods[0].id,
            "last": periods[1].id,
            "year_first": year[0].id,
            "year_last": year[-1].id,
        }
        db.session.remove()
    return ids


def _workbook_text(path: Path) -> str:
    book = openpyxl.load_workbook(path, read_only=True)
    return "\n".join(
        str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row if v
    )


def test_steering_group_downloads_report(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page, tmp_path: Path
) -> None:
    """The form starts a job: the page shows its progress (a progress bar with its value,
    the step in a live region) and downloads the file when it is done, without a reload."""
    ids = _report_world(app)
    problems = watch(page)
    login(page, live_server, accounts.steering)
    page.goto(f"{live_server}/bericht/")
    page.get_by_label("Von Quartal").select_option(str(ids["first"]))
    page.get_by_label("Bis Quartal").select_option(str(ids["last"]))
    sync_api.expect(page.get_by_label("mit Rohdaten")).not_to_be_checked()
    page.evaluate("window.__noReload = 1")
    status = page.locator("[data-job-status]")
    bar = page.get_by_role("progressbar", name="Fortschritt des Berichts")
    button = page.get_by_role("button", name="Bericht erstellen")
    sync_api.expect(status).to_have_attribute("aria-live", "polite")

    # Hold the first status question back until the page at work has been seen.
    held: list[sync_api.Route] = []

    def hold(route: sync_api.Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/bericht/auftrag/*/status", hold)
    with page.expect_download() as info:
        button.click()
        # At 0 % the bar itself has no width; its track is what shows.
        sync_api.expect(page.locator("[data-job-progress]")).to_be_visible()
        sync_api.expect(bar).to_have_attribute("aria-valuenow", "0")
        sync_api.expect(button).to_be_disabled()
        sync_api.expect(status).to_contain_text("Der Bericht wird gestartet")
        for _ in range(TIMEOUT_MS // 50):  # until the page asks for the job's state
            if held:
                break
            page.wait_for_timeout(50)
        held[0].continue_()
    download = info.value
    assert download.suggested_filename == "KIM-Evaluationsbericht_2025-Q1_2025-Q2.xlsx"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    sync_api.expect(status).to_contain_text("Der Bericht ist fertig")
    sync_api.expect(bar).to_have_attribute("aria-valuenow", "100")
    link = status.get_by_role("link", name=f"{download.suggested_filename} herunterladen")
    sync_api.expect(link).to_be_visible()
    sync_api.expect(button).to_be_enabled()
    assert page.evaluate("window.__noReload") == 1, "the page was reloaded"
    book = openpyxl.load_workbook(target)
    # The raw-data sheet is an option, off by default.
    assert book.sheetnames == report.SHEETS[:-1]
    figures = {row[0]: row for row in book["Kennzahlen"].iter_rows(min_row=5, values_only=True)}
    header = [c.value for c in book["Kennzahlen"][4]]
    column = header.index("BER_KONT – Beratungskontakte")
    # Arnsberg: 11 + 12, Meschede: 21 + 22 (flows are summed over the range).
    assert figures["Arnsberg"][column] == 23 and figures["Meschede"][column] == 43
    assert figures["Summe"][column] == 66
    problems.assert_clean()


def test_failed_report_says_why_in_german(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """A job that fails (here: its file over the size bound) is announced in German."""
    ids = _report_world(app)
    app.config["KIM_JOBS_MAX_RESULT_BYTES"] = 1000
    problems = watch(page)
    login(page, live_server, accounts.steering)
    page.goto(f"{live_server}/bericht/")
    page.get_by_label("Von Quartal").select_option(str(ids["first"]))
    page.get_by_role("button", name="Bericht erstellen").click()
    status = page.locator("[data-job-status]")
    sync_api.expect(status).to_contain_text("Der Bericht konnte nicht erstellt werden")
    sync_api.expect(status).to_contain_text("Bitte ohne Rohdaten oder einen kürzeren Zeitraum")
    sync_api.expect(page.get_by_role("button", name="Bericht erstellen")).to_be_enabled()
    problems.assert_clean()


def test_published_report_chooses_the_last_whole_year(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """Ticking "für Veröffentlichung" sets the range to the last whole calendar year;
    unticking brings back the range chosen before."""
    ids = _report_world(app)
    problems = watch(page)
    login(page, live_server, accounts.steering)
    page.goto(f"{live_server}/bericht/")
    first, last = page.get_by_label("Von Quartal"), page.get_by_label("Bis Quartal")
    first.select_option(str(ids["first"]))
    last.select_option(str(ids["last"]))
    towns = page.locator('input[name="municipalities"]')
    arnsberg = page.get_by_label("Arnsberg", exact=True)
    brilon = page.get_by_label("Brilon (keine KIM-Teilnahme)")
    brilon.check()
    arnsberg.uncheck()
    page.get_by_label("alle erfassten Werte", exact=False).check()
    publish = page.get_by_label("für Veröffentlichung")
    publish.check()
    sync_api.expect(first).to_have_value(str(ids["year_first"]))
    sync_api.expect(last).to_have_value(str(ids["year_last"]))
    # Every KIM municipality and approved figures only, as a publication must cover.
    with app.app_context():
        participants = {str(i) for i in publication.participant_ids()}
    checked = {t.get_attribute("value") for t in towns.all() if t.is_checked()}
    assert checked == participants
    sync_api.expect(page.get_by_label("nur freigegebene Meldungen")).to_be_checked()
    publish.uncheck()
    sync_api.expect(first).to_have_value(str(ids["first"]))
    sync_api.expect(last).to_have_value(str(ids["last"]))
    sync_api.expect(brilon).to_be_checked()
    sync_api.expect(arnsberg).not_to_be_checked()
    problems.assert_clean()


def test_report_form_error_keeps_page(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """A wrong range comes back in German beside the field, with the choices kept."""
    ids = _report_world(app)
    problems = watch(page)
    login(page, live_server, accounts.district)
    page.goto(f"{live_server}/bericht/")
    page.get_by_label("Von Quartal").select_option(str(ids["last"]))
    page.get_by_label("Bis Quartal").select_option(str(ids["first"]))
    page.evaluate("window.__noReload = 1")
    downloads: list[object] = []
    page.on("download", lambda download: downloads.append(download))
    page.get_by_role("button", name="Bericht erstellen").click()
    sync_api.expect(
        page.get_by_text("Das letzte Quartal darf nicht vor dem ersten liegen.")
    ).to_be_visible()
    assert page.evaluate("window.__noReload") == 1
    sync_api.expect(page.get_by_label("Von Quartal")).to_have_value(str(ids["last"]))
    sync_api.expect(page.get_by_label("Bis Quartal")).to_have_value(str(ids["first"]))
    assert downloads == []
    # The replaced form works again: correct the range and download.
    page.get_by_label("Bis Quartal").select_option(str(ids["last"]))
    page.get_by_label("Von Quartal").select_option(str(ids["first"]))
    with page.expect_download() as info:
        page.get_by_role("button", name="Bericht erstellen").click()
    assert info.value.suggested_filename.startswith("KIM-Evaluationsbericht_")
    # The report answered 400 once, on purpose.
    problems.assert_clean(expected_failures=("/bericht/",))


def test_municipal_user_report_is_own_only(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page, tmp_path: Path
) -> None:
    _report_world(app)
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(f"{live_server}/bericht/")
    towns = page.locator("input[name=municipalities]")
    sync_api.expect(towns).to_have_count(1)
    sync_api.expect(page.locator(".report-towns")).to_contain_text("Arnsberg")
    with page.expect_download() as info:
        page.get_by_role("button", name="Bericht erstellen").click()
    target = tmp_path / "bericht.xlsx"
    info.value.save_as(target)
    text = _workbook_text(target)
    assert "Arnsberg" in text and "Meschede" not in text
    problems.assert_clean()


@pytest.mark.parametrize("who", ["steering", "arnsberg"])
def test_dashboard_charts_render(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page, who: str
) -> None:
    """Every chart canvas is drawn (pixels, not an empty box), in the user's scope."""
    _report_world(app)
    problems = watch(page)
    login(page, live_server, getattr(accounts, who))
    charts = page.locator("canvas.kim-chart[data-drawn]")
    sync_api.expect(charts.first).to_be_visible()
    count = page.locator("canvas.kim-chart").count()
    assert count >= 6 and charts.count() == count
    # Count the painted pixels of each canvas: an empty box has none.
    painted = page.evaluate(
        """() => [...document.querySelectorAll('canvas.kim-chart')].map((c) => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) n++; }
            return n;
        })"""
    )
    assert all(n > 2000 for n in painted), painted
    legend = page.evaluate(
        """() => Chart.getChart(document.querySelector('canvas.kim-chart'))
                 .data.datasets.map((d) => d.label)"""
    )
    if who == "arnsberg":
        assert legend == ["Arnsberg"]
    else:
        assert "Arnsberg" in legend and "Meschede" in legend
    # Per 1,000 inhabitants: the same lines, other values.
    before = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-code=BER_KONT]'))"
        ".data.datasets[0].data"
    )
    page.get_by_text("je 1.000 Einwohner", exact=True).click()
    sync_api.expect(page.locator("#dashboard-charts")).to_have_attribute("data-scale", "per1000")
    after = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-code=BER_KONT]'))"
        ".data.datasets[0].data"
    )
    assert before != after and any(v is not None for v in after)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{who}.png"), full_page=True)
    problems.assert_clean()
