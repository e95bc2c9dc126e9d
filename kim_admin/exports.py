"""Spreadsheet output: safe xlsxwriter workbooks and streamed list exports.

Every workbook of the application is made by :func:`new_workbook`, which turns
off xlsxwriter's guessing (``=…`` as a formula, ``http://…`` as a link,
``"12"`` as a number); :class:`CellWriter` then writes every Python value with
the matching typed ``write_*`` call, so text a user typed is always a string
cell, never a formula (xlsxwriter's plain ``write`` turns ``{=…}`` into an
array formula even with the options off).

List exports stream rows from a server-side cursor into a temporary file (xlsx
through xlsxwriter's ``constant_memory`` mode, CSV in chunks), which is then
sent in chunks. Memory stays flat however many rows there are.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

import xlsxwriter
from flask import Response, current_app, has_app_context

from .formatting import de_date, de_number

# xlsxwriter's guessing is off everywhere: text stays text.
SAFE_OPTIONS = {
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}

# First characters that make a spreadsheet run a CSV cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Excel's limit per sheet; longer exports continue on a further sheet.
MAX_SHEET_ROWS = 1_048_576

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIMETYPE = "text/csv; charset=utf-8"

# Number formats; Excel shows them with the reader's separators (1.234,5 in German Excel).
INTEGER = "#,##0"
ONE_DECIMAL = "#,##0.0"
TWO_DECIMALS = "#,##0.00"
DATE = "dd.mm.yyyy"
DATETIME = "dd.mm.yyyy hh:mm"


#: Height in points of one line of 11-pt text (Excel's default row height).
LINE_HEIGHT = 15.0


def wrapped_lines(text: str, width: float) -> int:
    """How many lines ``text`` takes, wrapped at spaces in a column ``width`` wide.

    Generous on purpose: a character is taken as 1.2 of the width unit (the
    width of a "0"), which covers bold text and wide letters in Excel and
    LibreOffice alike; a word longer than a line is broken by characters.
    """
    per_line = max(1, int(width / 1.2))
    lines = 0
    for paragraph in text.split("\n"):
        used = 0
        lines += 1
        for word in paragraph.split():
            if used and used + 1 + len(word) <= per_line:
                used += 1 + len(word)
                continue
            if used:
                lines += 1
            while len(word) > per_line:  # runs on over the next lines
                word = word[per_line:]
                lines += 1
            used = len(word)
    return lines


def row_height(texts: Sequence[str], widths: Sequence[float]) -> float:
    """A row height in points that shows each wrapped text in its column in full."""
    lines = max((wrapped_lines(t, w) for t, w in zip(texts, widths, strict=False) if t), default=1)
    return lines * LINE_HEIGHT + 3


def new_workbook(target: str | IO[bytes], *, constant_memory: bool = False) -> Any:
    """An xlsxwriter workbook that never turns strings into formulas, links or numbers."""
    options: dict[str, Any] = {**SAFE_OPTIONS, "constant_memory": constant_memory}
    if not isinstance(target, str):
        options["in_memory"] = not constant_memory
    return xlsxwriter.Workbook(target, options)


def neutralise(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: ``=1+1`` becomes ``'=1+1``."""
    return "'" + text if text[:1] in FORMULA_PREFIXES else text


def _time_zone() -> ZoneInfo:
    name = current_app.config.get("BABEL_DEFAULT_TIMEZONE") if has_app_context() else None
    return ZoneInfo(name or "Europe/Berlin")


