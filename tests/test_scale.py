"""Pages that must not grow with the data: list queries, the start page, Meldestand,
Versorgung (issue "NRW scale"). Timings are the bench's business (``make bench``);
these tests count statements and bytes, read the SQL sent, and check the indexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from flask_migrate import upgrade
from sqlalchemy import event, func, insert, inspect, select, text, update

from kim_admin import dashboard
from kim_admin.extensions import db
from kim_admin.monitoring import totals
from models import (
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    ReportingPeriod,
    Submission,
    TargetGroup,
    User,
)
from views.base import SecureModelView

from . import factories
from .support import make_app


@contextmanager
def statements(app) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def add_figures(app, count: int, start: int = 0) -> None:
    """``count`` more figures over the HSK towns, quarters of 2000–2099, groups and users."""
    with app.app_context():
        towns = db.session.scalars(select(Municipality).order_by(Municipality.id)).all()
        groups = db.session.scalars(select(TargetGroup).order_by(TargetGroup.id)).all()
        neu = factories.indicator("CM_NEU")
        for n in range(start, start + count):
            quarter = factories.period(2000 + n // 4, n % 4 + 1, is_open=False)
            author = factories.municipal_staff(towns[n % len(towns)], f"autor{n}@test.example")
            factories.entry(
                towns[n % len(towns)],
                quarter,
                neu,
                n,
                groups[n % len(groups)],
                comment=f"Kommentar {n}",
                updated_by_id=author.id,
                created_by_id=author.id,
            )
        db.session.commit()


LIST_URLS = [
    "/monitoring_entry/",
    "/monitoring_entry/?sort=0",
    "/monitoring_entry/?sort=2&desc=1",
    "/monitoring_entry/?search=Kommentar",
    "/submission/?sort=0",
    "/room/",
    "/post/",
    "/needs_assessment/",
]


def test_queries_per_list_page_do_not_grow_with_rows(app, accounts, as_district):
    add_figures(app, 3)
    with app.app_context():
        for name in ("Arnsberg", "Meschede", "Bestwig"):
            factories.room(name)
            factories.post(name)
            factories.needs(name, factories.group(0))
        db.session.commit()
    few = {}
    for url in LIST_URLS:
        as_district.get(url)  # caches and the session settle
        with statements(app) as sent:
            assert as_district.get(url).status_code == 200
        few[url] = len(sent)
    add_figures(app, 40, start=3)
    with app.app_context():
        for name in ("Sundern (Sauerland)", "Brilon", "Olsberg", "Winterberg"):
            factories.room(name)
            factories.post(name)
            factories.needs(name, factories.group(1))
        db.session.commit()
    for url in LIST_URLS:
        with statements(app) as sent:
            assert as_district.get(url).status_code == 200
        assert len(sent) == few[url], url


def test_count_is_capped(app, accounts, as_district, monkeypatch):
    add_figures(app, 5)
    monkeypatch.setattr(SecureModelView, "count_cap", 4)
    html = as_district.get("/monitoring_entry/").get_data(as_text=True)
    assert "mehr als 4" in html
    with statements(app) as sent:
        as_district.get("/monitoring_entry/")
    counts = [s for s in sent if "count(" in s.lower() and "monitoring_entry" in s]
    assert counts and all("LIMIT" in s.upper() for s in counts)
    monkeypatch.setattr(SecureModelView, "count_cap", 5)
    html = as_district.get("/monitoring_entry/").get_data(as_text=True)
    assert "mehr als" not in html and "(5)" in html


def test_capped_count_reads_in_german(app, accounts, as_district):
    from views.base import CappedCount

    assert str(CappedCount(10_001)) == "mehr als 10.000"
    assert SecureModelView.count_cap == 10_000


@pytest.mark.parametrize(
    "query", ["", "sort=7", "sort=0", "sort=2&desc=1", "sort=4", "search=Kommentar"]
)
def test_list_never_reads_password_hash_or_session_token(app, accounts, as_district, query):
    add_figures(app, 3)
    with statements(app) as sent:
        html = as_district.get(f"/monitoring_entry/?{query}").get_data(as_text=True)
    assert "Autor0" in html or "autor0@test.example" in html or query.startswith("sort")
    listing = [s for s in sent if "monitoring_entry" in s]
    assert listing
    for statement in listing:
        assert "password_hash" not in statement
        assert "session_token" not in statement


def test_sorting_by_a_required_relation_joins_inner(app, accounts, as_district):
    add_figures(app, 3)
    with statements(app) as sent:
        as_district.get("/monitoring_entry/?sort=0")  # Kommune: a NOT NULL key
    keys = [s for s in sent if "ORDER BY" in s and "municipality" in s]
    assert keys and all("LEFT OUTER JOIN municipality" not in s for s in keys)
    # ties are broken by the primary key, so that paging neither repeats nor skips rows
    assert all(re.search(r"monitoring_entry\.id( ASC| DESC)?\s+LIMIT", s) for s in keys)


def test_deep_page_loads_only_the_page_rows(app, accounts, as_district, monkeypatch):
    add_figures(app, 7)
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    monkeypatch.setattr(view, "page_size", 5)
    with statements(app) as sent:
        html = as_district.get("/monitoring_entry/?page=1").get_data(as_text=True)
    assert html.count("Kommentar ") >= 2  # rows 6 and 7
    loads = [s for s in sent if "monitoring_entry.comment" in s]
    assert len(loads) == 1 and "OFFSET" not in loads[0].upper()
    assert " IN (" in loads[0].upper().replace("\n", " ")


def test_no_empty_filter_on_required_columns(app):
    with app.app_context():
        view = next(
            v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry"
        )
        empties = [f for f in view._filters if type(f).__name__ == "FilterEmpty"]
    # Kommune, Jahr, Quartal and Kennzahl are never empty; Zielgruppe can be.
    assert [str(f.name) for f in empties] == ["Zielgruppe"]


def test_migration_creates_the_list_indexes(db_url):
    app = make_app(db_url)
    with app.app_context():
        upgrade()
        inspector = inspect(db.engine)
        names = {i["name"] for i in inspector.get_indexes("monitoring_entry")}
        assert {
            "ix_monitoring_entry_updated_at_id",
            "ix_monitoring_entry_value_id",
            "ix_monitoring_entry_municipality_updated",
            "ix_monitoring_entry_period_updated",
            "ix_monitoring_entry_indicator_updated",
            "ix_monitoring_entry_target_group_updated",
            "ix_monitoring_entry_comment_trgm",
            "ix_monitoring_entry_chart",
        } <= names
        assert "ix_indicator_sort_order" in {i["name"] for i in inspector.get_indexes("indicator")}
        if db.engine.dialect.name == "postgresql":
            definition = db.session.scalar(
                text(
                    "SELECT indexdef FROM pg_indexes "
                    "WHERE indexname = 'ix_monitoring_entry_comment_trgm'"
                )
            )
            assert "gin" in definition and "gin_trgm_ops" in definition
        db.session.remove()
        db.engine.dispose()


# --- start page, Meldestand, Versorgung at many municipalities ------------------------------


def grow(app, towns: int) -> None:
    """Municipalities up to ``towns`` (all KIM participants), each with figures of the
    current and the previous quarter, a submission for every third, and needs."""
    with app.app_context():
        existing = db.session.scalar(select(func.count(Municipality.id)))
        if towns > existing:
            db.session.execute(
                insert(Municipality),
                [
                    {
                        "name": f"Gemeinde {n:03d}",
                        "ags": f"05{900000 + n:06d}",
                        "population": 1000 + 37 * n,
                        "kim_participant": True,
                    }
                    for n in range(existing, towns)
                ],
            )
        db.session.execute(update(Municipality).values(kim_participant=True))
        today = date.today()
        quarter = (today.month - 1) // 3 + 1
        if not db.session.scalar(select(func.count(ReportingPeriod.id))):
            factories.period(today.year - (quarter == 1), (quarter - 2) % 4 + 1, False)
            factories.period(today.year, quarter, True, deadline=today - timedelta(days=1))
        current = db.session.scalar(select(ReportingPeriod.id).where(ReportingPeriod.is_open))
        period_ids = db.session.scalars(select(ReportingPeriod.id)).all()
        ids = db.session.scalars(select(Municipality.id)).all()
        submitted = set(db.session.scalars(select(Submission.municipality_id)))
        reported = set(db.session.scalars(select(MonitoringEntry.municipality_id)))
        assessed = set(db.session.scalars(select(NeedsAssessment.municipality_id)))
        neu, contacts = factories.indicator("CM_NEU"), factories.indicator("BER_KONT")
        group = factories.group(0)
        new = [m for m in ids if m not in submitted and m % 3 == 0]
        if new:
            db.session.execute(
                insert(Submission),
                [{"municipality_id": m, "period_id": current, "status": "submitted"} for m in new],
            )
        figures = [
            row
            for m in ids
            if m not in reported
            for p in period_ids
            for row in (
                {
                    "municipality_id": m,
                    "period_id": p,
                    "indicator_id": neu.id,
                    "target_group_id": group.id,
                    "by_target_group": True,
                    "value": Decimal(m % 17 + p),
                },
                {
                    "municipality_id": m,
                    "period_id": p,
                    "indicator_id": contacts.id,
                    "target_group_id": None,
                    "by_target_group": False,
                    "value": Decimal(m % 11),
                },
            )
        ]
        if figures:
            db.session.execute(insert(MonitoringEntry), figures)
        groups = db.session.scalars(select(TargetGroup.id)).all()
        needs = [
            {"municipality_id": m, "target_group_id": g, "year": today.year, "estimated_people": 5}
            for m in ids
            if m not in assessed
            for g in groups
        ]
        if needs:
            db.session.execute(insert(NeedsAssessment), needs)
        totals.rebuild()  # figures written around the ORM
        db.session.commit()


PAGES = ["/", "/dashboard.json", "/meldestand/", "/versorgung/"]


def measure(app, session) -> dict[str, tuple[int, int]]:
    result = {}
    for url in PAGES:
        session.get(url)
        with statements(app) as sent:
            response = session.get(url)
        assert response.status_code == 200, url
        result[url] = (len(sent), len(response.get_data()))
    return result


def test_pages_do_not_grow_with_municipalities(app, accounts, as_district):
    grow(app, 60)
    small = measure(app, as_district)
    grow(app, 150)
    large = measure(app, as_district)
    for url in PAGES:
        assert large[url][0] == small[url][0], f"{url}: statements {small[url]} → {large[url]}"
        # Nothing per municipality on the page but an option of the chart picker (and
        # a link per 50 municipalities in a pager): well under 100 bytes each.
        growth = (large[url][1] - small[url][1]) / 90
        assert growth < 100, f"{url}: {growth:.0f} bytes more per municipality"


def test_charts_show_top_ten_and_the_total(app, accounts, as_district):
    grow(app, 40)
    data = as_district.get("/dashboard.json").get_json()
    assert data["mode"] == "top" and data["towns"] == 40
    new_cases = next(i for i in data["indicators"] if i["code"] == "CM_NEU")
    names = [s["municipality"] for s in new_cases["series"]]
    assert len(names) == dashboard.CHART_TOWNS + 1 and names[-1] == dashboard.TOTAL_LABEL
    total = new_cases["series"][-1]["values"]
    with app.app_context():
        expected = db.session.execute(
            text(
                "SELECT sum(value) FROM monitoring_entry e JOIN indicator i "
                "ON i.id = e.indicator_id WHERE i.code = 'CM_NEU' GROUP BY e.period_id "
                "ORDER BY e.period_id"
            )
        ).scalars()
        assert [t for t in total if t is not None] == [float(v) for v in expected]
    # the ten highest of the shown quarters, highest first
    weights = [sum(v or 0 for v in s["values"]) for s in new_cases["series"][:-1]]
    assert weights == sorted(weights, reverse=True)


def test_charts_show_the_picked_municipalities(app, accounts, as_district):
    grow(app, 40)
    with app.app_context():
        picked = db.session.scalars(
            select(Municipality.id).order_by(Municipality.name.desc()).limit(3)
        ).all()
        names = [db.session.get(Municipality, i).name for i in picked]
    query = "&".join(f"kommune={i}" for i in picked)
    data = as_district.get(f"/dashboard.json?{query}").get_json()
    assert data["mode"] == "selected"
    series = data["indicators"][0]["series"]
    assert [s["municipality"] for s in series] == [*names, dashboard.TOTAL_LABEL]
    page = as_district.get(f"/?{query}").get_data(as_text=True)
    assert '<label for="chart-towns"' in page and 'id="chart-towns"' in page
    for town_id in picked:
        assert f'<option value="{town_id}" selected>' in page


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_chart_lines_differ_by_more_than_colour(app, accounts, as_district):
    grow(app, 40)
    data = as_district.get("/dashboard.json").get_json()
    for indicator in data["indicators"]:
        styles = [s["style"] for s in indicator["series"]]
        dashes = [tuple(s["dash"]) for s in styles]
        points = [s["point"] for s in styles if s["width"] == 2]
        assert len(set(dashes[:-1])) == len(dashes) - 1  # every municipality its own dash
        assert len(set(points)) == len(points)
        for style in styles:
            contrast = 1.05 / (_luminance(style["colour"]) + 0.05)
            assert contrast >= 3, style["colour"]


def test_per_thousand_tables(app, accounts, as_district):
    grow(app, 12)  # the HSK: seven lines, every one shown
    data = as_district.get("/dashboard.json").get_json()
    html = as_district.get("/").get_data(as_text=True)
    new_cases = next(i for i in data["indicators"] if i["code"] == "CM_NEU")
    line = next(s for s in new_cases["series"] if s["values"][-1])
    expected = round(line["values"][-1] / line["population"] * 1000, 1)
    assert line["per1000"][-1] == expected
    tables = re.findall(
        r'<div class="table-responsive" data-scale-table="per1000" hidden>(.*?)</div>', html, re.S
    )
    assert tables, "no per-1,000 tables"
    block = next(t for t in tables if "Neue Fälle" in t or line["municipality"] in t)
    row = re.search(
        rf'<th scope="row">{re.escape(line["municipality"])}</th>(.*?)</tr>', block, re.S
    )
    assert row and f"{expected:.1f}".replace(".", ",").rstrip("0").rstrip(",") in row.group(1)


def test_fte_table_is_a_focusable_labelled_region(as_district):
    html = as_district.get("/").get_data(as_text=True)
    assert re.search(
        r'<div class="table-responsive kim-scroll-region" tabindex="0" role="region" '
        r'aria-labelledby="fte-title">',
        html,
    )


def test_meldestand_symbols_have_hidden_text(app, accounts, as_district):
    with app.app_context():
        today = date.today()
        period = factories.period(
            today.year, (today.month - 1) // 3 + 1, True, deadline=today + timedelta(days=10)
        )
        factories.submission(
            "Arnsberg",
            period,
            "submitted",
            submitted_at=db.func.now(),
            first_submitted_at=db.func.now(),
        )
        db.session.commit()
    html = as_district.get("/meldestand/").get_data(as_text=True)
    assert '<span class="sr-only">fristgerecht</span>' in html
    assert not re.search(r"<span[^>]*aria-label=", html)


def test_users_are_not_loaded_whole_for_the_list(app, accounts, as_district):
    add_figures(app, 2)
    with statements(app) as sent:
        as_district.get("/monitoring_entry/")
    rows = [s for s in sent if "FROM monitoring_entry" in s and "AS user_1" in s]
    assert len(rows) == 1
    # "Geändert von" needs the name and the e-mail address, nothing else of the user.
    assert sorted(set(re.findall(r"user_1\.(\w+) AS", rows[0]))) == ["email", "id", "name"]
    assert User.password_hash.key not in rows[0] and User.session_token.key not in rows[0]


# --- filters on quarters, merged per quarter --------------------------------------------


def _period_filter(app, name: str, kind: str) -> str:
    """The URL key of the figures list's filter ``kind`` on the quarter's ``name``."""
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    for key, (_, flt) in view._filter_args.items():
        if str(flt.name) == name and type(flt).__name__ == f"Period{kind}":
            return f"flt0_{key}"
    raise LookupError(name)


def test_quarter_filters_page_as_the_plain_query_does(app, accounts, as_district, monkeypatch):
    """A year's figures carry that year's dates: the list merges one index range per
    quarter (UNION ALL) instead of walking the date index past every later figure,
    and every page shows exactly the rows and order of the plain query."""
    with app.app_context():
        towns = db.session.scalars(select(Municipality).order_by(Municipality.id)).all()
        groups = db.session.scalars(select(TargetGroup).order_by(TargetGroup.id)).all()
        neu = factories.indicator("CM_NEU")
        quarters = [
            factories.period(y, q, is_open=False) for y in (2001, 2002) for q in (1, 2, 3, 4)
        ]
        quarters += [factories.period(2003, 1, is_open=False)]
        n = 0
        for k, quarter in enumerate(quarters):
            for t in range(7):
                n += 1
                factories.entry(
                    towns[t],
                    quarter,
                    neu,
                    n,
                    groups[k % len(groups)],
                    comment=f"Kommentar {n}",
                    # Mostly the quarter's own days; every seventh a late correction,
                    # and two figures share a moment (the key breaks the tie).
                    updated_at=datetime(2001 + k // 4 + (t == 6), 3 * (k % 4) + 1, 2 + t % 5),
                )
        db.session.commit()
        rows = db.session.execute(
            select(
                MonitoringEntry.comment,
                MonitoringEntry.updated_at,
                MonitoringEntry.id,
                ReportingPeriod.year,
                ReportingPeriod.quarter,
            ).join(ReportingPeriod, ReportingPeriod.id == MonitoringEntry.period_id)
        ).all()
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    monkeypatch.setattr(view, "page_size", 4)
    year_eq = _period_filter(app, "Jahr", "IntEqualFilter")
    year_lt = _period_filter(app, "Jahr", "IntSmallerFilter")
    year_in = _period_filter(app, "Jahr", "IntInListFilter")
    quarter_eq = _period_filter(app, "Quartal (1–4)", "IntEqualFilter")
    quarter_gt = _period_filter(app, "Quartal (1–4)", "IntGreaterFilter")
    cases = [
        (f"{year_eq}=2001", lambda r: r.year == 2001),
        (f"{year_lt}=2003", lambda r: r.year < 2003),
        (f"{year_in}=2001,2002", lambda r: r.year in (2001, 2002)),
        (f"{quarter_eq}=2", lambda r: r.quarter == 2),
        (f"{year_eq}=2002&{quarter_gt}=1", lambda r: r.year == 2002 and r.quarter > 1),
        (f"{year_eq}=2003", lambda r: r.year == 2003),
        (f"{year_eq}=1999", lambda r: False),
    ]
    date_sort = [name for name, _ in view._list_columns].index("updated_at")
    for query, matches in cases:
        chosen = {(r.year, r.quarter) for r in rows if matches(r)}

        def merged(descending: bool, chosen: set = chosen) -> bool:
            # Merged unless one quarter matches, or the one the date index starts at
            # (the newest, or the oldest for an ascending sort): then it finds the
            # page at once.
            end = (2003, 1) if descending else (2001, 1)
            return len(chosen) > 1 and end not in chosen

        for order, descending in (("", True), (f"&sort={date_sort}", False)):
            expected = sorted(
                (r for r in rows if matches(r)),
                key=lambda r: (r.updated_at, r.id),
                reverse=descending,
            )
            for page in range(3):
                with statements(app) as sent:
                    html = as_district.get(
                        f"/monitoring_entry/?{query}{order}&page={page}"
                    ).get_data(as_text=True)
                shown = re.findall(r"Kommentar \d+", html)
                wanted = [r.comment for r in expected[page * 4 : page * 4 + 4]]
                assert shown == wanted, (query, order, page)
                if page == 0 and expected:
                    assert any("UNION ALL" in s for s in sent) == merged(descending), query


# --- deep pages sorted by Kommune, counted town by town ---------------------------------


def test_deep_pages_sorted_by_town_count_town_by_town(
    app, accounts, as_district, as_arnsberg, monkeypatch
):
    """Deep in the list sorted by Kommune, the towns before the page are counted (a
    recursive query over the towns in name order) instead of every row being sorted;
    every page shows exactly the rows and order of the plain query, in both
    directions, with filters, search and a municipal user's scope."""
    with app.app_context():
        towns = db.session.scalars(select(Municipality).order_by(Municipality.id)).all()
        groups = db.session.scalars(select(TargetGroup).order_by(TargetGroup.id)).all()
        neu = factories.indicator("CM_NEU")
        quarter = factories.period(2001, 1, is_open=False)
        n = 0
        # Towns with 0 to 6 figures (some none at all), ids not in name order.
        for t, town in enumerate(towns):
            for k in range((t * 5) % 7):
                n += 1
                factories.entry(
                    town, quarter, neu, n, groups[k], comment=f"Kommentar {n} {town.name}"
                )
        db.session.commit()
        rows = db.session.execute(
            select(MonitoringEntry.comment, MonitoringEntry.id, Municipality.name).join(
                Municipality, Municipality.id == MonitoringEntry.municipality_id
            )
        ).all()
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "monitoring_entry")
    monkeypatch.setattr(view, "page_size", 4)
    monkeypatch.setattr("views.reporting.TOWN_WALK_FROM", 8)  # from the third page on
    town_filter = next(
        f"flt0_{key}"
        for key, (_, flt) in view._filter_args.items()
        if str(flt.name) == "Kommune" and type(flt).__name__ == "FilterNotEqual"
    )
    cases = [
        (as_district, "", lambda r: True),
        (as_district, "&search=1", lambda r: "1" in r.comment),
        (as_district, f"&{town_filter}=Brilon", lambda r: r.name != "Brilon"),
        (as_arnsberg, "", lambda r: r.name == "Arnsberg"),
    ]
    for client, query, matches in cases:
        for descending in (False, True):
            expected = sorted(
                (r for r in rows if matches(r)), key=lambda r: (r.name, r.id), reverse=descending
            )
            pages = len(expected) // 4 + 2  # one past the end
            for page in range(pages):
                with statements(app) as sent:
                    html = client.get(
                        f"/monitoring_entry/?sort=0{'&desc=1' if descending else ''}"
                        f"{query}&page={page}"
                    ).get_data(as_text=True)
                shown = [s.strip() for s in re.findall(r"Kommentar \d+ [^<\n]+", html)]
                wanted = [r.comment for r in expected[page * 4 : page * 4 + 4]]
                assert shown == wanted, (query, descending, page)
                walked = any("town_walk" in s for s in sent)
                assert walked == (page >= 2), (query, descending, page)
