"""The data-entry page as a clerk meets it: matrix, plausibility, errors, no lost input.

The first half drives the page through the test client (markup, plausibility
messages, the comment that explains a warning, one confirmation); the second
half drives it in Debian's chromium, as ``tests/test_browser.py`` does:
accessible names, keyboard-only entry, focus after a failed save, reflow at
320 CSS pixels and the warning before typed figures are lost.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from kim_admin.extensions import db
from kim_admin.monitoring import entry as monitoring
from kim_admin.monitoring import status as statuses
from models import Indicator, MonitoringEntry, ReportingPeriod, Submission, TargetGroup, User

from . import factories
from .test_browser import live_server, login, page, sync_api, watch  # noqa: F401


@pytest.fixture
def world(app, accounts):
    """An open quarter with its predecessor, and the ids tests need."""
    with app.app_context():
        return factories.quarter_world()


def _url(world, town="arnsberg"):
    return f"/erfassung/?municipality={world[town]}&period={world['period']}"


def _cells(app, world) -> list[monitoring.Cell]:
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        found = monitoring.cells(world["arnsberg"], period)
        for c in found:  # loaded while the session is open
            _ = (c.indicator.name, c.target_group.name if c.target_group else None)
        return found


def _keys(app, world, code) -> dict[str | None, str]:
    """Cell keys of one indicator by target group name (None: the total)."""
    return {
        c.target_group.name if c.target_group else None: c.key
        for c in _cells(app, world)
        if c.indicator.code == code
    }


def _fill(app, world, value="0", comments=None, **special):
    """Form data for every cell: ``value`` everywhere, ``special`` per code."""
    data = {}
    for c in _cells(app, world):
        data[f"value-{c.key}"] = special.get(c.indicator.code, value)
        data[f"comment-{c.key}"] = (comments or {}).get(c.key, "")
        data[f"version-{c.key}"] = str(c.version)
    return data


def _previous_stock(app, world, value: int) -> None:
    """Active cases at the end of the previous quarter, per target group."""
    with app.app_context():
        indicator = db.session.scalar(select(Indicator).where(Indicator.code == "CM_AKT"))
        for group in db.session.scalars(select(TargetGroup)):
            db.session.add(
                MonitoringEntry(
                    municipality_id=world["arnsberg"],
                    period_id=world["prev"],
                    indicator=indicator,
                    target_group=group,
                    value=value,
                )
            )
        db.session.commit()


def _status(app, world) -> str | None:
    with app.app_context():
        return db.session.scalar(
            select(Submission.status).where(
                Submission.municipality_id == world["arnsberg"],
                Submission.period_id == world["period"],
            )
        )


def _arnsberg_user() -> User:
    return db.session.scalar(select(User).where(User.email == "arnsberg@test.example"))


class _Elements(HTMLParser):
    """Start tags with their attributes, and the text of each ``<label for>``."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.labels: dict[str, str] = {}
        self._label: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "label" and "for" in attributes:
            self._label = attributes["for"]
            self.labels[self._label] = ""

    def handle_endtag(self, tag):
        if tag == "label":
            self._label = None

    def handle_data(self, data):
        if self._label:
            self.labels[self._label] += data

    def by_id(self, element_id: str) -> dict[str, str] | None:
        return next((a for _, a in self.tags if a.get("id") == element_id), None)

    def label(self, element_id: str) -> str:
        return " ".join(self.labels.get(element_id, "").split())


def _title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match is not None
    return " ".join(match.group(1).split())


# --- the matrix, through the test client -------------------------------------------