class CellWriter:
    """Writes Python values into a workbook with typed calls and German formats.

    ``str`` → ``write_string`` (never a formula), numbers → ``write_number``,
    dates and times → real Excel dates (times converted from UTC to the Kreis'
    zone), ``bool`` → "ja"/"nein", ``None`` → an empty cell, anything else
    (a model, a list of models) → its text.
    """

    def __init__(self, workbook: Any) -> None:
        self.workbook = workbook
        self.tz = _time_zone()
        add = workbook.add_format
        self.header = add({"bold": True, "bg_color": "#DCE6F1", "border": 1, "text_wrap": True})
        self.total = add({"bold": True, "top": 1})
        self.integer = add({"num_format": INTEGER})
        self.decimal = add({"num_format": TWO_DECIMALS})
        self.date = add({"num_format": DATE})
        self.datetime = add({"num_format": DATETIME})
        self._formats: dict[str, Any] = {}
        self._dispatch: dict[type, Callable[..., None]] = {
            str: self._string,
            int: self._int,
            float: self._number,
            Decimal: self._decimal,
            datetime: self._datetime,
            date: self._date,
            bool: self._bool,
            type(None): self._none,
        }

    def format(self, num_format: str | None = None, **props: Any) -> Any:
        """A (cached) cell format with ``num_format`` and further properties."""
        key = repr((num_format, sorted(props.items())))
        if key not in self._formats:
            if num_format:
                props["num_format"] = num_format
            self._formats[key] = self.workbook.add_format(props)
        return self._formats[key]

    def write(self, sheet: Any, row: int, col: int, value: Any, fmt: Any = None) -> None:
        """Write ``value`` into one cell by its type; ``fmt`` overrides the default format."""
        writer = self._dispatch.get(type(value))
        if writer is None:
            writer = self._other
        writer(sheet, row, col, value, fmt)

    def write_row(
        self, sheet: Any, row: int, values: Sequence[Any], formats: Sequence[Any]
    ) -> None:
        """Write a row of values, each with the format at the same position (or None)."""
        dispatch = self._dispatch
        for col, value in enumerate(values):
            (dispatch.get(type(value)) or self._other)(sheet, row, col, value, formats[col])

    def header_row(
        self,
        sheet: Any,
        row: int,
        labels: Sequence[str],
        widths: Sequence[float] | None = None,
    ) -> None:
        """Bold, wrapped column headings (always text).

        With the column ``widths`` the row is made tall enough for every heading
        (:func:`row_height`); without them its height is left to the viewer.
        """
        if widths is not None:
            sheet.set_row(row, row_height(labels, widths))
        for col, label in enumerate(labels):
            sheet.write_string(row, col, label, self.header)

    # --- per type --------------------------------------------------------------
    def _string(self, sheet: Any, row: int, col: int, value: str, fmt: Any) -> None:
        sheet.write_string(row, col, value, fmt)

    def _int(self, sheet: Any, row: int, col: int, value: int, fmt: Any) -> None:
        sheet.write_number(row, col, value, fmt or self.integer)

    def _number(self, sheet: Any, row: int, col: int, value: float, fmt: Any) -> None:
        sheet.write_number(row, col, value, fmt or self.decimal)

    def _decimal(self, sheet: Any, row: int, col: int, value: Decimal, fmt: Any) -> None:
        if fmt is None:
            fmt = self.integer if value == value.to_integral_value() else self.decimal
        sheet.write_number(row, col, float(value), fmt)

    def _datetime(self, sheet: Any, row: int, col: int, value: datetime, fmt: Any) -> None:
        local = value.replace(tzinfo=value.tzinfo or UTC).astimezone(self.tz)
        sheet.write_datetime(row, col, local.replace(tzinfo=None), fmt or self.datetime)

    def _date(self, sheet: Any, row: int, col: int, value: date, fmt: Any) -> None:
        sheet.write_datetime(row, col, value, fmt or self.date)

    def _bool(self, sheet: Any, row: int, col: int, value: bool, fmt: Any) -> None:
        sheet.write_string(row, col, "ja" if value else "nein", fmt)

    def _none(self, sheet: Any, row: int, col: int, value: None, fmt: Any) -> None:
        if fmt is not None:
            sheet.write_blank(row, col, None, fmt)

    def _other(self, sheet: Any, row: int, col: int, value: Any, fmt: Any) -> None:
        if isinstance(value, list | tuple | set):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        sheet.write_string(row, col, text, fmt)


