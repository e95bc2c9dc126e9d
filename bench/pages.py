"""Pages at NRW scale, measured inside one process on the data of :mod:`bench.scale_data`.

* The Kennzahlwerte list as the district: first page, every offered sort (both
  directions), every offered filter, the comment search and a deep page. Every
  statement a page sends is captured (SQLAlchemy events) and run again under
  ``EXPLAIN (ANALYZE)`` on PostgreSQL; the page's SQL time is the sum of planning and
  execution time of its statements (best of three runs: warm caches, as in production).
  Target ≤ 100 ms each, and the same number of statements on every page.
* The start page, ``/dashboard.json``, Meldestand and Versorgung as the district:
  wall time through the Flask test client (best of three), response size and the
  number of statements. Targets ≤ 300 ms and ≤ 300 KB.

``python -m bench.pages [--url URL]`` prints a Markdown table; :func:`measure` returns rows.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from sqlalchemy import event

from .scale_data import DEFAULT_URL, PASSWORD, district_email

LIST_SQL_MS = 100.0
PAGE_MS = 300.0
PAGE_KB = 300.0
DEEP_PAGE = 5000  # × 50 rows: OFFSET 250,000


def _app(url: str, **config):
    from kim_admin import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench-scale-pages",
            "RATELIMIT_ENABLED": False,
            **config,
        }
    )


def login(client, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    if response.status_code not in (302, 303):
        raise RuntimeError(f"Anmeldung als {email} fehlgeschlagen ({response.status_code})")


def list_cases(view) -> list[tuple[str, str]]:
    """(label, query string) of every page variant the Kennzahlwerte list offers."""
    cases = [("erste Seite", ""), ("tiefe Seite (OFFSET 250.000)", f"page={DEEP_PAGE}")]
    sortable = [name for name, _ in view._list_columns]
    for name in view._sortable_columns:
        index = sortable.index(name)
        cases.append((f"Sortierung {name} ↑", f"sort={index}"))
        cases.append((f"Sortierung {name} ↓", f"sort={index}&desc=1"))
    cases.append((f"tiefe Seite, Sortierung {sortable[0]}", f"sort=0&page={DEEP_PAGE}"))
    samples = {
        "municipality.name": "Gemeinde 0200",
        "period.year": "2020",
        "period.quarter": "2",
        "indicator.code": "CM_NEU",
        "target_group.name": "Geduldete",
    }
    for key, (_, flt) in view._filter_args.items():
        column = str(flt.name)
        operation = str(flt.operation())
        sample = next(
            (v for k, v in samples.items() if view.column_labels.get(k) == column), "2020"
        )
        kind = type(flt).__name__
        if "Empty" in kind:
            value = "1"
        elif "InList" in kind:
            value = f"{sample},{sample}"
        else:
            value = sample
        cases.append((f"Filter {column} {operation}", f"flt0_{key}={value}"))
    cases.append(("Suche im Kommentar", "search=Sprachkurs"))
    return cases


def explain_ms(connection, statement: str, parameters: Any) -> float:
    """Planning + execution time of one statement (best of three), in ms."""
    best = float("inf")
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            plan = cursor.fetchone()[0]
            plan = plan if isinstance(plan, list) else json.loads(plan)
            best = min(best, plan[0]["Planning Time"] + plan[0]["Execution Time"])
    return best


class Capture:
    """The statements sent while the block runs."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> Capture:
        event.listen(self.engine, "before_cursor_execute", self.record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self.record)

    def record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append((statement, parameters))


def measure_lists(url: str) -> list[dict]:
    from kim_admin.extensions import db

    app = _app(url)
    client = app.test_client()
    login(client, district_email(1))
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    rows = []
    with app.app_context():
        engine = db.engine
        raw = engine.raw_connection()
        try:
            for label, query in list_cases(view):
                client.get(f"/monitoring_entry/?{query}")  # warm
                with Capture(engine) as capture:
                    start = time.perf_counter()
                    response = client.get(f"/monitoring_entry/?{query}")
                    wall = (time.perf_counter() - start) * 1000
                selects = [
                    (s, p)
                    for s, p in capture.statements
                    if s.lstrip().upper().startswith(("SELECT", "WITH"))
                ]
                sql = sum(explain_ms(raw.driver_connection, s, p) for s, p in selects)
                raw.driver_connection.rollback()
                rows.append(
                    {
                        "case": label,
                        "status": response.status_code,
                        "statements": len(capture.statements),
                        "sql_ms": sql,
                        "wall_ms": wall,
                        "mehr": "mehr als 10.000" in response.get_data(as_text=True),
                    }
                )
        finally:
            raw.close()
        engine.dispose()
    return rows


