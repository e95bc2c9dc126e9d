"""The evaluation report for politics as a PDF, read back with pypdf.

Its text holds the narrative; its figures are the published workbook's (the same
suppression and disclosure audit), cell by cell; no hidden value reaches a table,
a chart or an alt text; it is tagged PDF/UA-1 (structure tree, ``/Lang`` de-DE,
marked, title shown, figures with alt texts). veraPDF is not in the package
registries this project installs from (it is a Java application), so the PDF/UA
structure is checked here directly. Each PDF is stored and downloaded unchanged.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openpyxl
import pypdf
import pytest
from flask import Flask
from flask_login import login_user
from sqlalchemy import select

from kim_admin import report
from kim_admin.extensions import db
from kim_admin.report import publication
from kim_admin.steering import document
from models import (
    Indicator,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    ReportDocument,
    ReportingPeriod,
    ReportText,
    Submission,
    TargetGroup,
    User,
)

from . import factories
from .conftest import app_on, create_accounts
from .test_browser import live_server, login, page, sync_api, watch  # noqa: F401 (fixtures)

if TYPE_CHECKING:
    from .conftest import Accounts

# One-word names: a table row of the PDF's text is then split into cells by spaces.
TOWNS = ["Arnsberg", "Bestwig", "Hallenberg", "Medebach", "Meschede"]
TEXTS = {
    "einleitung": "Die Steuerungsgruppe legt den „Bericht“ für den Kreisausschuss vor.",
    "entwicklung": "Im Handlungsfeld Bedarfserhebung wurden alle Zielgruppen erfasst.",
    "massnahmen": (
        "Vorrang hat die Kinderbetreuung während der Sprachkurse.\n\n- erstens\n- zweitens"
    ),
    "ausblick": "Im kommenden Jahr folgt die Auswertung der Fallkonferenzen.",
}


def fill_year(small_counts: bool) -> dict[str, Any]:
    """2025, every quarter approved in five towns; needs, posts, a measure, a problem.

    With ``small_counts`` many figures are small, and two are forced: Arnsberg's case
    conferences add up to 1 for the year, and referrals (VERM) in Q2 are 2 over all
    towns, so that a municipality's figure and a quarter are hidden. Without, every
    figure is at least the threshold: nothing to hide, and quick to publish.
    """
    rng = random.Random(5)  # noqa: S311 (test data, not secrets)
    pool = [0, 1, 2, 3, 4, 5, 8, 12, 20] if small_counts else [3, 7, 11, 30]
    towns = db.session.scalars(select(Municipality).where(Municipality.name.in_(TOWNS))).all()
    periods = [
        ReportingPeriod(year=2025, quarter=q, deadline=date(2025, 3 * q, 28)) for q in (1, 2, 3, 4)
    ]
    db.session.add_all(periods)
    indicators = db.session.scalars(select(Indicator)).all()
    groups = db.session.scalars(select(TargetGroup).order_by(TargetGroup.id)).all()[:3]
    for town in towns:
        for period in periods:
            db.session.add(Submission(municipality=town, period=period, status="approved"))
            for indicator in indicators:
                for group in groups if indicator.by_target_group else [None]:
                    value = Decimal(rng.choice(pool))
                    if indicator.decimal_places:
                        value = Decimal("0.75")
                    elif small_counts and indicator.code == "FALLKONF" and town.name == "Arnsberg":
                        value = Decimal(1 if period.quarter == 1 else 0)
                    elif small_counts and indicator.code == "VERM" and period.quarter == 2:
                        value = Decimal(2 if town.name == "Arnsberg" else 0)
                    db.session.add(
                        MonitoringEntry(
                            municipality=town,
                            period=period,
                            indicator=indicator,
                            target_group=group,
                            value=value,
                        )
                    )
    # The other KIM municipalities reported too (approved, no figures): a publication
    # covers all of them, and their quarters are final.
    for town in db.session.scalars(
        select(Municipality).where(
            Municipality.kim_participant.is_(True), Municipality.name.not_in(TOWNS)
        )
    ):
        for period in periods:
            db.session.add(Submission(municipality=town, period=period, status="approved"))
    for n, town in enumerate(towns):
        db.session.add(
            NeedsAssessment(
                municipality=town, target_group=groups[0], year=2025, estimated_people=n + 1
            )
        )
    factories.post("Arnsberg", "CM Arnsberg", status="besetzt")
    factories.post(None, "Koordination", function="koordination", baustein="1", fte=1)
    factories.measure(
        "Kinderbetreuung im Sprachkurs",
        municipalities=["Arnsberg"],
        status="in_arbeit",
        due_on=date(2026, 6, 30),
    )
    factories.structural_problem("Arnsberg", periods[1], description="keine Kita-Plätze")
    db.session.commit()
    # A publication covers every KIM municipality (figures in some of them).
    towns = tuple(sorted(publication.participant_ids()))
    return {"towns": towns, "periods": [p.id for p in periods]}


@pytest.fixture
def world(app: Flask, accounts: Accounts) -> dict[str, Any]:
    """A year without small counts, for the page's tests."""
    with app.app_context():
        return fill_year(small_counts=False)


