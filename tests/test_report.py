"""The evaluation report: sheets, totals against the database, scope, safety, queries."""

from __future__ import annotations

import io
import random
import re
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import event, func, select

from kim_admin import report
from kim_admin.extensions import db
from kim_admin.monitoring.status import APPROVED, DRAFT
from models import (
    AuditEvent,
    Indicator,
    Job,
    MonitoringEntry,
    Municipality,
    Partner,
    Post,
    ReportingPeriod,
    Room,
    Submission,
    TargetGroup,
    User,
)

from .support import follow_job, report_download, start_report

TOWNS = ["Arnsberg", "Meschede", "Sundern (Sauerland)"]
BERLIN = ZoneInfo("Europe/Berlin")
SOURCE = "Quelle: KIM-Monitoring des Hochsauerlandkreises, eigene Berechnungen"
SYMBOL_KEY = "Zeichenerklärung: – nichts vorhanden · . unterdrückt (Geheimhaltung) · p vorläufig"
PROVISIONAL_FORMAT = '" p"'

INJECTED_NAME = '=HYPERLINK("http://x","y")'
INJECTED_COMMENT = "{=1+1}"


@pytest.fixture
def world(app, accounts):
    """Four quarters of 2025 with random figures for three towns.

    Arnsberg and Meschede have every quarter approved; Sundern's Q4 is still a
    draft, so "approved only" must leave it out.
    """
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    with app.app_context():
        towns = {
            m.name: m
            for m in db.session.scalars(select(Municipality).where(Municipality.name.in_(TOWNS)))
        }
        periods = []
        for quarter in (1, 2, 3, 4):
            period = ReportingPeriod(
                year=2025, quarter=quarter, deadline=date(2025, 3 * quarter, 28)
            )
            db.session.add(period)
            periods.append(period)
        db.session.flush()
        indicators = db.session.scalars(select(Indicator)).all()
        groups = db.session.scalars(select(TargetGroup)).all()
        for town in towns.values():
            for period in periods:
                for indicator in indicators:
                    for group in groups if indicator.by_target_group else [None]:
                        value = Decimal(rng.randint(0, 40))
                        if indicator.decimal_places:
                            value = Decimal(rng.randint(1, 300)) / 100
                        db.session.add(
                            MonitoringEntry(
                                municipality=town,
                                period=period,
                                indicator=indicator,
                                target_group=group,
                                value=value,
                            )
                        )
                draft = town.name.startswith("Sundern") and period.quarter == 4
                db.session.add(
                    Submission(
                        municipality=town, period=period, status=DRAFT if draft else APPROVED
                    )
                )
        partner = Partner(name=INJECTED_NAME, kind="sonstige", municipalities=[towns["Arnsberg"]])
        db.session.add(partner)
        db.session.add(
            Partner(name="Nur Meschede e. V.", kind="sonstige", municipalities=[towns["Meschede"]])
        )
        db.session.add(
            Room(name="Raum A", municipality=towns["Arnsberg"], seats=6, barrier_free=True)
        )
        db.session.add(Room(name="Raum B", municipality=towns["Arnsberg"], seats=4))
        db.session.add(Room(name="Raum M", municipality=towns["Meschede"], seats=8))
        db.session.add(
            Post(
                title="CM Arnsberg",
                municipality=towns["Arnsberg"],
                employer_type="kommune",
                function="case_management",
                baustein="2",
                fte=Decimal("0.75"),
                status="besetzt",
            )
        )
        db.session.add(
            Post(
                title="Koordination",
                municipality=None,
                function="koordination",
                baustein="1",
                fte=Decimal("1.00"),
                status="vakant",
            )
        )
        entry = db.session.scalars(
            select(MonitoringEntry).where(MonitoringEntry.municipality == towns["Arnsberg"])
        ).first()
        entry.comment = INJECTED_COMMENT
        db.session.commit()
        return {
            "towns": {name: t.id for name, t in towns.items()},
            "periods": [p.id for p in periods],
        }


def _build(app, world, email, towns=TOWNS, approved_only=True, first=0, last=3, raw=True):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        options = report.ReportOptions(
            world["periods"][first],
            world["periods"][last],
            tuple(world["towns"][t] for t in towns),
            approved_only=approved_only,
            include_raw=raw,
        )
        buffer = io.BytesIO()
        report.build(options, user, buffer)
    return buffer.getvalue()


