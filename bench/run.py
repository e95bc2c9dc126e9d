"""``make bench``: time and peak memory of list exports and evaluation reports.

Prints the figures and appends them, with date and machine, to ``bench/results.md``.
Not a test: nothing here fails a build. Each measurement runs in a fresh Python
process (``python -m bench.run case …``) so that its peak RSS is its own.

Export cases, on generated monitoring entries of the same database and query:

* ``ours``: the application's export, ``GET /monitoring_entry/export/xlsx/`` through the
  Flask test client as a district administrator, body written to a file;
* ``bare``: a hand-written xlsxwriter loop (constant memory) over the same query
  (``MonitoringEntryView.export_query()``), the floor any export can reach;
* ``flask-admin``: Flask-Admin's own tablib export of the same rows.

Targets (issue "Excel for the steering group"): ours ≤ 1.25 × bare, peak ≤ 150 MB at
200,000 and 1,000,000 rows; the evaluation report on HSK-sized data < 2 s, on
NRW-sized data (396 municipalities, 10 years, no raw-data sheet) < 15 s on PostgreSQL,
with a number of queries that does not grow with the municipalities.

NRW scale (issue "NRW scale"), on 396 municipalities × 40 quarters × 63 cells (about
1,000,000 figures, :mod:`bench.scale_data`) in a PostgreSQL database of its own,
dropped afterwards: the list of figures (EXPLAIN ANALYZE of every statement of
every sort, filter and a deep page; target ≤ 100 ms SQL), the start page,
``/dashboard.json``, Meldestand and Versorgung (≤ 300 ms, ≤ 300 KB; :mod:`bench.pages`),
the evaluation report sent as a job to RQ on Redis (``--redis``; the request answered
in < 200 ms, raw-data sheet off by default; :mod:`bench.report_job`), and 30 users
against gunicorn (:mod:`bench.load`; 0 errors, save p95 ≤ 1 s, pages p95 ≤ 2 s).
``--only-scale`` runs this part alone.

Disclosure audit of a published report (issue "Published figures that cannot be
worked back"), on synthetic figures of 12 and 396 municipalities × 7 indicators ×
11 target groups × 4 quarters, without a database: the suppression with the audit
it needs (target < 2 s and < 30 s), and the exact interval of every hidden cell.
Each size one year alone (``case audit``: also the first publication, when no
earlier year was published), and with the previous year's publication read from
the store (``case audit-stored``, the steady state: each year is stored when
first published). ``case audit2`` protects both years one after the other, as
publishing two years at once does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace as NS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.md"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/kim_bench"
EMAIL = "bench@bench.example"
PASSWORD = "bench-passwort-1"  # noqa: S105 (a throw-away benchmark database)
# Monitoring cells per municipality and quarter with the seeded indicators:
# 3 indicators by 11 target groups + 4 without breakdown.
QUARTERS = 40  # ten years
EXPORT_TIME_FACTOR = 1.25
EXPORT_PEAK_MB = 150
HSK_SECONDS = 2.0
NRW_SECONDS = 15.0
# Issue "Published figures that cannot be worked back": the disclosure audit.
AUDIT_HSK_SECONDS = 2.0
AUDIT_NRW_SECONDS = 30.0


# --- data ------------------------------------------------------------------------------


def make_app(url: str):
    from kim_admin import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench"})


def database_url(kind: str, work: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / 'bench.db'}"
    return PG_URL


def reset(kind: str, url: str) -> None:
    """An empty database: a fresh SQLite file, or the kim_bench schema dropped."""
    from sqlalchemy import create_engine, text

    if kind == "sqlite":
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = 'kim_bench'"))
        if not exists:
            conn.execute(text("CREATE DATABASE kim_bench"))
    admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def generate(kind: str, url: str, towns: int, entries: int | None, approved: bool) -> int:
    """Schema, HSK reference data, extra towns up to ``towns``, 40 quarters, figures.

    Figures come from one INSERT … SELECT over towns × quarters × indicators (× target
    groups), limited to ``entries`` rows if given; every report is approved if asked.
    """
    from sqlalchemy import func, select, text

    from kim_admin.extensions import db
    from kim_admin.reference import load_reference_data
    from models import Municipality, ReportingPeriod, User

    reset(kind, url)
    app = make_app(url)
    with app.app_context():
        db.create_all()
        load_reference_data()
        existing = db.session.scalar(select(func.count(Municipality.id)))
        db.session.add_all(
            Municipality(
                name=f"Gemeinde {n:04d}",
                ags=f"05{900000 + n:06d}",
                population=2_000 + 37 * n,
                kim_participant=True,
            )
            for n in range(max(0, towns - existing))
        )
        db.session.execute(text("UPDATE municipality SET kim_participant = :yes"), {"yes": True})
        for n in range(QUARTERS):
            year, quarter = 2016 + n // 4, n % 4 + 1
            db.session.add(
                ReportingPeriod(
                    year=year, quarter=quarter, is_open=False, deadline=date(year, 3 * quarter, 28)
                )
            )
        user = User(email=EMAIL, name="Bench", role="district_admin")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        limit = f"LIMIT {int(entries)}" if entries else ""
        yes = "true" if kind == "postgresql" else "1"
        no = "false" if kind == "postgresql" else "0"
        # Only integers and SQL literals of this file are formatted into the statement.
        db.session.execute(
            text(
                f"""
                INSERT INTO monitoring_entry (municipality_id, period_id, indicator_id,
                    target_group_id, by_target_group, value, comment, created_at,
                    updated_at, version, updated_by_id)
                SELECT m.id, p.id, i.id, g.id, g.id IS NOT NULL,
                       (m.id * 7 + p.id * 3 + i.id * 5 + COALESCE(g.id, 0)) % 40,
                       CASE WHEN (m.id + p.id) % 20 = 0 THEN 'Kommentar der Kommune' END,
                       :stamp, :stamp, 1, :user
                FROM municipality m
                CROSS JOIN reporting_period p
                JOIN indicator i ON i.active = {yes}
                LEFT JOIN target_group g ON i.by_target_group = {yes}
                WHERE i.by_target_group = {yes} OR (i.by_target_group = {no} AND g.id IS NULL)
                {limit}
                """  # noqa: S608
            ),
            {"stamp": datetime(2025, 1, 2, 9, 30), "user": user.id},
        )
        if approved:
            db.session.execute(
                text(
                    """
                    INSERT INTO submission (municipality_id, period_id, status, submitted_at,
                        first_submitted_at, reviewed_at)
                    SELECT m.id, p.id, 'approved', :stamp, :stamp, :stamp
                    FROM municipality m CROSS JOIN reporting_period p
                    """
                ),
                {"stamp": datetime(2025, 1, 2, 9, 30)},
            )
        db.session.commit()
        count = db.session.scalar(text("SELECT count(*) FROM monitoring_entry"))
    with app.app_context():
        db.engine.dispose()
    return count


# --- the disclosure audit of published reports (no database) ------------------------------


class SyntheticReport:
    """The attributes :func:`publication.build_table` reads, for ``towns`` municipalities."""

    def __init__(
        self,
        towns: int,
        quarters: int = 4,
        groups: int = 11,
        seed: int = 1,
        start: dict | None = None,
        first_period: int = 1,
    ) -> None:
        """``start``: the stocks at the start (else random); ``first_period``: the first id."""
        rng = random.Random(seed)
        specs = [
            ("CM_NEU", "flow", True),
            ("CM_ABG", "flow", True),
            ("CM_AKT", "stock", True),
            ("BER_KONT", "flow", False),
            ("VERM", "flow", False),
            ("FALLKONF", "flow", False),
            ("VZAE_BES", "stock", False),
        ]
        self.indicators = [
            NS(
                id=n + 1,
                code=c,
                kind=k,
                by_target_group=g,
                decimal_places=2 if c == "VZAE_BES" else 0,
            )
            for n, (c, k, g) in enumerate(specs)
        ]
        self.towns = [NS(id=n + 1) for n in range(towns)]
        self.groups = [NS(id=n + 1) for n in range(groups)]
        self.periods = [NS(id=first_period + n) for n in range(quarters)]
        self.last = self.periods[-1]
        code = {i.code: i for i in self.indicators}
        self.range_values, self.group_values, self.series = {}, {}, {}
        quarterly = {}
        #: (municipality, group) -> the stock at the end: the next year's start.
        self.end_stock = {}
        for t in self.towns:
            size = rng.choice([0.3, 0.5, 1, 1, 2, 4, 8])
            for g in self.groups:
                weight = size * rng.choice([0.2, 0.5, 1, 2])
                stock = int(rng.expovariate(1 / (3 * weight + 0.1)))
                if start is not None:
                    stock = start[(t.id, g.id)]
                for p in self.periods:
                    new = _poisson(rng, weight)
                    closed = min(stock + new, _poisson(rng, weight))
                    stock += new - closed
                    for c, v in (("CM_NEU", new), ("CM_ABG", closed), ("CM_AKT", stock)):
                        quarterly[(t.id, p.id, code[c].id, g.id)] = v
                self.end_stock[(t.id, g.id)] = stock
            for p in self.periods:
                for c in ("BER_KONT", "VERM", "FALLKONF"):
                    quarterly[(t.id, p.id, code[c].id, None)] = _poisson(rng, size * 3)
        for (t, p, i, g), v in quarterly.items():
            if i != code["CM_AKT"].id or p == self.last.id:  # a stock counts at the end
                self.range_values[(t, i)] = self.range_values.get((t, i), 0) + v
                if g is not None:
                    self.group_values[(t, i, g)] = self.group_values.get((t, i, g), 0) + v
            self.series[(p, i)] = self.series.get((p, i), 0) + v
        self.coverage = [
            NS(municipality=t, group=g, need=_poisson(rng, 4))
            for t in self.towns
            for g in self.groups
        ]

    def total(self, i):
        return sum(self.range_values.get((t.id, i.id), 0) for t in self.towns)

    def group_total(self, i, g):
        return sum(self.group_values.get((t.id, i.id, g.id), 0) for t in self.towns)

    def need_total(self):
        return sum(c.need for c in self.coverage)

    def series_key(self, p, i):
        if i.kind == "stock" and p.id == self.last.id:
            return ("KT", i.id)
        return ("Z", p.id, i.id)


def _poisson(rng, mean):
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def audit_figures(towns: int, threshold: int = 3, exact: bool = True) -> dict:
    """Protect a synthetic published report of ``towns`` municipalities, then audit it.

    ``protect`` is what a published report costs (suppression with the audit it needs
    to decide); ``exact`` the smallest and largest value of every hidden cell.
    """
    return _audit(towns, threshold, exact, earlier_years=0)


def audit_two_years(towns: int, threshold: int = 3, exact: bool = True) -> dict:
    """Two years published at once: the previous year protected alone, then this year
    together with it (its hidden cells fixed in the second's table)."""
    return _audit(towns, threshold, exact, earlier_years=1)


def audit_stored(towns: int, threshold: int = 3, exact: bool = True) -> dict:
    """A published report audited with the previous year's *stored* publication.

    The steady state: the previous year was stored when it was published, and is
    read back from its JSON columns (on the clock) instead of being protected again.
    """
    return _audit(towns, threshold, exact, earlier_years=1, stored=True)


def _audit(
    towns: int, threshold: int, exact: bool, earlier_years: int, stored: bool = False
) -> dict:
    from scipy import optimize  # noqa: F401 (imported before the clock starts)

    from kim_admin import suppression
    from kim_admin.monitoring.rules import SEED_RULES
    from kim_admin.report import publication

    rules = publication.identities(
        [(left, right) for _, left, op, right, *_ in SEED_RULES if op == "="]
    )
    # Consecutive years: each starts with the stocks the one before ended with.
    years = [SyntheticReport(towns)]
    for n in range(1, earlier_years + 1):
        years.append(
            SyntheticReport(towns, seed=n + 1, start=years[-1].end_stock, first_period=1 + 4 * n)
        )

    def protect(data, earlier):
        """(the joint table, its protection, this year's publication)."""
        table = publication.build_table(data, rules)
        own = suppression.Table(dict(table.values), list(table.equations), set(table.totals))
        if earlier is not None:
            publication.link_previous(table, data, earlier, rules)
        protection = suppression.protect(table, threshold)
        published = publication.Published(
            own, protection.hidden, data.last.id, protection.unprotected
        )
        return table, protection, published

    text = None
    if stored:
        # Published (and stored) before: not on the clock.
        *_, before = protect(years[0], None)
        text = json.dumps(publication.dump(before))
        years = years[1:]
    start, cpu = time.perf_counter(), time.process_time()
    earlier = None
    if text is not None:
        earlier = publication.load(json.loads(text), before.last_period_id)
    for data in years:
        table, protection, earlier = protect(data, earlier)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {
        "cells": len(table.values),
        "equations": len(table.equations),
        "primary": len(protection.primary),
        "secondary": len(protection.secondary),
        "unprotected": len(protection.unprotected),
        "seconds": seconds,
        # CPU time too: on a loaded machine the wall clock says little.
        "cpu_seconds": cpu,
        "years_protected": len(years),
    }
    if exact:
        start = time.perf_counter()
        intervals = suppression.audit(table, protection.audited)
        result["exact_seconds"] = time.perf_counter() - start
        result["narrowest"] = min(iv.width for iv in intervals.values())
    return result


# --- cases (each in its own process) -----------------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_export(url: str, how: str, out: Path) -> dict:
    from flask_login import login_user
    from sqlalchemy import select

    from kim_admin.extensions import db
    from models import User

    app = make_app(url)
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    if how == "ours":
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
        client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
        start = time.perf_counter()
        response = client.get("/monitoring_entry/export/xlsx/", buffered=False)
        with out.open("wb") as handle:
            for chunk in response.response:
                handle.write(chunk)
        response.close()
        seconds = time.perf_counter() - start
    else:
        with app.test_request_context("/monitoring_entry/export/xlsx/"):
            login_user(db.session.scalar(select(User).where(User.email == EMAIL)))
            start = time.perf_counter()
            if how == "bare":
                _bare_loop(view.export_query(), out)
            else:
                from flask_admin.model.base import BaseModelView

                response = BaseModelView._export_tablib(view, "xlsx", "/")
                out.write_bytes(response.get_data())
            seconds = time.perf_counter() - start
    with zipfile.ZipFile(out) as archive:
        if "xl/workbook.xml" not in archive.namelist():
            raise RuntimeError(f"{how}: no valid workbook")
    return {"seconds": seconds, "peak_mb": peak_mb(), "bytes": out.stat().st_size}


def _bare_loop(query, out: Path) -> None:
    """The minimal loop: the same rows, plain write_row, no formats, no checks."""
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(out), {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    )
    sheet = book.add_worksheet()
    sheet.write_row(
        0,
        0,
        ["Kommune", "Quartal", "Kennzahl", "Zielgruppe", "Wert", "Kommentar", "Geändert am", "von"],
    )
    row = 0
    for entry in query.yield_per(2000):
        row += 1
        sheet.write_row(
            row,
            0,
            [
                entry.municipality.name,
                str(entry.period),
                str(entry.indicator),
                entry.target_group.name if entry.target_group else None,
                float(entry.value) if entry.value is not None else None,
                entry.comment,
                entry.updated_at,
                str(entry.updated_by) if entry.updated_by else None,
            ],
        )
    book.close()


def case_report(url: str, towns: int, raw: bool, out: Path) -> dict:
    from sqlalchemy import event, func, select

    from kim_admin import report
    from kim_admin.extensions import db
    from models import Municipality, ReportingPeriod, User

    app = make_app(url)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == EMAIL))
        ids = db.session.scalars(
            select(Municipality.id).order_by(Municipality.name).limit(towns)
        ).all()
        first = db.session.scalar(select(func.min(ReportingPeriod.id)))
        last = db.session.scalar(select(func.max(ReportingPeriod.id)))
        options = report.ReportOptions(first, last, tuple(ids), include_raw=raw)
        statements = []
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        start = time.perf_counter()
        report.build(options, user, str(out))
        seconds = time.perf_counter() - start
        event.remove(db.engine, "before_cursor_execute", listener)
        db.engine.dispose()
    return {
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "queries": len(statements),
        "bytes": out.stat().st_size,
    }


