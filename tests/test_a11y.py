"""Accessibility: axe-core finds no WCAG 2.1 A/AA violation on any page, for any role.

The pages and their states (opened filters and pickers, failed saves, error pages) come
from ``tests/crawl.py``, which walks the app's URL map, so new pages are checked
without being listed here. axe-core is the npm package in ``tests/axe``
(``npm ci --prefix tests/axe``), injected into each page by Playwright.
"""

from __future__ import annotations

import re

import pytest

from . import crawl

# The browser fixtures of the interface tests: a served app and a chromium page.
from .test_browser import live_server, login, page, sync_api  # noqa: F401


@pytest.fixture(scope="module")
def walked(database, reference_image, tmp_path_factory) -> dict[str, list[crawl.State]]:
    return crawl.walk(database, reference_image, tmp_path_factory)


@pytest.mark.browser
@pytest.mark.parametrize("role", list(crawl.ROLES))
def test_no_axe_violations(walked: dict[str, list[crawl.State]], role: str) -> None:
    """Every state of every page this role reaches passes axe (wcag2a/aa, wcag21a/aa)."""
    states = walked[role]
    assert states, f"no page visited for {role}"
    problems = [line for state in states for line in state.describe_violations()]
    assert problems == [], "\n".join(problems)


@pytest.mark.browser
@pytest.mark.parametrize("role", list(crawl.ROLES))
def test_every_page_reflows_at_320_pixels(walked: dict[str, list[crawl.State]], role: str) -> None:
    """WCAG 1.4.10: in a window 320 CSS pixels wide no page scrolls sideways; a wide
    table scrolls inside its own region, which the keyboard can reach (2.1.1). The
    entry page's states are in ``test_entry_page.py``."""
    measured = [state for state in walked[role] if state.width_320]
    assert len(measured) >= 3, [s.url for s in walked[role]]
    wide = [(s.label, s.url, s.width_320) for s in measured if s.width_320 > 320]
    assert wide == []
    # What scrolls sideways instead (a wide table in its region) takes the focus, so
    # that the keyboard can scroll it.
    unreachable = [(s.label, s.url, s.unreachable_320) for s in measured if s.unreachable_320]
    assert unreachable == []


@pytest.mark.browser
def test_walk_without_script_errors(walked: dict[str, list[crawl.State]]) -> None:
    """kim-a11y.js and Flask-Admin's scripts run without an uncaught error on every page."""
    assert {role: errors for role, errors in crawl.SCRIPT_ERRORS.items() if errors} == {}


@pytest.mark.browser
def test_failed_saves_are_announced(walked: dict[str, list[crawl.State]]) -> None:
    """After every failed save the title starts with "Fehler:" and the focus is on the
    error summary (or, for a refusal without field errors, on the error message)."""
    failed = [
        state
        for states in walked.values()
        for state in states
        if state.label == "nach fehlgeschlagenem Speichern"
        and any(part in state.url for part in ("/new/", "/edit/", "/konto/"))
    ]
    assert len(failed) >= 10, [s.url for s in failed]
    wrong = [
        (state.url, state.title, state.focus)
        for state in failed
        if not state.title.startswith("Fehler: ") or state.focus not in ("error-summary", "alert")
    ]
    assert wrong == []


# --- the layout, with the test client --------------------------------------------------------


