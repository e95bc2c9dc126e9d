"""The figures' integrity: one validated write path, bounds, breakdowns, locks.

Each numbered defect of the outside review has a test here that failed before
the reporting cycle became one package (kim_admin.monitoring):

1. an over-long number answered HTTP 500 and lost the input (form and import);
2. a number the database column cannot hold was accepted (500 on PostgreSQL);
3. the generic figure form ignored range, decimals and the target-group rule;
4. the generic edit form lost updates (no version);
5. figures made without a submission, so Meldestand said "fehlt".

The lock matrix drives every write path through every state of a report.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError, IntegrityError

from kim_admin import create_app
from kim_admin.extensions import db
from kim_admin.formatting import local_time
from kim_admin.monitoring import entry, periods, status, workflow
from kim_admin.monitoring.template import FIRST_ROW, KEY_COL, SHEET, VALUE_COL
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    ReportingPeriod,
    Submission,
    TargetGroup,
    User,
    ValidationRule,
)

from . import factories
from .support import Session

HUGE = "1000000000000000000000000000000"


@pytest.fixture
def world(app, accounts):
    """An open quarter with its predecessor, and the ids tests need."""
    with app.app_context():
        return factories.quarter_world()


def _url(world, town="arnsberg"):
    return f"/erfassung/?municipality={world[town]}&period={world['period']}"


def _form(app, world, town="arnsberg", value="1", **special):
    """Every cell of the entry page: ``value`` everywhere, ``special`` by indicator code."""
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        data = {}
        for cell in entry.cells(world[town], period):
            data[f"value-{cell.key}"] = special.get(cell.indicator.code, value)
            data[f"comment-{cell.key}"] = ""
            data[f"version-{cell.key}"] = str(cell.version)
        return data


def _values(app, world, code, town="arnsberg"):
    with app.app_context():
        return db.session.scalars(
            select(MonitoringEntry.value).where(
                MonitoringEntry.indicator_id == world["codes"][code],
                MonitoringEntry.municipality_id == world[town],
                MonitoringEntry.period_id == world["period"],
            )
        ).all()


def _count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(MonitoringEntry))


def _set_state(app, world, state, town="arnsberg", deadline=None, exception=None):
    """Give the town's report ``state`` (None: no submission) and the quarter a deadline."""
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        if deadline is not None:
            period.deadline = deadline
        sub = workflow.find_submission(world[town], period)
        if state is not None:
            if sub is None:
                sub = Submission(municipality_id=world[town], period=period)
                db.session.add(sub)
            sub.status = state
            sub.exception_until = exception
        db.session.commit()


# --- 1. over-long and non-finite numbers -------------------------------------------


