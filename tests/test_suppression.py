"""Small-number suppression: no small count published, none recoverable from the totals."""

from __future__ import annotations

import io
import random
from dataclasses import replace
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import openpyxl
import pytest
from scipy.optimize import linprog
from sqlalchemy import select

from kim_admin import report, suppression
from kim_admin.extensions import db
from kim_admin.monitoring.rules import SEED_RULES
from kim_admin.report import publication
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

from .support import report_download

DOT = suppression.SUPPRESSED
TOWNS = ["Arnsberg", "Bestwig", "Hallenberg", "Medebach", "Meschede"]


# --- today's rule, as it was: one hidden cell per line is a leak, two are not ------------


def _todays_rule(values, lines, threshold, totals=()):
    """The rule this module replaced: hide a second cell wherever a line hides one."""
    hidden = {k for k, v in values.items() if v is not None and 0 < v < threshold}
    changed = True
    while changed:
        changed = False
        for line in lines:
            inside = [k for k in line if k in hidden]
            candidates = [k for k in line if k not in hidden and values.get(k) is not None]
            if len(inside) == 1 and candidates:
                hidden.add(min(candidates, key=lambda k: (k in totals, values[k] == 0, values[k])))
                changed = True
    return hidden


def _system(values, lines):
    table = suppression.Table(values=dict(values))
    for *cells, total in lines:
        table.line(cells, total)
    return table


def _grid(rows):
    """A town × group table with row totals ("R", r), column totals ("C", c) and "T"."""
    values, lines = {}, []
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            values[("x", r, c)] = value
        values[("R", r)] = sum(row)
        lines.append([*[("x", r, c) for c in range(len(row))], ("R", r)])
    for c in range(len(rows[0])):
        values[("C", c)] = sum(row[c] for row in rows)
        lines.append([*[("x", r, c) for r in range(len(rows))], ("C", c)])
    values["T"] = sum(map(sum, rows))
    lines.append([*[("R", r) for r in range(len(rows))], "T"])
    lines.append([*[("C", c) for c in range(len(rows[0]))], "T"])
    return values, lines


def _narrow(table, hidden, width):
    return {k for k, iv in suppression.audit(table, hidden).items() if iv.width < width}


def test_two_hidden_ones_under_a_shown_total():
    # The Drittstaatsangehörige column: Hallenberg and Medebach hidden, the total leaves 2.
    values = {"Arnsberg": 5, "Bestwig": 4, "Hallenberg": 1, "Medebach": 1, "Summe": 11}
    lines = [["Arnsberg", "Bestwig", "Hallenberg", "Medebach", "Summe"]]
    table = _system(values, lines)
    old = _todays_rule(values, lines, 3, {"Summe"})
    assert old == {"Hallenberg", "Medebach"}
    intervals = suppression.audit(table, old)
    assert intervals["Hallenberg"] == suppression.Interval(1, 1)  # both are 1
    new = suppression.protect(table, 3)
    assert new.primary == {"Hallenberg", "Medebach"} and new.secondary == {"Bestwig"}
    assert not _narrow(table, new.hidden, 3)
    assert suppression.audit(table, new.hidden)["Hallenberg"] == suppression.Interval(1, 4)


def test_a_whole_row_of_ones():
    rows = [[1] * 11, [4, 6, 3, 7, 5, 9, 8, 4, 6, 3, 5]]
    values, lines = _grid(rows)
    table = _system(values, lines)
    old = _todays_rule(values, lines, 3, {k for k in values if k[0] != "x"})
    assert {("x", 0, c) for c in range(11)} <= old
    assert {("x", 0, c) for c in range(11)} <= _narrow(table, old, 3)  # all are 1
    new = suppression.protect(table, 3)
    assert not _narrow(table, new.hidden, 3)
    # Eleven cells of at least 1 under a shown 11 are all 1, however many partners
    # they get in their columns: only the row's own total can open the row.
    assert ("R", 0) in new.hidden


def _seed_identity():
    (rule,) = [r for r in SEED_RULES if r[2] == "="]
    return publication.identities([(rule[1], rule[3])])