def test_matrix_has_header_cells_names_ranges_and_definitions(app, world, as_arnsberg):
    _previous_stock(app, world, 10)
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    page_ = _Elements(html)
    cells = _cells(app, world)
    groups = {c.target_group.name for c in cells if c.target_group}
    assert _title(html) == "Dateneingabe Arnsberg, Q2/2026 - KIM-Admin"
    # Target groups are column headers, indicators row headers: name first, code second.
    for group in groups:
        assert f'<th scope="col">{group}</th>' in html
    for indicator in {c.indicator for c in cells}:
        assert re.search(
            rf'<th scope="row"[^>]*><span class="entry-name">{re.escape(indicator.name)}</span>'
            rf' <span class="entry-code">{indicator.code}</span></th>',
            html,
        ), indicator.code
        assert indicator.description and indicator.description in html
    assert html.count("<summary>Definition") == len({c.indicator.id for c in cells})
    # The table scrolls inside a labelled, focusable region.
    region = next(a for t, a in page_.tags if a.get("role") == "region")
    assert region["tabindex"] == "0" and "Kennzahlen von Arnsberg" in region["aria-label"]
    for c in cells:
        group = c.target_group.name if c.target_group else "gesamt"
        value = page_.by_id(f"value-{c.key}")
        assert value is not None
        assert page_.label(f"value-{c.key}") == f"{c.indicator.name}, {group}, {c.indicator.unit}"
        assert page_.label(f"comment-{c.key}") == f"Kommentar zu {c.indicator.name}, {group}"
        described = value["aria-describedby"].split()
        assert described[:2] == [f"prev-{c.key}", f"range-{c.indicator.id}"]
        for ref in described:
            assert page_.by_id(ref) is not None, ref
    stock = _keys(app, world, "CM_AKT")["Geduldete"]
    assert f'id="prev-{stock}">Vorquartal: 10<' in html


def test_failed_save_names_itself_and_links_every_field(app, world, as_arnsberg):
    contacts = _keys(app, world, "BER_KONT")[None]
    staff = _keys(app, world, "VZAE_BES")[None]
    form = _fill(app, world, BER_KONT="zwei", VZAE_BES="2,555")
    html = as_arnsberg.post(_url(world), {**form, "action": "save"}).get_data(as_text=True)
    page_ = _Elements(html)
    assert _title(html).startswith("Fehler: Dateneingabe Arnsberg, Q2/2026")
    summary = html[
        html.index('id="error-summary"') : html.index("</div>", html.index("error-summary"))
    ]
    assert "es wurde nichts gespeichert" in summary
    assert (
        f'href="#value-{contacts}">Beratungskontakte – gesamt: Bitte eine Zahl eingeben.' in summary
    )
    assert f'href="#value-{staff}">' in summary
    for key in (contacts, staff):
        value = page_.by_id(f"value-{key}")
        assert value is not None and value["aria-invalid"] == "true"
        assert value["aria-describedby"].split()[0] == f"error-{key}"
        assert page_.by_id(f"error-{key}") is not None
    assert 'value="zwei"' in html  # nothing typed is lost


# --- plausibility -------------------------------------------------------------------


def _stock_off_by_one(app, world, comments=None):
    """10 active before, 2 new, 1 closed, but 12 active: the stock rule warns per group."""
    _previous_stock(app, world, 10)
    return _fill(app, world, comments=comments, CM_NEU="2", CM_ABG="1", CM_AKT="12")


def test_one_grouped_message_per_rule_with_values_and_linked_cells(app, world, as_arnsberg):
    form = _stock_off_by_one(app, world)
    as_arnsberg.post(_url(world), {**form, "action": "save"})
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    stock = _keys(app, world, "CM_AKT")
    groups = [g for g in stock if g]
    # One message for the rule, one line per target group with both sides' values.
    assert html.count("Bestand fortgeschrieben</h3>") == 1
    assert html.count("Warnung 1: Bestand fortgeschrieben") == 1
    for group in groups:
        assert f"<strong>{group}</strong>: CM_AKT = 12, prev(CM_AKT) + CM_NEU - CM_ABG = 11" in html
        # The offending cell is highlighted, links back to the rule, shows the expectation.
        key = stock[group]
        assert f'href="#value-{key}">Aktive Fälle am Quartalsende</a>' in html
        cell = html[html.rindex("<td", 0, html.index(f'id="value-{key}"')) :]
        assert cell.startswith('<td class="entry-cell entry-cell-warning">')
        assert re.search(rf'id="expect-{key}"[^>]*>Erwartet: 11<', html)
        assert 'href="#rule-1">Warnung 1' in cell[: cell.index("</td>")]
    # The closing cases rule holds (1 <= 10 + 2): no second message.
    assert "Abschlüsse höchstens" not in html