def test_failed_save_has_summary_title_and_described_fields(as_district) -> None:
    """Error summary linking each field, aria-invalid and aria-describedby on the fields."""
    html = as_district.post("/room/new/", {"name": "", "seats": "viele"}).get_data(as_text=True)
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()
    assert title.startswith("Fehler: Neuer Eintrag: Räume")
    summary = re.search(r'<div[^>]*id="error-summary".*?</div>', html, re.S).group(0)
    assert 'role="alert"' in summary and 'tabindex="-1"' in summary
    for field in ("name", "municipality", "seats"):
        assert f'href="#{field}"' in summary, field
        control = re.search(rf'<(input|select)[^>]*\bid="{field}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in control, control
        described = re.search(r'aria-describedby="([^"]+)"', control).group(1).split()
        assert f"{field}-error" in described
        assert f'id="{field}-error"' in html
    # A field's help text is tied to it too.
    edit = as_district.get("/post/new/").get_data(as_text=True)
    fte = re.search(r'<input[^>]*\bid="fte"[^>]*>', edit).group(0)
    assert 'aria-describedby="fte-help"' in fte and 'id="fte-help"' in edit


def test_messages_have_roles_and_a_named_close_button(app, as_district) -> None:
    """Errors are alerts, other messages status; the close button is named, not hidden."""
    ok = as_district.post(
        "/room/new/",
        {"name": "Raum mit Meldung", "municipality": _town(app), "kind": "buero"},
        follow_redirects=True,
    ).get_data(as_text=True)
    message = re.search(r'<div class="alert alert-success[^"]*"[^>]*>.*?</div>', ok, re.S).group(0)
    assert 'role="status"' in message
    assert 'aria-label="Meldung schließen"' in message
    assert not re.search(r'<button[^>]*aria-hidden="true"', message)
    refused = as_district.get("/room/details/?id=999999", follow_redirects=True)
    alert = re.search(
        r'<div class="alert alert-danger[^"]*"[^>]*>', refused.get_data(as_text=True)
    ).group(0)
    assert 'role="alert"' in alert


def _town(app) -> int:
    from . import factories

    with app.app_context():
        return factories.town("Arnsberg").id


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/room/", "Liste: Räume – Stammdaten – KIM-Admin"),
        ("/room/new/", "Neuer Eintrag: Räume – Stammdaten – KIM-Admin"),
        ("/konto/", "Passwort ändern – KIM-Admin"),
    ],
)
def test_page_titles_say_where_you_are(as_district, path: str, title: str) -> None:
    html = as_district.get(path).get_data(as_text=True)
    assert re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip() == title


def test_edit_and_details_titles_name_the_record(app, as_district) -> None:
    from . import factories

    with app.app_context():
        room = factories.room("Arnsberg", name="Raum Titel")
        from kim_admin.extensions import db

        db.session.commit()
        room_id = room.id
    for path, kind in (("edit", "Bearbeiten"), ("details", "Details")):
        html = as_district.get(f"/room/{path}/?id={room_id}").get_data(as_text=True)
        title = re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()
        assert title.startswith(f"{kind}: Raum Titel"), title


def test_pager_is_a_labelled_german_navigation(app, as_district) -> None:
    from . import factories

    with app.app_context():
        for i in range(25):
            factories.room("Arnsberg", name=f"Raum {i:02d}")
        from kim_admin.extensions import db

        db.session.commit()
    html = as_district.get("/room/?page_size=20").get_data(as_text=True)
    nav = re.search(r'<nav aria-label="Seitenauswahl">.*?</nav>', html, re.S).group(0)
    assert 'aria-label="Nächste Seite"' in nav and 'aria-label="Seite 2"' in nav
    assert "Vorherige Seite (nicht verfügbar)" in nav
    assert 'aria-current="page"' in nav
    assert "javascript:void(0)" not in nav


def test_no_daterangepicker_and_one_project_stylesheet(client, as_district) -> None:
    """Date filters are native inputs (kim-a11y.js); every page links kim.css."""
    html = as_district.get("/audit_event/").get_data(as_text=True)
    assert "daterangepicker" not in html
    assert "/assets/kim.css" in html and "/assets/kim-a11y.js" in html
    for path in ("/login", "/gibt-es-nicht", "/barrierefreiheit"):
        assert "/assets/kim.css" in client.get(path).get_data(as_text=True), path


def test_accessibility_statement_is_public_and_linked(app, client, as_district) -> None:
    """BITV §7: the statement is reachable without login, from every page's footer,
    and names the configured feedback contact."""
    response = client.get("/barrierefreiheit")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Erklärung zur Barrierefreiheit" in html
    assert "mailto:barrierefreiheit@hochsauerlandkreis.de" in html
    for path in ("/", "/room/", "/gibt-es-nicht"):
        assert 'href="/barrierefreiheit"' in as_district.get(path).get_data(as_text=True), path
    assert 'href="/barrierefreiheit"' in client.get("/login").get_data(as_text=True)
    app.config["KIM_ACCESSIBILITY_CONTACT"] = "hilfe@kreis.example"
    assert "mailto:hilfe@kreis.example" in client.get("/barrierefreiheit").get_data(as_text=True)


