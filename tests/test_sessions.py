"""Sessions that really end, and the login form's hostile-input bounds.

The cookie tests run over real HTTP against the app served on 127.0.0.1: a
cookie copied from the browser must be worthless after logout, idle timeout,
absolute timeout and a deactivation, also after a reactivation.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from kim_admin import accounts as account_rules
from kim_admin import create_app
from kim_admin.extensions import db
from models import AuditEvent, LoginSession, User
from models._common import utcnow

from .support import PASSWORD, Session, csrf_from


@pytest.fixture
def server(app: Flask) -> Iterator[tuple[str, int]]:
    """The app on a free port of 127.0.0.1; yields (host, port)."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class Browser:
    """A minimal HTTP client that keeps one cookie jar (the session cookie)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None):
        conn = http.client.HTTPConnection(*self.address, timeout=10)
        headers = {}
        body = None
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                val = rest.split(";", 1)[0]
                if "Expires=Thu, 01 Jan 1970" in value or val == "":
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        conn.close()
        return response.status, dict(response.getheaders()), text

    def login(self, email: str, password: str = PASSWORD) -> int:
        _, _, page = self.request("GET", "/login")
        status, _, _ = self.request(
            "POST", "/login", {"email": email, "password": password, "csrf_token": csrf_from(page)}
        )
        return status

    def csrf(self) -> str:
        return csrf_from(self.request("GET", "/")[2])


def _reads_dashboard(browser: Browser) -> bool:
    status, _, _ = browser.request("GET", "/dashboard.json")
    return status == 200


def test_copied_cookie_is_dead_after_logout(server, accounts):
    browser = Browser(server)
    assert browser.login(accounts.district) == 302
    thief = Browser(server)
    thief.cookies = dict(browser.cookies)
    assert _reads_dashboard(thief)
    browser.request("POST", "/logout", {"csrf_token": browser.csrf()})
    assert not _reads_dashboard(thief)


@pytest.mark.parametrize(
    ("column", "age"),
    [("last_seen_at", timedelta(minutes=61)), ("created_at", timedelta(hours=10, minutes=1))],
    ids=["idle", "absolute"],
)
def test_session_times_out(app, server, accounts, column, age):
    browser = Browser(server)
    browser.login(accounts.arnsberg)
    assert _reads_dashboard(browser)
    with app.app_context():
        values = {column: utcnow() - age}
        if column == "created_at":
            values["last_seen_at"] = utcnow()  # active all day long
        db.session.execute(update(LoginSession).values(**values))
        db.session.commit()
    assert not _reads_dashboard(browser)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginSession)) == 0


def test_reactivation_does_not_revive_old_cookies(app, server, accounts):
    browser = Browser(server)
    browser.login(accounts.meschede)
    assert _reads_dashboard(browser)
    with app.app_context():
        account_rules.deactivate(accounts.meschede)
        user = db.session.scalar(select(User).where(User.email == accounts.meschede))
        user.active = True
        db.session.commit()
    assert not _reads_dashboard(browser)
    assert browser.login(accounts.meschede) == 302  # a new login works again
    assert _reads_dashboard(browser)


def test_login_makes_a_new_session_and_csrf_token(server, accounts):
    browser = Browser(server)
    _, _, page = browser.request("GET", "/login")
    planted = csrf_from(page)
    cookie_before = dict(browser.cookies)
    browser.request(
        "POST", "/login", {"email": accounts.district, "password": PASSWORD, "csrf_token": planted}
    )
    assert browser.cookies != cookie_before
    status, _, _ = browser.request("POST", "/logout", {"csrf_token": planted})
    assert status == 400  # the token from before the login is void
    assert _reads_dashboard(browser)


def test_no_session_protection_by_forwarded_for(server, accounts):
    """Sessions are bound on the server, not to a client-sent X-Forwarded-For."""
    browser = Browser(server)
    browser.login(accounts.district)
    conn = http.client.HTTPConnection(*server, timeout=10)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    conn.request("GET", "/dashboard.json", headers={"Cookie": cookie, "X-Forwarded-For": "1.2.3.4"})
    assert conn.getresponse().status == 200
    conn.close()


# --- headers on every authenticated response --------------------------------------


def _get_routes(app: Flask) -> list[str]:
    """Every GET route of the URL map that needs no path argument."""
    routes = []
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "static":
            routes.append(rule.rule)
    for endpoint in ("monitoring_entry", "room", "municipality"):
        routes += [f"/{endpoint}/export/xlsx/", f"/{endpoint}/export/csv/"]
    return sorted(set(routes))


def test_every_authenticated_response_is_not_stored(app, as_district):
    routes = _get_routes(app)
    assert "/dashboard.json" in routes and len(routes) > 30
    for route in routes:
        if route == "/logout":
            continue
        response = as_district.get(route)
        cache = response.headers.get("Cache-Control", "")
        assert "no-store" in cache and "private" in cache, (route, response.status_code, cache)


def test_hsts_in_production(db_url):
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": db_url, "SECRET_KEY": "s" * 32, "KIM_ENV": "production"}
    )
    response = app.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    with app.app_context():
        db.engine.dispose()


def test_no_hsts_in_development(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers


# --- the login form under hostile input -------------------------------------------


def _post_login(client, email: str, password: str = "falsch"):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_huge_and_long_emails_are_bounded(app, client, accounts):
    for email in ("a" * 300 + "@test.example", "x" * (4 * 1024 * 1024)):
        response = _post_login(client, email)
        assert response.status_code in (200, 429)
    with app.app_context():
        lengths = db.session.scalars(select(func.length(AuditEvent.user_email))).all()
        assert all(length is None or length <= 254 for length in lengths)


def test_throttling_is_recorded_once_per_window(app, client, accounts):
    statuses = [_post_login(client, accounts.steering).status_code for _ in range(12)]
    assert statuses.count(429) >= 6
    with app.app_context():
        throttled = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "login_throttled")
        )
    assert throttled == 1


def test_unknown_account_costs_a_hash_check(client, accounts, monkeypatch):
    """Unknown and known accounts do the same work, so timing reveals nothing."""
    calls = []
    import kim_admin.auth as auth

    original = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: calls.append(h) or original(h, p))
    _post_login(client, "niemand@test.example")
    assert len(calls) == 1


def test_next_with_control_characters_is_ignored(client, accounts):
    page = client.get("/login?next=/%0d%0aX:1")
    token = csrf_from(page.get_data(as_text=True))
    response = client.post(
        "/login?next=/%0d%0aX:1",
        data={"email": accounts.district, "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302
    assert "\n" not in response.headers["Location"] and "X:1" not in response.headers["Location"]


# --- /konto/ and the password rules -------------------------------------------------


def test_wrong_current_passwords_are_throttled_and_audited(app, as_arnsberg):
    token = as_arnsberg.csrf_of("/konto/")
    form = {
        "current": "falsch",
        "new": "Tasse-Wolke-Fahrrad-42",
        "confirm": "Tasse-Wolke-Fahrrad-42",
    }
    for _ in range(5):
        html = as_arnsberg.post("/konto/", {**form, "csrf_token": token}).get_data(as_text=True)
        assert "Das aktuelle Passwort ist falsch." in html
    right = as_arnsberg.post("/konto/", {**form, "current": PASSWORD, "csrf_token": token})
    assert "Zu viele falsche Eingaben" in right.get_data(as_text=True)
    with app.app_context():
        failed = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "password_change_failed")
        )
    assert failed == 5


@pytest.mark.parametrize("weak", ["Passwort123!", "passwort2026", "hochsauerland", "arnsberg2026"])
def test_common_passwords_are_refused(as_arnsberg, weak):
    token = as_arnsberg.csrf_of("/konto/")
    html = as_arnsberg.post(
        "/konto/", {"current": PASSWORD, "new": weak, "confirm": weak, "csrf_token": token}
    ).get_data(as_text=True)
    assert "Passwort" in html and ("zu leicht" in html or "weit verbreitet" in html)


def test_password_rules_apply_to_cli_and_user_form(app, as_district):
    with app.app_context():
        with pytest.raises(account_rules.AccountError):
            account_rules.create_user("neu@test.example", "steering_group", "Passwort123!")
    response = as_district.post(
        "/user/new/",
        {
            "email": "neu@test.example",
            "name": "Neu",
            "role": "steering_group",
            "active": "y",
            "new_password": "Sommer2026!",
        },
    )
    assert response.status_code == 200
    assert "zu leicht" in response.get_data(as_text=True) or "weit verbreitet" in (
        response.get_data(as_text=True)
    )
    strong = as_district.post(
        "/user/new/",
        {
            "email": "neu@test.example",
            "name": "Neu",
            "role": "steering_group",
            "active": "y",
            "new_password": "Tasse-Wolke-Fahrrad-42",
        },
    )
    assert strong.status_code == 302


def test_password_change_keeps_this_session_only(app, accounts):
    first = Session(app.test_client())
    first.login(accounts.steering)
    second = Session(app.test_client())
    second.login(accounts.steering)
    token = first.csrf_of("/konto/")
    new = "Tasse-Wolke-Fahrrad-42"
    first.post("/konto/", {"current": PASSWORD, "new": new, "confirm": new, "csrf_token": token})
    assert first.get("/dashboard.json").status_code == 200
    assert second.get("/dashboard.json").status_code != 200
    assert re.search("Passwort", first.get("/konto/").get_data(as_text=True))


def test_login_email_is_validated(app, client, accounts):
    html = _post_login(client, "kein-at-zeichen").get_data(as_text=True)
    assert "Bitte eine gültige E-Mail-Adresse angeben." in html