def _one_town_series(akt, neu, abg):
    """A one-town Zeitreihe: CM_NEU and CM_ABG per quarter with their total, CM_AKT."""
    values, lines = {}, []
    for code, series in (("NEU", neu), ("ABG", abg), ("AKT", akt)):
        for q, value in enumerate(series):
            values[(code, q)] = value
        if code != "AKT":
            values[(code, "Σ")] = sum(series)
            lines.append([*[(code, q) for q in range(len(series))], (code, "Σ")])
    return values, lines


def test_the_stock_identity_recovers_a_hidden_quarter():
    (terms,) = _seed_identity()
    assert terms == {
        ("CM_AKT", 0): 1.0,
        ("CM_AKT", 1): -1.0,
        ("CM_NEU", 0): -1.0,
        ("CM_ABG", 0): 1.0,
    }
    akt, neu, abg = [20, 2, 6, 9], [8, 5, 7, 6], [6, 23, 3, 3]
    values, lines = _one_town_series(akt, neu, abg)
    table = _system(values, lines)
    codes = {"CM_AKT": "AKT", "CM_NEU": "NEU", "CM_ABG": "ABG"}
    for q in range(1, 4):
        equation = {(codes[c], q - lag): k for (c, lag), k in terms.items()}
        assert table.holds(equation)
        table.equation(equation)
    old = _todays_rule(values, lines, 3)
    assert old == {("AKT", 1)}  # a stock is in no sum: today's rule hides nothing more
    assert _narrow(table, old, 3) == {("AKT", 1)}
    new = suppression.protect(table, 3)
    assert not _narrow(table, new.hidden, 3)
    assert ("AKT", 1) in new.hidden and len(new.secondary) >= 2


def test_overlapping_ranges_give_a_quarter_away():
    # Per town and quarter x[t, q] (never published); a report shows each town's sum
    # over its range and the total. Q2–Q4 minus Q3–Q4 is Q2.
    quarters = {"t1": [9, 1, 8, 7], "t2": [6, 5, 4, 12]}

    def reports(ranges):
        values = {("x", t, q): v for t, xs in quarters.items() for q, v in enumerate(xs)}
        table = suppression.Table(values=values)
        for first, last in ranges:
            for t, xs in quarters.items():
                values[("K", first, t)] = sum(xs[first : last + 1])
            values[("KT", first)] = sum(values[("K", first, t)] for t in quarters)
        for first, last in ranges:
            for t in quarters:
                table.line([("x", t, q) for q in range(first, last + 1)], ("K", first, t))
            table.line([("K", first, t) for t in quarters], ("KT", first))
        return table

    unpublished = {("x", t, q) for t in quarters for q in range(4)}
    both = reports([(1, 3), (2, 3)])
    assert ("x", "t1", 1) in _narrow(both, unpublished, 3)  # Q2 of t1 is exactly 1
    # The grid: a published range is one calendar year, so these two are refused...
    Q = SimpleNamespace
    assert publication.check_grid(Q(year=2025, quarter=2), Q(year=2025, quarter=4))
    assert publication.check_grid(Q(year=2025, quarter=3), Q(year=2025, quarter=4))
    assert publication.check_grid(Q(year=2025, quarter=1), Q(year=2025, quarter=4)) is None
    # ... and two ranges of the grid are disjoint: together they tell no quarter.
    assert not _narrow(reports([(0, 1), (2, 3)]), unpublished, 3)


# --- random tables, checked by linear programs of the test's own -------------------------


def _independent_interval(values, lines, hidden, key):
    """min and max of ``key`` from the lines, shown values and "." ≥ 1 (SciPy, here)."""
    keys = list(values)
    index = {k: n for n, k in enumerate(keys)}
    matrix = np.zeros((len(lines), len(keys)))
    for row, (*cells, total) in enumerate(lines):
        for cell in cells:
            matrix[row, index[cell]] += 1
        matrix[row, index[total]] -= 1
    bounds = [(1, None) if k in hidden else (values[k], values[k]) for k in keys]
    objective = np.zeros(len(keys))
    objective[index[key]] = 1
    low = linprog(objective, A_eq=matrix, b_eq=np.zeros(len(lines)), bounds=bounds)
    high = linprog(-objective, A_eq=matrix, b_eq=np.zeros(len(lines)), bounds=bounds)
    assert low.status == 0 and high.status in (0, 3)
    return low.fun, (np.inf if high.status == 3 else -high.fun)