def test_protokoll_is_german_and_readable(app, as_district) -> None:
    """Actions and object types in German, old/new values as a table, no dict, no None."""
    from . import factories

    with app.app_context():
        room = factories.room("Arnsberg", name="Raum Protokoll", seats=4, barrier_free=False)
        from kim_admin.extensions import db

        db.session.commit()
        room.seats = 6
        db.session.commit()
    html = as_district.get("/audit_event/").get_data(as_text=True)
    assert "Anmeldung" in html and "angelegt" in html and "geändert" in html
    assert re.search(r'<td class="col-object_type">\s*Raum\s*</td>', html)
    assert "{'" not in html and "&#39;:" not in html and "None" not in html
    assert '<th scope="row">Plätze</th><td>6</td>' in html
    assert '<th scope="row">Barrierefrei</th><td>Nein</td>' in html


def test_target_group_without_legal_area_shows_a_dash(app, as_district) -> None:
    from kim_admin.extensions import db
    from models import TargetGroup

    with app.app_context():
        db.session.add(TargetGroup(name="Ohne Rechtskreis", legal_area=None, sort_order=99))
        db.session.commit()
    html = as_district.get("/target_group/?search=Ohne").get_data(as_text=True)
    row = re.search(r"<tr>(?:(?!</tr>).)*Ohne Rechtskreis.*?</tr>", html, re.S).group(0)
    assert "None" not in row
    assert re.search(r'<td class="col-legal_area">\s*–\s*</td>', row)


# --- the native date filter, in the browser ---------------------------------------------------


@pytest.mark.browser
def test_date_filter_is_a_native_labelled_input(accounts, live_server, page) -> None:  # noqa: F811
    """The Protokoll's time filter is a datetime-local input named after the filter; what
    it sends is the format Flask-Admin parses, and the filter comes back filled in."""
    expect = sync_api.expect
    login(page, live_server, accounts.district)
    page.goto(f"{live_server}/audit_event/")
    page.get_by_role("link", name="Filter hinzufügen").click()
    page.locator(".field-filters a.filter", has_text="Zeitpunkt").click()
    value = page.get_by_label("Wert für Zeitpunkt", exact=True)
    expect(value).to_have_attribute("type", "datetime-local")
    expect(page.locator(".daterangepicker")).to_have_count(0)
    value.fill("2020-01-01T08:30")
    page.get_by_role("button", name="Übernehmen").click()
    page.wait_for_url(re.compile(r"flt\d+_\d+=2020-01-01\+08%3A30%3A00"))
    expect(page.get_by_label("Wert für Zeitpunkt", exact=True)).to_have_value("2020-01-01T08:30")
    expect(page.locator(".alert-danger")).to_have_count(0)


@pytest.mark.browser
def test_tables_shown_later_become_regions_when_they_scroll(
    app,
    accounts,
    live_server,  # noqa: F811
    page,  # noqa: F811
) -> None:
    """At 320 px the start page's tables, closed at first ("Daten als Tabelle"), and
    the one "je 1.000 Einwohner", hidden until chosen, scroll once shown: each becomes
    a named region the keyboard can reach."""
    expect = sync_api.expect
    named = re.compile(r"je Kommune und Quartal.* \(Tabelle, waagerecht verschiebbar\)$")
    from kim_admin.extensions import db

    from . import factories

    with app.app_context():  # eight quarters: eight columns of figures
        for year in (2024, 2025):
            for quarter in (1, 2, 3, 4):
                factories.period(year, quarter, is_open=False)
        db.session.commit()
    login(page, live_server, accounts.district)
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{live_server}/")
    figure = page.locator("figure").first
    first = figure.locator('[data-scale-table="absolute"]')
    later = figure.locator('[data-scale-table="per1000"]')
    expect(first).to_be_hidden()
    figure.locator("summary").click()
    expect(first).to_be_visible()
    assert first.evaluate("(box) => box.scrollWidth > box.clientWidth")
    expect(first).to_have_attribute("tabindex", "0")
    expect(first).to_have_attribute("role", "region")
    expect(first).to_have_attribute("aria-label", named)
    expect(later).to_be_hidden()
    page.get_by_text("je 1.000 Einwohner", exact=True).first.click()
    expect(later).to_be_visible()
    expect(later).to_have_attribute("tabindex", "0")
    expect(later).to_have_attribute("aria-label", re.compile("je 1.000 Einwohner"))
