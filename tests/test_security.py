"""Hardening: CSRF on every state-changing request, login throttling, headers."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from kim_admin.extensions import db
from kim_admin.reference import load_reference_data
from models import AuditEvent, Room, User

from . import factories
from .support import PASSWORD, Session, csrf_from, make_app


def test_admin_post_without_csrf_token_refused(app, as_district):
    before_rooms = _count(app, Room)
    response = as_district.client.post("/room/new/", data={"name": "Ohne Token"})
    assert response.status_code == 400
    assert _count(app, Room) == before_rooms


def test_logout_without_csrf_token_refused(as_district):
    assert as_district.client.post("/logout").status_code == 400
    assert as_district.get("/").status_code == 200


def test_password_change_without_csrf_token_refused(app, as_district, accounts):
    response = as_district.client.post(
        "/konto/", data={"current": PASSWORD, "new": "x" * 12, "confirm": "x" * 12}
    )
    assert response.status_code == 400
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.district))
        assert user.check_password(PASSWORD)


def test_foreign_csrf_token_refused(app, accounts, as_district):
    """A token from another session does not work in this one."""
    other = Session(app.test_client())
    other.login(accounts.steering)
    response = as_district.client.post("/room/new/", data={"name": "X", "csrf_token": other.token})
    assert response.status_code == 400


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def _attempt(client, email: str, password: str, ip: str = "10.0.0.1"):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_throttle_per_account(app, accounts):
    app.config["KIM_LOGIN_LIMIT_ACCOUNT"] = "3 per 15 minutes"
    client = app.test_client()
    for n in range(3):
        assert _attempt(client, accounts.district, "falsch", f"10.0.0.{n}").status_code == 200
    # The fourth attempt is refused even with the right password, from any address.
    blocked = _attempt(client, accounts.district, PASSWORD, "10.0.0.99")
    assert blocked.status_code == 429
    assert "Zu viele fehlgeschlagene Anmeldeversuche" in blocked.get_data(as_text=True)
    assert client.get("/").status_code == 302
    # Another account is not affected.
    assert _attempt(client, accounts.steering, PASSWORD, "10.0.0.98").status_code == 302


def test_throttle_per_client_address(app, accounts):
    app.config["KIM_LOGIN_LIMIT_CLIENT"] = "4 per 15 minutes"
    client = app.test_client()
    for n in range(4):
        _attempt(client, f"niemand{n}@test.example", "falsch", "10.1.1.1")
    assert _attempt(client, accounts.steering, PASSWORD, "10.1.1.1").status_code == 429
    assert _attempt(client, accounts.steering, PASSWORD, "10.1.1.2").status_code == 302


class HeldPasswordChecks:
    """Holds every password check until ``count`` checks wait together (or 3 s pass),
    as a burst of attempts sent in the same moment meets a slow hash; counts them."""

    def __init__(self, monkeypatch, count: int) -> None:
        import models.user

        self.checks = 0
        self.lock = threading.Lock()
        self.together = threading.Barrier(count)
        real = models.user.check_password_hash

        def held(stored: str, password: str) -> bool:
            with self.lock:
                self.checks += 1
            try:
                self.together.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
            return real(stored, password)

        monkeypatch.setattr(models.user, "check_password_hash", held)


def _burst(count: int, send) -> list[int]:
    """``send(n)`` in ``count`` threads at once; the status codes."""
    statuses: list[int] = []
    start = threading.Barrier(count)

    def one(n: int) -> None:
        start.wait()
        statuses.append(send(n))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_simultaneous_wrong_logins_check_no_more_passwords_than_the_limit(
    app, accounts, monkeypatch
):
    """Eight wrong passwords for one account in the same moment: three are checked
    (the limit), five refused with 429 before any password is checked. Counted only
    after each answer, all eight would pass the limit's test together."""
    app.config["KIM_LOGIN_LIMIT_ACCOUNT"] = "3 per 15 minutes"
    held = HeldPasswordChecks(monkeypatch, 8)
    clients = [app.test_client() for _ in range(8)]
    tokens = [csrf_from(c.get("/login").get_data(as_text=True)) for c in clients]

    def send(n: int) -> int:
        return (
            clients[n]
            .post(
                "/login",
                data={"email": accounts.district, "password": "falsch", "csrf_token": tokens[n]},
                environ_base={"REMOTE_ADDR": f"10.3.0.{n}"},
            )
            .status_code
        )

    statuses = _burst(8, send)
    assert held.checks == 3
    assert sorted(statuses) == [200] * 3 + [429] * 5
    # The window is used up: the right password is refused too.
    assert _attempt(app.test_client(), accounts.district, PASSWORD, "10.3.1.1").status_code == 429