@pytest.mark.parametrize("threshold", [3, 5])
@pytest.mark.parametrize("seed", range(8))
def test_random_small_count_tables(threshold, seed):
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    shape = rng.randint(2, 6), rng.randint(2, 7)
    pool = [0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 7, 9, 14]
    rows = [[rng.choice(pool) for _ in range(shape[1])] for _ in range(shape[0])]
    values, lines = _grid(rows)
    protection = suppression.protect(_system(values, lines), threshold)
    hidden = protection.hidden
    for key, value in values.items():
        if key not in hidden:
            assert not 0 < value < threshold, (key, value)
        else:
            assert value > 0, "zeros are shown"
    if protection.unprotected:
        pytest.fail(f"unprotected: {protection.unprotected}")
    for key in hidden:
        low, high = _independent_interval(values, lines, hidden, key)
        assert high - low >= threshold - 1e-6, (key, low, high, rows)


def test_empty_cells_are_known_zeros():
    table = _system({"a": 1, "b": None, "c": 4, "t": 5}, [["a", "b", "c", "t"]])
    protection = suppression.protect(table, 3)
    assert protection.hidden == {"a", "c"}


@pytest.fixture
def small_world(app, accounts):
    """A year of quarters with many small counts in five towns (all approved)."""
    rng = random.Random(11)  # noqa: S311 (test data, not secrets)
    with app.app_context():
        towns = db.session.scalars(select(Municipality).where(Municipality.name.in_(TOWNS))).all()
        periods = [
            ReportingPeriod(year=2025, quarter=q, deadline=date(2025, 3 * q, 28))
            for q in (1, 2, 3, 4)
        ]
        db.session.add_all(periods)
        indicators = db.session.scalars(select(Indicator)).all()
        groups = db.session.scalars(select(TargetGroup)).all()[:4]
        for town in towns:
            for period in periods:
                db.session.add(Submission(municipality=town, period=period, status="approved"))
                for indicator in indicators:
                    for group in groups if indicator.by_target_group else [None]:
                        value = rng.choice([0, 0, 0, 0, 0, 1, 1, 2, 3, 8])
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
        # A publication covers every KIM municipality (figures in five of them).
        return {"towns": _participants(), "periods": [p.id for p in periods]}


def _participants() -> list[int]:
    return sorted(publication.participant_ids())


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
        if codes[code][2] == "stock":
            # A stock is published per town and per group, not per town and group.
            assert {r[n] for r in cells if r[1]} == {publication.NOT_PUBLISHED}, code
            assert not any(isinstance(r[n], int | float) and 0 < r[n] < threshold for r in cells)
            continue
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
    response = report_download(as_steering, data)
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert "Rohdaten" not in book.sheetnames
    with app.app_context():
        codes = {
            i.code: (i.decimal_places, i.by_target_group, i.kind)
            for i in db.session.scalars(select(Indicator))
        }
    _check_published(book, codes, app.config["KIM_SUPPRESSION_THRESHOLD"])