def _book(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def _rows(sheet, header_row=4):
    """The table's rows (up to the first empty one) as dicts keyed by the header cells."""
    rows = list(sheet.iter_rows(min_row=header_row, values_only=True))
    header = rows[0]
    table = []
    for row in rows[1:]:
        if all(v is None for v in row):
            break
        table.append(dict(zip(header, row, strict=False)))
    return table


def _texts(sheet) -> list[str]:
    """Every text in column A of a sheet."""
    return [v for (v,) in sheet.iter_rows(max_col=1, values_only=True) if isinstance(v, str)]


def _expected(app, world, towns, approved_only=True, first=0, last=3):
    """Per town and indicator code: flows summed, stocks at the last quarter (plain SQL)."""
    periods = world["periods"][first : last + 1]
    with app.app_context():
        query = (
            select(Municipality.name, Indicator.code, Indicator.kind, MonitoringEntry.period_id)
            .add_columns(func.sum(MonitoringEntry.value))
            .join(Municipality, Municipality.id == MonitoringEntry.municipality_id)
            .join(Indicator, Indicator.id == MonitoringEntry.indicator_id)
            .where(Municipality.name.in_(towns), MonitoringEntry.period_id.in_(periods))
            .group_by(Municipality.name, Indicator.code, Indicator.kind, MonitoringEntry.period_id)
        )
        approved = {
            (s.municipality_id, s.period_id)
            for s in db.session.scalars(select(Submission).where(Submission.status == APPROVED))
        }
        ids = {name: world["towns"][name] for name in towns}
        result: dict[tuple[str, str], float] = {}
        for town, code, kind, period, total in db.session.execute(query):
            if approved_only and (ids[town], period) not in approved:
                continue
            if kind == "stock" and period != periods[-1]:
                continue
            result[(town, code)] = result.get((town, code), 0) + float(total)
    return result


def test_sheets_and_headers(app, world, accounts):
    book = _book(_build(app, world, accounts.steering))
    assert book.sheetnames == report.SHEETS
    kennzahlen = book["Kennzahlen"]
    header = [c.value for c in kennzahlen[4]]
    assert header[:3] == ["Kommune", "AGS", "Einwohner"]
    assert "CM_NEU – Neue Case-Management-Fälle" in header
    assert "CM_NEU je 1.000 Einwohner" in header
    assert kennzahlen.freeze_panes == "B5"
    assert kennzahlen.auto_filter.ref.startswith("A4:")
    raw = book["Rohdaten"]
    assert [c.value for c in raw[4]][:8] == [
        "Kommune",
        "AGS",
        "Jahr",
        "Quartal",
        "Kennzahl (Kürzel)",
        "Kennzahl",
        "Zielgruppe",
        "Wert",
    ]
    overview = {r[0]: r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0]}
    assert overview["Zeitraum"] == "Q1/2025 – Q4/2025"
    assert overview["Datenbasis"] == "nur freigegebene Meldungen"
    assert overview["Meldungen erwartet"] == 12
    assert overview["davon freigegeben"] == 11


@pytest.mark.parametrize("approved_only", [True, False])
def test_figures_match_database(app, world, accounts, approved_only):
    """Flows summed over the range, stocks at its end, totals the sum of the rows."""
    book = _book(_build(app, world, accounts.steering, approved_only=approved_only))
    expected = _expected(app, world, TOWNS, approved_only)
    with app.app_context():
        indicators = db.session.scalars(select(Indicator).order_by(Indicator.sort_order)).all()
        population = {m.name: m.population for m in db.session.scalars(select(Municipality))}
    rows = {r["Kommune"]: r for r in _rows(book["Kennzahlen"])}
    for indicator in indicators:
        column = f"{indicator.code} – {indicator.name}"
        total = 0.0
        for town in TOWNS:
            value = expected.get((town, indicator.code))
            assert rows[town][column] == pytest.approx(value), (town, indicator.code)
            if value is not None:
                total += value
                rate = rows[town][f"{indicator.code} je 1.000 Einwohner"]
                assert rate == pytest.approx(value / population[town] * 1000)
        assert rows["Summe"][column] == pytest.approx(total)
    assert rows["Summe"]["Einwohner"] == sum(population[t] for t in TOWNS)
    if approved_only:
        # Sundern's draft Q4 is left out: its stocks at the range's end are empty.
        assert rows["Sundern (Sauerland)"]["CM_AKT – Aktive Fälle am Quartalsende"] is None


