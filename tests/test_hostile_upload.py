"""Hostile Excel uploads: each is answered quickly, within bounded memory, in German.

Each file is read by :func:`template.read_template` in a subprocess with a hard
address-space cap and a time limit, so a regression cannot take the test
machine down; the subprocess reports its time and its extra peak memory. The
target is every hostile file answered within 5 s with < 100 MB extra memory.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from kim_admin.extensions import db
from kim_admin.monitoring.template import FIRST_ROW, SHEET, TemplateError, read_template
from models import Municipality, ReportingPeriod

SECONDS = 5
EXTRA_MB = 100
SHEET_PART = "xl/worksheets/sheet1.xml"
SHARED_PART = "xl/sharedStrings.xml"
SST = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'

RUNNER = """
import io, json, resource, sys, time
cap = 2 * 1024 ** 3
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from kim_admin.monitoring.template import TemplateError, read_template

def attempt(data):
    try:
        return "read %d rows" % len(read_template(io.BytesIO(data)).rows)
    except TemplateError as exc:
        return "refused: " + str(exc)

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

for path in sys.argv[1:]:
    data = open(path, "rb").read()
    # Reset the peak resident size to the current one (Linux), so that the peak
    # after reading is this file's own: extra = peak - resident before.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = kib("VmRSS")
    start = time.perf_counter()
    outcome = attempt(data)
    seconds = time.perf_counter() - start
    extra = (kib("VmHWM") - before) / 1024
    print(json.dumps({"outcome": outcome, "seconds": seconds, "extra_mb": extra}))
"""


def template_bytes() -> bytes:
    """A small, valid template as Excel would save it (no database needed)."""
    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    sheet["A3"], sheet["B3"] = "AGS", "05958004"
    sheet["A4"], sheet["B4"] = "Quartal", "Q2/2026"
    for n in range(5):
        sheet.cell(FIRST_ROW + n, 1, "BER_KONT")
        sheet.cell(FIRST_ROW + n, 6, n)
        sheet.cell(FIRST_ROW + n, 8, f"4-{n}")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def replace_part(data: bytes, name: str, content: bytes, level: int = 6) -> bytes:
    """The package with part ``name`` replaced (or added)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename != name:
                dst.writestr(item, src.read(item.filename), zipfile.ZIP_DEFLATED)
        dst.writestr(name, content, zipfile.ZIP_DEFLATED, compresslevel=level)
    return out.getvalue()


def with_shared_strings(data: bytes, content: bytes, level: int) -> bytes:
    """The package with a shared-strings part that the content types announce."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        types = archive.read("[Content_Types].xml")
    types = types.replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" /></Types>',
    )
    return replace_part(
        replace_part(data, "[Content_Types].xml", types), SHARED_PART, content, level
    )


def sheet_xml(body: str, prolog: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        + prolog
        + '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + f"<sheetData>{body}</sheetData></worksheet>"
    ).encode()


def lying_sizes(data: bytes, name: str, size: int) -> bytes:
    """Patch the declared unpacked size of ``name`` in both zip headers."""
    raw = bytearray(data)
    encoded = name.encode()
    pos = raw.find(b"PK")
    while pos != -1:
        if raw[pos : pos + 4] == b"PK\x03\x04" and raw[pos + 30 : pos + 30 + len(encoded)] == (
            encoded
        ):
            struct.pack_into("<I", raw, pos + 22, size)
        if raw[pos : pos + 4] == b"PK\x01\x02" and raw[pos + 46 : pos + 46 + len(encoded)] == (
            encoded
        ):
            struct.pack_into("<I", raw, pos + 24, size)
        pos = raw.find(b"PK", pos + 1)
    return bytes(raw)


def corrupt_deflate(data: bytes, name: str) -> bytes:
    """Flip bytes in the middle of ``name``'s compressed stream."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    raw = bytearray(data)
    start = info.header_offset + 30 + len(name.encode()) + len(info.extra)
    for offset in range(start + 2, start + min(info.compress_size, 40)):
        raw[offset] ^= 0x5A
    return bytes(raw)


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    + "]>"
)


def _big_cell(size: int) -> bytes:
    return sheet_xml(
        '<row r="8"><c r="G8" t="inlineStr"><is><t>' + "A" * size + "</t></is></c></row>"
    )