def _user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


@dataclass
class Published:
    """A PDF with small counts hidden, what its charts were given, and the workbook."""

    pdf: bytes
    charts: list[tuple]
    hidden: set
    book: openpyxl.Workbook
    indicators: list[tuple[str, str, int]]  # code, name, decimal places


@pytest.fixture(scope="module")
def published(database, reference_image, tmp_path_factory) -> Published:
    """Built once for the module: publishing a year of small counts takes seconds."""
    with app_on(database, reference_image, tmp_path_factory.mktemp("pdf")) as app:
        with app.test_request_context():
            accounts = create_accounts()
            world = fill_year(small_counts=True)
            user = _user(accounts.steering)
            login_user(user)
            options = document.DocumentOptions(2025, world["towns"])
            ctx, pdf = document.build(options, TEXTS, user)
            charts = [(c.title, c.categories, c.series, c.alt) for c in ctx["charts"]]
            indicators = [(i.code, i.name, i.decimal_places) for i in ctx["data"].indicators]
            hidden = set(ctx["data"].hidden_cells())
            # The published workbook ("für Veröffentlichung") of the same year and towns.
            buffer = io.BytesIO()
            report.build(document.report_options(options), user, buffer)
    book = openpyxl.load_workbook(io.BytesIO(buffer.getvalue()))
    return Published(pdf, charts, hidden, book, indicators)


def _text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def _between(text: str, start: str, end: str) -> list[str]:
    """The lines of ``text`` after the line containing ``start`` up to ``end``."""
    part = text.split(start, 1)[1].split(end, 1)[0]
    return part.splitlines()[1:]


def _rows(lines: list[str], names: list[str] | None = None) -> dict[str, list[str]]:
    """Each line as (first word, or the name of ``names`` it starts with) -> its cells."""
    result = {}
    for line in lines:
        name = next(
            (n for n in sorted(names or [], key=len, reverse=True) if line.startswith(n)), None
        )
        rest = line[len(name) :] if name else line
        cells = rest.replace(document.NO_FIGURE, "\0").split()
        cells = [document.NO_FIGURE if c == "\0" else c for c in cells]
        if name:
            result[name] = cells
        elif cells:
            result[cells[0]] = cells[1:]
    return result


def _sheet(book: openpyxl.Workbook, name: str) -> tuple[list[str], list[tuple]]:
    rows = list(book[name].iter_rows(min_row=4, values_only=True))
    body = []
    for row in rows[1:]:
        if all(v is None for v in row):
            break
        body.append(row)
    return list(rows[0]), body


def _shown(value: Any, places: int) -> str:
    """A workbook cell as the PDF prints it."""
    return value if value == "." else document.fmt(value, places)


def test_pdf_holds_the_narrative(published):
    text = _text(published.pdf)
    for body in TEXTS.values():
        first = body.split("\n")[0]
        assert " ".join(first.split()) in " ".join(text.split())
    assert "erstens" in text and "zweitens" in text