def test_simultaneous_wrong_current_passwords_are_limited(app, as_arnsberg, monkeypatch):
    """/konto/: eight wrong current passwords at once, five checked (the per-account
    limit), the rest refused before the check."""
    token = as_arnsberg.csrf_of("/konto/")
    form = {
        "current": "falsch",
        "new": "Tasse-Wolke-Fahrrad-42",
        "confirm": "Tasse-Wolke-Fahrrad-42",
        "csrf_token": token,
    }
    held = HeldPasswordChecks(monkeypatch, 8)
    answers: list[str] = []

    def send(n: int) -> int:
        response = as_arnsberg.client.post("/konto/", data=form)
        answers.append(response.get_data(as_text=True))
        return response.status_code

    _burst(8, send)
    assert held.checks == 5
    assert sum("Das aktuelle Passwort ist falsch." in a for a in answers) == 5
    assert sum("Zu viele falsche Eingaben" in a for a in answers) == 3


def test_successful_logins_do_not_count(app, accounts):
    app.config["KIM_LOGIN_LIMIT_ACCOUNT"] = "2 per 15 minutes"
    for _ in range(4):
        client = app.test_client()
        assert _attempt(client, accounts.district, PASSWORD).status_code == 302


def _redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.mark.skipif(not _redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_throttle_shared_through_redis(db_url):
    """Two app servers (two apps) share one Redis: failures on one count on the other."""
    prefix = f"kim-test-{uuid.uuid4().hex}"
    config = {
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
        "RATELIMIT_KEY_PREFIX": prefix,
        "KIM_LOGIN_LIMIT_ACCOUNT": "2 per 15 minutes",
    }
    first = make_app(db_url, **config)
    with first.app_context():
        db.create_all()
        load_reference_data()
        factories.steering_member("r@test.example")
        db.session.commit()
    second = make_app(db_url, **config)
    try:
        for _ in range(2):
            assert _attempt(first.test_client(), "r@test.example", "falsch").status_code == 200
        assert _attempt(second.test_client(), "r@test.example", PASSWORD).status_code == 429
    finally:
        for app in (first, second):  # close both apps' pooled connections
            with app.app_context():
                db.engine.dispose()


def test_security_headers(client, as_district):
    for response in (client.get("/login"), as_district.get("/room/")):
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert (
            "script-src 'self' 'nonce-" in csp and "unsafe-inline" not in csp.split("style-src")[0]
        )
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_scripts_carry_the_nonce(as_district):
    response = as_district.get("/room/")
    nonce = response.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    html = response.get_data(as_text=True)
    scripts = html.count("<script")
    assert scripts > 3
    assert html.count(f'nonce="{nonce}"') >= scripts
    assert "onclick=" not in html


def test_login_audited(app, accounts):
    client = app.test_client()
    _attempt(client, accounts.district, "falsch")
    _attempt(client, accounts.district, PASSWORD)
    with app.app_context():
        actions = db.session.execute(
            select(AuditEvent.action, AuditEvent.user_email).order_by(AuditEvent.id)
        ).all()
    assert ("login_failed", accounts.district) in actions
    assert ("login", accounts.district) in actions


def test_error_pages_are_german(client, as_steering):
    forbidden = as_steering.get("/user/")
    assert forbidden.status_code == 403
    assert "Kein Zugriff" in forbidden.get_data(as_text=True)
    missing = client.get("/gibt-es-nicht")
    assert missing.status_code == 404 and "Nicht gefunden" in missing.get_data(as_text=True)
    csrf = as_steering.client.post("/logout")
    assert csrf.status_code == 400
    assert "Sicherheitsprüfung" in csrf.get_data(as_text=True)