def _build(app, world, email, first=0, last=-1, towns=None, threshold=3):
    """Build a published report; returns the workbook and the table it was protected on."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        options = report.ReportOptions(
            world["periods"][first],
            world["periods"][last],
            tuple(towns or world["towns"]),
            publish=True,
            threshold=threshold,
        )
        buffer = io.BytesIO()
        data = report.build(options, user, buffer)
        table = publication.build_table(data, publication.rule_identities())
        protection = data.protection()
    return openpyxl.load_workbook(io.BytesIO(buffer.getvalue())), table, protection


def test_published_report_passes_the_exact_audit(app, small_world, accounts):
    book, table, protection = _build(app, small_world, accounts.steering)
    assert protection.primary and protection.secondary and not protection.unprotected
    intervals = suppression.audit(table, protection.hidden)
    assert all(iv.exact for iv in intervals.values())
    assert min(iv.width for iv in intervals.values()) >= 3
    note = next(
        r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0] == "Veröffentlichung"
    )
    assert "Schwelle 3" in note and "Schutzbreite 3" in note
    assert f"{len(protection.primary)} primär, {len(protection.secondary)} sekundär" in note
    assert "ganze Kalenderjahre" in note
    footer = [r[0] for r in book["Zielgruppen"].iter_rows(values_only=True) if r[0]]
    assert publication.NOT_PUBLISHED_NOTE in footer
    rows = {r[0]: r[1] for r in book["Übersicht"].iter_rows(values_only=True) if r[0]}
    assert rows["Schwelle"] == 3 and rows["Schutzbreite"] == 3
    assert rows["Gesperrt primär"] == len(protection.primary)
    assert rows["Gesperrt sekundär"] == len(protection.secondary)
    assert rows["Schutzregel"].startswith("Intervallschutz")


def test_published_width_from_the_configuration(app, small_world, accounts):
    app.config["KIM_SUPPRESSION_WIDTH"] = 6
    _, table, protection = _build(app, small_world, accounts.steering)
    intervals = suppression.audit(table, protection.hidden)
    assert min(iv.width for iv in intervals.values()) >= 6


def test_publication_covers_whole_calendar_years_only(app, small_world, accounts):
    with pytest.raises(report.ReportError, match="Kalenderjahr"):
        _build(app, small_world, accounts.steering, first=1)


@pytest.fixture
def stock_world(app, accounts):
    """One town, one target group, a year whose stock follows the district's rule."""
    with app.app_context():
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Hallenberg"))
        group = db.session.scalars(select(TargetGroup)).first()
        figures = {"CM_NEU": [8, 5, 7, 6], "CM_ABG": [6, 23, 3, 3], "CM_AKT": [20, 2, 6, 9]}
        periods = _approved_year(town, group, 2025, figures)
        db.session.commit()
        codes = {i.code: i for i in db.session.scalars(select(Indicator))}
        return {"towns": _participants(), "periods": periods, "codes": codes}


def _approved_year(town, group, year: int, figures: dict[str, list[int]]) -> list[int]:
    """The four quarters of ``year``, approved for ``town``, with its quarterly figures."""
    codes = {i.code: i for i in db.session.scalars(select(Indicator))}
    periods = [
        ReportingPeriod(year=year, quarter=q, deadline=date(year, 3 * q, 28)) for q in (1, 2, 3, 4)
    ]
    db.session.add_all(periods)
    for n, period in enumerate(periods):
        db.session.add(Submission(municipality=town, period=period, status="approved"))
        for code, series in figures.items():
            db.session.add(
                MonitoringEntry(
                    municipality=town,
                    period=period,
                    indicator=codes[code],
                    target_group=group,
                    value=Decimal(series[n]),
                )
            )
    db.session.flush()
    return [p.id for p in periods]


def test_the_stock_rule_is_part_of_the_audit(app, stock_world, accounts):
    book, table, protection = _build(app, stock_world, accounts.steering)
    with app.app_context():
        akt = db.session.scalar(select(Indicator).where(Indicator.code == "CM_AKT")).id
        q2 = stock_world["periods"][1]
    assert ("Z", q2, akt) in protection.primary  # 2 active cases at the end of Q2
    identities = [eq for eq, _ in table.equations if ("Z", q2, akt) in eq and len(eq) == 4]
    assert identities, "CM_AKT = prev(CM_AKT) + CM_NEU - CM_ABG on the Zeitreihe"
    # Without its partners the rule gives Q2 away; with them it does not.
    assert suppression.audit(table, protection.primary)[("Z", q2, akt)].width == 0
    assert suppression.audit(table, protection.hidden)[("Z", q2, akt)].width >= 3


def test_secondary_suppression_is_deterministic():
    rng = random.Random(5)  # noqa: S311 (test data, not secrets)
    rows = [[rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(6)] for _ in range(5)]
    values, lines = _grid(rows)
    first = suppression.protect(_system(values, lines), 3).hidden
    assert all(suppression.protect(_system(values, lines), 3).hidden == first for _ in range(3))