def test_figures_equal_the_published_workbook(published):
    assert published.hidden, "the test data must make the publication hide values"
    text, book = _text(published.pdf), published.book
    indicators = [Indicator(code=c, name=n, decimal_places=d) for c, n, d in published.indicators]
    places = {i.code: 2 if i.decimal_places else 0 for i in indicators}
    header, rows = _sheet(book, "Kennzahlen")
    values = [header.index(f"{i.code} – {i.name}") for i in indicators]
    rates = [header.index(f"{i.code} je 1.000 Einwohner") for i in indicators]
    names = [row[0] for row in rows]
    table1 = _rows(_between(text, "Tabelle 1:", "Tabelle 2:"), names)
    table2 = _rows(_between(text, "Tabelle 2:", "Kennzahlen:"), names)
    dots = 0
    for row in rows:
        name = row[0]
        expected = [_shown(row[c], places[i.code]) for c, i in zip(values, indicators, strict=True)]
        expected_rates = [
            _shown(row[c], 2 if places[i.code] else 1)
            for c, i in zip(rates, indicators, strict=True)
        ]
        assert table1[name][1:] == expected, name
        assert table2[name] == expected_rates, name
        dots += expected.count(".")
    assert dots >= 1, "Arnsberg's case conferences (1 in the year) are hidden"
    assert (
        table1["Arnsberg"][
            indicators.index(next(i for i in indicators if i.code == "FALLKONF")) + 1
        ]
        == "."
    )

    header, rows = _sheet(book, "Zeitreihe")
    columns = [header.index(f"{i.code} – {i.name}") for i in indicators]
    table3 = _rows(_between(text, "Tabelle 3:", "Hochsauerlandkreis"))
    for row in rows:
        if not str(row[0]).startswith("Q"):
            continue
        expected = [
            _shown(row[c], places[i.code]) for c, i in zip(columns, indicators, strict=True)
        ]
        # "Q2/2025 5 von 5 ..." : the quarter, the towns approved, then the figures.
        assert table3[row[0]][3:] == expected, row[0]
    verm = columns[[i.code for i in indicators].index("VERM")]
    assert next(r for r in rows if r[0] == "Q2/2025")[verm] == ".", "2 referrals in Q2"


def test_charts_get_no_hidden_value(published):
    header, rows = _sheet(published.book, "Zeitreihe")
    quarters = {r[0]: r for r in rows if str(r[0]).startswith("Q")}
    hidden_seen = 0
    for title, categories, series, alt in published.charts:
        ((code, values),) = series.items()
        column = next(n for n, h in enumerate(header) if h and h.startswith(f"{code} – "))
        for label, value in zip(categories, values, strict=True):
            cell = quarters[label][column]
            if cell == ".":
                hidden_seen += 1
                assert value is None, (title, label)
                assert f"{label}: nicht veröffentlicht" in alt
            else:
                assert value == pytest.approx(cell), (title, label)
    assert hidden_seen >= 1


def test_pdf_is_tagged_pdf_ua(published):
    reader = pypdf.PdfReader(io.BytesIO(published.pdf))
    root = reader.trailer["/Root"]
    assert "/StructTreeRoot" in root
    assert root["/Lang"] == "de-DE"
    assert bool(root["/MarkInfo"]["/Marked"])
    assert bool(root["/ViewerPreferences"]["/DisplayDocTitle"])
    assert reader.metadata.title.startswith("Evaluationsbericht Kommunales Integrationsmanagement")
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "pdfuaid" in xmp and re.search(r"pdfuaid:part[^0-9]*1", xmp)
    # Every chart is a Figure with an alt text; headings and tables are tagged.
    kinds: dict[str, int] = {}
    alts = []
    todo = [root["/StructTreeRoot"].get_object()]
    while todo:
        node = todo.pop()
        if isinstance(node, pypdf.generic.IndirectObject):
            node = node.get_object()
        if isinstance(node, pypdf.generic.ArrayObject):
            todo.extend(node)
            continue
        if not isinstance(node, pypdf.generic.DictionaryObject):
            continue
        kind = node.get("/S")
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "/Figure":
                alts.append(str(node.get("/Alt", "")))
        if "/K" in node:
            todo.append(node["/K"])
    assert len(alts) == 8 and all(a.startswith("Diagramm: ") for a in alts)
    assert kinds.get("/H1") and kinds.get("/H2", 0) >= 10
    assert kinds.get("/Table", 0) >= 8 and kinds.get("/TH") and kinds.get("/TD")