def test_time_series_and_target_groups(app, world, accounts):
    book = _book(_build(app, world, accounts.steering, approved_only=False))
    with app.app_context():
        per_quarter = dict(
            db.session.execute(
                select(ReportingPeriod.quarter, func.sum(MonitoringEntry.value))
                .join(ReportingPeriod, ReportingPeriod.id == MonitoringEntry.period_id)
                .join(Indicator, Indicator.id == MonitoringEntry.indicator_id)
                .where(Indicator.code == "CM_NEU")
                .group_by(ReportingPeriod.quarter)
            ).all()
        )
        by_group = dict(
            db.session.execute(
                select(TargetGroup.name, func.sum(MonitoringEntry.value))
                .join(TargetGroup, TargetGroup.id == MonitoringEntry.target_group_id)
                .join(Indicator, Indicator.id == MonitoringEntry.indicator_id)
                .join(Municipality, Municipality.id == MonitoringEntry.municipality_id)
                .where(Indicator.code == "CM_NEU", Municipality.name == "Meschede")
                .group_by(TargetGroup.name)
            ).all()
        )
    series = _rows(book["Zeitreihe"])
    column = "CM_NEU – Neue Case-Management-Fälle"
    for row in series[:4]:
        quarter = int(row["Quartal"][1])
        assert row[column] == pytest.approx(float(per_quarter[quarter]))
        assert row["Quartalsende"].date() == ReportingPeriod(year=2025, quarter=quarter).ends_on
    assert series[4]["Quartal"] == "Zeitraum"
    assert series[4][column] == pytest.approx(float(sum(per_quarter.values())))
    groups = [r for r in _rows(book["Zielgruppen"]) if r["Kommune"] == "Meschede"]
    for row in groups:
        assert row[column] == pytest.approx(float(by_group[row["Zielgruppe"]]))


def test_master_data_sheets(app, world, accounts):
    book = _book(_build(app, world, accounts.steering))
    posts = _rows(book["Stellen"])
    assert posts[0]["Kommune"] == "Kreisebene"
    assert posts[0]["VZÄ vakant/ausgeschrieben"] == 1
    arnsberg = next(r for r in posts if r["Kommune"] == "Arnsberg")
    assert arnsberg["VZÄ besetzt"] == pytest.approx(0.75)
    assert posts[-1]["Kommune"] == "Summe" and posts[-1]["VZÄ gesamt"] == pytest.approx(1.75)
    rooms = {r["Kommune"]: r for r in _rows(book["Räume"])}
    assert (rooms["Arnsberg"]["Räume"], rooms["Arnsberg"]["davon barrierefrei"]) == (2, 1)
    assert rooms["Summe"]["Plätze"] == 18
    status = {r["Kommune"]: r for r in _rows(book["Meldestand"])}
    # Sundern's draft makes Q4 provisional: the column says so.
    assert status["Sundern (Sauerland)"]["Q4/2025 p"] == "Entwurf"
    assert status["Arnsberg"]["Q1/2025"] == "freigegeben"


def test_number_formats_and_dates(app, world, accounts):
    book = _book(_build(app, world, accounts.steering))
    sheet = book["Kennzahlen"]
    header = [c.value for c in sheet[4]]
    fte = header.index("VZAE_BES – Besetzte Vollzeitäquivalente am Quartalsende") + 1
    rate = header.index("CM_NEU je 1.000 Einwohner") + 1
    # Zero shows as "–" (nichts vorhanden); the cell stays a number.
    assert sheet.cell(5, 3).number_format == '#,##0;-#,##0;"–"'
    assert sheet.cell(5, fte).number_format == '#,##0.00;-#,##0.00;"–"'
    assert sheet.cell(5, rate).number_format == '#,##0.0;-#,##0.0;"–"'
    assert sheet.cell(5, 3).font.b is False
    assert sheet.cell(8, 1).value == "Summe" and sheet.cell(8, 1).font.b
    assert book["Zeitreihe"].cell(5, 2).is_date