# Built on demand (some take a second and a few hundred MB to pack).
HOSTILE = {
    "zip bomb (64 MB of spaces)": lambda base: replace_part(
        base, SHEET_PART, b" " * (64 * 1024**2), 1
    ),
    "declared sizes lie": lambda base: lying_sizes(
        replace_part(base, SHEET_PART, sheet_xml("<row r='8'/>" * 400_000), 1), SHEET_PART, 1000
    ),
    "one row of ten million cells": lambda base: replace_part(
        base,
        SHEET_PART,
        sheet_xml('<row r="8">' + '<c t="n"><v>1</v></c>' * 10_000_000 + "</row>"),
        1,
    ),
    "one row of 80,000 cells within the size bound": lambda base: replace_part(
        base,
        SHEET_PART,
        sheet_xml('<row r="8">' + '<c t="n"><v>1</v></c>' * 80_000 + "</row>"),
        0,  # stored, so that the ratio check lets it through to the parser
    ),
    "one cell of 256 MB": lambda base: replace_part(base, SHEET_PART, _big_cell(256 * 1024**2), 1),
    "one cell of 1.5 MB within the size bound": lambda base: replace_part(
        base, SHEET_PART, _big_cell(1024**2 + 512 * 1024), 0
    ),
    "twenty million shared strings": lambda base: with_shared_strings(
        base, SST + b"<si><t/></si>" * 20_000_000 + b"</sst>", 1
    ),
    "110,000 shared strings within the size bound": lambda base: with_shared_strings(
        base, SST + b"<si><t>x</t></si>" * 110_000 + b"</sst>", 0
    ),
    "billion laughs": lambda base: replace_part(
        base,
        SHEET_PART,
        sheet_xml('<row r="8"><c t="inlineStr"><is><t>&lol9;</t></is></c></row>', LAUGHS),
    ),
    "external entity (XXE)": lambda base: replace_part(
        base,
        SHEET_PART,
        sheet_xml(
            '<row r="8"><c t="inlineStr"><is><t>&xxe;</t></is></c></row>',
            '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        ),
    ),
    "broken XML": lambda base: replace_part(base, SHEET_PART, b"<worksheet><sheetData><row>"),
    "broken deflate stream": lambda base: corrupt_deflate(base, SHEET_PART),
    "unexpected member": lambda base: replace_part(base, "../../etc/cron.d/x", b"boom"),
    "not a zip": lambda base: b"PK\x03\x04" + b"\x00" * 200,
    "truncated zip": lambda base: base[: len(base) // 2],
}


@functools.cache
def build(name: str) -> bytes:
    """The hostile file ``name`` (built once per run)."""
    return HOSTILE[name](template_bytes())


def read_in_subprocess(paths: list[Path]) -> list[dict]:
    """Each file read by ``read_template`` in one capped subprocess, in order."""
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(paths) :]]


#: Files that must be refused share one subprocess (each is refused before it can
#: allocate much); files within the bounds are parsed, each in a fresh process, so
#: that their memory is measured from a clean start.
REFUSED = [name for name in HOSTILE if "within the size bound" not in name]


@pytest.fixture(scope="module")
def refused_results(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("hostile")
    paths = []
    for n, name in enumerate(REFUSED):
        paths.append(folder / f"{n}.xlsx")
        paths[-1].write_bytes(build(name))
    return dict(zip(REFUSED, read_in_subprocess(paths), strict=True))


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_answered_in_bounds(name, tmp_path: Path, request):
    if name in REFUSED:
        result = request.getfixturevalue("refused_results")[name]
    else:
        path = tmp_path / "upload.xlsx"
        path.write_bytes(build(name))
        result = read_in_subprocess([path])[0]
    print(name, result)
    assert result["seconds"] < SECONDS, result
    assert result["extra_mb"] < EXTRA_MB, result
    if "within the size bound" in name:
        assert not result["outcome"].startswith("refused: "), result  # parsed, in bounds
    else:
        assert result["outcome"].startswith("refused: "), result
    assert "passwd" not in result["outcome"] and "root:" not in result["outcome"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("billion laughs", "keine gültige Excel-Datei"),
        ("external entity (XXE)", "keine gültige Excel-Datei"),
        ("broken deflate stream", "keine gültige Excel-Datei"),
        ("zip bomb (64 MB of spaces)", "zu groß"),
        ("unexpected member", "nicht vorkommen"),
    ],
)
def test_refusals_are_german(name, message):
    with pytest.raises(TemplateError, match=message):
        read_template(io.BytesIO(build(name)))


def test_valid_template_still_reads():
    content = read_template(io.BytesIO(template_bytes()))
    assert content.header["AGS"] == "05958004"
    assert len([r for r in content.rows if r and r[0]]) == 5


def test_hostile_upload_over_http_is_a_german_message(app, accounts, as_arnsberg):
    with app.app_context():
        period = ReportingPeriod(year=2026, quarter=2, is_open=True)
        db.session.add(period)
        db.session.commit()
        town = db.session.scalar(select(Municipality.id).where(Municipality.name == "Arnsberg"))
        query = f"?municipality={town}&period={period.id}"
    response = as_arnsberg.post(
        "/erfassung/import" + query,
        {"file": (io.BytesIO(build("billion laughs")), "meldung.xlsx")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Die Datei ist keine gültige Excel-Datei (.xlsx)." in html
    assert "lol" not in html