def test_pdf_is_a4_with_page_numbers_and_contents(published):
    reader = pypdf.PdfReader(io.BytesIO(published.pdf))
    pages = len(reader.pages)
    for sheet in reader.pages:
        size = sorted(round(float(v)) for v in sheet.mediabox[2:])
        assert size == [595, 842]  # A4 in points, portrait or landscape
    contents = reader.pages[1].extract_text()
    assert "Inhalt" in contents and f"Seite 2 von {pages}" in contents
    # The table of contents names the page each chapter starts on.
    start = int(re.search(r"7 Maßnahmen[ .]+(\d+)", contents).group(1))
    assert reader.pages[start - 1].extract_text().startswith("7 Maßnahmen")
    measures = " ".join(reader.pages[start - 1].extract_text().split())
    assert "Kinderbetreuung im Sprachkurs in Arbeit 30.06.2026 Arnsberg" in measures


# --- the page -------------------------------------------------------------------------


def _form(world, **extra) -> dict:
    return {"year": "2025", "municipalities": list(world["towns"]), **TEXTS, **extra}


def test_page_stores_versions_that_download_unchanged(app, world, as_steering):
    first = as_steering.post("/bericht-pdf/erzeugen", _form(world))
    assert first.status_code == 302
    changed = dict(_form(world), ausblick="Neuer Ausblick für 2026.")
    assert as_steering.post("/bericht-pdf/erzeugen", changed).status_code == 302
    with app.app_context():
        stored = db.session.scalars(select(ReportDocument).order_by(ReportDocument.version)).all()
        assert [d.version for d in stored] == [1, 2]
        assert stored[0].texts["ausblick"] == TEXTS["ausblick"]
        assert stored[1].texts["ausblick"] == "Neuer Ausblick für 2026."
        assert stored[0].parameters["year"] == 2025
        assert stored[0].parameters["municipality_ids"] == list(world["towns"])
        ids = [(d.id, d.sha256, d.pdf) for d in stored]
        saved = db.session.scalar(select(ReportText).where(ReportText.section == "ausblick"))
        assert saved.body == "Neuer Ausblick für 2026."
    listing = as_steering.get("/bericht-pdf/").get_data(as_text=True)
    assert "Version 1" in listing and "Version 2" in listing
    for document_id, sha256, pdf in ids:
        response = as_steering.get(f"/bericht-pdf/version/{document_id}.pdf")
        assert response.status_code == 200
        assert response.mimetype == "application/pdf"
        assert response.data == pdf
        assert hashlib.sha256(response.data).hexdigest() == sha256
    assert "Im kommenden Jahr" in _text(
        as_steering.get(f"/bericht-pdf/version/{ids[0][0]}.pdf").data
    )
    assert as_steering.get("/bericht-pdf/version/999.pdf").status_code == 404


def test_preview_shows_the_typed_text_and_saves_nothing(app, world, as_steering):
    typed = dict(_form(world), einleitung="Entwurf <b>nicht</b> gespeichert")
    response = as_steering.post("/bericht-pdf/vorschau", typed)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Vorschau (nicht gespeichert)" in html
    assert "Entwurf &lt;b&gt;nicht&lt;/b&gt; gespeichert" in html  # escaped, in preview and form
    assert "<caption>Tabelle 1: Kennzahlen je Kommune" in html
    assert '<img src="data:image/svg+xml;base64,' in html
    with app.app_context():
        assert db.session.scalar(select(ReportText)) is None
        assert db.session.scalar(select(ReportDocument)) is None


