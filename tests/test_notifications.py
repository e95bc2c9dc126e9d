"""E-mail notifications against a real SMTP server (aiosmtpd in a subprocess).

Every event produces exactly one mail to exactly the right people, a repeated
``flask notify run`` sends nothing twice, an SMTP outage leaves the workflow
committed and the failure visible, and the mail arrives once the server is back.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from flask import Flask
from sqlalchemy import select

from kim_admin import create_app
from kim_admin.extensions import db
from kim_admin.monitoring import periods, workflow
from kim_admin.notifications import events, sender
from models import Notification, NotificationPreference, ReportingPeriod, User
from models._common import utcnow

from . import factories
from .support import TEST_CONFIG

SINK = Path(__file__).with_name("smtp_sink.py")
BASE_URL = "https://kim.hochsauerlandkreis.example"

# Users beyond the fixture's one per role (kreis@, steuerung@, arnsberg@, meschede@).
EXTRA = {
    "kreis2@test.example": ("district", None, True),
    "kreis-alt@test.example": ("district", None, False),
    "arnsberg2@test.example": ("town", "Arnsberg", True),
    "arnsberg-alt@test.example": ("town", "Arnsberg", False),
    "brilon@test.example": ("town", "Brilon", True),  # not a KIM participant
}
DISTRICT = ["kreis2@test.example", "kreis@test.example"]
ARNSBERG = ["arnsberg2@test.example", "arnsberg@test.example"]


class Sink:
    """The SMTP server process and the mails it has received."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.directory = directory
        self.options = options
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start listening (on the same port again after :meth:`stop`)."""
        self.process = subprocess.Popen(  # noqa: S603 (our own script)
            [
                sys.executable,
                str(SINK),
                str(self.directory),
                "--port",
                str(self.port),
                *self.options,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), "the SMTP sink did not start"
        self.port = int(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process = None

    def clear(self) -> None:
        for path in self.directory.glob("*.eml"):
            path.unlink()

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(self.directory.glob("*.eml"))
        ]

    def take(self) -> list[EmailMessage]:
        """The mails received since the last call."""
        received = self.messages()
        self.clear()
        return received


@pytest.fixture(scope="session")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    sink = Sink(tmp_path_factory.mktemp("mail"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def sink(smtp: Sink) -> Iterator[Sink]:
    """The session's SMTP server, empty, and running again after a test stopped it."""
    if smtp.process is None:
        smtp.start()
    smtp.clear()
    yield smtp
    if smtp.process is None:
        smtp.start()


@pytest.fixture
def world(app: Flask, accounts, sink: Sink) -> dict:
    """The current quarter, open, deadline in 30 days; users of several towns and roles.

    The calendar's "quarter opened" mails of today are sent and dropped first, so
    that each test sees only what it causes."""
    app.config.update(
        KIM_SMTP_HOST="127.0.0.1",
        KIM_SMTP_PORT=sink.port,
        KIM_SMTP_STARTTLS=False,
        KIM_MAIL_FROM="kim@hochsauerlandkreis.example",
        KIM_BASE_URL=BASE_URL,
        KIM_NOTIFY_RETRY_MINUTES=0,
    )
    with app.app_context():
        for address, (role, town, active) in EXTRA.items():
            if role == "district":
                factories.district_admin(address, active=active)
            else:
                factories.municipal_staff(town, address, active=active)
        year, quarter = periods.quarter_of(date.today())
        period = factories.period(year, quarter, deadline=date.today() + timedelta(days=30))
        db.session.commit()
        ids = {
            "period": period.id,
            "deadline": period.deadline,
            "ends_on": period.ends_on,
            "arnsberg": factories.town("Arnsberg").id,
            "meschede": factories.town("Meschede").id,
        }
    assert run(app).exit_code == 0
    sink.clear()
    return ids


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["notify", "run", *args])


def recipients(messages: list[EmailMessage]) -> list[str]:
    """Envelope recipients, one entry per mail (a duplicate shows twice)."""
    return sorted(m["X-Envelope-To"] for m in messages)