@pytest.mark.parametrize("typed", [HUGE, "1e30", "9" * 400, "NaN", "Infinity", "1e999999999"])
def test_long_number_on_entry_page_is_a_german_message(app, world, as_arnsberg, typed):
    form = _form(app, world, value="3", BER_KONT=typed)
    form["comment-" + next(k[6:] for k in form if k.startswith("value-"))] = "bleibt stehen"
    response = as_arnsberg.post(_url(world), {**form, "action": "save"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "es wurde nichts gespeichert" in html
    assert "zu groß" in html or "zu lang" in html or "Bitte eine Zahl eingeben" in html
    assert "bleibt stehen" in html  # everything typed comes back
    assert 'value="3"' in html
    assert _count(app) == 0


def test_long_number_in_template_is_a_row_error(app, world, as_arnsberg):
    page = as_arnsberg.get("/erfassung/vorlage" + _url(world)[len("/erfassung/") :])
    book = load_workbook(io.BytesIO(page.data))
    rows = [r for r in book[SHEET].iter_rows(min_row=FIRST_ROW) if r[KEY_COL].value]
    rows[0][VALUE_COL].value = 1e30
    rows[1][VALUE_COL].value = "9" * 5000
    buffer = io.BytesIO()
    book.save(buffer)
    response = as_arnsberg.post(
        "/erfassung/import" + _url(world)[len("/erfassung/") :],
        {"file": (io.BytesIO(buffer.getvalue()), "meldung.xlsx")},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "zu groß" in html and "zu lang" in html
    assert "9" * 100 not in html  # the hostile text is not echoed
    assert "Import bestätigen" not in html
    assert _count(app) == 0


# --- 2. the column's bounds, on SQLite as on PostgreSQL ----------------------------


def test_value_beyond_column_is_refused_in_german(app, world, as_district):
    response = as_district.post(
        _url(world), {**_form(app, world, value="1", BER_KONT="10000000000"), "action": "save"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Der Wert ist zu groß (höchstens 9.999.999.999)." in html
    assert _count(app) == 0
    ok = as_district.post(
        _url(world), {**_form(app, world, value="1", BER_KONT="9999999999"), "action": "save"}
    )
    assert ok.status_code == 302
    assert _values(app, world, "BER_KONT") == [Decimal("9999999999")]


def test_database_refuses_values_beyond_the_column(app, world):
    # SQLite's check constraint or PostgreSQL's numeric overflow: refused either way.
    with app.app_context():
        with pytest.raises((IntegrityError, DataError)):
            db.session.execute(
                text(
                    "INSERT INTO monitoring_entry (municipality_id, period_id, indicator_id, "
                    "by_target_group, value, created_at, updated_at, version) "
                    "VALUES (:m, :p, :i, false, 10000000000, :t, :t, 1)"
                ),
                {
                    "m": world["arnsberg"],
                    "p": world["period"],
                    "i": world["codes"]["BER_KONT"],
                    "t": "2026-01-01 00:00:00",
                },
            )
            db.session.flush()
        db.session.rollback()


# --- 3. one write path: range, decimals, target groups -----------------------------


@pytest.mark.parametrize("role", ["district", "arnsberg", "steering"])
def test_generic_figure_forms_are_gone(app, world, accounts, role, request):
    """One obvious way to enter figures: the generic list only reads and exports."""
    session = request.getfixturevalue(
        {"district": "as_district", "arnsberg": "as_arnsberg", "steering": "as_steering"}[role]
    )
    form = {
        "municipality": world["arnsberg"],
        "period": world["period"],
        "indicator": world["codes"]["VZAE_BES"],
        "value": "200",
    }
    assert session.post("/monitoring_entry/new/", form).status_code == 403
    assert session.get("/monitoring_entry/new/").status_code == 403
    assert _count(app) == 0
    as_district = request.getfixturevalue("as_district")
    as_district.post(_url(world), {**_form(app, world, value="1"), "action": "save"})
    with app.app_context():
        entry_id = db.session.scalar(select(MonitoringEntry.id))
    for path in (f"/monitoring_entry/edit/?id={entry_id}", "/monitoring_entry/delete/"):
        assert session.post(path, {**form, "id": entry_id}).status_code == 403
    assert session.post(
        "/monitoring_entry/action/", {"action": "delete", "rowid": entry_id}
    ).status_code in (403, 400)
    assert _count(app) > 0 and _values(app, world, "VZAE_BES") == [Decimal(1)]


@pytest.mark.parametrize(
    ("code", "typed", "message"),
    [
        ("VZAE_BES", "200", "Erlaubt: 0,00 bis 100,00."),
        ("FALLKONF", "2,5", "Bitte eine ganze Zahl eingeben."),
        ("VZAE_BES", "1,234", "Höchstens 2 Nachkommastellen."),
        ("BER_KONT", "-1", "Der Wert darf nicht negativ sein."),
    ],
)
def test_write_path_applies_indicator_rules(app, world, code, typed, message):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        user = db.session.get(User, world["users"]["kreis"])
        cells = {c.indicator.code: c for c in entry.cells(world["arnsberg"], period)}
        cell = cells[code]
        result = entry.write_figures(
            world["arnsberg"], period, {cell.key: entry.Posted(typed, "", 0)}, user
        )
        assert result.errors == {cell.key: message}
        assert db.session.scalar(select(func.count()).select_from(MonitoringEntry)) == 0


def test_crafted_keys_cannot_make_a_total_of_a_broken_down_indicator(app, world, as_arnsberg):
    """``<indicator>-0`` for an indicator broken down by target group names no cell."""
    key = f"{world['codes']['CM_NEU']}-0"
    response = as_arnsberg.post(
        _url(world), {f"value-{key}": "5", f"version-{key}": "0", "action": "save"}
    )
    assert response.status_code == 302
    assert _values(app, world, "CM_NEU") == []


def test_database_ties_target_group_to_breakdown(app, world):
    with app.app_context():
        town = db.session.get(Municipality, world["arnsberg"])
        period = db.session.get(ReportingPeriod, world["period"])
        by_group = db.session.get(Indicator, world["codes"]["CM_NEU"])
        total = db.session.get(Indicator, world["codes"]["BER_KONT"])
        group = db.session.get(TargetGroup, world["groups"][0])
        for bad in (
            MonitoringEntry(municipality=town, period=period, indicator=by_group, value=1),
            MonitoringEntry(
                municipality=town, period=period, indicator=total, target_group=group, value=1
            ),
        ):
            db.session.add(bad)
            with pytest.raises(IntegrityError):
                db.session.flush()
            db.session.rollback()
        # Nor can a total be disguised by setting the flag against the indicator's.
        with pytest.raises(IntegrityError):
            db.session.execute(
                text(
                    "INSERT INTO monitoring_entry (municipality_id, period_id, indicator_id, "
                    "target_group_id, by_target_group, value, created_at, updated_at, version) "
                    "VALUES (:m, :p, :i, :g, true, 1, :t, :t, 1)"
                ),
                {
                    "m": town.id,
                    "p": period.id,
                    "i": total.id,
                    "g": group.id,
                    "t": "2026-01-01 00:00:00",
                },
            )
            db.session.flush()
        db.session.rollback()


def test_report_totals_agree_with_target_groups(app, world, as_arnsberg):
    """With the breakdown enforced, Kennzahlen total = sum over the Zielgruppen."""
    as_arnsberg.post(_url(world), {**_form(app, world, value="2"), "action": "save"})
    with app.app_context():
        total = db.session.scalar(
            select(func.sum(MonitoringEntry.value)).where(
                MonitoringEntry.indicator_id == world["codes"]["CM_NEU"]
            )
        )
        per_group = db.session.scalar(
            select(func.sum(MonitoringEntry.value)).where(
                MonitoringEntry.indicator_id == world["codes"]["CM_NEU"],
                MonitoringEntry.target_group_id.is_not(None),
            )
        )
        assert total == per_group == 2 * len(world["groups"])


# --- 4. lost updates ------------------------------------------------------------------


def test_second_writer_with_old_version_is_refused(app, world, as_district, as_arnsberg):
    stale = _form(app, world, value="1")
    assert as_arnsberg.post(_url(world), {**stale, "action": "save"}).status_code == 302
    fresh = _form(app, world, value="1", BER_KONT="7")
    assert as_arnsberg.post(_url(world), {**fresh, "action": "save"}).status_code == 302
    # The district still has the page it loaded before the two saves.
    response = as_district.post(_url(world), {**stale, "BER_KONT": "9", "action": "save"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Inzwischen von Arnsberg geändert: gespeichert ist 7, Ihre Eingabe ist" in html
    assert _values(app, world, "BER_KONT") == [Decimal(7)]


# --- 5. a submission with the first figure ---------------------------------------


def test_every_quarter_with_figures_has_a_submission(app, world, as_arnsberg, as_district):
    as_district.post(
        "/monitoring_entry/new/",
        {
            "municipality": world["meschede"],
            "period": world["period"],
            "indicator": world["codes"]["BER_KONT"],
            "value": "3",
        },
    )
    as_arnsberg.post(_url(world), {**_form(app, world, value="1"), "action": "save"})
    with app.app_context():
        with_figures = set(
            db.session.execute(
                select(MonitoringEntry.municipality_id, MonitoringEntry.period_id).distinct()
            ).all()
        )
        with_submission = set(
            db.session.execute(select(Submission.municipality_id, Submission.period_id)).all()
        )
    assert with_figures and with_figures <= with_submission
    html = as_district.get("/meldestand/").get_data(as_text=True)
    row = html[html.index(">Arnsberg<") : html.index("</tr>", html.index(">Arnsberg<"))]
    assert "Entwurf" in row


# --- locks: every write path in every state ---------------------------------------

PAST = -40  # days from today: deadline plus the 14 grace days has passed
# state name -> (status, deadline offset in days, exception offset or None)
STATES = {
    "draft": ("draft", 30, None),
    "submitted": ("submitted", 30, None),
    "returned": ("returned", 30, None),
    "approved": ("approved", 30, None),
    "unapproved": ("submitted", 30, None),  # un-approval puts it back to review
    "unapproved_returned": ("returned", 30, None),
    "withdrawn": ("draft", 30, None),
    "past_deadline": ("draft", PAST, None),
    "exception": ("draft", PAST, 5),
}
# Whether each role may write in each state (DOMAIN.md §5).
MAY_WRITE = {
    "arnsberg": {"draft", "returned", "unapproved_returned", "withdrawn", "exception"},
    "district": set(STATES) - {"approved"},
}


def _reach_state(app, world, name, as_arnsberg, as_district):
    """Bring the report into state ``name`` through the workflow where one exists."""
    url = _url(world)
    if name in ("unapproved", "unapproved_returned", "withdrawn", "approved"):
        as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
        if name == "withdrawn":
            as_arnsberg.post(url, {"action": "withdraw"})
        else:
            as_district.post(url, {"action": "approve"})
            if name != "approved":
                action = "unapprove" if name == "unapproved" else "unapprove_return"
                as_district.post(url, {"action": action, "reason": "Korrektur nötig"})
        expected = STATES[name][0]
        with app.app_context():
            sub = workflow.find_submission(
                world["arnsberg"], db.session.get(ReportingPeriod, world["period"])
            )
            assert sub.status == expected
        return
    status_code, deadline, exception = STATES[name]
    _set_state(
        app,
        world,
        status_code,
        deadline=date.today() + timedelta(days=deadline),
        exception=date.today() + timedelta(days=exception) if exception else None,
    )


def _write(app, world, path, session):
    """Try to set BER_KONT to 42 through ``path``; return whether it was stored."""
    url = _url(world)
    if path == "form":
        session.post(url, {**_form(app, world, value="0", BER_KONT="42"), "action": "save"})
    elif path == "submit":
        session.post(url, {**_form(app, world, value="0", BER_KONT="42"), "action": "submit"})
    elif path == "import":
        query = url[len("/erfassung/") :]
        book = load_workbook(io.BytesIO(session.get("/erfassung/vorlage" + query).data))
        for row in book[SHEET].iter_rows(min_row=FIRST_ROW):
            if row[KEY_COL].value:
                row[VALUE_COL].value = 42 if row[0].value == "BER_KONT" else 0
        buffer = io.BytesIO()
        book.save(buffer)
        page = session.post(
            "/erfassung/import" + query,
            {"file": (io.BytesIO(buffer.getvalue()), "m.xlsx")},
            content_type="multipart/form-data",
        ).get_data(as_text=True)
        marker = 'name="token" value="'
        if marker in page:
            token = page.split(marker, 1)[1].split('"', 1)[0]
            session.post("/erfassung/import/bestaetigen", {"token": token})
    elif path == "generic":
        with app.app_context():
            entry_id = db.session.scalar(
                select(MonitoringEntry.id).where(
                    MonitoringEntry.indicator_id == world["codes"]["BER_KONT"]
                )
            )
        session.post(f"/monitoring_entry/edit/?id={entry_id}", {"value": "42"})
        session.post("/monitoring_entry/ajax/update/", {"list_form_pk": entry_id, "value": "42"})
    return _values(app, world, "BER_KONT") == [Decimal(42)]


@pytest.mark.parametrize("path", ["form", "submit", "import", "generic"])
@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("role", ["arnsberg", "district"])
def test_lock_matrix(app, world, as_arnsberg, as_district, role, state, path):
    # Every state starts from a complete set of figures entered while it was open.
    as_district.post(_url(world), {**_form(app, world, value="0"), "action": "save"})
    _reach_state(app, world, state, as_arnsberg, as_district)
    session = as_arnsberg if role == "arnsberg" else as_district
    if path == "submit" and role == "district" and state in ("submitted", "unapproved"):
        allowed = True  # the district may correct the figures of a submitted report
    else:
        allowed = state in MAY_WRITE[role]
    stored = _write(app, world, path, session)
    assert stored == (allowed and path != "generic")


# --- approval, withdrawal, returns, exceptions -----------------------------------


def test_unapprove_needs_reason_and_is_audited(app, world, as_arnsberg, as_district):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    as_district.post(url, {"action": "approve"})
    refused = as_district.post(url, {"action": "unapprove", "reason": " "}, follow_redirects=True)
    assert "Bitte einen Grund angeben." in refused.get_data(as_text=True)
    as_district.post(url, {"action": "unapprove_return", "reason": "VZÄ falsch"})
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "submission_unapprove_return")
        )
        assert event.old_values["status"] == status.APPROVED
        assert event.new_values == {"status": status.RETURNED, "reason": "VZÄ falsch"}
    page = as_arnsberg.get(url).get_data(as_text=True)
    assert "Zurückgegeben: VZÄ falsch" in page


def test_municipality_withdraws_only_its_own_unapproved_submission(
    app, world, as_arnsberg, as_district, accounts
):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    meschede = Session(app.test_client())
    meschede.login(accounts.meschede)
    assert meschede.post(url, {"action": "withdraw"}).status_code == 404
    as_arnsberg.post(url, {"action": "withdraw"})
    with app.app_context():
        sub = workflow.find_submission(
            world["arnsberg"], db.session.get(ReportingPeriod, world["period"])
        )
        assert sub.status == status.DRAFT and sub.first_submitted_at is not None
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    as_district.post(url, {"action": "approve"})
    refused = as_arnsberg.post(url, {"action": "withdraw"}, follow_redirects=True)
    assert "kann nicht zurückgezogen werden" in refused.get_data(as_text=True)


def test_late_return_reopens_until_new_due_date(app, world, as_arnsberg, as_district):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    _set_state(app, world, None, deadline=date.today() - timedelta(days=40))
    no_date = as_district.post(
        url, {"action": "return", "reason": "fehlt"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "neue Frist" in no_date
    past = (date.today() - timedelta(days=1)).isoformat()
    html = as_district.post(
        url, {"action": "return", "reason": "fehlt", "due": past}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Das Datum liegt in der Vergangenheit." in html
    due = date.today() + timedelta(days=10)
    as_district.post(url, {"action": "return", "reason": "fehlt", "due": due.isoformat()})
    saved = as_arnsberg.post(url, {**_form(app, world, value="0", VERM="5"), "action": "save"})
    assert saved.status_code == 302 and _values(app, world, "VERM") == [Decimal(5)]
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        user = db.session.get(User, world["users"]["arnsberg"])
        later = due + timedelta(days=1)
        assert "Meldefrist" in workflow.lock_reason(user, world["arnsberg"], period, today=later)


def test_due_date_before_quarter_end_is_refused(app, world):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        with pytest.raises(workflow.TransitionError, match="vor dem Ende des Quartals"):
            workflow.check_due_date(period.ends_on - timedelta(days=1), period, period.starts_on)


def test_first_submission_decides_on_time(app, world, as_arnsberg, as_district):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    # The deadline passes; the district returns the report with a new due date.
    _set_state(app, world, None, deadline=date.today() - timedelta(days=1))
    due = (date.today() + timedelta(days=5)).isoformat()
    as_district.post(url, {"action": "return", "reason": "bitte ergänzen", "due": due})
    with app.app_context():
        sub = workflow.find_submission(
            world["arnsberg"], db.session.get(ReportingPeriod, world["period"])
        )
        # Pretend the first submission came exactly on the old deadline.
        first = sub.first_submitted_at
    as_arnsberg.post(url, {**_form(app, world, value="0", VERM="1"), "action": "submit"})
    with app.app_context():
        sub = workflow.find_submission(
            world["arnsberg"], db.session.get(ReportingPeriod, world["period"])
        )
        # The deadline is the Kreis' calendar day of the first submission (in Berlin;
        # around midnight that is not the server's UTC date).
        sub.period.deadline = local_time(first).date()
        sub.submitted_at = sub.submitted_at + timedelta(days=3)  # resubmitted later
        db.session.commit()
        assert sub.first_submitted_at == first
        assert workflow.on_time(sub) is True
    html = as_district.get("/meldestand/").get_data(as_text=True)
    assert "erstmals" in html and "zuletzt" in html


def test_exception_can_be_revoked(app, world, as_arnsberg, as_district):
    url = _url(world)
    _set_state(app, world, "draft", deadline=date.today() - timedelta(days=40))
    until = (date.today() + timedelta(days=7)).isoformat()
    as_district.post(url, {"action": "exception", "until": until})
    assert as_arnsberg.post(url, {**_form(app, world), "action": "save"}).status_code == 302
    as_district.post(url, {"action": "revoke_exception"})
    html = as_arnsberg.get(url).get_data(as_text=True)
    assert "Die Meldefrist ist abgelaufen" in html
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"submission_exception", "submission_exception_revoked"} <= actions
    past = as_district.post(
        url, {"action": "exception", "until": "2020-01-01"}, follow_redirects=True
    )
    assert "Das Datum liegt in der Vergangenheit." in past.get_data(as_text=True)


def test_exception_on_approved_report_needs_unapproval(app, world, as_arnsberg, as_district):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="0"), "action": "submit"})
    as_district.post(url, {"action": "approve"})
    until = (date.today() + timedelta(days=7)).isoformat()
    html = as_district.post(
        url, {"action": "exception", "until": until}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Bitte zuerst die Freigabe" in html


def test_grace_days_from_environment(monkeypatch, db_url):
    monkeypatch.setenv("KIM_GRACE_DAYS", "3")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": db_url, "SECRET_KEY": "x"})
    assert app.config["KIM_GRACE_DAYS"] == 3


# --- Meldestand and history -------------------------------------------------------


def test_meldestand_range_and_open_quarter(app, world, as_district, as_steering):
    with app.app_context():
        year, quarter = periods.quarter_of(date.today())
        running = ReportingPeriod(year=year, quarter=quarter, is_open=True)
        db.session.add(running)
        db.session.commit()
        running_id = running.id
    html = as_steering.get("/meldestand/").get_data(as_text=True)
    assert "noch offen" in html
    only_prev = as_district.get(f"/meldestand/?von={world['prev']}&bis={world['prev']}").get_data(
        as_text=True
    )
    assert "Q1/2026</th>" in only_prev and "Q2/2026</th>" not in only_prev
    assert f"Q{quarter}/{year}</th>" not in only_prev
    assert running_id


def test_value_history_on_demand(app, world, as_arnsberg, as_district, accounts):
    url = _url(world)
    as_arnsberg.post(url, {**_form(app, world, value="1", BER_KONT="4"), "action": "save"})
    as_district.post(url, {**_form(app, world, value="1", BER_KONT="6"), "action": "save"})
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        key = next(
            c.key for c in entry.cells(world["arnsberg"], period) if c.label == "BER_KONT – gesamt"
        )
    page = as_arnsberg.get(url).get_data(as_text=True)
    assert f"cell={key}" in page
    html = as_arnsberg.get(
        f"/erfassung/verlauf?municipality={world['arnsberg']}&period={world['period']}&cell={key}"
    ).get_data(as_text=True)
    assert accounts.arnsberg in html and accounts.district in html
    assert "geändert" in html and "erfasst" in html
    meschede = Session(app.test_client())
    meschede.login(accounts.meschede)
    foreign = (
        f"/erfassung/verlauf?municipality={world['arnsberg']}&period={world['period']}&cell={key}"
    )
    assert meschede.get(foreign).status_code == 404


# --- the class behind defect 2: every numeric form field has its column's bounds ----


@pytest.mark.parametrize(
    ("endpoint", "form", "field", "message"),
    [
        (
            "indicator",
            {
                "code": "TEST_X",
                "name": "Test",
                "unit": "Anzahl",
                "field_of_action": "3",
                "kind": "flow",
                "decimal_places": "0",
                "max_value": "10000000000",
                "sort_order": "1",
            },
            "max_value",
            "Erlaubt sind Werte von 0 bis 9.999.999.999.",
        ),
        (
            "municipality",
            {"name": "Neustadt", "ags": "05958099", "population": "99999999999"},
            "population",
            "2.147.483.647",
        ),
    ],
)
def test_numeric_fields_keep_to_their_column(app, as_district, endpoint, form, field, message):
    response = as_district.post(f"/{endpoint}/new/", form)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html
    assert f'value="{form[field]}"' in html  # the input comes back


# --- rules that cannot be evaluated -------------------------------------------------


@pytest.mark.parametrize(
    "expression", ["1e999", "CM_NEU * 1e300", "1" + "0" * 5000, "(" * 1000 + "1" + ")" * 1000]
)
def test_rule_with_absurd_numbers_is_refused_in_german(as_district, expression):
    response = as_district.post(
        "/validation_rule/new/",
        {
            "name": "Unsinn",
            "left_side": "CM_NEU",
            "operator": "<=",
            "right_side": expression,
            "severity": "blocking",
            "message": "x",
            "active": "y",
        },
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "höchstens" in html or "nicht lesbar" in html


def test_unusable_stored_rule_is_a_finding_not_a_crash(app, world, as_arnsberg):
    with app.app_context():
        db.session.add(
            ValidationRule(
                name="Kaputt",
                left_side="CM_NEU",
                operator="<=",
                right_side="1e999",
                severity="blocking",
                message="x",
                active=True,
            )
        )
        db.session.commit()
    as_arnsberg.post(_url(world), {**_form(app, world, value="1"), "action": "save"})
    page = as_arnsberg.get(_url(world))
    assert page.status_code == 200
    assert "Die Prüfregel „Kaputt“ kann nicht ausgewertet werden" in page.get_data(as_text=True)


def test_import_confirmation_expires(app, world, as_arnsberg, monkeypatch):
    query = _url(world)[len("/erfassung/") :]
    book = load_workbook(io.BytesIO(as_arnsberg.get("/erfassung/vorlage" + query).data))
    for row in book[SHEET].iter_rows(min_row=FIRST_ROW):
        if row[KEY_COL].value:
            row[VALUE_COL].value = 1
    buffer = io.BytesIO()
    book.save(buffer)
    page = as_arnsberg.post(
        "/erfassung/import" + query,
        {"file": (io.BytesIO(buffer.getvalue()), "m.xlsx")},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    monkeypatch.setattr("views.entry.IMPORT_MAX_AGE", -1)
    html = as_arnsberg.post(
        "/erfassung/import/bestaetigen", {"token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "älter als 30 Minuten" in html
    assert _count(app) == 0
