"""Wholly German: no English word (and no Python ``None``) on any page, message or error.

* Every page state of every role (``tests/crawl.py``: lists with filters, open pickers,
  failed saves, error pages) is read in the browser, Select2's and the filters' texts
  included.
* The flash and error paths a browser walk does not reach are driven with the test
  client: saved, deleted, refused, expired form, missing page, wrong method.
* Every message Flask-Admin can show has a German translation, from its own catalogue
  or the project's (``kim_admin/translations``), and the committed ``admin.mo`` is
  compiled from the current ``admin.po``.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import flask_admin
import pytest
from babel.messages.extract import extract_from_file
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask_admin.babel import gettext
from flask_admin.helpers import set_current_view

from kim_admin.extensions import db
from models import Room

from . import crawl, factories
from .support import Session, csrf_from

TRANSLATIONS = Path(__file__).resolve().parent.parent / "kim_admin" / "translations"
PROJECT_PO = TRANSLATIONS / "de" / "LC_MESSAGES" / "admin.po"
PROJECT_MO = TRANSLATIONS / "de" / "LC_MESSAGES" / "admin.mo"
FLASK_ADMIN = Path(flask_admin.__file__).resolve().parent

# Words of Flask-Admin's, WTForms' and Select2's English that German never uses.
ENGLISH = re.compile(
    r"\b(the|and|of|with|items?|records?|failed|please|enter|search|add|delete|save|"
    r"cancel|apply|select(ed)?|none|true|false|matches|loading|create|edit|view|reset|"
    r"between|equals|contains|greater|smaller|empty|not|results?|searching|characters?|"
    r"you|are|sure|this|only|more|next|previous|first|last|yes|list|sort|by|field|"
    r"required|invalid|successfully|error|value|choice|permission|denied|found|"
    r"from|to|filters?)\b",
    re.IGNORECASE,
)
# German words and names that the pattern above would take for English.
ALLOWED = {"export", "filter"}


def english_in(text: str) -> list[str]:
    """The English words of ``text`` with a little context each."""
    found = []
    for match in ENGLISH.finditer(text):
        if match.group(0).lower() in ALLOWED:
            continue
        start, end = max(match.start() - 30, 0), match.end() + 30
        found.append(text[start:end].replace("\n", " "))
    return found


class _Text(HTMLParser):
    """What a user reads in an HTML page: text (no script/style) and named attributes."""

    NAMED = ("title", "aria-label", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        values = dict(attrs)
        self.parts.extend(values[name] or "" for name in self.NAMED if name in values)
        if tag == "input" and values.get("type") in ("submit", "button"):
            self.parts.append(values.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


# Flask-Admin's data for its scripts (filters, actions): hidden JSON, read by no one.
HIDDEN_DATA = re.compile(r'<div [^>]*class="d-none"[^>]*>[^<]*</div>')


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(HIDDEN_DATA.sub("", html))
    return "\n".join(part.strip() for part in parser.parts if part.strip())


# --- every page, in the browser ------------------------------------------------------------


@pytest.fixture(scope="module")
def walked(database, reference_image, tmp_path_factory) -> dict[str, list[crawl.State]]:
    return crawl.walk(database, reference_image, tmp_path_factory)


@pytest.mark.browser
@pytest.mark.parametrize("role", list(crawl.ROLES))
def test_every_page_is_german(walked: dict[str, list[crawl.State]], role: str) -> None:
    """No English word on any page state this role meets (texts, titles, labels)."""
    problems = [
        f"[{role}] {state.label} {state.url}: …{snippet}…"
        for state in walked[role]
        for text in state.texts
        for snippet in english_in(text)
    ]
    assert problems == [], "\n".join(sorted(set(problems)))


@pytest.mark.browser
def test_walk_opened_pickers_and_filters(walked: dict[str, list[crawl.State]]) -> None:
    """The walk really reached the states whose texts come from JavaScript."""
    labels = {state.label for state in walked["kreis"]}
    assert {
        "Liste mit allen Filtern",
        "Formular mit geöffneter Auswahlliste",
        "nach fehlgeschlagenem Speichern",
    } <= labels


# --- flash and error paths, with the test client -------------------------------------------


def _german(session_or_client, response) -> None:
    text = page_text(response.get_data(as_text=True))
    assert english_in(text) == [], text[:2000]


def test_flash_and_error_paths_are_german(app: Flask, as_district: Session) -> None:
    """Saved, refused, deleted, not found, wrong method, expired form: all in German."""
    with app.app_context():
        room = factories.room("Arnsberg", name="Sprachraum")
        town = room.municipality_id
        db.session.commit()
        room_id = room.id
    s = as_district
    steps = [
        # created, then shown with its success message
        s.post(
            "/room/new/",
            {"name": "Neuer Raum", "municipality": town, "kind": "beratungsraum", "seats": "3"},
            follow_redirects=True,
        ),
        # refused by a validator (field errors and summary)
        s.post("/room/new/", {"name": "", "seats": "viele"}),
        # a user of the Kommune role without a Kommune: refused in on_model_change
        s.post(
            "/user/new/",
            {"email": "ohne@test.example", "name": "Ohne", "role": "municipal_staff"},
        ),
        # saved
        s.post(
            f"/room/edit/?id={room_id}",
            {"name": "Sprachraum 2", "municipality": town, "kind": "beratungsraum", "seats": "4"},
            follow_redirects=True,
        ),
        # deleted, then deleted again (gone)
        s.post("/room/delete/", {"id": room_id}, follow_redirects=True),
        s.post("/room/delete/", {"id": room_id}, follow_redirects=True),
        # a record that does not exist
        s.get(f"/room/details/?id={room_id}", follow_redirects=True),
        s.get("/gibt-es-nicht"),
        s.client.put("/room/"),
        # an expired form (CSRF)
        s.client.post("/room/new/", data={"name": "x"}),
        # the account page after a wrong current password
        s.post("/konto/", {"current": "falsch", "new": "a", "confirm": "b"}),
        # the logout message on the login page
        s.post("/logout", follow_redirects=True),
    ]
    for response in steps:
        _german(s, response)
    texts = [page_text(r.get_data(as_text=True)) for r in steps]
    assert "Eintrag wurde erfolgreich erstellt." in texts[0]
    assert "Benutzer der Rolle Kommune brauchen eine Kommune." in texts[2]
    assert "Eintrag existiert nicht." in texts[6]
    with app.app_context():
        assert db.session.query(Room).filter_by(name="Neuer Raum").count() == 1


def test_failed_login_is_german(client) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": "x@example.org", "password": "falsch", "csrf_token": token}
    )
    _german(client, response)


# --- the catalogues -------------------------------------------------------------------------


def _translated(catalog) -> set[str]:
    ids = set()
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and all(strings):
            ids.add(message.id if isinstance(message.id, str) else message.id[0])
    return ids


def flask_admin_messages() -> dict[str, str]:
    """Every message id Flask-Admin's SQLAlchemy views and Bootstrap 4 templates use."""
    keywords = {
        "_gettext": None,
        "_ngettext": (1, 2),
        "gettext": None,
        "ngettext": (1, 2),
        "lazy_gettext": None,
    }
    unused = ("bootstrap2", "bootstrap3", "mongoengine", "peewee", "pymongo", "geoa")
    unused += ("fileadmin", "rediscli", "tests", "translations", "static", "file", "appengine")
    found: dict[str, str] = {}
    for root, _dirs, files in os.walk(FLASK_ADMIN):
        if any(part in Path(root).relative_to(FLASK_ADMIN).parts for part in unused):
            continue
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".py"):
                method = "python"
            elif name.endswith(".html"):
                method = "jinja2.ext.babel_extract"
            else:
                continue
            for _line, message, _comments, _context in extract_from_file(
                method, path, keywords=keywords
            ):
                msgid = message if isinstance(message, str) else message[0]
                if msgid:
                    found.setdefault(msgid, os.path.relpath(path, FLASK_ADMIN))
    return found


def test_every_flask_admin_message_has_a_german_text() -> None:
    """What Flask-Admin may show is translated, by its catalogue or the project's."""
    with open(FLASK_ADMIN / "translations" / "de" / "LC_MESSAGES" / "admin.mo", "rb") as f:
        german = _translated(read_mo(f))
    with open(PROJECT_MO, "rb") as f:
        german |= _translated(read_mo(f))
    messages = flask_admin_messages()
    assert len(messages) > 50  # the extraction works
    missing = {msgid: where for msgid, where in messages.items() if msgid not in german}
    assert missing == {}


def test_compiled_catalogue_is_up_to_date() -> None:
    """admin.mo holds exactly what admin.po says (recompile with pybabel after editing)."""
    with open(PROJECT_PO, "rb") as f:
        source = {m.id: m.string for m in read_po(f) if m.id}
    with open(PROJECT_MO, "rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == source


def test_project_catalogue_reaches_flask_admin(app: Flask) -> None:
    """The project catalogue is in use: Flask-Admin's untranslated message is German."""
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "room")
    with app.test_request_context("/room/new/"):
        set_current_view(view)
        assert gettext("Failed to create record.") == "Der Eintrag konnte nicht erstellt werden."