def csv_text(value: Any) -> str:
    """One CSV cell as German Excel reads it; typed text is neutralised."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "ja" if value else "nein"
    if isinstance(value, int | float | Decimal):
        return de_number(value)
    if isinstance(value, datetime):
        local = value.replace(tzinfo=value.tzinfo or UTC).astimezone(_time_zone())
        return local.strftime("%d.%m.%Y %H:%M")
    if isinstance(value, date):
        return de_date(value)
    if isinstance(value, list | tuple | set):
        return neutralise(", ".join(str(v) for v in value))
    return neutralise(str(value))


@dataclass
class Column:
    """One exported column: heading, how to get the value from a row, its number format."""

    label: str
    get: Callable[[Any], Any]
    num_format: str | None = None
    width: float = 18


@dataclass
class Table:
    """Rows to export: the columns and an iterator over the rows (e.g. a streamed query)."""

    title: str
    columns: list[Column]
    rows: Iterable[Any]
    widths: list[float] = field(default_factory=list)


def write_xlsx(table: Table, target: str | IO[bytes]) -> int:
    """Write ``table`` as an xlsx workbook in constant memory; returns the rows written.

    Each row is written as soon as it is read, so memory does not grow with the
    number of rows. Past Excel's row limit the rows continue on a further sheet.
    """
    workbook = new_workbook(target, constant_memory=True)
    cells = CellWriter(workbook)
    formats = [cells.format(c.num_format) if c.num_format else None for c in table.columns]
    getters = [c.get for c in table.columns]
    labels = [c.label for c in table.columns]
    sheet_name = (table.title or "Export")[:28]

    def new_sheet(number: int) -> Any:
        sheet = workbook.add_worksheet(sheet_name if number == 1 else f"{sheet_name} {number}")
        for col, column in enumerate(table.columns):
            sheet.set_column(col, col, column.width)
        cells.header_row(sheet, 0, labels)
        sheet.freeze_panes(1, 0)
        return sheet

    sheets = 1
    sheet = new_sheet(sheets)
    row = 0
    count = 0
    write_row = cells.write_row
    for item in table.rows:
        row += 1
        if row == MAX_SHEET_ROWS:
            sheet.autofilter(0, 0, row - 1, len(labels) - 1)
            sheets += 1
            sheet = new_sheet(sheets)
            row = 1
        write_row(sheet, row, [get(item) for get in getters], formats)
        count += 1
    sheet.autofilter(0, 0, max(row, 1), len(labels) - 1)
    workbook.close()
    return count


def xlsx_file(table: Table) -> IO[bytes]:
    """Write ``table`` into an anonymous temporary file, positioned at its start."""
    handle = tempfile.TemporaryFile(suffix=".xlsx")
    write_xlsx(table, handle)
    handle.seek(0)
    return handle


def csv_chunks(table: Table, chunk_rows: int = 500) -> Iterator[bytes]:
    """``table`` as a CSV for German Excel (UTF-8 with BOM, ``;``), in chunks of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([neutralise(c.label) for c in table.columns])
    getters = [c.get for c in table.columns]
    pending = 0
    for item in table.rows:
        writer.writerow([csv_text(get(item)) for get in getters])
        pending += 1
        if pending >= chunk_rows:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode("utf-8")


def csv_file(table: Table) -> IO[bytes]:
    """Write ``table`` as CSV into an anonymous temporary file, positioned at its start.

    The rows are read completely inside the request, so the database session
    (and its server-side cursor) is finished before the download is sent.
    """
    handle = tempfile.TemporaryFile(suffix=".csv")
    for chunk in csv_chunks(table):
        handle.write(chunk)
    handle.seek(0)
    return handle


def iter_file(handle: IO[bytes], chunk: int = 256 * 1024) -> Iterator[bytes]:
    """Read ``handle`` in chunks and close it at the end (also when the client leaves)."""
    try:
        while data := handle.read(chunk):
            yield data
    finally:
        handle.close()


def file_size(handle: IO[bytes]) -> int:
    """Size of an open file in bytes."""
    return os.fstat(handle.fileno()).st_size


def download(table: Table, export_type: str, filename: str) -> Response:
    """``table`` as an xlsx or CSV attachment, read completely before it is sent."""
    if export_type == "csv":
        handle, mimetype = csv_file(table), CSV_MIMETYPE
    else:
        handle, mimetype = xlsx_file(table), XLSX_MIMETYPE
    response = Response(iter_file(handle), mimetype=mimetype)
    response.content_length = file_size(handle)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