def act(app: Flask, who: str, step: str, world: dict, **kwargs) -> None:
    """Take workflow ``step`` on Arnsberg's report as user ``who`` and commit."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == who))
        period = db.session.get(ReportingPeriod, world["period"])
        submission = workflow.submission_for(world["arnsberg"], period)
        if step == "exception":
            workflow.grant_exception(submission, kwargs["until"], user)
        else:
            workflow.transition(submission, step, user, **kwargs)
        db.session.commit()


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


def rows(app: Flask) -> list[Notification]:
    with app.app_context():
        found = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        db.session.expunge_all()
        return found


def test_every_transition_mails_exactly_the_right_people_once(app, world, sink):
    link = f"{BASE_URL}/erfassung/?municipality={world['arnsberg']}&period={world['period']}"
    reason = "Bitte <b>CM_NEU</b> & CM_AKT prüfen"
    until = world["ends_on"] + timedelta(days=10)
    steps = [
        ("arnsberg@test.example", "submit", {}, DISTRICT, "Arnsberg hat Q"),
        ("arnsberg2@test.example", "withdraw", {}, [], ""),  # nobody needs to know
        ("arnsberg@test.example", "submit", {}, DISTRICT, "Arnsberg hat Q"),
        ("kreis@test.example", "return", {"reason": reason}, ARNSBERG, "zurückgegeben"),
        ("arnsberg2@test.example", "submit", {}, DISTRICT, "Arnsberg hat Q"),
        ("kreis@test.example", "approve", {}, ARNSBERG, "freigegeben"),
        ("kreis2@test.example", "unapprove", {"reason": "Tippfehler"}, ARNSBERG, "aufgehoben"),
        # The exception returns the report too: one mail, not a return and an exception.
        ("kreis@test.example", "exception", {"until": until}, ARNSBERG, "Bearbeitung bis"),
    ]
    for who, step, kwargs, expected, subject in steps:
        act(app, who, step, world, **kwargs)
        assert sink.take() == [], "no mail leaves inside the transition"
        result = run(app)
        assert result.exit_code == 0, result.output
        received = sink.take()
        assert recipients(received) == expected, step
        for message in received:
            assert subject in message["Subject"], step
            assert message["From"] == "kim@hochsauerlandkreis.example"
            assert message["Auto-Submitted"] == "auto-generated"
            text, html = bodies(message)
            assert text.startswith("Guten Tag"), step
            assert link in text and f'href="{link}"' in html.replace("&amp;", "&"), step
        # Nothing is sent twice.
        assert run(app).exit_code == 0
        assert sink.take() == [], step

    returned = [r for r in rows(app) if r.kind == events.RETURNED]
    assert len(returned) == 2
    with app.app_context():
        sent = db.session.scalars(select(Notification).where(Notification.reason == reason)).all()
        assert {r.state for r in sent} == {events.SENT}


def test_return_mail_states_the_reason_in_german_and_escapes_html(app, world, sink):
    reason = "Bitte <b>CM_NEU</b> & CM_AKT prüfen"
    act(app, "arnsberg@test.example", "submit", world)
    act(app, "kreis@test.example", "return", world, reason=reason)
    assert run(app).exit_code == 0
    mails = [m for m in sink.take() if "zurückgegeben" in m["Subject"]]
    assert recipients(mails) == ARNSBERG
    text, html = bodies(mails[0])
    assert f"Grund: {reason}" in text
    assert "Bitte &lt;b&gt;CM_NEU&lt;/b&gt; &amp; CM_AKT prüfen" in html
    assert "<b>CM_NEU" not in html
    assert "Meldung" in mails[0]["Subject"] and "Arnsberg" in mails[0]["Subject"]


def test_calendar_opens_reminds_and_warns_once_each(app, world, sink):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        factories.submission("Arnsberg", period, "submitted")
        db.session.commit()
        # Forget today's mails, so that the opening is sent again in this test.
        db.session.execute(Notification.__table__.delete())
        db.session.commit()
    deadline = world["deadline"]
    expected = [
        (-20, "ist geöffnet"),
        (-20, None),
        (-15, None),
        (-14, "Erinnerung"),
        (-13, None),
        (-3, "Erinnerung"),
        (0, None),
        (1, "überschritten"),
        (2, None),
    ]
    for offset, subject in expected:
        day = (deadline + timedelta(days=offset)).isoformat()
        result = run(app, "--today", day)
        assert result.exit_code == 0, result.output
        received = sink.take()
        if subject is None:
            assert received == [], day
        else:
            # Meschede has not submitted; Arnsberg has; Brilon takes no part in KIM.
            assert recipients(received) == ["meschede@test.example"], day
            assert subject in received[0]["Subject"], day
            text, _ = bodies(received[0])
            assert deadline.strftime("%d.%m.%Y") in text


def test_a_deadline_moved_later_reminds_again(app, world, sink):
    day = world["deadline"] - timedelta(days=3)
    assert run(app, "--today", day.isoformat()).exit_code == 0
    assert len(sink.take()) == 3
    with app.app_context():
        db.session.get(ReportingPeriod, world["period"]).deadline += timedelta(days=7)
        db.session.commit()
    moved = (world["deadline"] + timedelta(days=7)).strftime("%d.%m.%Y")
    assert run(app, "--today", day.isoformat()).exit_code == 0
    reminded = sink.take()  # ten days before the new deadline: its 14-day reminder
    assert len(reminded) == 3 and all(moved in m["Subject"] for m in reminded)
    later = (world["deadline"] + timedelta(days=4)).isoformat()
    assert run(app, "--today", later).exit_code == 0
    assert len(sink.take()) == 3  # three days before the new one
    assert run(app, "--today", later).exit_code == 0
    assert sink.take() == []


def test_a_quarter_opened_late_gets_no_separate_reminder(app, world, sink):
    with app.app_context():
        db.session.execute(Notification.__table__.delete())
        db.session.commit()
    day = (world["deadline"] - timedelta(days=5)).isoformat()
    assert run(app, "--today", day).exit_code == 0
    received = sink.take()
    assert len(received) == 3  # Arnsberg's two active users and Meschede's one
    assert all("ist geöffnet" in m["Subject"] for m in received)
    assert run(app, "--today", day).exit_code == 0
    assert sink.take() == []


def test_smtp_outage_keeps_the_transition_shows_the_failure_and_delivers_later(
    app, world, sink, as_district, as_arnsberg
):
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        factories.submission("Arnsberg", period, "submitted")
        db.session.commit()
    sink.stop()
    page = f"/erfassung/?municipality={world['arnsberg']}&period={world['period']}"
    response = as_district.post(page, {"action": "return", "reason": "CM_NEU fehlt"})
    assert response.status_code == 302
    with app.app_context():
        period = db.session.get(ReportingPeriod, world["period"])
        assert workflow.find_submission(world["arnsberg"], period).status == "returned"

    result = run(app)
    assert result.exit_code == 1
    assert "später erneut" in result.output
    waiting = [r for r in rows(app) if r.kind == events.RETURNED]
    assert [r.state for r in waiting] == [events.PENDING, events.PENDING]
    assert [r.attempts for r in waiting] == [1, 1]
    assert all("ConnectionRefusedError" in (r.last_error or "") for r in waiting)

    listing = as_district.get("/notification/")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert "ConnectionRefusedError" in html and "Meldung zurückgegeben" in html
    assert as_arnsberg.get("/notification/").status_code == 403

    sink.start()
    assert run(app).exit_code == 0
    received = sink.take()
    assert recipients(received) == ARNSBERG
    assert "CM_NEU fehlt" in bodies(received[0])[0]
    assert run(app).exit_code == 0
    assert sink.take() == []
    assert {r.state for r in rows(app) if r.kind == events.RETURNED} == {events.SENT}


def test_attempts_are_bounded(app, world, sink, as_district):
    app.config["KIM_NOTIFY_MAX_ATTEMPTS"] = 2
    act(app, "arnsberg@test.example", "submit", world)
    sink.stop()
    assert run(app).exit_code == 1
    assert run(app).exit_code == 1
    assert run(app).exit_code == 0  # nothing left to try
    submitted = [r for r in rows(app) if r.kind == events.SUBMITTED]
    assert [r.attempts for r in submitted] == [2, 2]
    assert {r.state for r in submitted} == {events.FAILED}
    assert "fehlgeschlagen" in as_district.get("/notification/").get_data(as_text=True)
    sink.start()
    assert run(app).exit_code == 0
    assert sink.take() == []


def test_backoff_waits_before_the_next_attempt(app, world, sink):
    app.config["KIM_NOTIFY_RETRY_MINUTES"] = 15
    act(app, "arnsberg@test.example", "submit", world)
    sink.stop()
    assert run(app).exit_code == 1
    sink.start()
    assert run(app).exit_code == 0
    assert sink.take() == []  # the first failed row waits 15 minutes, the other its turn
    waiting = [r for r in rows(app) if r.state == events.PENDING]
    assert waiting and min(r.next_attempt_at for r in waiting) > utcnow() - timedelta(minutes=1)


def test_crash_between_send_and_mark_repeats_at_most_that_mail(app, world, sink):
    act(app, "arnsberg@test.example", "submit", world)
    first, second = (r for r in rows(app) if r.kind == events.SUBMITTED)
    with app.app_context():
        # A run died after sending ``first`` and before marking it; another run is
        # sending ``second`` right now.
        long_ago = utcnow() - timedelta(minutes=30)
        db.session.get(Notification, first.id).state = events.SENDING
        db.session.get(Notification, first.id).claimed_at = long_ago
        db.session.get(Notification, second.id).state = events.SENDING
        db.session.get(Notification, second.id).claimed_at = utcnow()
        db.session.commit()
    result = run(app)
    assert result.exit_code == 0
    assert "erneut eingereiht" in result.output
    assert len(sink.take()) == 1
    states = {r.id: r.state for r in rows(app)}
    assert states[first.id] == events.SENT and states[second.id] == events.SENDING


def test_a_row_is_claimed_by_one_run_only(app, world):
    act(app, "arnsberg@test.example", "submit", world)
    row = rows(app)[-1]
    with app.app_context():
        now = utcnow()
        assert sender.claim(row.id, now) is True
        assert sender.claim(row.id, now) is False  # a second run at the same time


def test_inactive_or_moved_users_get_nothing(app, world, sink):
    act(app, "arnsberg@test.example", "submit", world)
    act(app, "kreis@test.example", "return", world, reason="Bitte prüfen")
    with app.app_context():
        moved = db.session.scalar(select(User).where(User.email == "arnsberg@test.example"))
        moved.municipality = factories.town("Meschede")
        gone = db.session.scalar(select(User).where(User.email == "arnsberg2@test.example"))
        gone.active = False
        db.session.commit()
    assert run(app).exit_code == 0
    mails = sink.take()
    assert recipients([m for m in mails if "eingereicht" in m["Subject"]]) == DISTRICT
    assert [m for m in mails if "zurückgegeben" in m["Subject"]] == []
    # The moved user now hears about their new town's quarter, nothing of the old one.
    others = [m for m in mails if "eingereicht" not in m["Subject"]]
    assert recipients(others) == ["arnsberg@test.example"]
    assert "für Meschede" in bodies(others[0])[0] and "für Arnsberg" not in bodies(others[0])[0]
    assert {r.state for r in rows(app) if r.kind == events.RETURNED} == {events.SKIPPED}


def test_opt_out_silences_reminders_and_status_but_never_returns(app, world, sink, as_arnsberg):
    page = "/konto/benachrichtigungen/"
    assert "Erinnerungen an Fristen" in as_arnsberg.get(page).get_data(as_text=True)
    assert as_arnsberg.post(page, {}).status_code == 302  # both boxes unticked
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "arnsberg@test.example"))
        choice = db.session.get(NotificationPreference, user.id)
        assert (choice.deadline_reminders, choice.status_updates) == (False, False)

    act(app, "arnsberg2@test.example", "submit", world)
    act(app, "kreis@test.example", "approve", world)
    assert run(app).exit_code == 0
    approved = [m for m in sink.take() if "freigegeben" in m["Subject"]]
    assert recipients(approved) == ["arnsberg2@test.example"]

    act(app, "kreis@test.example", "unapprove_return", world, reason="Doch falsch")
    assert run(app).exit_code == 0
    assert recipients(sink.take()) == ARNSBERG  # must-know: sent despite the choice

    reminder_day = (world["deadline"] - timedelta(days=3)).isoformat()
    assert run(app, "--today", reminder_day).exit_code == 0
    reminded = sink.take()
    assert recipients(reminded) == ["arnsberg2@test.example", "meschede@test.example"]

    as_arnsberg.post(page, {"deadline_reminders": "y", "status_updates": "y"})
    with app.app_context():
        choice = db.session.get(NotificationPreference, user.id)
        assert (choice.deadline_reminders, choice.status_updates) == (True, True)


def test_preference_form_needs_csrf(app, world, as_arnsberg):
    response = as_arnsberg.client.post("/konto/benachrichtigungen/", data={})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalars(select(NotificationPreference)).all() == []


def test_account_page_links_to_the_preferences(as_steering):
    html = as_steering.get("/konto/").get_data(as_text=True)
    assert 'href="/konto/benachrichtigungen/"' in html
    page = as_steering.get("/konto/benachrichtigungen/")
    assert page.status_code == 200
    assert "Ihre Rolle erhält derzeit keine Benachrichtigungen" in page.get_data(as_text=True)


def test_failures_page_is_for_the_district_only(world, as_district, as_steering, as_arnsberg):
    assert as_district.get("/notification/").status_code == 200
    assert as_steering.get("/notification/").status_code == 403
    assert as_arnsberg.get("/notification/").status_code == 403
    assert as_district.post("/notification/delete/", {"id": "1"}).status_code == 403


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA and a certificate it issued for 127.0.0.1, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    directory = tmp_path_factory.mktemp("tls")
    files = {name: str(directory / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(files["ca"])
    for blob in server.cert_chain_pems:
        blob.write_to_path(files["cert"], append=True)
    server.private_key_pem.write_to_path(files["key"])
    return files


@pytest.fixture
def secure_sink(tls_files, tmp_path) -> Iterator[Sink]:
    """An SMTP server that insists on STARTTLS and a login (kim-admin / s3cret)."""
    secure = Sink(
        tmp_path / "secure-mail",
        "--tls",
        tls_files["cert"],
        tls_files["key"],
        "--login",
        "kim-admin:s3cret",
    )
    secure.start()
    yield secure
    secure.stop()


def test_starttls_login_and_a_verified_certificate(app, world, secure_sink, tls_files):
    app.config.update(
        KIM_SMTP_PORT=secure_sink.port,
        KIM_SMTP_STARTTLS=True,
        KIM_SMTP_USER="kim-admin",
        KIM_SMTP_PASSWORD="s3cret",
        KIM_SMTP_CA_FILE=tls_files["ca"],
    )
    act(app, "arnsberg@test.example", "submit", world)
    assert run(app).exit_code == 0
    assert recipients(secure_sink.take()) == DISTRICT

    # A certificate no configured CA vouches for: nothing leaves, the mail waits.
    app.config["KIM_SMTP_CA_FILE"] = None
    act(app, "kreis@test.example", "approve", world)
    assert run(app).exit_code == 1
    assert secure_sink.take() == []
    waiting = [r for r in rows(app) if r.kind == events.APPROVED]
    assert all("CERTIFICATE_VERIFY_FAILED" in (r.last_error or "") for r in waiting)
    assert {r.state for r in waiting} == {events.PENDING}

    # A wrong password is the server's refusal, not the mail's: it waits too.
    app.config.update(KIM_SMTP_CA_FILE=tls_files["ca"], KIM_SMTP_PASSWORD="falsch")
    assert run(app).exit_code == 1
    waiting = [r for r in rows(app) if r.kind == events.APPROVED]
    assert all("SMTPAuthenticationError" in (r.last_error or "") for r in waiting)
    assert {r.state for r in waiting} == {events.PENDING}

    app.config["KIM_SMTP_PASSWORD"] = "s3cret"
    assert run(app).exit_code == 0
    assert recipients(secure_sink.take()) == ARNSBERG


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"KIM_SMTP_HOST": None}, "KIM_SMTP_HOST ist nicht gesetzt"),
        ({"KIM_MAIL_FROM": None}, "KIM_MAIL_FROM ist nicht gesetzt"),
        ({"KIM_SMTP_SSL": True, "KIM_SMTP_STARTTLS": True}, "schließen sich aus"),
        ({"KIM_ENV": "production", "KIM_BASE_URL": None}, "KIM_BASE_URL ist nicht gesetzt"),
    ],
)
def test_run_refuses_incomplete_settings(app, world, sink, settings, message):
    act(app, "arnsberg@test.example", "submit", world)
    app.config.update(settings)
    result = run(app)
    assert result.exit_code != 0
    assert message in result.output
    assert sink.take() == []
    assert {r.state for r in rows(app) if r.kind == events.SUBMITTED} == {events.PENDING}


def test_smtp_settings_from_environment(monkeypatch, tmp_path):
    secret = tmp_path / "smtp_password"
    secret.write_text("geheim-aus-datei\n")
    monkeypatch.setenv("KIM_SMTP_HOST", "mail.kreis.example")
    monkeypatch.setenv("KIM_SMTP_PORT", "465")
    monkeypatch.setenv("KIM_SMTP_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("KIM_SMTP_SSL", "true")
    monkeypatch.setenv("KIM_SMTP_STARTTLS", "false")
    monkeypatch.setenv("KIM_REMINDER_DAYS", "7, 1")
    monkeypatch.setenv("KIM_BASE_URL", "https://kim.kreis.example/")
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["KIM_SMTP_HOST"] == "mail.kreis.example"
    assert app.config["KIM_SMTP_PORT"] == 465
    assert app.config["KIM_SMTP_PASSWORD"] == "geheim-aus-datei"
    assert (app.config["KIM_SMTP_SSL"], app.config["KIM_SMTP_STARTTLS"]) == (True, False)
    assert app.config["KIM_REMINDER_DAYS"] == (7, 1)
    assert app.config["KIM_BASE_URL"] == "https://kim.kreis.example"


def test_delivery_is_stamped(app, world, sink):
    before = utcnow() - timedelta(seconds=1)
    act(app, "arnsberg@test.example", "submit", world)
    assert run(app).exit_code == 0
    sent = [r for r in rows(app) if r.kind == events.SUBMITTED]
    assert all(isinstance(r.sent_at, datetime) and r.sent_at >= before for r in sent)
