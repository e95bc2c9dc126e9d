"""The offline Excel template of the data-entry form: download, dry run, import.

The template is written with xlsxwriter (locked except for the inputs, with data
validation on the values) and read back with openpyxl. Nothing is written by a
dry run; the confirmed import goes through :func:`.entry.write_figures`, so the
same validation, locking and optimistic-locking rules apply as on the form.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from openpyxl import load_workbook

from kim_admin.exports import new_workbook
from kim_admin.formatting import de_number
from models import Municipality, ReportingPeriod

from . import entry

SHEET = "Meldung"
FIRST_ROW = 8  # 1-based Excel row of the first figure
MAX_ROWS = 2000
COLUMNS = [
    "Kürzel",
    "Kennzahl",
    "Zielgruppe",
    "Einheit",
    "Vorquartal",
    "Wert",
    "Kommentar",
    "Schlüssel",
    "Version",
]
VALUE_COL, COMMENT_COL, KEY_COL, VERSION_COL = 5, 6, 7, 8  # 0-based


log = logging.getLogger(__name__)


class TemplateError(ValueError):
    """The uploaded file cannot be used; the message is German."""


def build(town: Municipality, period: ReportingPeriod) -> bytes:
    """The pre-filled template for one municipality and quarter."""
    buffer = io.BytesIO()
    # User text stays text: no formulas, no links, whatever it starts with.
    book = new_workbook(buffer)
    sheet = book.add_worksheet(SHEET)
    bold = book.add_format({"bold": True})
    head = book.add_format({"bold": True, "bg_color": "#DDDDDD", "border": 1, "text_wrap": True})
    open_cell = book.add_format({"locked": False, "bg_color": "#FFF9C4", "border": 1})
    plain = book.add_format({"border": 1})
    sheet.write_string(0, 0, "KIM-Monitoring – Erfassungsvorlage", bold)
    for row, (label, value) in enumerate(
        [
            ("Kommune", town.name),
            ("AGS", town.ags),
            ("Quartal", str(period)),
            (
                "Hinweis",
                "Nur gelbe Felder ausfüllen; Dezimalzahlen mit Komma. Keine "
                "personenbezogenen Daten.",
            ),
        ],
        start=1,
    ):
        sheet.write_string(row, 0, label, bold)
        sheet.write_string(row, 1, value)
    for col, title in enumerate(COLUMNS):
        sheet.write_string(FIRST_ROW - 2, col, title, head)
    for n, cell in enumerate(entry.cells(town.id, period)):
        row = FIRST_ROW - 1 + n
        ind = cell.indicator
        sheet.write_string(row, 0, ind.code, plain)
        sheet.write_string(row, 1, ind.name, plain)
        sheet.write_string(row, 2, cell.target_group.name if cell.target_group else "gesamt", plain)
        sheet.write_string(row, 3, ind.unit, plain)
        if cell.previous is not None:
            sheet.write_number(row, 4, float(cell.previous), plain)
        else:
            sheet.write_blank(row, 4, None, plain)
        if cell.entry and cell.entry.value is not None:
            sheet.write_number(row, VALUE_COL, float(cell.entry.value), open_cell)
        else:
            sheet.write_blank(row, VALUE_COL, None, open_cell)
        sheet.write_string(
            row, COMMENT_COL, (cell.entry.comment or "") if cell.entry else "", open_cell
        )
        sheet.write_string(row, KEY_COL, cell.key)
        sheet.write_number(row, VERSION_COL, cell.version)
        sheet.data_validation(row, VALUE_COL, row, VALUE_COL, _validation(ind))
    sheet.set_column(0, 0, 12)
    sheet.set_column(1, 2, 38)
    sheet.set_column(3, 4, 12)
    sheet.set_column(VALUE_COL, VALUE_COL, 12)
    sheet.set_column(COMMENT_COL, COMMENT_COL, 40)
    sheet.set_column(KEY_COL, VERSION_COL, None, None, {"hidden": True})
    sheet.freeze_panes(FIRST_ROW - 1, 0)
    sheet.protect("", {"select_locked_cells": True, "select_unlocked_cells": True})
    book.close()
    return buffer.getvalue()


def _validation(indicator) -> dict[str, Any]:
    low = float(indicator.min_value) if indicator.min_value is not None else 0
    high = float(indicator.max_value) if indicator.max_value is not None else 1e12
    return {
        "validate": "integer" if indicator.decimal_places == 0 else "decimal",
        "criteria": "between",
        "minimum": low,
        "maximum": high,
        "error_title": "Ungültiger Wert",
        "error_message": f"Erlaubt: {entry.range_text(indicator)}",
        "ignore_blank": True,
    }


@dataclass
class PlannedCell:
    """One row of the dry run."""

    key: str
    label: str
    old: str
    new: str
    text: str
    comment: str
    version: int
    status: str  # "neu", "geändert", "unverändert", "Fehler"
    reason: str = ""


#: Bounds of an uploaded file, checked on the zip directory before any XML is
#: parsed. A template of KIM-Admin is about 10 KB compressed and 60 KB unpacked;
#: these leave room for Excel and LibreOffice re-saving it with themes and styles.
MAX_MEMBERS = 64
MAX_MEMBER_SIZE = 2 * 1024 * 1024
MAX_TOTAL_SIZE = 8 * 1024 * 1024
#: Unpacked / packed above which a member counts as a compression bomb (XML of a
#: real workbook packs about 5-20 times; only members over 256 KB are judged).
MAX_RATIO = 100
_RATIO_FLOOR = 256 * 1024
#: Parts an .xlsx may hold (Office Open XML spreadsheet package); anything else is refused.
_MEMBER_NAME = re.compile(
    r"^(\[Content_Types\]\.xml|_rels/\.rels|docProps/[\w.-]+\.xml|customXml/[\w./-]+"
    r"|xl/[\w./-]+)$"
)
_BROKEN = "Die Datei ist keine gültige Excel-Datei (.xlsx)."


@dataclass
class TemplateContent:
    """What an uploaded template holds: its header fields and its figure rows."""

    header: dict[str, Any]
    rows: list[tuple]


def check_archive(data: bytes) -> None:
    """Refuse a zip whose directory promises more than a template can hold.

    Runs before any parser sees the file. Python's zip reader never unpacks more
    than a member's declared size (and then checks its CRC), so bounding the
    declared sizes bounds the work.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise TemplateError(_BROKEN) from exc
    if not members or len(members) > MAX_MEMBERS:
        raise TemplateError(_BROKEN)
    total = 0
    for member in members:
        if not _MEMBER_NAME.match(member.filename) or ".." in member.filename:
            raise TemplateError(
                "Die Datei enthält Teile, die in einer Excel-Vorlage nicht vorkommen; "
                "bitte die Vorlage aus KIM-Admin verwenden."
            )
        total += member.file_size
        too_packed = member.file_size > _RATIO_FLOOR and member.file_size > MAX_RATIO * max(
            member.compress_size, 1
        )
        if member.file_size > MAX_MEMBER_SIZE or total > MAX_TOTAL_SIZE or too_packed:
            raise TemplateError(
                "Die Datei ist für eine Quartalsmeldung zu groß (entpackt). Bitte die "
                "Vorlage aus KIM-Admin verwenden und nur die gelben Felder ausfüllen."
            )


