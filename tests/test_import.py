"""The Excel template: download, dry run, confirmed import, and every bad file."""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from kim_admin.extensions import db
from kim_admin.monitoring.template import FIRST_ROW, KEY_COL, SHEET, VALUE_COL
from models import Indicator, MonitoringEntry, Municipality, ReportingPeriod, Submission


@pytest.fixture
def world(app, accounts):
    with app.app_context():
        period = ReportingPeriod(
            year=2026, quarter=2, is_open=True, deadline=date.today() + timedelta(days=20)
        )
        db.session.add(period)
        db.session.commit()
        towns = {m.name: m.id for m in db.session.scalars(select(Municipality))}
        return {"period": period.id, "arnsberg": towns["Arnsberg"], "meschede": towns["Meschede"]}


def _q(world, town="arnsberg"):
    return f"?municipality={world[town]}&period={world['period']}"


def _download(session, world, town="arnsberg"):
    response = session.get("/erfassung/vorlage" + _q(world, town))
    assert response.status_code == 200
    return load_workbook(io.BytesIO(response.data))


def _upload(session, world, book_or_bytes, town="arnsberg", name="meldung.xlsx"):
    if not isinstance(book_or_bytes, bytes):
        buffer = io.BytesIO()
        book_or_bytes.save(buffer)
        book_or_bytes = buffer.getvalue()
    return session.post(
        "/erfassung/import" + _q(world, town),
        {"file": (io.BytesIO(book_or_bytes), name)},
        content_type="multipart/form-data",
    )


def _rows(book):
    sheet = book[SHEET]
    return [row for row in sheet.iter_rows(min_row=FIRST_ROW) if row[KEY_COL].value]


def _count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(MonitoringEntry))


def test_template_is_prefilled_and_protected(app, world, as_arnsberg):
    book = _download(as_arnsberg, world)
    sheet = book[SHEET]
    assert sheet["B3"].value == "05958004" and sheet["B4"].value == "Q2/2026"
    assert sheet.protection.sheet is True
    rows = _rows(book)
    with app.app_context():
        expected = len(db.session.scalars(select(Indicator)).all())
    assert len(rows) > expected  # one row per target group where broken down
    assert rows[0][VALUE_COL].protection.locked is False
    assert rows[0][0].protection.locked is True
    assert len(sheet.data_validations.dataValidation) == len(rows)


def test_dry_run_then_commit(app, world, as_arnsberg):
    book = _download(as_arnsberg, world)
    rows = _rows(book)
    rows[0][VALUE_COL].value = 4
    rows[1][VALUE_COL].value = "2,0"
    rows[2][VALUE_COL].value = -3
    dry = _upload(as_arnsberg, world, book)
    html = dry.get_data(as_text=True)
    assert dry.status_code == 200
    assert "Probelauf" in html and "neu" in html and "Der Wert darf nicht negativ sein." in html
    assert "Import bestätigen" not in html  # errors first
    assert _count(app) == 0
    # Names first, codes second, as on the entry page.
    assert "Beratungskontakte (BER_KONT) – gesamt" in html and "BER_KONT – gesamt" not in html

    rows[2][VALUE_COL].value = 3
    dry = _upload(as_arnsberg, world, book)
    html = dry.get_data(as_text=True)
    assert "Import bestätigen" in html and _count(app) == 0
    token = html.split('name="token" value="')[1].split('"')[0]
    done = as_arnsberg.post("/erfassung/import/bestaetigen", {"token": token})
    assert done.status_code == 302
    with app.app_context():
        values = sorted(db.session.scalars(select(MonitoringEntry.value)).all())
    assert values == [Decimal(2), Decimal(3), Decimal(4)]

    # The same file again: everything unchanged (and the stale versions are noticed).
    again = _upload(as_arnsberg, world, book).get_data(as_text=True)
    assert "Inzwischen in KIM-Admin geändert" in again or "keine Änderungen" in again


def test_changed_and_unchanged(app, world, as_arnsberg):
    book = _download(as_arnsberg, world)
    _rows(book)[0][VALUE_COL].value = 4
    token_page = _upload(as_arnsberg, world, book).get_data(as_text=True)
    token = token_page.split('name="token" value="')[1].split('"')[0]
    as_arnsberg.post("/erfassung/import/bestaetigen", {"token": token})
    fresh = _download(as_arnsberg, world)
    _rows(fresh)[0][VALUE_COL].value = 5
    html = _upload(as_arnsberg, world, fresh).get_data(as_text=True)
    assert "geändert" in html and "unverändert" in html


def test_foreign_municipality_file_refused(app, world, as_arnsberg, as_district):
    foreign = _download(as_district, world, town="meschede")
    _rows(foreign)[0][VALUE_COL].value = 9
    response = _upload(as_arnsberg, world, foreign, town="arnsberg")
    page = as_arnsberg.get(response.headers["Location"]).get_data(as_text=True)
    assert "gehört zu einer anderen Kommune" in page
    assert _count(app) == 0
    # Naming the other municipality in the URL does not help either.
    assert _upload(as_arnsberg, world, foreign, town="meschede").status_code == 404


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"das ist kein Excel", "keine gültige Excel-Datei"),
        (b"PK\x03\x04kaputt", "keine gültige Excel-Datei"),
    ],
)
def test_malformed_file(app, world, as_arnsberg, payload, message):
    response = _upload(as_arnsberg, world, payload)
    page = as_arnsberg.get(response.headers["Location"]).get_data(as_text=True)
    assert message in page and _count(app) == 0


def test_workbook_without_template_sheet(app, world, as_arnsberg):
    from openpyxl import Workbook

    response = _upload(as_arnsberg, world, Workbook())
    page = as_arnsberg.get(response.headers["Location"]).get_data(as_text=True)
    assert "kein Blatt" in page and _count(app) == 0


def test_huge_file_refused(app, world, as_arnsberg):
    # A small limit keeps the test's own request body in memory.
    app.config["MAX_CONTENT_LENGTH"] = 4096
    response = _upload(as_arnsberg, world, b"0" * 5000)
    assert response.status_code == 413
    assert "zu groß" in response.get_data(as_text=True)
    assert _count(app) == 0


def test_import_refused_when_locked(app, world, as_arnsberg):
    book = _download(as_arnsberg, world)
    _rows(book)[0][VALUE_COL].value = 4
    with app.app_context():
        db.session.add(
            Submission(
                municipality_id=world["arnsberg"], period_id=world["period"], status="submitted"
            )
        )
        db.session.commit()
    response = _upload(as_arnsberg, world, book)
    page = as_arnsberg.get(response.headers["Location"]).get_data(as_text=True)
    assert "Die Meldung ist eingereicht" in page and _count(app) == 0


def test_tampered_token_refused(app, world, as_arnsberg):
    assert as_arnsberg.post("/erfassung/import/bestaetigen", {"token": "x.y"}).status_code == 400


def test_steering_group_cannot_import(world, as_steering):
    assert as_steering.post("/erfassung/import" + _q(world), {}).status_code == 403