def test_comment_on_the_cell_explains_the_warning(app, world, as_arnsberg):
    stock = _keys(app, world, "CM_AKT")
    groups = [g for g in stock if g]
    # Explained for one group only: the others still need the confirmation.
    one = {stock[groups[0]]: "Zwei Fälle aus dem Nachbarkreis übernommen"}
    form = _stock_off_by_one(app, world, comments=one)
    html = as_arnsberg.post(_url(world), {**form, "action": "submit"}).get_data(as_text=True)
    assert _status(app, world) == "draft"
    assert f"<strong>{groups[0]}</strong>: CM_AKT = 12" in html
    assert "(im Kommentar erklärt)" in html and html.count("(im Kommentar erklärt)") == 1
    assert 'id="acknowledge"' in html
    # A comment on every offending cell: submitted without any acknowledgement.
    every = {stock[g]: "Übernahmen aus dem Nachbarkreis" for g in groups}
    form = _fill(app, world, comments=every, CM_NEU="2", CM_ABG="1", CM_AKT="12")
    response = as_arnsberg.post(_url(world), {**form, "action": "submit"})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert _status(app, world) == statuses.SUBMITTED


def test_comment_does_not_explain_a_blocking_rule(app, world, as_arnsberg):
    _previous_stock(app, world, 0)
    closed = _keys(app, world, "CM_ABG")
    comments = {key: "Abschlüsse nachgetragen" for key in closed.values()}
    # 5 closed out of 0 + 1: impossible, whatever the comment says.
    form = _fill(app, world, comments=comments, CM_NEU="1", CM_ABG="5", CM_AKT="0")
    html = as_arnsberg.post(_url(world), {**form, "action": "submit", "acknowledge": "1"}).get_data(
        as_text=True
    )
    assert _status(app, world) == "draft"
    assert _title(html).startswith("Fehler:")
    assert "Fehler 1: Abschlüsse höchstens Bestand + Zugänge" in html
    assert 'href="#rule-1">Abschlüsse höchstens Bestand + Zugänge: blockierende' in html
    assert "entry-cell-blocking" in html


def test_findings_mark_explained_warnings(app, world):
    _previous_stock(app, world, 10)
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        cells = monitoring.cells(world["arnsberg"], period)
        user = _arnsberg_user()
        posted = {}
        for c in cells:
            value = {"CM_NEU": "2", "CM_ABG": "1", "CM_AKT": "12"}.get(c.indicator.code, "0")
            explained = c.indicator.code == "CM_NEU" and c.target_group.name == "Geduldete"
            posted[c.key] = monitoring.Posted(value, "erklärt" if explained else "", c.version)
        assert monitoring.write_figures(world["arnsberg"], period, posted, user).ok
        found = monitoring.findings(monitoring.cells(world["arnsberg"], period))
        assert {f.rule_name for f in found} == {"Bestand fortgeschrieben"}
        assert [f.target_group for f in found if f.explained] == ["Geduldete"]
        check = monitoring.submit(world["arnsberg"], period, user)
        assert len(check.warnings) == len(found) - 1


def test_one_confirmation_not_two(app, world, as_arnsberg):
    # No warning: the submit button asks once, no checkbox.
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    assert 'data-confirm="Meldung einreichen?' in html and 'id="acknowledge"' not in html
    # Warnings shown: the checkbox is the confirmation; the button asks nothing more.
    as_arnsberg.post(_url(world), {**_stock_off_by_one(app, world), "action": "save"})
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    assert 'id="acknowledge"' in html
    button = html[html.index('value="submit"') : html.index("Meldung einreichen</button>")]
    assert "data-confirm" not in button
    form = _fill(app, world, CM_NEU="2", CM_ABG="1", CM_AKT="12")
    response = as_arnsberg.post(_url(world), {**form, "action": "submit", "acknowledge": "1"})
    assert response.status_code == 302 and _status(app, world) == statuses.SUBMITTED
    shown = as_arnsberg.get(_url(world)).get_data(as_text=True)
    assert "Die Meldung wurde eingereicht" in shown
    assert f"erstmals {statuses.label(statuses.SUBMITTED)} am" in shown


def test_status_words_come_from_the_status_module(app, world, as_arnsberg):
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    assert "Meldung einreichen</button>" in html
    assert "abschließen" not in html and "Meldung abgeschlossen" not in html