PAGES = [
    ("Startseite", "/"),
    ("/dashboard.json", "/dashboard.json"),
    ("Meldestand", "/meldestand/"),
    ("Versorgung", "/versorgung/"),
]


#: The start page's Kreis-wide sums computed on every request (KIM_CACHE_SECONDS=0), as
#: the first request after they expire does.
UNSHARED = [
    ("Startseite, Summen nicht geteilt", "/"),
    ("/dashboard.json, Summen nicht geteilt", "/dashboard.json"),
]


def measure_pages(url: str, email: str | None = None) -> list[dict]:
    return _measure(url, email, PAGES) + _measure(url, email, UNSHARED, KIM_CACHE_SECONDS=0)


def _measure(url: str, email: str | None, pages: list, **config) -> list[dict]:
    from kim_admin.extensions import db

    app = _app(url, **config)
    client = app.test_client()
    login(client, email or district_email(1))
    rows = []
    with app.app_context():
        for label, path in pages:
            client.get(path)
            best = float("inf")
            for _ in range(3):
                with Capture(db.engine) as capture:
                    start = time.perf_counter()
                    response = client.get(path)
                    best = min(best, (time.perf_counter() - start) * 1000)
            rows.append(
                {
                    "page": label,
                    "status": response.status_code,
                    "ms": best,
                    "kb": len(response.get_data()) / 1024,
                    "statements": len(capture.statements),
                }
            )
        db.engine.dispose()
    return rows


def report(url: str, say) -> None:
    """Print both tables (Markdown) through ``say``."""
    lists = measure_lists(url)
    say("Kennzahlwerte-Liste als Kreis (1 Mio. Werte), SQL-Zeit aus EXPLAIN ANALYZE:")
    say()
    say("| Fall | HTTP | Anweisungen | SQL (ms) | Seite im Prozess (ms) | Zählung | Urteil |")
    say("|---|---:|---:|---:|---:|---|---|")
    for r in lists:
        ok = r["status"] == 200 and r["sql_ms"] <= LIST_SQL_MS
        note = "PASS" if ok else f"MISS (+{r['sql_ms'] - LIST_SQL_MS:.0f} ms)"
        say(
            f"| {r['case']} | {r['status']} | {r['statements']} | {r['sql_ms']:.1f} | "
            f"{r['wall_ms']:.0f} | {'mehr als 10.000' if r['mehr'] else 'genau'} | {note} |"
        )
    counts = sorted({r["statements"] for r in lists})
    say()
    say(f"Anweisungen je Seite: {', '.join(map(str, counts))} (Ziel: konstant).")
    say()
    pages = measure_pages(url)
    say("Seiten bei 396 Kommunen als Kreis (Testclient, bestes von drei):")
    say()
    say("| Seite | HTTP | Zeit (ms) | Größe (KB) | Anweisungen | Urteil |")
    say("|---|---:|---:|---:|---:|---|")
    for r in pages:
        misses = []
        if r["ms"] > PAGE_MS:
            misses.append(f"+{r['ms'] - PAGE_MS:.0f} ms")
        if r["kb"] > PAGE_KB:
            misses.append(f"+{r['kb'] - PAGE_KB:.0f} KB")
        note = "PASS" if not misses and r["status"] == 200 else f"MISS ({', '.join(misses)})"
        say(
            f"| {r['page']} | {r['status']} | {r['ms']:.0f} | {r['kb']:.0f} | "
            f"{r['statements']} | {note} |"
        )
    say()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--only", choices=["lists", "pages"])
    options = parser.parse_args(argv)

    def say(text: str = "") -> None:
        print(text, flush=True)

    if options.only == "lists":
        for r in measure_lists(options.url):
            print(r)
    elif options.only == "pages":
        for r in measure_pages(options.url):
            print(r)
    else:
        report(options.url, say)


if __name__ == "__main__":
    main()