def read_template(stream: IO[bytes], limit: int = 16 * 1024 * 1024) -> TemplateContent:
    """Read an uploaded template's header and figure rows, within fixed bounds.

    No database, no app context: the hostile-file tests run it in a capped
    subprocess. Broken zips, broken deflate streams, broken XML, entity bombs
    and external entities (refused by defusedxml, which openpyxl uses when it
    is installed) all end in :class:`TemplateError` with a German message.
    """
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise TemplateError("Die Datei ist zu groß für eine Quartalsmeldung.")
    check_archive(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 — any parser failure of an upload is "not valid"
        log.info("Upload refused by the Excel reader: %s", type(exc).__name__)
        raise TemplateError(_BROKEN) from exc
    try:
        if SHEET not in book.sheetnames:
            raise TemplateError(
                f"Die Datei enthält kein Blatt „{SHEET}“ – bitte die Vorlage "
                "aus KIM-Admin verwenden."
            )
        sheet = book[SHEET]
        header = {
            str(row[0])[:40]: row[1]
            for row in sheet.iter_rows(min_row=2, max_row=4, max_col=2, values_only=True)
            if row and row[0] is not None
        }
        rows = list(
            sheet.iter_rows(
                min_row=FIRST_ROW,
                max_row=FIRST_ROW + MAX_ROWS,
                max_col=len(COLUMNS),
                values_only=True,
            )
        )
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 — broken XML or deflate inside a sheet
        log.info("Upload refused while reading rows: %s", type(exc).__name__)
        raise TemplateError(_BROKEN) from exc
    finally:
        book.close()
    if len(rows) > MAX_ROWS:
        raise TemplateError("Die Datei hat zu viele Zeilen für eine Quartalsmeldung.")
    return TemplateContent(header, rows)


def dry_run(stream: IO[bytes], town: Municipality, period: ReportingPeriod) -> list[PlannedCell]:
    """Read an uploaded template and say, per cell, what an import would do."""
    content = read_template(stream)
    header, rows = content.header, content.rows
    if str(header.get("AGS") or "") != town.ags:
        raise TemplateError(
            "Die Datei gehört zu einer anderen Kommune und kann hier nicht importiert werden."
        )
    if str(header.get("Quartal") or "") != str(period):
        raise TemplateError(f"Die Datei gehört zu einem anderen Quartal, nicht zu {period}.")

    by_key = {c.key: c for c in entry.cells(town.id, period)}
    plan = []
    for row in rows:
        if not row or row[KEY_COL] is None:
            continue
        cell = by_key.get(str(row[KEY_COL]))
        if cell is None:
            continue  # an indicator deactivated since the download
        text = _as_text(row[VALUE_COL])
        comment = str(row[COMMENT_COL] or "").strip()[: entry.MAX_COMMENT + 1]
        # Names first, codes second, as on the entry page.
        label = f"{cell.indicator.name} ({cell.indicator.code}) – " + (
            cell.target_group.name if cell.target_group else "gesamt"
        )
        places = cell.indicator.decimal_places
        old = cell.entry.value if cell.entry else None
        old_comment = (cell.entry.comment or "") if cell.entry else ""
        raw_version = str(row[VERSION_COL] or "0")
        version = int(raw_version) if raw_version.isdigit() and len(raw_version) <= 9 else 0
        planned = PlannedCell(
            cell.key, label, _shown(old, places), text, text, comment, version, "unverändert"
        )
        try:
            new = entry.parse_value(text, cell.indicator)
            if len(comment) > entry.MAX_COMMENT:
                raise ValueError(
                    f"Der Kommentar ist zu lang (höchstens {entry.MAX_COMMENT} Zeichen)."
                )
        except ValueError as exc:
            planned.status, planned.reason = "Fehler", str(exc)
        else:
            planned.new = _shown(new, places)
            if version != cell.version:
                planned.status = "Fehler"
                planned.reason = (
                    f"Inzwischen in KIM-Admin geändert (gespeichert "
                    f"{_shown(old, places)}); bitte neue Vorlage laden."
                )
            elif cell.entry is None and (new is not None or comment):
                planned.status = "neu"
            elif new != old or comment != old_comment:
                planned.status = "geändert"
        plan.append(planned)
    return plan


def _as_text(value: Any) -> str:
    """A cell value as the text a user would have typed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ungültig"
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
            if not number.is_finite():
                return "ungültig"
            text = format(number.normalize(), "f")
        except (InvalidOperation, ValueError):
            return "ungültig"
        return _bounded(text.replace(".", ","))
    return _bounded(str(value).strip())


def _bounded(text: str) -> str:
    """Text too long to be a number is cut (and then refused as too long), never echoed whole."""
    limit = entry.MAX_VALUE_TEXT
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: Decimal | None, places: int) -> str:
    return "" if value is None else de_number(value, places)