def test_expected_stock_only_with_every_term(app, world):
    _previous_stock(app, world, 10)
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        user = _arnsberg_user()
        cells = monitoring.cells(world["arnsberg"], period)
        posted = {
            c.key: monitoring.Posted("3", "", c.version)
            for c in cells
            if c.indicator.code == "CM_NEU"
        }
        assert monitoring.write_figures(world["arnsberg"], period, posted, user).ok
        # Closed cases not yet entered: no value yet, but the page can add them up live.
        cells = monitoring.cells(world["arnsberg"], period)
        expected = monitoring.expected_values(cells)
        stock = {c.key: c for c in cells if c.indicator.code == "CM_AKT"}
        assert set(expected) == set(stock)
        geduldete = next(k for k, c in stock.items() if c.target_group.name == "Geduldete")
        new, closed = (
            next(
                c.key
                for c in cells
                if c.indicator.code == code and c.target_group.name == "Geduldete"
            )
            for code in ("CM_NEU", "CM_ABG")
        )
        assert expected[geduldete] == monitoring.Expected(
            None, Decimal(10), ((1, new), (-1, closed))
        )
        posted = {
            c.key: monitoring.Posted("1", "", c.version)
            for c in cells
            if c.indicator.code == "CM_ABG"
        }
        assert monitoring.write_figures(world["arnsberg"], period, posted, user).ok
        expected = monitoring.expected_values(monitoring.cells(world["arnsberg"], period))
        assert {e.value for e in expected.values()} == {Decimal(12)}


def test_expected_stock_recomputed_while_typing(
    app,
    world,
    accounts,
    live_server,  # noqa: F811
    page,  # noqa: F811
):
    expect = sync_api.expect
    _previous_stock(app, world, 10)
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(_entry_url(live_server, world))
    stock_key = _keys(app, world, "CM_AKT")["Geduldete"]
    note = page.locator(f"#expect-{stock_key}")
    expect(note).to_be_hidden()
    page.get_by_role("textbox", name="Neue Case-Management-Fälle, Geduldete, Fälle").fill("1.002")
    page.get_by_role("textbox", name="Abgeschlossene Fälle, Geduldete, Fälle").fill("3")
    expect(note).to_have_text("Erwartet: 1.009")
    stock = page.get_by_role("textbox", name="Aktive Fälle am Quartalsende, Geduldete, Fälle")
    expect(stock).to_have_accessible_description("Vorquartal: 10 Erlaubt: ab 0 Erwartet: 1.009")
    page.get_by_role("textbox", name="Abgeschlossene Fälle, Geduldete, Fälle").fill("drei")
    expect(note).to_be_hidden()
    problems.assert_clean()


# --- in the browser ------------------------------------------------------------------


def _entry_url(base: str, world) -> str:
    return f"{base}{_url(world)}"


def test_accessible_names_of_the_matrix(app, world, accounts, live_server, page):  # noqa: F811
    expect = sync_api.expect
    _previous_stock(app, world, 10)
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(_entry_url(live_server, world))
    expect(page).to_have_title("Dateneingabe Arnsberg, Q2/2026 - KIM-Admin")
    region = page.get_by_role("region", name=re.compile(r"^Kennzahlen von Arnsberg, Q2.2026"))
    expect(region).to_have_attribute("tabindex", "0")
    table = region.get_by_role("table")
    expect(table.get_by_role("columnheader", name="Geduldete", exact=True)).to_have_count(1)
    expect(
        table.get_by_role("rowheader", name="Aktive Fälle am Quartalsende CM_AKT", exact=True)
    ).to_have_count(1)
    stock = page.get_by_role("textbox", name="Aktive Fälle am Quartalsende, Geduldete, Fälle")
    expect(stock).to_have_count(1)
    expect(stock).to_have_accessible_description("Vorquartal: 10 Erlaubt: ab 0")
    contacts = page.get_by_role("textbox", name="Beratungskontakte, gesamt, Kontakte", exact=True)
    expect(contacts).to_have_accessible_description("Vorquartal: keine Angabe Erlaubt: ab 0")
    expect(
        page.get_by_role("textbox", name="Kommentar zu Aktive Fälle am Quartalsende, Geduldete")
    ).to_have_count(1)
    # The definition opens on demand.
    definition = page.get_by_text("Bestand aktiver Fälle am letzten Tag des Quartals.")
    expect(definition).to_be_hidden()
    page.locator("summary", has_text="Definition von Aktive Fälle am Quartalsende").click()
    expect(definition).to_be_visible()
    problems.assert_clean()