def test_native_charts(app, world, accounts):
    """A line chart on "Zeitreihe" and a bar chart on "Kennzahlen"."""
    archive = zipfile.ZipFile(io.BytesIO(_build(app, world, accounts.steering)))
    names = archive.namelist()

    def charts_of(sheet_name: str) -> list[str]:
        book = archive.read("xl/workbook.xml").decode()
        sheets = re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="(rId\d+)"', book)
        index = [name for name, _ in sheets].index(sheet_name) + 1
        rels = archive.read(f"xl/worksheets/_rels/sheet{index}.xml.rels").decode()
        drawing = re.search(r"drawings/(drawing\d+\.xml)", rels).group(1)
        drawing_rels = archive.read(f"xl/drawings/_rels/{drawing}.rels").decode()
        return [
            archive.read(f"xl/charts/{c}").decode()
            for c in re.findall(r"(chart\d+\.xml)", drawing_rels)
        ]

    assert any(n.startswith("xl/charts/") for n in names)
    assert any("<c:lineChart>" in chart for chart in charts_of("Zeitreihe"))
    bar = charts_of("Kennzahlen")
    assert any("<c:barChart>" in chart and "je 1.000 Einwohner" in chart for chart in bar)


def test_municipal_report_is_own_only(app, world, accounts):
    """Asked for other towns, Arnsberg's user is refused; asked for its own, it gets that."""
    with pytest.raises(report.ReportError, match="Unbekannte Kommune"):
        _build(app, world, accounts.arnsberg)
    book = _book(_build(app, world, accounts.arnsberg, towns=["Arnsberg"]))
    text = "\n".join(
        str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row if v
    )
    assert "Arnsberg" in text
    for other in ("Meschede", "Sundern", "Nur Meschede e. V."):
        assert other not in text, other
    # Posts of the district level are outside a municipal user's scope.
    assert [r["Kommune"] for r in _rows(book["Stellen"])] == ["Arnsberg", "Summe"]
    expected = _expected(app, world, ["Arnsberg"])
    rows = {r["Kommune"]: r for r in _rows(book["Kennzahlen"])}
    assert rows["Arnsberg"]["CM_NEU – Neue Case-Management-Fälle"] == pytest.approx(
        expected[("Arnsberg", "CM_NEU")]
    )


def test_typed_text_stays_text(app, world, accounts):
    """A partner named like a formula and a comment like an array formula are strings."""
    book = _book(_build(app, world, accounts.steering))
    partner_cells = [row[0] for row in book["Partner"].iter_rows(min_row=5)]
    injected = [c for c in partner_cells if c.value == INJECTED_NAME]
    assert injected and injected[0].data_type == "s"
    comments = [row[9] for row in book["Rohdaten"].iter_rows(min_row=5) if row[9].value]
    assert [c.value for c in comments] == [INJECTED_COMMENT]
    assert comments[0].data_type == "s"
    with zipfile.ZipFile(io.BytesIO(_build(app, world, accounts.steering))) as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist() if "worksheets/sheet" in n]
    assert not any("<f>" in s or "<f " in s for s in sheets), "no formula anywhere"


def test_queries_do_not_grow_with_municipalities(app, world, accounts):
    def count(towns):
        with app.app_context():
            statements = []
            listener = lambda *args: statements.append(args[2])  # noqa: E731
            event.listen(db.engine, "before_cursor_execute", listener)
            try:
                _build(app, world, accounts.steering, towns=towns)
            finally:
                event.remove(db.engine, "before_cursor_execute", listener)
        return len(statements)

    # One more than before the raw-data sheet counted its rows (for its progress).
    assert count(TOWNS[:1]) == count(TOWNS) < 26


def test_raw_sheet_can_be_left_out(app, world, accounts):
    book = _book(_build(app, world, accounts.steering, raw=False))
    assert book.sheetnames == report.SHEETS[:-1]


def test_bad_range_refused(app, world, accounts):
    with pytest.raises(report.ReportError, match="nach dem letzten"):
        _build(app, world, accounts.steering, first=3, last=0)


# --- the page -------------------------------------------------------------------------


def _form(world, towns=TOWNS, first=0, last=3, basis="approved", raw=True):
    data = {
        "first": str(world["periods"][first]),
        "last": str(world["periods"][last]),
        "municipalities": [str(world["towns"][t]) for t in towns],
        "basis": basis,
    }
    if raw:
        data["raw"] = "y"
    return data


