"""List exports: what the list shows, as xlsx and CSV, typed, safe and scoped."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select

from kim_admin import exports
from kim_admin.extensions import db
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
    TargetGroup,
)

INJECTIONS = [
    '=HYPERLINK("http://x","y")',
    "{=1+1}",
    "+49 291 94-0",
    "-5",
    "@SUM(A1)",
    "http://example.org",
    "0042",
]


@pytest.fixture
def data(app):
    """Rooms in two towns, a partner and figures whose text looks like formulas."""
    with app.app_context():
        towns = {m.name: m for m in db.session.scalars(select(Municipality))}
        for n in range(5):
            db.session.add(
                Room(
                    name=f"Raum {n}",
                    municipality=towns["Arnsberg" if n % 2 else "Meschede"],
                    seats=n + 2,
                    barrier_free=n % 2 == 0,
                    availability=INJECTIONS[n],
                )
            )
        db.session.add(
            Partner(
                name=INJECTIONS[0],
                kind="sonstige",
                contact_person=INJECTIONS[1],
                cooperation_since=date(2021, 7, 1),
            )
        )
        db.session.add(
            Post(
                title="Koordination",
                function="koordination",
                baustein="1",
                fte=Decimal("0.50"),
                status="besetzt",
            )
        )
        period = ReportingPeriod(year=2025, quarter=1)
        indicator = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        for town, value, comment in (("Arnsberg", 12, INJECTIONS[1]), ("Meschede", 7, None)):
            db.session.add(
                MonitoringEntry(
                    municipality=towns[town],
                    period=period,
                    indicator=indicator,
                    value=Decimal(value),
                    comment=comment,
                    updated_at=datetime(2025, 4, 2, 8, 30),
                )
            )
        db.session.commit()


def _sheet(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == exports.XLSX_MIMETYPE
    return openpyxl.load_workbook(io.BytesIO(response.data)).worksheets[0]


def _csv(response):
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff"), "UTF-8 BOM so that German Excel reads umlauts"
    return list(csv.reader(io.StringIO(text[1:]), delimiter=";"))


def test_xlsx_has_german_headers_and_typed_cells(data, as_district):
    sheet = _sheet(as_district.get("/room/export/xlsx/?sort=0"))
    header = [c.value for c in sheet[1]]
    assert header == [
        "Bezeichnung",
        "Kommune",
        "Art",
        "Plätze",
        "Barrierefrei",
        "Verfügbarkeit",
        "Aktiv",
    ]
    rows = [dict(zip(header, (c for c in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert len(rows) == 5
    assert all(r["Plätze"].data_type == "n" for r in rows)
    assert {r["Barrierefrei"].value for r in rows} == {"ja", "nein"}
    assert sheet.freeze_panes == "A2"


def test_xlsx_and_csv_keep_typed_text_as_text(data, as_district):
    sheet = _sheet(as_district.get("/room/export/xlsx/"))
    header = [c.value for c in sheet[1]]
    column = header.index("Verfügbarkeit")
    cells = [row[column] for row in sheet.iter_rows(min_row=2)]
    assert sorted(c.value for c in cells) == sorted(INJECTIONS[:5])
    assert all(c.data_type == "s" for c in cells)
    partner = _sheet(as_district.get("/partner/export/xlsx/"))
    values = [c for row in partner.iter_rows(min_row=2) for c in row if c.value]
    assert any(c.value == INJECTIONS[0] and c.data_type == "s" for c in values)
    # CSV: every cell a spreadsheet would run as a formula starts with an apostrophe.
    rows = _csv(as_district.get("/room/export/csv/"))
    column = rows[0].index("Verfügbarkeit")
    cells = sorted(r[column] for r in rows[1:])
    assert cells == sorted(exports.neutralise(v) for v in INJECTIONS[:5])
    assert '\'=HYPERLINK("http://x","y")' in cells and "'+49 291 94-0" in cells
    assert "{=1+1}" in cells  # not a formula in CSV: only = + - @ tab CR are
    partner_rows = _csv(as_district.get("/partner/export/csv/"))
    assert partner_rows[1][0] == "'" + INJECTIONS[0]


def test_monitoring_export_comment_and_value(data, as_district):
    sheet = _sheet(as_district.get("/monitoring_entry/export/xlsx/"))
    header = [c.value for c in sheet[1]]
    assert header == [
        "Kommune",
        "Quartal",
        "Kennzahl",
        "Zielgruppe",
        "Wert",
        "Kommentar",
        "Geändert am",
        "Geändert von",
    ]
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    comment = rows["Arnsberg"][5]
    assert comment.value == "{=1+1}" and comment.data_type == "s"
    assert rows["Arnsberg"][4].value == 12 and rows["Arnsberg"][4].data_type == "n"
    changed = rows["Arnsberg"][6]
    assert changed.is_date
    assert changed.value == datetime(2025, 4, 2, 10, 30)  # stored UTC, shown in Berlin time
    csv_rows = _csv(as_district.get("/monitoring_entry/export/csv/"))
    by_town = {r[0]: r for r in csv_rows[1:]}
    assert by_town["Arnsberg"][5] == "{=1+1}"
    assert by_town["Arnsberg"][6] == "02.04.2025 10:30"


def test_export_follows_search_filter_and_sort(data, as_district):
    sheet = _sheet(as_district.get("/room/export/xlsx/?search=Raum 3"))
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["Raum 3"]
    # Filter 0 of the room list is "Kommune equals".
    page = as_district.get("/room/?flt0_0=Arnsberg").get_data(as_text=True)
    assert "Raum 1" in page and "Raum 0" not in page
    sheet = _sheet(as_district.get("/room/export/xlsx/?flt0_0=Arnsberg"))
    names = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert sorted(names) == ["Raum 1", "Raum 3"]
    ascending = _sheet(as_district.get("/room/export/xlsx/?sort=0"))
    descending = _sheet(as_district.get("/room/export/xlsx/?sort=0&desc=1"))
    up = [row[0] for row in ascending.iter_rows(min_row=2, values_only=True)]
    down = [row[0] for row in descending.iter_rows(min_row=2, values_only=True)]
    assert up == sorted(up) and down == up[::-1] and len(up) == 5


def test_export_of_municipal_user_is_scoped(data, as_arnsberg):
    for url, column in (("/room/export/xlsx/", 1), ("/monitoring_entry/export/xlsx/", 0)):
        sheet = _sheet(as_arnsberg.get(url))
        towns = {row[column] for row in sheet.iter_rows(min_row=2, values_only=True)}
        assert towns == {"Arnsberg"}, url
    rows = _csv(as_arnsberg.get("/room/export/csv/"))
    assert {r[1] for r in rows[1:]} == {"Arnsberg"}
    assert "Meschede" not in as_arnsberg.get("/room/export/csv/").get_data(as_text=True)


def test_post_export_numbers_and_district_level(data, as_steering):
    sheet = _sheet(as_steering.get("/post/export/xlsx/"))
    header = [c.value for c in sheet[1]]
    row = next(sheet.iter_rows(min_row=2))
    fte = row[header.index("Stellenanteil (VZÄ)")]
    assert fte.value == 0.5 and fte.number_format == "#,##0.00"
    assert row[header.index("Kommune")].value == "Kreisebene"
    assert row[header.index("Funktion")].value == "Koordination"  # label, not the code


def test_export_filename_and_audit(app, data, as_steering):
    response = as_steering.get("/room/export/xlsx/")
    assert (
        f'filename="Raeume_{date.today().isoformat()}.xlsx"'
        in response.headers["Content-Disposition"]
    )
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export"))
        assert event.new_values["format"] == "xlsx"


def test_unknown_format_is_404(data, as_district):
    assert as_district.get("/room/export/json/").status_code == 404


def test_long_exports_continue_on_a_new_sheet(app, data, as_district, monkeypatch):
    monkeypatch.setattr(exports, "MAX_SHEET_ROWS", 3)
    response = as_district.get("/room/export/xlsx/?sort=0")
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert book.sheetnames == ["Räume", "Räume 2", "Räume 3"]
    names = [r[0] for s in book for r in s.iter_rows(min_row=2, values_only=True)]
    assert names == [f"Raum {n}" for n in range(5)]


def test_cell_writer_types():
    buffer = io.BytesIO()
    book = exports.new_workbook(buffer)
    sheet = book.add_worksheet("T")
    cells = exports.CellWriter(book)
    values = [*INJECTIONS, 3, 2.5, Decimal("1.25"), True, date(2025, 12, 31), None, ["a", "b"]]
    cells.write_row(sheet, 0, values, [None] * len(values))
    book.close()
    row = next(openpyxl.load_workbook(io.BytesIO(buffer.getvalue())).active.iter_rows())
    assert [c.value for c in row[: len(INJECTIONS)]] == INJECTIONS
    assert all(c.data_type == "s" for c in row[: len(INJECTIONS)])
    rest = row[len(INJECTIONS) :]
    assert [c.value for c in rest[:4]] == [3, 2.5, 1.25, "ja"]
    assert rest[4].is_date and rest[5].value is None and rest[6].value == "a, b"


def test_figure_lists_are_not_published(app, data, as_steering):
    """A town's quarter beside the published yearly report would give hidden cells away:
    published figures come from the audited report only."""
    listing = as_steering.get("/monitoring_entry/").get_data(as_text=True)
    assert "publish=1" not in listing and "Für Veröffentlichung" not in listing
    response = as_steering.get("/monitoring_entry/export/xlsx/?publish=1")
    assert response.status_code == 302 and "/export/" not in response.location
    page = as_steering.get(response.location).get_data(as_text=True)
    assert "Arbeitsdatei und wird nicht veröffentlicht" in page
    assert "Evaluationsbericht" in page


def _model_views(app):
    from views.base import SecureModelView

    return [v for v in app.extensions["admin"][0]._views if isinstance(v, SecureModelView)]


def test_no_export_anywhere_holds_a_formula(app, data, as_district):
    """Every list export (and the coverage matrix) as xlsx: typed text never becomes a formula;
    as CSV: no cell starts like a formula."""
    with app.app_context():
        partner = db.session.scalar(select(Partner).where(Partner.name == INJECTIONS[0]))
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Arnsberg"))
        group = db.session.scalar(select(TargetGroup))
        db.session.add(
            Post(
                title=INJECTIONS[1],
                municipality=town,
                employer_type="partner",
                employer_partner=partner,
                function="case_management",
                baustein="2",
                fte=Decimal("0.5"),
                status="besetzt",
                target_groups=[group],
            )
        )
        db.session.add(
            NeedsAssessment(
                municipality=town,
                target_group=group,
                year=2025,
                estimated_people=4,
                responsible_partner=partner,
                notes=INJECTIONS[0],
            )
        )
        db.session.commit()
        urls = [f"/{v.endpoint}/export/{{}}/" for v in _model_views(app)]
    urls.append("/versorgung/export/{}/?year=2025")
    seen = set()
    for url in urls:
        response = as_district.get(url.format("xlsx"))
        assert response.status_code == 200, url
        archive = zipfile.ZipFile(io.BytesIO(response.data))
        for name in archive.namelist():
            if name.startswith("xl/worksheets/sheet"):
                xml = archive.read(name).decode()
                assert "<f>" not in xml and "<f " not in xml, url
                assert "<hyperlink" not in xml, url
        book = openpyxl.load_workbook(io.BytesIO(response.data))
        for sheet in book:
            for row in sheet.iter_rows():
                for cell in row:
                    if isinstance(cell.value, str) and cell.value in INJECTIONS:
                        assert cell.data_type == "s", (url, cell.value)
                        seen.add(cell.value)
        rows = _csv(as_district.get(url.format("csv")))
        for row in rows[1:]:
            for cell in row:
                assert not cell.startswith(exports.FORMULA_PREFIXES), (url, cell)
    assert {INJECTIONS[0], INJECTIONS[1]} <= seen