def run_case(args: list[str], timeout: int) -> dict:
    """Run one case in a fresh interpreter; its last output line is JSON."""
    try:
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "bench.run", "case", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"nach {timeout} s abgebrochen"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the whole run --------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} × {cpu}, {memory:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average before the run: {load}"
    )


def versions(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            version = "SQLite " + conn.scalar(text("select sqlite_version()"))
        else:
            version = conn.scalar(text("show server_version")).split()[0]
            version = "PostgreSQL " + version
    engine.dispose()
    return version


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'MISS'} ({text})"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # "--db" alone: no database part (e.g. the disclosure audit only).
    parser.add_argument("--db", nargs="*", default=["sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[200_000, 1_000_000])
    parser.add_argument(
        "--flask-admin-max",
        type=int,
        default=200_000,
        help="largest size measured through Flask-Admin's tablib export (slow, GBs of RAM)",
    )
    parser.add_argument("--skip-reports", action="store_true")
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument(
        "--audit-exact-max",
        type=int,
        default=396,
        help="largest number of municipalities whose every hidden interval is computed exactly",
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--only-scale", action="store_true")
    parser.add_argument("--load-seconds", type=float, default=180)
    parser.add_argument(
        "--redis",
        default=os.environ.get("KIM_JOBS_URL") or "redis://127.0.0.1:6379/0",
        help="Redis for the report job's queue (NRW scale)",
    )
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args(argv)

    lines = [
        f"## {datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Machine: {machine()}.",
        "",
    ]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    if not options.skip_scale:
        scale(options, say)
    if options.only_scale:
        options.skip_audit = True
        options.db = []

    if not options.skip_audit:
        say("### disclosure audit (published report, synthetic figures, no database)")
        say()
        say(
            "| report | municipalities | cells | equations | hidden primary | secondary | "
            "protect (s) | CPU (s) | exact intervals (s) | narrowest | verdict |"
        )
        say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        # With the previous year: read from the store (each year is stored when first
        # published; a year never published ties nothing, the audit is then "HSK"/"NRW").
        for label, case, towns, target in (
            ("HSK", "audit", 12, AUDIT_HSK_SECONDS),
            ("NRW", "audit", 396, AUDIT_NRW_SECONDS),
            ("HSK mit Vorjahr (gespeichert)", "audit-stored", 12, AUDIT_HSK_SECONDS),
            ("NRW mit Vorjahr (gespeichert)", "audit-stored", 396, AUDIT_NRW_SECONDS),
        ):
            result = run_case(
                [case, str(towns), str(int(towns <= options.audit_exact_max))], options.timeout
            )
            if "error" in result:
                say(f"| {label} | {towns} | – | – | – | – | – | – | – | – | {result['error']} |")
                continue
            exact = result.get("exact_seconds")
            if target is None:
                note = verdict(not result["unprotected"], "einmalig, ohne Zeitziel")
            else:
                note = verdict(
                    result["seconds"] < target and not result["unprotected"],
                    f"protect target < {target:g} s",
                )
            say(
                f"| {label} | {towns} | {result['cells']:,} | {result['equations']:,} | "
                f"{result['primary']:,} | {result['secondary']:,} | {result['seconds']:.2f} | "
                f"{result['cpu_seconds']:.2f} | "
                f"{'–' if exact is None else f'{exact:.2f}'} | {result.get('narrowest', '–')} | "
                f"{note} |"
            )
        say()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kind in options.db:
            url = database_url(kind, work)
            say(f"### {kind}")
            say()
            say("| rows | path | time (s) | peak RSS (MB) | file (MB) | verdict |")
            say("|---:|---|---:|---:|---:|---|")
            for size in options.sizes:
                towns = math.ceil(size / (QUARTERS * 37))
                count = generate(kind, url, towns, size, approved=False)
                results = {}
                for how in ("bare", "ours", "flask-admin"):
                    if how == "flask-admin" and size > options.flask_admin_max:
                        say(f"| {count:,} | {how} | – | – | – | not run (over --flask-admin-max) |")
                        continue
                    out = work / f"{how}.xlsx"
                    result = run_case(["export", url, how, str(out)], options.timeout)
                    results[how] = result
                    if "error" in result:
                        say(f"| {count:,} | {how} | – | – | – | {result['error']} |")
                        continue
                    note = ""
                    if how == "ours" and "seconds" in results.get("bare", {}):
                        ratio = result["seconds"] / results["bare"]["seconds"]
                        note = verdict(
                            ratio <= EXPORT_TIME_FACTOR and result["peak_mb"] <= EXPORT_PEAK_MB,
                            f"{ratio:.2f} × bare, target ≤ {EXPORT_TIME_FACTOR}; "
                            f"peak target ≤ {EXPORT_PEAK_MB} MB",
                        )
                    say(
                        f"| {count:,} | {how} | {result['seconds']:.1f} | "
                        f"{result['peak_mb']:.0f} | {result['bytes'] / 2**20:.1f} | {note} |"
                    )
            say()
            say(f"Server: {versions(url)}.")
            say()
            if options.skip_reports:
                continue
            say(
                "| report | municipalities | figures | raw sheet | time (s) | queries | "
                "peak RSS (MB) | verdict |"
            )
            say("|---|---:|---:|---|---:|---:|---:|---|")
            for label, towns, raw, target in (
                ("HSK", 12, True, HSK_SECONDS),
                ("NRW", 396, False, NRW_SECONDS),
            ):
                count = generate(kind, url, towns, None, approved=True)
                out = work / "report.xlsx"
                result = run_case(["report", url, str(towns), str(int(raw)), str(out)], 600)
                if "error" in result:
                    say(f"| {label} | {towns} | {count:,} | – | – | – | – | {result['error']} |")
                    continue
                note = verdict(result["seconds"] < target, f"target < {target:g} s")
                if label == "NRW":
                    small = run_case(["report", url, "12", "0", str(out)], 600)
                    same = small.get("queries") == result["queries"]
                    note += "; " + verdict(
                        same, f"{small.get('queries')} queries for 12 municipalities"
                    )
                say(
                    f"| {label} | {towns} | {count:,} | {'yes' if raw else 'no'} | "
                    f"{result['seconds']:.2f} | {result['queries']} | "
                    f"{result['peak_mb']:.0f} | {note} |"
                )
            say()
    if not options.no_write:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n\n")
        print(f"Appended to {RESULTS.relative_to(ROOT)}.")


def scale(options, say) -> None:
    """The NRW-scale part: generate, measure the pages, load, drop the database."""
    from . import pages, report_job, scale_data

    say("### NRW scale (PostgreSQL, 396 Kommunen, 40 Quartale)")
    say()
    try:
        made = scale_data.generate(scale_data.DEFAULT_URL, quiet=True)
        say(
            f"Daten: {made['municipalities']} Kommunen, {made['figures']:,} Kennzahlwerte, "
            f"erzeugt in {made['seconds']:.0f} s; Server: {versions(scale_data.DEFAULT_URL)}."
        )
        say()
        pages.report(scale_data.DEFAULT_URL, say)
        report_job.report_lines(
            report_job.measure(scale_data.DEFAULT_URL, options.redis, requests=10), say
        )
        # The 30 users in a process of their own: this one holds the apps and objects
        # of the measurements above, and its garbage collection and threads would
        # slow the clients down and count as the server's latency.
        users = subprocess.run(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "bench.load",
                "--url",
                scale_data.DEFAULT_URL,
                "--duration",
                str(options.load_seconds),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        for line in users.stdout.splitlines():
            say(line)
        if users.returncode:
            say(f"Lasttest fehlgeschlagen (Exit {users.returncode}): {users.stderr[-500:]}")
    finally:
        scale_data.drop_database(scale_data.DEFAULT_URL)


def case_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "export":
        url, how, out = argv[1:4]
        result = case_export(url, how, Path(out))
    elif kind == "audit":
        result = audit_figures(int(argv[1]), exact=argv[2] == "1")
    elif kind == "audit2":
        result = audit_two_years(int(argv[1]), exact=argv[2] == "1")
    elif kind == "audit-stored":
        result = audit_stored(int(argv[1]), exact=argv[2] == "1")
    else:
        url, towns, raw, out = argv[1:5]
        result = case_report(url, int(towns), raw == "1", Path(out))
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["case"]:
        case_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