def test_page_makes_workbook_in_a_job(app, world, as_steering):
    """The POST starts a job; its file is the workbook the report writer makes."""
    page = as_steering.get("/bericht/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Bericht erstellen" in html and "data-report-job" in html
    assert 'role="progressbar"' in html and 'aria-live="polite"' in html
    started = start_report(as_steering, _form(world))
    assert started.status_code == 202
    state = follow_job(as_steering, started)
    assert state["status"] == "done" and state["progress"] == 100
    assert state["filename"] == "KIM-Evaluationsbericht_2025-Q1_2025-Q4.xlsx"
    response = as_steering.get(state["file"])
    assert response.status_code == 200
    assert response.mimetype == report_mimetype()
    disposition = response.headers["Content-Disposition"]
    assert 'filename="KIM-Evaluationsbericht_2025-Q1_2025-Q4.xlsx"' in disposition
    assert _book(response.data).sheetnames == report.SHEETS
    with app.app_context():
        event_ = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "report"))
        assert event_.action == "export" and event_.object_id == started.get_json()["id"]


def test_page_without_script_is_redirected_to_the_job(app, world, as_steering):
    """A plain form POST (no script) lands on the job's page, which offers the file."""
    response = as_steering.post("/bericht/", data=_form(world))
    assert response.status_code == 303
    page_url = response.headers["Location"]
    assert "/bericht/auftrag/" in page_url
    state = follow_job(as_steering, page_url + "status")
    assert state["status"] == "done"
    html = as_steering.get(page_url).get_data(as_text=True)
    assert "Der Bericht ist fertig" in html and state["file"] in html
    assert 'http-equiv="refresh"' not in html  # it reloads itself only while under way


def test_raw_data_is_an_option_off_by_default(app, world, as_steering):
    page = as_steering.get("/bericht/").get_data(as_text=True)
    checkbox = re.search(r'<input[^>]*name="raw"[^>]*>', page).group(0)
    assert "checked" not in checkbox
    without = report_download(as_steering, _form(world, raw=False))
    assert _book(without.data).sheetnames == report.SHEETS[:-1]
    with_raw = report_download(as_steering, _form(world, raw=True))
    assert _book(with_raw.data).sheetnames == report.SHEETS


def report_mimetype() -> str:
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_page_refuses_bad_input_in_german(world, as_district):
    response = as_district.post("/bericht/", data=_form(world, first=3, last=0))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Das letzte Quartal darf nicht vor dem ersten liegen." in html
    # What was chosen comes back selected.
    assert re.search(rf'<option selected value="{world["periods"][3]}">', html)
    response = as_district.post("/bericht/", data=_form(world, towns=[]))
    assert "Bitte mindestens eine Kommune wählen." in response.get_data(as_text=True)


def test_page_needs_csrf_token(app, world, as_steering):
    response = as_steering.client.post("/bericht/", data=_form(world))
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.id))) == 0


def test_municipal_user_cannot_ask_for_foreign_towns(world, as_arnsberg):
    page = as_arnsberg.get("/bericht/").get_data(as_text=True)
    assert "Arnsberg" in page and "Meschede" not in page
    response = as_arnsberg.post("/bericht/", data=_form(world, towns=["Meschede"]))
    assert response.status_code == 400
    assert "Meschede" not in response.get_data(as_text=True)
    own = report_download(as_arnsberg, _form(world, towns=["Arnsberg"]))
    assert own.status_code == 200
    assert "Meschede" not in str([c.value for s in _book(own.data) for r in s for c in r])


def test_page_refuses_unknown_ids_in_german(world, as_district):
    """Ids that are not in the lists get German messages, not WTForms' English."""
    for towns, first in ((["99999"], world["periods"][0]), (["abc"], "x"), (["1"], 99999)):
        data = {**_form(world), "municipalities": towns, "first": str(first)}
        response = as_district.post("/bericht/", data=data)
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "valid choice" not in html and "Invalid" not in html
        if towns != ["1"]:
            assert "Unbekannte Kommune: Bitte nur Kommunen aus der Liste wählen." in html
        if first != world["periods"][0]:
            assert "Bitte ein Quartal aus der Liste wählen." in html