@pytest.mark.parametrize(
    ("left", "right", "identity"),
    [
        ("CM_AKT", "prev(CM_AKT) + CM_NEU - CM_ABG", True),
        ("2 * CM_NEU", "CM_ABG + CM_NEU", True),
        ("CM_NEU", "CM_ABG + 1", False),  # a constant: not a sum over municipalities
        ("CM_NEU * CM_ABG", "CM_AKT", False),  # not linear
        ("CM_NEU / CM_ABG", "1", False),
    ],
)
def test_rule_identities(left, right, identity):
    assert bool(publication.identities([(left, right)])) is identity


def test_range_rate_of_a_flow_hidden_when_quarters_differ(app, small_world, accounts):
    # One town's Q2 report is not approved: Q2's rates are over fewer inhabitants, and the
    # sum of the quarterly rates would be a second equation over the hidden quarters.
    with app.app_context():
        submission = db.session.scalar(
            select(Submission).where(
                Submission.municipality_id == small_world["towns"][0],
                Submission.period_id == small_world["periods"][1],
            )
        )
        submission.status = "submitted"
        db.session.commit()
        kinds = {i.code: i.kind for i in db.session.scalars(select(Indicator))}
    book, _, protection = _build(app, small_world, accounts.steering)
    assert protection.hidden
    header, rows = _table(book["Kennzahlen"])
    total = next(r for r in rows if r[0] == "Summe")
    flows = [code for code, kind in kinds.items() if kind == "flow"]
    assert flows
    for code in flows:
        assert total[header.index(f"{code} je 1.000 Einwohner")] == DOT, code


