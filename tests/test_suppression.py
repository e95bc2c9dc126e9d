"""Small-number suppression: no small count published, none recoverable from the totals."""

from __future__ import annotations

import io
import random
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select

from kim_admin import report, suppression
from kim_admin.extensions import db
from models import (
    Indicator,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    ReportingPeriod,
    Submission,
    TargetGroup,
    User,
)

DOT = suppression.SUPPRESSED
TOWNS = ["Arnsberg", "Bestwig", "Hallenberg", "Medebach", "Meschede"]


def test_protect_hides_a_second_cell_per_line():
    values = {"a": 1, "b": 7, "c": 5, "t": 13}
    hidden = suppression.protect(values, [["a", "b", "c", "t"]], 3, totals={"t"})
    assert hidden == {"a", "c"}  # the smallest other value, not the total


def test_protect_follows_chains_of_lines():
    # a 2 x 2 table with margins: hiding x forces one more in its row and its column,
    # which in turn need partners in theirs.
    values = {
        ("x", 0, 0): 1,
        ("x", 0, 1): 9,
        ("x", 1, 0): 8,
        ("x", 1, 1): 6,
        ("r", 0): 10,
        ("r", 1): 14,
        ("c", 0): 9,
        ("c", 1): 15,
        "T": 24,
    }
    lines = [
        [("x", 0, 0), ("x", 0, 1), ("r", 0)],
        [("x", 1, 0), ("x", 1, 1), ("r", 1)],
        [("x", 0, 0), ("x", 1, 0), ("c", 0)],
        [("x", 0, 1), ("x", 1, 1), ("c", 1)],
        [("r", 0), ("r", 1), "T"],
        [("c", 0), ("c", 1), "T"],
    ]
    totals = {("r", 0), ("r", 1), ("c", 0), ("c", 1), "T"}
    hidden = suppression.protect(values, lines, 3, totals)
    assert {("x", 0, 0), ("x", 0, 1), ("x", 1, 0), ("x", 1, 1)} <= hidden
    for line in lines:
        assert len([k for k in line if k in hidden]) != 1, line


def test_zero_and_large_values_stay():
    values = {"a": 0, "b": 3, "t": 3}
    assert suppression.protect(values, [["a", "b", "t"]], 3) == set()


@pytest.fixture
def small_world(app, accounts):
    """Two quarters with many small counts in five towns (all approved)."""
    rng = random.Random(11)  # noqa: S311 (test data, not secrets)
    with app.app_context():
        towns = db.session.scalars(select(Municipality).where(Municipality.name.in_(TOWNS))).all()
        periods = [
            ReportingPeriod(year=2025, quarter=q, deadline=date(2025, 3 * q, 28)) for q in (1, 2)
        ]
        db.session.add_all(periods)
        indicators = db.session.scalars(select(Indicator)).all()
        groups = db.session.scalars(select(TargetGroup)).all()[:4]
        for town in towns:
            for period in periods:
                db.session.add(Submission(municipality=town, period=period, status="approved"))
                for indicator in indicators:
                    for group in groups if indicator.by_target_group else [None]:
                        value = rng.choice([0, 1, 1, 2, 2, 3, 4, 5, 8, 12])
                        if indicator.decimal_places:
                            value = Decimal("1.5")
                        db.session.add(
                            MonitoringEntry(
                                municipality=town,
                                period=period,
                                indicator=indicator,
                                target_group=group,
                                value=Decimal(value),
                            )
                        )
        # Needs of 2025 (the range's year) for the Versorgung sheet.
        for n, town in enumerate(towns):
            db.session.add(
                NeedsAssessment(
                    municipality=town, target_group=groups[0], year=2025, estimated_people=n + 1
                )
            )
        db.session.commit()
        return {"towns": [t.id for t in towns], "periods": [p.id for p in periods]}


def _report(app, world, email, publish, threshold=3):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        options = report.ReportOptions(
            world["periods"][0],
            world["periods"][-1],
            tuple(world["towns"]),
            publish=publish,
            threshold=threshold,
        )
        buffer = io.BytesIO()
        report.build(options, user, buffer)
        codes = {
            i.code: (i.decimal_places, i.by_target_group, i.kind)
            for i in db.session.scalars(select(Indicator))
        }
    return openpyxl.load_workbook(io.BytesIO(buffer.getvalue())), codes


def _table(sheet):
    rows = list(sheet.iter_rows(min_row=4, values_only=True))
    return rows[0], rows[1:]


def _count_columns(header, codes):
    """Header index → code of the count indicators (not FTE, not rates)."""
    result = {}
    for n, title in enumerate(header):
        code = (title or "").split(" – ")[0]
        if " – " in (title or "") and code in codes and not codes[code][0]:
            result[n] = code
    return result


def _leaks(line):
    """A line (cells..., total) gives a hidden cell away if it hides exactly one."""
    return sum(1 for v in line if v == DOT) == 1