def test_municipal_user_is_refused_a_foreign_town(world, as_arnsberg):
    """Another town's id is refused in German like an unknown one; nothing of it is sent."""
    response = as_arnsberg.post("/bericht/", data=_form(world, towns=["Arnsberg", "Meschede"]))
    assert response.status_code == 400
    assert "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert "Unbekannte Kommune: Bitte nur Kommunen aus der Liste wählen." in html
    assert "Meschede" not in html and "is not a valid choice" not in html


def test_overview_says_when_and_by_whom(app, world, accounts):
    """ "Erstellt am" is Berlin time (not converted twice); a user without a display
    name is named by e-mail; every sheet carries the same data status."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        user.name = ""
        db.session.commit()
    book = _book(_build(app, world, accounts.steering))
    now = datetime.now(BERLIN).replace(tzinfo=None)
    overview = {r[0]: r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0]}
    assert abs(overview["Erstellt am"] - now) < timedelta(minutes=2)
    assert overview["Erstellt von"] == f"{accounts.steering} (Steuerungsgruppe)"
    stamp = f"Datenstand: {overview['Erstellt am']:%d.%m.%Y, %H:%M} Uhr"
    for sheet in book:
        assert any(t.startswith(stamp) for t in _texts(sheet)), sheet.title


def test_every_sheet_has_source_symbols_and_print_setup(app, world, accounts):
    """Title, Datenstand and source on top, the symbol key below; landscape, one page wide,
    the header row repeated; header rows tall enough for their wrapped text."""
    book = _book(_build(app, world, accounts.steering))
    for sheet in book:
        texts = _texts(sheet)
        assert SOURCE in texts and SYMBOL_KEY in texts, sheet.title
        assert sheet.page_setup.orientation == "landscape", sheet.title
        assert sheet.sheet_properties.pageSetUpPr.fitToPage, sheet.title
        # fitToWidth 1 is the default xlsxwriter leaves out.
        assert (sheet.page_setup.fitToWidth or 1, sheet.page_setup.fitToHeight) == (1, 0)
        if sheet.title == "Übersicht":
            continue
        assert sheet.print_title_rows == "$4:$4", sheet.title
        assert sheet.cell(1, 1).font.b and sheet.cell(3, 1).value == SOURCE
        height = sheet.row_dimensions[4].height
        widths = {
            col: dim.width
            for dim in sheet.column_dimensions.values()
            for col in range(dim.min, dim.max + 1)
        }
        for cell in sheet[4]:
            if not cell.value:
                continue
            width = widths[cell.column]
            needed = _lines(cell.value, int(width)) * 15
            assert height >= needed, (sheet.title, cell.value, height, needed)
    # "CM_NEU – Neue Case-Management-Fälle" needs three lines; 30 pt cut it off.
    assert book["Kennzahlen"].row_dimensions[4].height >= 45


def _lines(text: str, per_line: int) -> int:
    """Lines of ``text`` wrapped at spaces, one character per width unit (a lower bound)."""
    lines, used = 1, 0
    for word in text.split():
        if used and used + 1 + len(word) > per_line:
            lines, used = lines + 1, 0
        used += len(word) + (1 if used else 0)
        while used > per_line:
            lines, used = lines + 1, used - per_line
    return lines


def test_overview_defines_the_indicators(app, world, accounts):
    book = _book(_build(app, world, accounts.steering))
    rows = list(book["Übersicht"].iter_rows(values_only=True))
    start = next(n for n, r in enumerate(rows) if r[0] == "Kürzel")
    assert rows[start][:6] == (
        "Kürzel",
        "Kennzahl",
        "Beschreibung",
        "Einheit",
        "Art",
        "Zusammenfassung (Zeitraum, Kommunen)",
    )
    defined = {r[0]: r for r in rows[start + 1 :] if r[0]}
    with app.app_context():
        for indicator in db.session.scalars(select(Indicator).where(Indicator.active)):
            code, name, description, unit, kind, how, _ = defined[indicator.code]
            assert (name, description, unit) == (
                indicator.name,
                indicator.description,
                indicator.unit,
            )
            word = "Bestandsgröße" if indicator.kind == "stock" else "Bewegungsgröße"
            assert kind.startswith(word)
            assert how.startswith("Stand des letzten" if indicator.kind == "stock" else "Summe")


# --- a quarter that is not complete ------------------------------------------------------

PARTICIPANTS = [
    "Arnsberg",
    "Bestwig",
    "Hallenberg",
    "Medebach",
    "Meschede",
    "Schmallenberg",
    "Sundern (Sauerland)",
]


@pytest.fixture
def partial(app, accounts):
    """The issue's case: Q1 and Q2/2026 approved by all seven KIM participants, Q3 by
    Arnsberg alone (Meschede and Sundern have drafts, the rest nothing). Every town
    reports one contact per 1,000 inhabitants (rounded down), so rates are comparable."""
    with app.app_context():
        towns = db.session.scalars(
            select(Municipality).where(Municipality.kim_participant.is_(True))
        ).all()
        assert sorted(t.name for t in towns) == PARTICIPANTS
        contacts = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        periods = [ReportingPeriod(year=2026, quarter=q) for q in (1, 2, 3)]
        db.session.add_all(periods)
        for town in towns:
            for period in periods:
                if period.quarter == 3 and town.name not in (
                    "Arnsberg",
                    "Meschede",
                    "Sundern (Sauerland)",
                ):
                    continue
                approved = period.quarter < 3 or town.name == "Arnsberg"
                db.session.add(
                    Submission(
                        municipality=town, period=period, status=APPROVED if approved else DRAFT
                    )
                )
                db.session.add(
                    MonitoringEntry(
                        municipality=town,
                        period=period,
                        indicator=contacts,
                        value=Decimal(town.population // 1000),
                    )
                )
        db.session.commit()
        return {
            "towns": {t.name: t.id for t in towns},
            "population": {t.name: t.population for t in towns},
            "periods": [p.id for p in periods],
        }


def _partial_book(app, partial, email, approved_only=True):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        options = report.ReportOptions(
            partial["periods"][0],
            partial["periods"][-1],
            tuple(partial["towns"].values()),
            approved_only=approved_only,
        )
        buffer = io.BytesIO()
        report.build(options, user, buffer)
    return _book(buffer.getvalue())


def _rate(partial, names):
    """Contacts per 1,000 inhabitants of ``names`` (plain arithmetic)."""
    population = partial["population"]
    return sum(population[n] // 1000 for n in names) / sum(population[n] for n in names) * 1000


def test_provisional_quarter_is_marked_and_rated_over_who_reported(app, partial, accounts):
    book = _partial_book(app, partial, accounts.steering)
    column = "BER_KONT – Beratungskontakte"
    rate = "BER_KONT je 1.000 Einwohner"
    # Zeitreihe: Q3 is labelled provisional, its figures carry "p", its rate is over
    # Arnsberg's inhabitants and so stays beside the complete quarters (no collapse).
    sheet = book["Zeitreihe"]
    header = [c.value for c in sheet[4]]
    series = {r[0].value: r for r in sheet.iter_rows(min_row=5, max_row=8)}
    assert list(series) == ["Q1/2026", "Q2/2026", "Q3/2026 p", "Zeitraum"]
    q3 = series["Q3/2026 p"]
    assert q3[header.index(column)].value == partial["population"]["Arnsberg"] // 1000
    assert PROVISIONAL_FORMAT in q3[header.index(column)].number_format
    assert PROVISIONAL_FORMAT not in series["Q1/2026"][header.index(column)].number_format
    assert q3[header.index(rate)].value == pytest.approx(_rate(partial, ["Arnsberg"]))
    assert q3[header.index(rate)].value == pytest.approx(
        series["Q1/2026"][header.index(rate)].value, abs=0.05
    )
    assert q3[2].value == 1  # Kommunen freigegeben (von 7)
    total = series["Zeitraum"]
    assert PROVISIONAL_FORMAT in total[header.index(column)].number_format
    # Kennzahlen: the total is marked, its rate sums the quarters' rates over who reported
    # (the old total ÷ all inhabitants showed Q3 as a drop).
    kennzahlen = {r["Kommune"]: r for r in _rows(book["Kennzahlen"])}
    expected = 2 * _rate(partial, PARTICIPANTS) + _rate(partial, ["Arnsberg"])
    assert kennzahlen["Summe"][rate] == pytest.approx(expected)
    figures = book["Kennzahlen"]
    k_header = [c.value for c in figures[4]]
    cells = {r[0].value: r for r in figures.iter_rows(min_row=5, max_row=12)}
    assert PROVISIONAL_FORMAT in cells["Summe"][k_header.index(column)].number_format
    assert PROVISIONAL_FORMAT in cells["Bestwig"][k_header.index(column)].number_format
    assert PROVISIONAL_FORMAT not in cells["Arnsberg"][k_header.index(column)].number_format
    # The coverage line on every sheet of quarterly figures, and on the Übersicht.
    line = "Q3/2026: 1 von 7 Kommunen freigegeben (vorläufig)"
    for name in ("Kennzahlen", "Zeitreihe", "Zielgruppen", "Meldestand", "Rohdaten"):
        assert f"Meldestand {line}" in _texts(book[name]), name
    overview = _texts(book["Übersicht"])
    assert line in overview and "Q1/2026: 7 von 7 Kommunen freigegeben" in overview
    assert [c.value for c in book["Meldestand"][4]][1:] == ["Q1/2026", "Q2/2026", "Q3/2026 p"]
    # The charts: categories are the labels above ("Q3/2026 p"), the axis says what "p" is.
    archive = zipfile.ZipFile(io.BytesIO(_partial_bytes(app, partial, accounts.steering)))
    charts = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/charts/")]
    line_chart = next(c for c in charts if "<c:lineChart>" in c)
    assert "$A$5:$A$7" in line_chart and "p vorläufig" in line_chart
    bar_chart = next(c for c in charts if "<c:barChart>" in c)
    assert "p vorläufig" in bar_chart and "Bestwig" in bar_chart


def _partial_bytes(app, partial, email):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        options = report.ReportOptions(
            partial["periods"][0], partial["periods"][-1], tuple(partial["towns"].values())
        )
        buffer = io.BytesIO()
        report.build(options, user, buffer)
    return buffer.getvalue()


def test_every_figure_entered_counts_who_has_figures(app, partial, accounts):
    """With drafts included, Q3 has three towns' figures but stays provisional."""
    book = _partial_book(app, partial, accounts.steering, approved_only=False)
    sheet = book["Zeitreihe"]
    header = [c.value for c in sheet[4]]
    assert header[2] == "Kommunen mit Werten oder Meldung (von 7)"
    q3 = next(r for r in sheet.iter_rows(min_row=5) if r[0].value == "Q3/2026 p")
    reported = ["Arnsberg", "Meschede", "Sundern (Sauerland)"]
    assert q3[2].value == 3
    assert q3[header.index("BER_KONT je 1.000 Einwohner")].value == pytest.approx(
        _rate(partial, reported)
    )
    line = "Q3/2026: 3 von 7 Kommunen mit Werten oder Meldung, davon 1 freigegeben (vorläufig)"
    assert f"Meldestand {line}" in _texts(sheet)


