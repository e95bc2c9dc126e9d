"""The reporting cycle: state machine, locking, the data-entry form, rules, Meldestand."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from kim_admin.extensions import db
from kim_admin.monitoring import entry as monitoring
from kim_admin.monitoring import rules
from kim_admin.monitoring import workflow as reporting
from models import (
    AuditEvent,
    Indicator,
    MonitoringEntry,
    Municipality,
    ReportingPeriod,
    Submission,
    TargetGroup,
    User,
)

from . import factories
from .support import Session

# Written from DOMAIN.md §5, not read from the workflow module.
STATUSES = ["draft", "submitted", "approved", "returned"]
STEPS = ["submit", "withdraw", "approve", "return", "unapprove", "unapprove_return"]
ALLOWED = {
    ("draft", "submit"): "submitted",
    ("returned", "submit"): "submitted",
    ("submitted", "withdraw"): "draft",
    ("submitted", "approve"): "approved",
    ("submitted", "return"): "returned",
    ("approved", "unapprove"): "submitted",
    ("approved", "unapprove_return"): "returned",
}
WHO = {
    "submit": {"district", "arnsberg"},
    "withdraw": {"arnsberg"},
    "approve": {"district"},
    "return": {"district"},
    "unapprove": {"district"},
    "unapprove_return": {"district"},
}


@pytest.fixture
def world(app, accounts):
    """An open quarter with its predecessor, and the ids tests need."""
    with app.app_context():
        return factories.quarter_world()


def _user(name, world):
    return db.session.get(
        User, world["users"][{"district": "kreis", "steering": "steuerung"}.get(name, name)]
    )


@pytest.mark.parametrize(
    ("status", "step", "who"),
    list(
        itertools.product(
            STATUSES,
            STEPS,
            ["district", "arnsberg", "meschede", "steering"],
        )
    ),
)
def test_state_machine(app, world, status, step, who):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        sub = Submission(municipality_id=world["arnsberg"], period=period, status=status)
        db.session.add(sub)
        db.session.commit()
        user = _user(who, world)
        allowed = (status, step) in ALLOWED and who in WHO[step]
        if allowed:
            reporting.transition(sub, step, user, reason="Bitte prüfen")
            db.session.commit()
            assert sub.status == ALLOWED[(status, step)]
            event = db.session.scalar(
                select(AuditEvent).where(AuditEvent.action == f"submission_{step}")
            )
            assert event.old_values == {"status": status}
        else:
            with pytest.raises(reporting.TransitionError):
                reporting.transition(sub, step, user, reason="Bitte prüfen")
            db.session.rollback()
            assert db.session.get(Submission, sub.id).status == status


def test_return_needs_reason(app, world):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        sub = Submission(municipality_id=world["arnsberg"], period=period, status="submitted")
        db.session.add(sub)
        with pytest.raises(reporting.TransitionError, match="Grund"):
            reporting.transition(sub, "return", _user("district", world), reason="  ")


def test_lock_reasons(app, world):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        user = _user("arnsberg", world)
        town = world["arnsberg"]
        assert reporting.lock_reason(user, town, period) is None
        assert reporting.lock_reason(user, world["meschede"], period) is not None
        late = period.deadline + timedelta(days=app.config["KIM_GRACE_DAYS"] + 1)
        assert "Meldefrist" in reporting.lock_reason(user, town, period, today=late)
        assert reporting.lock_reason(user, town, period, today=late - timedelta(days=1)) is None
        sub = reporting.submission_for(town, period)
        reporting.grant_exception(sub, late + timedelta(days=5), _user("district", world))
        assert reporting.lock_reason(user, town, period, today=late) is None
        period.is_open = False
        assert reporting.lock_reason(user, town, period, today=late) is None  # exception
        sub.exception_until = None
        assert "geschlossen" in reporting.lock_reason(user, town, period)
        period.is_open = True
        sub.status = "submitted"
        assert reporting.lock_reason(user, town, period) is not None
        assert reporting.lock_reason(_user("district", world), town, period) is None
        sub.status = "approved"  # locked for everyone, the district included
        assert reporting.lock_reason(user, town, period) is not None
        assert reporting.lock_reason(_user("district", world), town, period) is not None
        sub.status = "returned"
        assert reporting.lock_reason(user, town, period) is None


def test_exception_only_by_district(app, world):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        sub = reporting.submission_for(world["arnsberg"], period)
        with pytest.raises(reporting.TransitionError):
            reporting.grant_exception(sub, date.today(), _user("arnsberg", world))


# --- rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "__import__('os')",
        "CM_NEU.real",
        "open(CM_NEU)",
        "CM_NEU if 1 else 2",
        "'text'",
        "CM_NEU ** 2",
        "prev(1)",
        "lambda: 1",
        "[CM_NEU]",
    ],
)
def test_rule_parser_refuses_everything_else(bad):
    with pytest.raises(rules.RuleSyntaxError):
        rules.parse(bad)


def test_rule_evaluation():
    tree = rules.parse("prev(CM_AKT) + CM_NEU - 2 * CM_ABG / 2")
    value = rules.evaluate(
        tree, {"CM_NEU": Decimal(3), "CM_ABG": Decimal(4)}, {"CM_AKT": Decimal(10)}
    )
    assert value == Decimal(9)
    with pytest.raises(rules.Missing):
        rules.evaluate(tree, {"CM_NEU": Decimal(3)}, {"CM_AKT": Decimal(10)})


# --- the data-entry page -------------------------------------------------------------


def _fill(app, world, town="arnsberg", period_key="period", value="1", **special):
    """Form data for every cell of the page: ``value`` everywhere, ``special`` overrides
    by indicator code (and target group id) as CODE or CODE-gid."""
    with app.app_context():
        period = db.session.get(ReportingPeriod, world[period_key])
        data = {}
        for cell in monitoring.cells(world[town], period):
            code = cell.indicator.code
            gid = cell.target_group.id if cell.target_group else 0
            data[f"value-{cell.key}"] = special.get(f"{code}-{gid}", special.get(code, value))
            data[f"comment-{cell.key}"] = ""
            data[f"version-{cell.key}"] = str(cell.version)
        return data


def _url(world, town="arnsberg", period_key="period"):
    return f"/erfassung/?municipality={world[town]}&period={world[period_key]}"


def _entries(app, world, code, town="arnsberg"):
    with app.app_context():
        return db.session.scalars(
            select(MonitoringEntry.value)
            .join(Indicator)
            .where(
                Indicator.code == code,
                MonitoringEntry.municipality_id == world[town],
                MonitoringEntry.period_id == world["period"],
            )
        ).all()


def test_entry_page_shows_every_indicator_and_previous_value(app, world, as_arnsberg):
    with app.app_context():
        ind = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        db.session.add(
            MonitoringEntry(
                municipality_id=world["arnsberg"], period_id=world["prev"], indicator=ind, value=42
            )
        )
        db.session.commit()
        groups = db.session.query(TargetGroup).count()
    html = as_arnsberg.get(_url(world)).get_data(as_text=True)
    for code in ("CM_NEU", "CM_ABG", "CM_AKT", "BER_KONT", "VERM", "FALLKONF", "VZAE_BES"):
        assert code in html
    assert html.count('name="value-') == 3 * groups + 4
    assert "Vorquartal: 42<" in html
    assert "0 bis 100" in html  # allowed range of VZAE_BES


def test_save_draft_with_decimal_comma(app, world, as_arnsberg):
    data = _fill(app, world, VZAE_BES="1,5", BER_KONT="1.234")
    response = as_arnsberg.post(_url(world), {**data, "action": "save"})
    assert response.status_code == 302
    assert _entries(app, world, "VZAE_BES") == [Decimal("1.5")]
    assert _entries(app, world, "BER_KONT") == [Decimal("1234")]


def test_errors_keep_everything_and_save_nothing(app, world, as_arnsberg):
    data = _fill(app, world, BER_KONT="-1", VERM="zwei", FALLKONF="2,5", VZAE_BES="7")
    response = as_arnsberg.post(_url(world), {**data, "action": "save"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Der Wert darf nicht negativ sein." in html
    assert "Bitte eine Zahl eingeben." in html
    assert "Bitte eine ganze Zahl eingeben." in html
    assert 'value="zwei"' in html and 'value="-1"' in html and 'value="2,5"' in html
    assert _entries(app, world, "CM_NEU") == []  # valid cells were not written either


def test_range_from_indicator(app, world, as_arnsberg):
    data = _fill(app, world, VZAE_BES="101")
    html = as_arnsberg.post(_url(world), {**data, "action": "save"}).get_data(as_text=True)
    assert "Erlaubt: 0,00 bis 100,00." in html


def test_concurrent_edit_refused_with_both_values(app, world, accounts):
    first, second = Session(app.test_client()), Session(app.test_client())
    first.login(accounts.arnsberg)
    second.login(accounts.district)
    loaded = _fill(app, world, value="")  # both load the empty form
    ber = next(k for k in loaded if k.startswith("value-") and _is(app, k, "BER_KONT"))
    assert first.post(_url(world), {**loaded, ber: "5", "action": "save"}).status_code == 302
    mine = {**loaded, ber: "7", "action": "save"}
    response = second.post(_url(world), mine)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Inzwischen von" in html and "gespeichert ist 5" in html and "Ihre Eingabe ist 7" in html
    assert _entries(app, world, "BER_KONT") == [Decimal(5)]


def _is(app, key, code):
    indicator_id = int(key.split("-")[1])
    with app.app_context():
        return db.session.get(Indicator, indicator_id).code == code


def test_submit_checks_completeness(app, world, as_arnsberg):
    data = _fill(app, world, value="", BER_KONT="3")
    response = as_arnsberg.post(_url(world), {**data, "action": "submit"})
    html = response.get_data(as_text=True)
    assert "Wert oder Kommentar fehlt." in html
    assert _status(app, world) == "draft"
    assert _entries(app, world, "BER_KONT") == [Decimal(3)]  # the draft was kept


def test_gap_explained_by_comment_counts(app, world, as_arnsberg):
    data = _fill(app, world, value="0")
    key = next(k[len("value-") :] for k in data if k.startswith("value-") and _is(app, k, "VERM"))
    data[f"value-{key}"] = ""
    data[f"comment-{key}"] = "Noch keine Auswertung aus dem Fachverfahren"
    assert as_arnsberg.post(_url(world), {**data, "action": "submit"}).status_code == 302
    assert _status(app, world) == "submitted"


def test_blocking_rule_refuses_submit(app, world, as_arnsberg):
    # Closed cases (5) exceed previous active (0) + new (0): blocking.
    _prev_active(app, world, 0)
    data = _fill(app, world, value="0", **{"CM_ABG": "5", "CM_AKT": "0"})
    html = as_arnsberg.post(_url(world), {**data, "action": "submit", "acknowledge": "1"}).get_data(
        as_text=True
    )
    assert "Es können nicht mehr Fälle abgeschlossen werden" in html
    assert _status(app, world) == "draft"


def test_warning_needs_acknowledgement(app, world, as_arnsberg):
    _prev_active(app, world, 10)
    # 10 + 2 - 1 = 11, but 12 reported: only a warning.
    data = _fill(app, world, value="0", CM_NEU="2", CM_ABG="1", CM_AKT="12")
    html = as_arnsberg.post(_url(world), {**data, "action": "submit"}).get_data(as_text=True)
    assert "Warnungen der Plausibilitätsprüfung" in html and _status(app, world) == "draft"
    response = as_arnsberg.post(
        _url(world),
        {
            **_fill(app, world, value="0", CM_NEU="2", CM_ABG="1", CM_AKT="12"),
            "action": "submit",
            "acknowledge": "1",
        },
    )
    assert response.status_code == 302 and _status(app, world) == "submitted"
    with app.app_context():
        assert (
            db.session.scalar(
                select(AuditEvent).where(AuditEvent.action == "warnings_acknowledged")
            )
            is not None
        )


def _prev_active(app, world, value):
    with app.app_context():
        ind = db.session.scalar(select(Indicator).where(Indicator.code == "CM_AKT"))
        for group in db.session.scalars(select(TargetGroup)):
            db.session.add(
                MonitoringEntry(
                    municipality_id=world["arnsberg"],
                    period_id=world["prev"],
                    indicator=ind,
                    target_group=group,
                    value=value,
                )
            )
        db.session.commit()


def _status(app, world, town="arnsberg"):
    with app.app_context():
        return db.session.scalar(
            select(Submission.status).where(
                Submission.municipality_id == world[town], Submission.period_id == world["period"]
            )
        )


def test_whole_cycle_and_locking(app, world, as_arnsberg, as_district):
    url = _url(world)
    assert (
        as_arnsberg.post(url, {**_fill(app, world, value="0"), "action": "submit"}).status_code
        == 302
    )
    # Submitted: the municipality can change nothing, by the form ...
    html = as_arnsberg.post(
        url, {**_fill(app, world, value="9"), "action": "save"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Die Meldung ist eingereicht" in html
    assert _entries(app, world, "BER_KONT") == [Decimal(0)]
    # ... and the generic list has no edit form at all (one way to enter figures).
    with app.app_context():
        entry_id = db.session.scalar(
            select(MonitoringEntry.id).join(Indicator).where(Indicator.code == "BER_KONT")
        )
        ind, per = (db.session.get(MonitoringEntry, entry_id).indicator_id, world["period"])
    edit = as_arnsberg.post(
        f"/monitoring_entry/edit/?id={entry_id}",
        {"municipality": world["arnsberg"], "period": per, "indicator": ind, "value": "9"},
    )
    assert edit.status_code == 403
    assert _entries(app, world, "BER_KONT") == [Decimal(0)]
    # The district returns it with a reason; the municipality corrects and resubmits.
    as_district.post(url, {"action": "return", "reason": "Kontakte fehlen"})
    assert _status(app, world) == "returned"
    page = as_arnsberg.get(url).get_data(as_text=True)
    assert "Kontakte fehlen" in page
    assert (
        as_arnsberg.post(
            url, {**_fill(app, world, value="0", BER_KONT="17"), "action": "submit"}
        ).status_code
        == 302
    )
    as_district.post(url, {"action": "approve"})
    assert _status(app, world) == "approved"
    locked = as_arnsberg.post(url, {**_fill(app, world, value="1"), "action": "save"})
    assert "freigegeben und für alle gesperrt" in locked.get_data(as_text=True)
    assert _entries(app, world, "BER_KONT") == [Decimal(17)]
    # Approved figures are locked for the district too ...
    refused = as_district.post(
        url, {**_fill(app, world, value="0", BER_KONT="18"), "action": "save"}
    )
    assert "freigegeben und für alle gesperrt" in refused.get_data(as_text=True)
    assert _entries(app, world, "BER_KONT") == [Decimal(17)]
    # ... until it un-approves them with a reason; then its correction is logged.
    as_district.post(url, {"action": "unapprove", "reason": "Tippfehler bei BER_KONT"})
    assert _status(app, world) == "submitted"
    assert (
        as_district.post(
            url, {**_fill(app, world, value="0", BER_KONT="18"), "action": "save"}
        ).status_code
        == 302
    )
    assert _entries(app, world, "BER_KONT") == [Decimal(18)]
    with app.app_context():
        change = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.object_type == "monitoring_entry", AuditEvent.action == "update"
            )
        ).all()
        assert any(
            e.old_values.get("value") == "17" and e.new_values.get("value") == "18" for e in change
        )


def test_municipal_user_cannot_open_foreign_form(world, as_arnsberg):
    assert as_arnsberg.get(_url(world, town="meschede")).status_code == 404
    assert as_arnsberg.post(_url(world, town="meschede"), {"action": "save"}).status_code == 404


def test_municipal_user_cannot_approve(app, world, as_arnsberg):
    as_arnsberg.post(_url(world), {**_fill(app, world, value="0"), "action": "submit"})
    as_arnsberg.post(_url(world), {"action": "approve"})
    assert _status(app, world) == "submitted"


def test_steering_group_reads_but_cannot_post(app, world, as_steering):
    page = as_steering.get(_url(world))
    assert page.status_code == 200 and "Entwurf speichern" not in page.get_data(as_text=True)
    assert as_steering.post(_url(world), {"action": "save"}).status_code == 403


def test_meldestand(app, world, as_district, as_steering, as_arnsberg):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        db.session.add(
            Submission(
                municipality_id=world["arnsberg"],
                period=period,
                status="approved",
                submitted_at=period.deadline,
            )
        )
        db.session.add(
            Submission(
                municipality_id=world["meschede"],
                period=period,
                status="submitted",
                submitted_at=period.deadline + timedelta(days=3),
            )
        )
        db.session.commit()
        participants = db.session.query(Municipality).filter_by(kim_participant=True).count()
    html = as_district.get("/meldestand/").get_data(as_text=True)
    assert "freigegeben" in html and "eingereicht" in html and "fehlt" in html
    assert "⚠" in html and "✓" in html
    received = round(200 / participants)
    on_time = round(100 / participants)
    assert f"{received} % ({on_time} %)" in html
    assert as_steering.get("/meldestand/").status_code == 200
    # A municipal user sees their own history and rate, no other town.
    own = as_arnsberg.get("/meldestand/").get_data(as_text=True)
    assert "Arnsberg" in own and "Meschede" not in own
    assert "100 % (100 %)" in own


@pytest.mark.parametrize(
    ("left", "message"),
    [
        ("__import__('os')", "Erlaubt"),
        ("GIBTS_NICHT", "Unbekannte Kennzahl: GIBTS_NICHT"),
        ("CM_NEU +", "nicht lesbar"),
    ],
)
def test_rule_form_checks_expressions(app, as_district, left, message):
    form = {
        "name": "R",
        "left_side": left,
        "operator": "<=",
        "right_side": "CM_AKT",
        "severity": "warning",
        "message": "m",
        "active": "y",
    }
    response = as_district.post("/validation_rule/new/", form)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    ok = as_district.post("/validation_rule/new/", {**form, "left_side": "CM_NEU * 2"})
    assert ok.status_code == 302


def test_district_cannot_submit_twice(app, world, as_district):
    url = _url(world)
    assert (
        as_district.post(url, {**_fill(app, world, value="0"), "action": "submit"}).status_code
        == 302
    )
    page = as_district.get(url).get_data(as_text=True)
    assert 'value="submit"' not in page  # no second submit button
    again = as_district.post(
        url, {**_fill(app, world, value="0"), "action": "submit"}, follow_redirects=True
    )
    assert again.status_code == 200
    assert "kann nicht eingereicht werden" in again.get_data(as_text=True)
