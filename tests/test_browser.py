"""Browser test: the district admin creates a room through the real web interface.

The test's app is served by Werkzeug on a free localhost port in a background
thread, and Debian's chromium (``/usr/bin/chromium``) is driven headless through
Playwright's sync API. No browser is downloaded; if chromium is missing, the
test is skipped.

Run it alone with ``pytest tests/test_browser.py`` or leave it out with
``pytest -m "not browser"``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from werkzeug.serving import make_server

from kim_admin.extensions import db
from models import Municipality, Room

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


def test_district_admin_creates_room(
    app: Flask, accounts: Accounts, live_server: str, page: sync_api.Page
) -> None:
    """Log in, open the room list, create a room with the form and find it in list and DB."""
    expect = sync_api.expect
    room_name = "Beratungsraum Neheim Test"
    # Uncaught JavaScript errors (e.g. a broken Select2) fail the test at the end.
    js_errors: list[str] = []
    page.on("pageerror", lambda error: js_errors.append(f"{page.url}: {error}"))

    # Log in through the login form.
    page.goto(f"{live_server}/login")
    page.fill("#email", accounts.district)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    expect(page.get_by_text("Sie sind angemeldet.")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r"/login"))

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
    assert js_errors == []

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


def _municipality_id(app: Flask, name: str) -> int:
    """The primary key of the municipality called ``name``."""
    with app.app_context():
        town_id = db.session.scalar(db.select(Municipality.id).where(Municipality.name == name))
        db.session.remove()
    assert town_id is not None
    return town_id