def test_matrix_filled_and_saved_with_the_keyboard(app, world, accounts, live_server, page):  # noqa: F811
    expect = sync_api.expect
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(_entry_url(live_server, world))
    total = page.locator('input[name^="value-"]').count()
    typed = 0
    for _ in range(total * 4 + 80):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => [document.activeElement.name || '', document.activeElement.textContent]"
        )
        if focused[0].startswith("value-"):
            page.keyboard.type("3")
            typed += 1
        elif focused[0] == "action" and "Entwurf speichern" in focused[1]:
            break
    else:
        pytest.fail("the save button is not reachable with Tab")
    assert typed == total
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Entwurf gespeichert ({total} Werte geändert).")).to_be_visible()
    problems.assert_clean()
    with app.app_context():
        values = db.session.scalars(
            select(MonitoringEntry.value).where(MonitoringEntry.period_id == world["period"])
        ).all()
    assert values == [Decimal(3)] * total


def test_focus_on_error_summary_after_failed_save(app, world, accounts, live_server, page):  # noqa: F811
    expect = sync_api.expect
    problems = watch(page)
    login(page, live_server, accounts.arnsberg)
    page.goto(_entry_url(live_server, world))
    contacts = page.get_by_role("textbox", name="Beratungskontakte, gesamt, Kontakte", exact=True)
    contacts.fill("zwölf")
    contacts.press("Enter")
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile(r"^Fehler: Dateneingabe Arnsberg, Q2/2026"))
    expect(contacts).to_have_attribute("aria-invalid", "true")
    expect(contacts).to_have_accessible_description(
        re.compile(r"^Bitte eine Zahl eingeben\. Vorquartal")
    )
    summary.get_by_role("link", name=re.compile("^Beratungskontakte – gesamt")).press("Enter")
    expect(contacts).to_be_focused()
    expect(contacts).to_have_value("zwölf")
    problems.assert_clean()


@pytest.mark.parametrize("state", ["empty", "errors", "findings"])
def test_reflow_at_320_pixels(app, world, accounts, live_server, page, state):  # noqa: F811
    _previous_stock(app, world, 10)
    login(page, live_server, accounts.arnsberg)
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(_entry_url(live_server, world))
    if state != "empty":
        for value in page.locator('input[name^="value-"]').all():
            value.fill("1")
        if state == "errors":
            page.locator('input[name^="value-"]').first.fill("x")
        page.get_by_role("button", name="Entwurf speichern").click()
        page.wait_for_load_state()
    widths = page.evaluate(
        """() => {
        const region = document.querySelector('[role=region]');
        return [document.scrollingElement.scrollWidth, region.scrollWidth, region.clientWidth];
    }"""
    )
    page_width, table_width, region_width = widths
    assert page_width <= 320, widths
    assert table_width > region_width  # the table scrolls inside its region


def test_unsaved_changes_warning(app, world, accounts, live_server, page):  # noqa: F811
    expect = sync_api.expect
    login(page, live_server, accounts.arnsberg)
    url = _entry_url(live_server, world)
    page.goto(url)
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    # Without changes: leave without a question.
    page.locator(".navbar-brand").click()
    expect(page).not_to_have_url(url)
    assert dialogs == []
    page.goto(url)
    contacts = page.get_by_role("textbox", name="Beratungskontakte, gesamt, Kontakte", exact=True)
    contacts.fill("7")
    # Leaving by a link asks the browser's question and stays on dismissal.
    page.locator(".navbar-brand").click()
    assert [d.split(":")[0] for d in dialogs] == ["beforeunload"]
    expect(page).to_have_url(url)
    expect(contacts).to_have_value("7")
    # Switching the quarter asks in German, once.
    page.get_by_role("button", name="Anzeigen").click()
    assert dialogs[1:] == [
        "confirm: Ihre Eingaben sind noch nicht gespeichert. Wenn Sie Kommune oder Quartal "
        "wechseln, gehen sie verloren. Trotzdem wechseln?"
    ]
    expect(contacts).to_have_value("7")
    # Saving is no loss: no question.
    page.get_by_role("button", name="Entwurf speichern").click()
    expect(page.get_by_text("Entwurf gespeichert (1 Werte geändert).")).to_be_visible()
    assert len(dialogs) == 2