@pytest.mark.parametrize("threshold", [3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_random_tables_with_an_identity(threshold, seed):
    """Two town × group tables a and b, and c = a − b cell by cell (all with margins):
    equations with signs, as the stock rule makes them; checked independently."""
    rng = random.Random(100 + seed)  # noqa: S311 (test data, not secrets)
    towns, groups = rng.randint(2, 4), rng.randint(2, 5)
    b = [[rng.choice([0, 1, 1, 2, 3, 4, 6]) for _ in range(groups)] for _ in range(towns)]
    c = [[rng.choice([0, 1, 2, 2, 3, 5]) for _ in range(groups)] for _ in range(towns)]
    a = [[x + y for x, y in zip(rb, rc, strict=True)] for rb, rc in zip(b, c, strict=True)]
    values, lines = {}, []
    for name, rows in (("a", a), ("b", b), ("c", c)):
        grid, grid_lines = _grid(rows)
        values |= {(name, *k) if isinstance(k, tuple) else (name, k): v for k, v in grid.items()}
        for line in grid_lines:
            lines.append([(name, *k) if isinstance(k, tuple) else (name, k) for k in line])
    identities = [
        {("a", "x", r, g): 1.0, ("b", "x", r, g): -1.0, ("c", "x", r, g): -1.0}
        for r in range(towns)
        for g in range(groups)
    ]
    table = _system(values, lines)
    for equation in identities:
        table.equation(equation)
    protection = suppression.protect(table, threshold)
    hidden = protection.hidden
    assert not protection.unprotected
    for key, value in values.items():
        assert (key in hidden) >= (0 < value < threshold), (key, value)
        assert key not in hidden or value > 0
    # The test's own system: lines as "cells − total = 0", identities as given.
    keys = list(values)
    index = {k: n for n, k in enumerate(keys)}
    matrix = np.zeros((len(lines) + len(identities), len(keys)))
    for row, (*cells, total) in enumerate(lines):
        for cell in cells:
            matrix[row, index[cell]] += 1
        matrix[row, index[total]] -= 1
    for row, equation in enumerate(identities, start=len(lines)):
        for key, coefficient in equation.items():
            matrix[row, index[key]] += coefficient
    bounds = [(1, None) if k in hidden else (values[k], values[k]) for k in keys]
    zero = np.zeros(len(matrix))
    for key in hidden:
        objective = np.zeros(len(keys))
        objective[index[key]] = 1
        low = linprog(objective, A_eq=matrix, b_eq=zero, bounds=bounds)
        high = linprog(-objective, A_eq=matrix, b_eq=zero, bounds=bounds)
        assert low.status == 0 and high.status in (0, 3)
        if high.status == 0:
            assert -high.fun - low.fun >= threshold - 1e-6, (key, low.fun, -high.fun)


@pytest.fixture
def two_years(app, accounts):
    """One town's cases in 2024 and 2025, the stock following the district's rule.

    In 2025 one case was closed in Q1 and one in Q4: alone, 2025's Zeitreihe ties
    Q4's closed case to Q3's and Q4's stock, but Q1's only to the year before.
    """
    figures = {
        2024: {"CM_NEU": [5, 6, 7, 8], "CM_ABG": [4, 5, 6, 5], "CM_AKT": [11, 12, 13, 16]},
        2025: {"CM_NEU": [4, 5, 6, 7], "CM_ABG": [1, 0, 0, 1], "CM_AKT": [19, 24, 30, 36]},
    }
    with app.app_context():
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Hallenberg"))
        group = db.session.scalars(select(TargetGroup)).first()
        ids = {year: _approved_year(town, group, year, series) for year, series in figures.items()}
        db.session.commit()
        return {"towns": _participants(), "periods": ids[2025], "earlier": ids[2024]}


def test_the_previous_years_stock_is_part_of_the_audit(app, two_years, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        # 2024 was published (and so stored) before 2025.
        published_2024 = report.ReportOptions(
            two_years["earlier"][0],
            two_years["earlier"][-1],
            tuple(two_years["towns"]),
            publish=True,
        )
        report.ReportData(published_2024, user).protection()
        options = report.ReportOptions(
            two_years["periods"][0],
            two_years["periods"][-1],
            tuple(two_years["towns"]),
            publish=True,
        )
        data = report.ReportData(options, user)
        joint = data.publication_table()
        protection = data.protection()
        alone = publication.build_table(data, publication.rule_identities())
        akt = db.session.scalar(select(Indicator).where(Indicator.code == "CM_AKT")).id
    # The previous year's workbook is in the table, its state fixed, tied to this year.
    assert joint.fixed and all(key[0] == "prev" for key in joint.fixed)
    assert any(publication.previous(("KT", akt)) in eq for eq, _ in joint.equations)
    # Protected on this year alone, the previous year's stock gives a hidden cell away.
    naive = suppression.protect(alone, 3)
    leaks = [
        key
        for key, iv in suppression.audit(joint, naive.hidden | protection.earlier).items()
        if iv.width < 3 and key in naive.hidden
    ]
    assert leaks
    # A stock is not published per town and target group (see by_town_and_group).
    assert not [k for k in joint.values if k[0] == "G" and k[2] == akt]
    assert any(k[0] == "GC" and k[1] == akt for k in joint.values)
    # Protected together, every hidden cell of both years keeps its width.
    intervals = suppression.audit(joint, protection.audited)
    assert min(iv.width for iv in intervals.values()) >= 3
    assert not protection.unprotected
    assert not protection.hidden & set(joint.fixed)


def test_no_earlier_year_no_link(app, stock_world, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        options = report.ReportOptions(
            stock_world["periods"][0],
            stock_world["periods"][-1],
            tuple(stock_world["towns"]),
            publish=True,
        )
        data = report.ReportData(options, user)
        assert data.earlier_publication() is None
        assert not data.publication_table().fixed


@pytest.mark.parametrize(
    ("who", "towns", "approved_only", "message"),
    [
        ("steering", "some", True, "alle KIM-Kommunen wählen"),
        ("steering", "all", False, "nur freigegebene Zahlen"),
        ("arnsberg", "own", True, "Bericht über alle KIM-Kommunen"),
    ],
)
def test_a_publication_covers_every_kim_municipality_and_approved_figures(
    app, small_world, accounts, who, towns, approved_only, message
):
    """Two published workbooks over different municipalities could be subtracted."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == getattr(accounts, who)))
        chosen = {
            "all": small_world["towns"],
            "some": small_world["towns"][:-1],
            "own": [user.municipality_id],
        }[towns]
        options = report.ReportOptions(
            small_world["periods"][0],
            small_world["periods"][-1],
            tuple(chosen),
            approved_only=approved_only,
            publish=True,
        )
        with pytest.raises(report.ReportError, match=message):
            report.ReportData(options, user)
        # The same choice is fine for an internal report.
        report.ReportData(replace(options, publish=False), user)


# --- published exports come from the year's audited publication ------------------------


def _published_needs(app, user_email):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == user_email))
        publication = report.published_year(2025, user)
        table = publication.publication_table()
        needs = {k: v for k, v in table.values.items() if k[0] == "N" and v is not None}
        return needs, publication.hidden_cells(), table, publication.protection()


def test_published_needs_export_shows_what_the_report_shows(
    app, small_world, accounts, as_steering
):
    needs, hidden, table, protection = _published_needs(app, accounts.steering)
    # Needs 1..5 under a shown total: 1 and 2 are hidden, and one more beside them,
    # which a list rule of "below the threshold" alone would have shown.
    assert {k for k in hidden if k[0] == "N"} - protection.primary, "a secondary need"
    listing = as_steering.get("/needs_assessment/").get_data(as_text=True)
    assert "publish=1" in listing
    sheet = _sheet_of(as_steering.get("/needs_assessment/export/xlsx/?publish=1"))
    header = [c for c in next(sheet.iter_rows(values_only=True))]
    column = header.index("Geschätzte Personen")
    with app.app_context():
        names = {m.name: m.id for m in db.session.scalars(select(Municipality))}
        groups = {g.name: g.id for g in db.session.scalars(select(TargetGroup))}
    shown = {}
    for row in sheet.iter_rows(min_row=2, values_only=True):
        town = next(v for v in row if v in names)
        group = next(v for v in row if v in groups)
        shown[("N", names[town], groups[group])] = row[column]
    assert shown and set(shown) == set(needs)
    for key, value in shown.items():
        assert value == (suppression.SUPPRESSED if key in hidden else needs[key])
    # What the export shows together with the report keeps every hidden need protected.
    intervals = suppression.audit(table, protection.audited)
    assert min(iv.width for k, iv in intervals.items() if k[0] == "N") >= 3


def test_published_coverage_export_shows_what_the_report_shows(
    app, small_world, accounts, as_steering
):
    needs, hidden, _, _ = _published_needs(app, accounts.steering)
    page = as_steering.get("/versorgung/?year=2025").get_data(as_text=True)
    assert "publish=1" in page
    sheet = _sheet_of(as_steering.get("/versorgung/export/xlsx/?year=2025&publish=1"))
    with app.app_context():
        names = {m.name: m.id for m in db.session.scalars(select(Municipality))}
        groups = {g.name: g.id for g in db.session.scalars(select(TargetGroup))}
    rows = list(sheet.iter_rows(values_only=True))
    column = next(n for n, r in enumerate(rows) if r[0] in names)
    published = {
        ("N", names[r[0]], groups[r[1]]): r[2] for r in rows[column:] if r[0] in names and r[2]
    }
    assert published
    for key, value in published.items():
        assert value == (suppression.SUPPRESSED if key in hidden else needs[key])
    assert any(v == suppression.SUPPRESSED for v in published.values())


def test_only_whole_past_years_are_published(app, small_world, as_steering):
    response = as_steering.get("/versorgung/export/xlsx/?year=2026&publish=1")
    assert response.status_code == 302
    page = as_steering.get(response.location).get_data(as_text=True)
    assert "2026 ist noch nicht abgeschlossen" in page


def test_municipal_staff_take_no_published_export(app, small_world, as_arnsberg):
    assert "publish=1" not in as_arnsberg.get("/needs_assessment/").get_data(as_text=True)
    assert "publish=1" not in as_arnsberg.get("/versorgung/?year=2025").get_data(as_text=True)
    for url in (
        "/needs_assessment/export/xlsx/?publish=1",
        "/versorgung/export/xlsx/?year=2025&publish=1",
    ):
        response = as_arnsberg.get(url)
        assert response.status_code == 302, url
        page = as_arnsberg.get(response.location).get_data(as_text=True)
        assert "Bericht über alle KIM-Kommunen" in page


def _sheet_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return openpyxl.load_workbook(io.BytesIO(response.data)).worksheets[0]


def test_a_need_outside_the_publication_is_not_published(app, small_world, as_steering):
    """Brilon takes no part in KIM: its need is in no audited table, so it is not shown."""
    with app.app_context():
        brilon = db.session.scalar(select(Municipality).where(Municipality.name == "Brilon"))
        group = db.session.scalars(select(TargetGroup)).first()
        db.session.add(
            NeedsAssessment(municipality=brilon, target_group=group, year=2025, estimated_people=40)
        )
        db.session.commit()
    sheet = _sheet_of(as_steering.get("/needs_assessment/export/xlsx/?publish=1"))
    header = next(sheet.iter_rows(values_only=True))
    column = header.index("Geschätzte Personen")
    rows = [r for r in sheet.iter_rows(min_row=2, values_only=True) if "Brilon" in r]
    assert [r[column] for r in rows] == [suppression.SUPPRESSED]
    internal = _sheet_of(as_steering.get("/needs_assessment/export/xlsx/"))
    assert [r[column] for r in internal.iter_rows(values_only=True) if "Brilon" in r] == [40]


def _earlier_and_now(protected):
    """An earlier table (two lines, all their cells hidden) included in this year's,
    one earlier cell tied to this year's shown ``x1`` by a link equation."""
    earlier = _system(
        {"a1": 2, "a2": 5, "A": 7, "b1": 4, "b2": 5, "B": 9},
        [["a1", "a2", "A"], ["b1", "b2", "B"]],
    )
    table = _system({"x1": 4, "x2": 1, "X": 5}, [["x1", "x2", "X"]])
    hidden = {"a1", "a2", "b1", "b2"}
    table.include(earlier, publication.previous, hidden, protected=protected)
    table.equation({publication.previous("b1"): 1.0, "x1": -1.0})
    return table


def test_an_earlier_part_audited_at_its_publication_is_not_audited_again():
    prev = publication.previous
    table = _earlier_and_now({"a1", "a2", "b1", "b2"})
    hidden = {prev(k) for k in ("a1", "a2", "b1", "b2")} | {"x2"}
    everything = suppression.audit(table, hidden, 3)
    trusted = suppression.audit(table, hidden, 3, trust_earlier=True)
    # The a-line touches no cell and no equation of this year: left out.
    assert set(everything) - set(trusted) == {prev("a1"), prev("a2")}
    # The b-line is tied to this year by the link: audited again (and given away).
    assert trusted[prev("b1")].width == 0
    # A cell the earlier audit left unprotected is never trusted.
    table = _earlier_and_now({"a2", "b1", "b2"})
    assert prev("a1") in suppression.audit(table, hidden, 3, trust_earlier=True)
    # protect: the left-out part still counts as hidden, and stays protected.
    table = _earlier_and_now({"a1", "a2", "b1", "b2"})
    protection = suppression.protect(table, 2, 3)
    assert {prev("a1"), prev("a2")} <= protection.earlier
    assert prev("a1") not in protection.intervals
    exact = suppression.audit(table, protection.audited)
    assert min(exact[prev(k)].width for k in ("a1", "a2")) >= 3


@pytest.mark.parametrize("seed", range(6))
def test_warm_started_highs_and_plain_linprog_agree(seed, monkeypatch):
    """The audit's one HiGHS instance per part (SciPy's bindings, warm-started) and the
    fallback through ``scipy.optimize.linprog`` hide the same cells with the same
    intervals: the fallback is a real alternative, not dead code."""
    rng = random.Random(100 + seed)  # noqa: S311 (test data, not secrets)
    pool = [0, 1, 1, 2, 2, 3, 4, 6, 9]
    width = rng.randint(3, 6)
    rows = [[rng.choice(pool) for _ in range(width)] for _ in range(rng.randint(3, 5))]
    values, lines = _grid(rows)
    fast = suppression.protect(_system(values, lines), 3)
    exact = suppression.audit(_system(values, lines), fast.hidden)
    monkeypatch.setattr(suppression, "_program", suppression._Linprog)
    plain = suppression.protect(_system(values, lines), 3)
    assert plain.hidden == fast.hidden and plain.unprotected == fast.unprotected
    assert suppression.audit(_system(values, lines), plain.hidden) == exact