def test_bad_input_keeps_the_texts_and_says_why_in_german(app, world, as_steering):
    response = as_steering.post("/bericht-pdf/erzeugen", _form(world, year="1999"))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Bitte ein Jahr aus der Liste wählen." in html
    assert "Kinderbetreuung während der Sprachkurse" in html
    too_long = as_steering.post("/bericht-pdf/", _form(world, einleitung="x" * 20_001))
    assert too_long.status_code == 400
    assert "Höchstens 20000 Zeichen." in too_long.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ReportDocument)) is None


def test_texts_are_saved(app, world, as_steering):
    response = as_steering.post("/bericht-pdf/", _form(world))
    assert response.status_code == 302
    form = as_steering.get("/bericht-pdf/").get_data(as_text=True)
    assert "Im kommenden Jahr folgt" in form


def test_only_steering_group_and_district_reach_the_pdf(app, world, accounts, as_arnsberg):
    assert as_arnsberg.get("/bericht-pdf/").status_code == 403
    assert as_arnsberg.post("/bericht-pdf/erzeugen", _form(world)).status_code == 403
    with app.test_request_context():
        user = _user(accounts.steering)
        login_user(user)
        stored = document.generate(document.DocumentOptions(2025, world["towns"]), TEXTS, user)
        db.session.commit()
        document_id = stored.id
    assert as_arnsberg.get(f"/bericht-pdf/version/{document_id}.pdf").status_code == 403


def test_pdf_needs_a_csrf_token(world, as_steering):
    as_steering.token = "falsch"
    assert as_steering.post("/bericht-pdf/erzeugen", _form(world)).status_code == 400


# --- in the browser --------------------------------------------------------------------


@pytest.mark.browser
def test_browser_writes_previews_and_downloads(
    app: Flask,
    world: dict,
    accounts: Accounts,
    live_server: str,  # noqa: F811 (fixture)
    page: sync_api.Page,  # noqa: F811 (fixture)
    tmp_path: Path,
) -> None:
    problems = watch(page)
    login(page, live_server, accounts.steering)
    page.goto(f"{live_server}/bericht-pdf/")
    page.get_by_label("Einleitung").fill("Der Kreisausschuss erhält den ersten Bericht.")
    page.get_by_role("button", name="Vorschau").click()
    preview = page.locator("#preview")
    sync_api.expect(preview).to_contain_text("Der Kreisausschuss erhält den ersten Bericht.")
    sync_api.expect(preview.get_by_role("img").first).to_have_attribute(
        "alt", re.compile("^Diagramm: ")
    )
    # The typed text is still in the form after the preview.
    sync_api.expect(page.get_by_label("Einleitung")).to_have_value(
        "Der Kreisausschuss erhält den ersten Bericht."
    )
    page.get_by_role("button", name="PDF erzeugen").click()
    sync_api.expect(page.get_by_text("Version 1 des Berichts wurde erzeugt")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="PDF herunterladen (Version 1)").click()
    download = info.value
    assert download.suggested_filename.startswith("KIM-Evaluationsbericht_v1_")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert "Der Kreisausschuss erhält den ersten Bericht." in _text(target.read_bytes())
    problems.assert_clean()


@pytest.mark.parametrize("url", ["file:///etc/hostname", "http://127.0.0.1:9/bild.svg"])
def test_renderer_fetches_no_file_and_nothing_from_the_network(url):
    """Only the charts' data: URIs are read; a file or network address stops the PDF."""
    from weasyprint.urls import FatalURLFetchingError

    html = f'<html lang="de-DE"><title>t</title><img src="{url}" alt="x"></html>'
    with pytest.raises(FatalURLFetchingError):
        document.render_pdf(html)


def test_narrative_is_escaped_into_paragraphs_and_lists():
    html = str(document.paragraphs("Erster <b>Absatz</b>\nzweite Zeile\n\n- eins\n- zwei"))
    assert html == (
        "<p>Erster &lt;b&gt;Absatz&lt;/b&gt;<br>zweite Zeile</p>\n"
        "<ul><li>eins</li><li>zwei</li></ul>"
    )