def test_default_range_ends_at_last_complete_quarter(app, partial, accounts, as_district):
    with app.app_context():
        participants = list(partial["towns"].values())
        assert report.last_complete_period(participants).id == partial["periods"][1]
        assert (
            report.last_complete_period([partial["towns"]["Arnsberg"]]).id
            == (partial["periods"][2])
        )
        assert report.last_complete_period([]) is None
        user = db.session.scalar(select(User).where(User.email == accounts.district))
        defaults = report.default_options(user)
        assert (defaults["first"], defaults["last"]) == tuple(partial["periods"][:2])
        assert sorted(defaults["municipalities"]) == sorted(participants)
    html = as_district.get("/bericht/").get_data(as_text=True)
    last = re.search(r'<select[^>]*name="last".*?</select>', html, re.S).group(0)
    assert re.search(rf'<option selected value="{partial["periods"][1]}">Q2/2026<', last)


def test_default_range_of_a_municipal_user(app, partial, accounts):
    """Meschede's Q3 is a draft: its own default ends at Q2, Arnsberg's at Q3."""
    with app.app_context():
        for email, town, last in (
            (accounts.meschede, "Meschede", 1),
            (accounts.arnsberg, "Arnsberg", 2),
        ):
            user = db.session.scalar(select(User).where(User.email == email))
            defaults = report.default_options(user)
            assert defaults["last"] == partial["periods"][last], town
            assert defaults["municipalities"] == [partial["towns"][town]]