def _check_published(book, codes, threshold):
    # 1. No count below the threshold anywhere.
    for name in ("Kennzahlen", "Zeitreihe", "Zielgruppen"):
        header, rows = _table(book[name])
        for n in _count_columns(header, codes):
            for row in rows:
                value = row[n] if n < len(row) else None
                if isinstance(value, int | float):
                    assert not 0 < value < threshold, (name, header[n], value)
    # 2. Kennzahlen: each indicator column with its total; rates hidden with their counts.
    header, rows = _table(book["Kennzahlen"])
    towns = [r for r in rows if r[0] not in (None, "Summe")]
    total = next(r for r in rows if r[0] == "Summe")
    kennzahlen = {}
    for n, code in _count_columns(header, codes).items():
        column = [r[n] for r in towns] + [total[n]]
        assert not _leaks(column), ("Kennzahlen", code, column)
        rate = header.index(f"{code} je 1.000 Einwohner")
        for r in [*towns, total]:
            assert (r[n] == DOT) == (r[rate] == DOT)
        kennzahlen[code] = ({r[0]: r[n] for r in towns}, total[n])
    # 3. Zeitreihe: flows per quarter add up to the total row.
    header, rows = _table(book["Zeitreihe"])
    quarters = [r for r in rows if r[0] and r[0].startswith("Q")]
    span = next(r for r in rows if r[0] == "Zeitraum")
    for n, code in _count_columns(header, codes).items():
        assert span[n] == kennzahlen[code][1], "one value, hidden everywhere or nowhere"
        if codes[code][2] == "flow":
            assert not _leaks([r[n] for r in quarters] + [span[n]]), ("Zeitreihe", code)
        else:
            assert quarters[-1][n] == span[n]
    # 4. Zielgruppen: town x group, row totals from Kennzahlen, column totals below.
    header, rows = _table(book["Zielgruppen"])
    cells = [r for r in rows if r[0] not in (None, "Summe")]
    group_totals = [r for r in rows if r[0] == "Summe" and r[1] != "alle Zielgruppen"]
    overall = next(r for r in rows if r[0] == "Summe" and r[1] == "alle Zielgruppen")
    for n, code in _count_columns(header, codes).items():
        by_town, grand = kennzahlen[code]
        assert overall[n] == grand
        groups = [r[1] for r in group_totals]
        for town in by_town:
            line = [r[n] for r in cells if r[0] == town] + [by_town[town]]
            assert not _leaks(line), ("Zielgruppen row", code, town, line)
        for group, group_row in zip(groups, group_totals, strict=True):
            line = [r[n] for r in cells if r[1] == group] + [group_row[n]]
            assert not _leaks(line), ("Zielgruppen column", code, group, line)
        assert not _leaks([r[n] for r in group_totals] + [grand])
        assert not _leaks(list(by_town.values()) + [grand])
    # 5. Versorgung: estimated needs with their total.
    header, rows = _table(book["Versorgung"])
    need = header.index("Geschätzter Bedarf (Personen)")
    cells = [r[need] for r in rows if r[0] not in (None, "Summe")]
    total = next(r[need] for r in rows if r[0] == "Summe")
    assert not any(isinstance(v, int | float) and 0 < v < threshold for v in [*cells, total])
    assert not _leaks([*cells, total]), cells


@pytest.mark.parametrize("threshold", [3, 5])
def test_published_report_hides_small_counts_unrecoverably(app, small_world, accounts, threshold):
    book, codes = _report(app, small_world, accounts.steering, True, threshold)
    assert "Rohdaten" not in book.sheetnames
    _check_published(book, codes, threshold)
    dots = sum(
        1
        for name in ("Kennzahlen", "Zielgruppen", "Zeitreihe")
        for r in book[name].iter_rows(values_only=True)
        for v in r
        if v == DOT
    )
    assert dots > 0, "the test data must contain small counts"
    overview = {r[0]: r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0]}
    assert f"Schwelle {threshold}" in overview["Veröffentlichung"]


def test_internal_report_keeps_exact_values(app, small_world, accounts):
    book, codes = _report(app, small_world, accounts.steering, False)
    header, rows = _table(book["Zielgruppen"])
    values = [r[n] for r in rows for n in _count_columns(header, codes)]
    assert DOT not in values
    assert any(v in (1, 2) for v in values)
    overview = {r[0]: r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0]}
    assert overview["Veröffentlichung"] == "interne Fassung: alle Werte exakt"
    assert "Rohdaten" in book.sheetnames


def test_publish_option_on_the_page(app, small_world, as_steering):
    data = {
        "first": str(small_world["periods"][0]),
        "last": str(small_world["periods"][-1]),
        "municipalities": [str(t) for t in small_world["towns"]],
        "basis": "approved",
        "publish": "y",
    }
    response = as_steering.post("/bericht/", data=data)
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert "Rohdaten" not in book.sheetnames
    with app.app_context():
        codes = {
            i.code: (i.decimal_places, i.by_target_group, i.kind)
            for i in db.session.scalars(select(Indicator))
        }
    _check_published(book, codes, app.config["KIM_SUPPRESSION_THRESHOLD"])
