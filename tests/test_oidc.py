"""Single sign-on against a real OpenID provider: node-oidc-provider (``tests/oidc``).

The provider runs once per test session as a Node.js subprocess on a free port of
127.0.0.1; the app talks to it over HTTP (discovery, JWKS, token endpoint, refresh)
exactly as it would to the Kreis' Keycloak. The browser is played by two clients:
Flask's test client for the app and a ``requests`` session, holding the provider's
cookies, for the provider. Nothing is mocked.

Broken ID tokens (for another audience, expired, signed with a key the provider does
not publish) come from the same provider through clients it is told to mistreat
(``tamper`` in its configuration): the app must refuse each with a German message.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import select, text
from werkzeug.serving import make_server

from kim_admin import create_app
from kim_admin.extensions import db
from models import AuditEvent, LoginSession, User
from models._common import utcnow

from . import factories
from .conftest import app_on
from .support import PASSWORD, Session, csrf_from

NODE_DIR = Path(__file__).resolve().parent / "oidc"
APP = "http://localhost"
CALLBACK = f"{APP}/oidc/callback"
CLIENT_SECRET = "kim-test-client-secret-0123456789abcdef"
#: Seconds to wait for the provider to start.
START_TIMEOUT = 30

#: People at the provider (account id = subject). "fremd" has no KIM-Admin account;
#: "unbestaetigt" claims an existing address without the provider vouching for it.
ACCOUNTS = {
    "sub-kreis": {
        "email": "Kreis@Test.Example",
        "email_verified": True,
        "name": "Karla Kreis",
        "groups": ["KIM-Kreis"],
    },
    "sub-arnsberg": {
        "email": "arnsberg@test.example",
        "email_verified": True,
        "name": "Arne Arnsberg",
        "groups": ["KIM-Kommune"],
    },
    "sub-fremd": {
        "email": "fremd@test.example",
        "email_verified": True,
        "name": "Frieda Fremd",
        "groups": ["KIM-Steuerung", "Alle"],
    },
    "sub-unbestaetigt": {
        "email": "arnsberg@test.example",
        "email_verified": False,
        "name": "Ungeprüft",
    },
}
#: The app's client, and one client per kind of broken ID token.
TAMPER = {"kim-audience": "audience", "kim-expired": "expired", "kim-foreign-key": "foreign-key"}
CLIENT_IDS = ["kim-admin", *TAMPER]
GROUP_MAP = {
    "KIM-Kreis": "district_admin",
    "KIM-Steuerung": "steering_group",
    "KIM-Kommune": "municipal_staff",
}


# --- the provider ------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_port() -> int:
    """A free port for the browser test's live server, registered at the provider (which
    compares redirect URIs exactly)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory, live_port: int) -> Iterator[str]:
    """Start node-oidc-provider once for the session; yield its issuer URL."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        message = "Node.js and `npm ci --prefix tests/oidc` are needed for the OIDC tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    clients = [
        {
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [CALLBACK, f"http://127.0.0.1:{live_port}/oidc/callback"],
            "post_logout_redirect_uris": [f"{APP}/login", f"http://127.0.0.1:{live_port}/login"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        for client_id in CLIENT_IDS
    ]
    settings = {"accounts": ACCOUNTS, "clients": clients, "tamper": TAMPER}
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            [node, "provider.mjs"],
            cwd=NODE_DIR,
            env={**os.environ, "OIDC_TEST_CONFIG": json.dumps(settings)},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line:
            pytest.fail(f"the OpenID provider did not start:\n{log.read_text()}")
        yield json.loads(line)["issuer"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def sso_config(issuer: str, client_id: str = "kim-admin", **config) -> dict:
    """App settings for single sign-on with ``client_id`` at ``issuer``."""
    return {
        "KIM_OIDC_ISSUER": issuer,
        "KIM_OIDC_CLIENT_ID": client_id,
        "KIM_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "KIM_OIDC_GROUP_MAP": GROUP_MAP,
        **config,
    }


@pytest.fixture
def app(database, reference_image, tmp_path, provider) -> Iterator[Flask]:
    """This module's app signs on at the test provider (overrides conftest's ``app``)."""
    with app_on(database, reference_image, tmp_path, **sso_config(provider)) as app:
        yield app


@pytest.fixture
def app_with(
    database, reference_image, tmp_path, provider
) -> Callable[..., AbstractContextManager[Flask]]:
    """Another app on the same world, e.g. for another client (``app_with(client_id=..)``)."""

    def make(client_id: str = "kim-admin", **config):
        return app_on(
            database, reference_image, tmp_path, **sso_config(provider, client_id, **config)
        )

    return make


# --- the browser ---------------------------------------------------------------------


class _Forms(HTMLParser):
    """The forms of a page: action, method and every named input's value."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""


def forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class Browser:
    """One person's browser: the app through Flask's test client, the provider over HTTP."""

    def __init__(self, app: Flask) -> None:
        self.app = app.test_client()
        self.idp = requests.Session()

    def start(self, next_url: str | None = None) -> str:
        """Press "Mit Dienstkonto anmelden"; the provider's authorization URL."""
        response = self.app.get("/oidc/login", query_string={"next": next_url} if next_url else {})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response.headers["Location"]

    def at_provider(self, url: str, account: str | None) -> str:
        """Follow the provider from ``url`` (signing on as ``account`` when it asks)
        until it sends the browser back to the app; that URL."""
        response = self.idp.get(url, allow_redirects=False, timeout=10)
        for _ in range(10):
            if response.is_redirect:
                target = urljoin(response.url, response.headers["Location"])
                if target.startswith(APP):
                    return target
                response = self.idp.get(target, allow_redirects=False, timeout=10)
                continue
            assert response.status_code == 200, response.text
            form = forms_of(response.text)[0]
            fields = dict(form["fields"])
            if fields.get("prompt") == "login":
                assert account is not None, "the provider asks for a login"
                fields.update(login=account, password="beliebig")
            elif "xsrf" in fields:
                fields["logout"] = "yes"  # "Yes, sign me out"
            response = self.idp.post(
                urljoin(response.url, form["action"]),
                data=fields,
                allow_redirects=False,
                timeout=10,
            )
        raise AssertionError("the provider did not send the browser back")

    def back_at_app(self, url: str):
        """Open the provider's redirect in the app."""
        parts = urlsplit(url)
        return self.app.get(parts.path, query_string=parts.query)

    def sign_in(self, account: str, next_url: str | None = None):
        """The whole round trip; the app's answer to the callback."""
        return self.back_at_app(self.at_provider(self.start(next_url), account))

    def page(self, url: str = "/") -> str:
        return self.app.get(url, follow_redirects=True).get_data(as_text=True)

    def provider_signed_in(self) -> bool:
        """Whether the provider still knows this browser (it would not ask for a login),
        tried from a fresh tab of the app."""
        tab = Browser(self.app.application)
        tab.idp = self.idp
        response = self.idp.get(tab.start(), allow_redirects=False, timeout=10)
        for _ in range(5):
            if not response.is_redirect:
                return False  # a login form
            target = urljoin(response.url, response.headers["Location"])
            if target.startswith(APP):
                return True
            response = self.idp.get(target, allow_redirects=False, timeout=10)
        return False


def with_param(url: str, **params: str) -> str:
    """``url`` with query parameters replaced."""
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def param(url: str, name: str) -> str:
    return parse_qs(urlsplit(url).query)[name][0]


def audit_events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def user_row(app: Flask, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(user)
        return user


def refused_with(response, browser: Browser, message: str) -> None:
    """The callback refused: back to the login page with ``message``, nobody signed in."""
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    page = browser.page("/login")
    assert message in page, page
    assert 'lang="de"' in page
    assert browser.app.get("/").status_code == 302  # still anonymous


# --- signing on -------------------------------------------------------------------------


def test_login_page_offers_single_sign_on(client):
    page = client.get("/login").get_data(as_text=True)
    assert ">Mit Dienstkonto anmelden</a>" in page
    assert 'href="/oidc/login"' in page
    # The password form stays (KIM_LOCAL_LOGIN=on), under its own heading.
    assert "<h2" in page and "Anmeldung mit Passwort" in page and 'name="password"' in page


def test_no_button_without_issuer(database, reference_image, tmp_path):
    with app_on(database, reference_image, tmp_path) as app:
        page = app.test_client().get("/login").get_data(as_text=True)
        assert "Dienstkonto" not in page and 'name="password"' in page
        assert app.test_client().get("/oidc/login").status_code == 302


def test_known_user_signs_in_with_role_and_scope(app, accounts):
    browser = Browser(app)
    authorize = browser.start(next_url="/room/")
    # Authorization code flow with PKCE (S256), state and nonce.
    assert param(authorize, "response_type") == "code"
    assert param(authorize, "code_challenge_method") == "S256"
    assert len(param(authorize, "code_challenge")) >= 43
    assert param(authorize, "state") and param(authorize, "nonce")
    assert param(authorize, "redirect_uri") == CALLBACK

    response = browser.back_at_app(browser.at_provider(authorize, "sub-arnsberg"))
    assert response.status_code == 302 and response.headers["Location"] == "/room/"
    home = browser.page("/")
    assert "Sie sind angemeldet als <strong>Kommune</strong>" in home
    assert "für <strong>Arnsberg</strong>" in home
    # Scope: the municipal user reads its own rooms only.
    with app.app_context():
        meschede_room = factories.room("Meschede", "Raum in Meschede")
        own_room = factories.room("Arnsberg", "Raum in Arnsberg")
        db.session.commit()
        foreign_id, own_id = meschede_room.id, own_room.id
    assert browser.app.get(f"/room/details/?id={own_id}").status_code == 200
    assert browser.app.get(f"/room/details/?id={foreign_id}").status_code in (302, 403, 404)

    user = user_row(app, accounts.arnsberg)
    assert user.oidc_subject == "sub-arnsberg" and user.oidc_issuer == app.config["KIM_OIDC_ISSUER"]
    login = audit_events(app, "login")[-1]
    assert login.user_id == user.id
    assert login.new_values == {"method": "oidc", "linked": True, "suggested_role": "Kommune"}


def test_email_is_matched_case_insensitively_and_then_the_subject(app, accounts):
    """The provider's "Kreis@Test.Example" is the user kreis@test.example; once linked,
    the subject alone finds them, even after the address changed in KIM-Admin."""
    assert Browser(app).sign_in("sub-kreis").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.district))
        user.email = "neu.kreis@test.example"
        db.session.commit()
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    assert "Sie sind angemeldet als <strong>Kreisverwaltung</strong>" in browser.page("/")
    assert audit_events(app, "login")[-1].new_values["linked"] is False


def test_unknown_person_is_refused_and_audited(app, accounts):
    with app.app_context():
        users_before = db.session.query(User).count()
    browser = Browser(app)
    response = browser.sign_in("sub-fremd")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "<h1" in page and "Noch kein Zugang zu KIM-Admin" in page
    assert "wenden Sie sich an die Kreisverwaltung" in page
    assert browser.app.get("/").status_code == 302
    with app.app_context():
        assert db.session.query(User).count() == users_before  # never an account
        assert db.session.query(LoginSession).count() == 0
    event = audit_events(app, "login_failed")[-1]
    assert event.user_id is None and event.user_email == "fremd@test.example"
    # The group suggests a role to the district admin; it grants nothing.
    assert event.new_values == {
        "method": "oidc",
        "reason": "no_access",
        "suggested_role": "Steuerungsgruppe",
    }


def test_unverified_email_matches_nobody(app, accounts):
    """An address the provider does not vouch for could be anyone's."""
    response = Browser(app).sign_in("sub-unbestaetigt")
    assert response.status_code == 403
    assert user_row(app, accounts.arnsberg).oidc_subject is None


def test_deactivated_user_is_refused(app, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        user.active = False
        db.session.commit()
    browser = Browser(app)
    refused_with(browser.sign_in("sub-arnsberg"), browser, "Ihr Zugang zu KIM-Admin ist gesperrt")
    assert audit_events(app, "login_failed")[-1].new_values["reason"] == "inactive"
    assert user_row(app, accounts.arnsberg).oidc_subject is None


def test_deactivation_also_refuses_a_linked_subject(app, accounts):
    assert Browser(app).sign_in("sub-arnsberg").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        user.active = False
        db.session.commit()
    browser = Browser(app)
    refused_with(browser.sign_in("sub-arnsberg"), browser, "Ihr Zugang zu KIM-Admin ist gesperrt")


def test_address_linked_to_another_subject_is_refused(app, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        user.oidc_issuer, user.oidc_subject = app.config["KIM_OIDC_ISSUER"], "sub-jemand-anderes"
        db.session.commit()
    browser = Browser(app)
    refused_with(browser.sign_in("sub-arnsberg"), browser, "mit einem anderen Dienstkonto")


# --- refused answers -------------------------------------------------------------------


def test_tampered_state_is_refused(app, accounts):
    browser = Browser(app)
    back = browser.at_provider(browser.start(), "sub-kreis")
    response = browser.back_at_app(with_param(back, state=param(back, "state") + "x"))
    refused_with(response, browser, "state ungültig")
    assert audit_events(app, "login_failed")[-1].new_values == {"method": "oidc", "reason": "state"}


def test_callback_used_twice_is_refused(app, accounts):
    browser = Browser(app)
    back = browser.at_provider(browser.start(), "sub-kreis")
    assert browser.back_at_app(back).status_code == 302
    browser.app.post("/logout", data={"csrf_token": csrf_from(browser.page("/"))})
    refused_with(browser.back_at_app(back), browser, "state ungültig oder schon verwendet")


def test_replayed_code_is_refused_by_the_provider(app, accounts):
    """A code that signed someone in is worthless in another browser's flow."""
    victim = Browser(app)
    back = victim.at_provider(victim.start(), "sub-kreis")
    assert victim.back_at_app(back).status_code == 302
    attacker = Browser(app)
    own = attacker.at_provider(attacker.start(), "sub-fremd")
    response = attacker.back_at_app(with_param(own, code=param(back, "code")))
    refused_with(response, attacker, "Der Anmeldecode wurde vom Anmeldedienst nicht angenommen")
    event = audit_events(app, "login_failed")[-1]
    assert event.new_values == {"method": "oidc", "reason": "code", "error": "invalid_grant"}


def test_only_the_latest_sign_on_of_a_browser_counts(app, accounts):
    """Each click replaces the unfinished flow before it (the session cookie stays small)."""
    browser = Browser(app)
    first = browser.start()
    for _ in range(20):
        latest = browser.start()
    with browser.app.session_transaction() as cookie:
        assert len([key for key in cookie if key.startswith("_state_")]) == 1
    refused_with(
        browser.back_at_app(browser.at_provider(first, "sub-kreis")), browser, "state ungültig"
    )
    assert browser.back_at_app(browser.at_provider(latest, "sub-kreis")).status_code == 302


def test_wrong_nonce_is_refused(app, accounts):
    browser = Browser(app)
    authorize = browser.start()
    back = browser.at_provider(with_param(authorize, nonce="untergeschoben"), "sub-kreis")
    refused_with(browser.back_at_app(back), browser, "nonce stimmt nicht")


def test_provider_error_is_refused(app, accounts):
    browser = Browser(app)
    state = param(browser.start(), "state")
    response = browser.app.get(
        "/oidc/callback", query_string={"error": "access_denied", "state": state}
    )
    refused_with(response, browser, "beim Dienstkonto abgebrochen oder abgelehnt")


def test_oversized_callback_is_refused(app, accounts):
    browser = Browser(app)
    browser.start()
    response = browser.app.get("/oidc/callback", query_string={"code": "x" * 5000, "state": "s"})
    refused_with(response, browser, "Die Antwort des Anmeldedienstes ist ungültig")


@pytest.mark.parametrize(
    ("client_id", "reason", "message"),
    [
        ("kim-audience", "audience", "für eine andere Anwendung ausgestellt"),
        ("kim-expired", "expired", "Das Anmeldetoken ist abgelaufen"),
        ("kim-foreign-key", "signature", "Die Signatur des Anmeldetokens ist ungültig"),
    ],
)
def test_broken_id_token_is_refused(app_with, client_id, reason, message):
    with app_with(client_id) as app:
        with app.app_context():
            factories.district_admin("kreis@test.example")
            db.session.commit()
        browser = Browser(app)
        refused_with(browser.sign_in("sub-kreis"), browser, message)
        assert audit_events(app, "login_failed")[-1].new_values["reason"] == reason
        assert audit_events(app, "login") == []


def test_unreachable_provider_is_explained(database, reference_image, tmp_path):
    config = sso_config("http://127.0.0.1:9", KIM_OIDC_TIMEOUT=2)
    with app_on(database, reference_image, tmp_path, **config) as app:
        browser = Browser(app)
        response = browser.app.get("/oidc/login")
        refused_with(response, browser, "Der Anmeldedienst ist zurzeit nicht erreichbar")


# --- the session after signing on ---------------------------------------------------


def _age_id_token(app: Flask) -> str:
    """Let the session's ID token expire (the app's clock side); its old ID token."""
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
        row.recheck_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        return row.id_token


def test_session_is_renewed_while_the_provider_session_lives(app, accounts):
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
        assert row.refresh_token and row.recheck_at > utcnow()
    _age_id_token(app)
    assert browser.app.get("/").status_code == 200
    with app.app_context():
        # Renewed with a fresh ID token from the provider: its expiry lies ahead again.
        row = db.session.scalars(select(LoginSession)).one()
        assert row.recheck_at > utcnow()


def test_refresh_token_is_stored_encrypted(app, accounts):
    """The refresh token is a credential at the provider: the database holds it sealed
    with a key from SECRET_KEY, and under another key it cannot be opened."""
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    with app.app_context():
        token = db.session.scalars(select(LoginSession)).one().refresh_token
        stored = db.session.execute(text("SELECT refresh_token FROM login_session")).scalar_one()
    assert token and stored.startswith("fernet:") and token not in stored
    app.config["SECRET_KEY"] = "ein-anderer-schluessel-" + "x" * 20
    with app.app_context():
        assert db.session.scalars(select(LoginSession)).one().refresh_token is None


def test_session_ends_after_expiry_once_the_provider_session_ended(app, accounts):
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    assert browser.app.get("/").status_code == 200
    # The person signs out at the provider (e.g. in another application).
    discovery = f"{app.config['KIM_OIDC_ISSUER']}/.well-known/openid-configuration"
    url = requests.get(discovery, timeout=10).json()["end_session_endpoint"]
    _sign_out_at_provider(browser, url)
    assert not browser.provider_signed_in()
    # Until the ID token expires the session stands; then the refresh is refused.
    assert browser.app.get("/").status_code == 200
    _age_id_token(app)
    response = browser.app.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "Ihre Anmeldung beim Dienstkonto ist abgelaufen" in browser.page("/login")
    with app.app_context():
        assert db.session.query(LoginSession).count() == 0
    assert audit_events(app, "logout")[-1].new_values == {
        "method": "oidc",
        "reason": "id_token_expired",
    }


def _sign_out_at_provider(browser: Browser, end_session_url: str) -> None:
    """Confirm the provider's own logout page (no redirect back to the app)."""
    page = browser.idp.get(end_session_url, timeout=10)
    form = forms_of(page.text)[0]
    fields = {**form["fields"], "logout": "yes"}
    done = browser.idp.post(urljoin(page.url, form["action"]), data=fields, timeout=10)
    assert done.status_code == 200


def test_password_sessions_are_not_rechecked(app, accounts):
    session = Session(app.test_client())
    assert session.login(accounts.district).status_code == 302
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
        assert row.recheck_at is None and row.id_token is None
    assert session.get("/").status_code == 200


def test_logout_ends_the_provider_session(app, accounts):
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    assert browser.provider_signed_in()  # a second sign-on would need no login
    with app.app_context():
        id_token = db.session.scalars(select(LoginSession)).one().id_token
    response = browser.app.post("/logout", data={"csrf_token": csrf_from(browser.page("/"))})
    assert response.status_code == 302
    end_session = response.headers["Location"]
    assert end_session.startswith(app.config["KIM_OIDC_ISSUER"])
    assert param(end_session, "id_token_hint") == id_token
    assert param(end_session, "post_logout_redirect_uri") == f"{APP}/login"
    assert browser.app.get("/").status_code == 302  # the app's session is gone already
    back = browser.at_provider(end_session, None)
    assert back.startswith(f"{APP}/login")
    assert "Sie sind abgemeldet." in browser.page(urlsplit(back).path)
    assert not browser.provider_signed_in()


# --- password logins next to single sign-on -----------------------------------------


@pytest.fixture
def local_off(app_with) -> Iterator[Flask]:
    config = {"KIM_LOCAL_LOGIN": "off", "KIM_EMERGENCY_ACCOUNT": "Notfall@Test.Example"}
    with app_with(**config) as app:
        with app.app_context():
            factories.district_admin("kreis@test.example")
            factories.district_admin("notfall@test.example")
            db.session.commit()
        yield app


def test_local_login_off_hides_the_password_form(local_off):
    client = local_off.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "Mit Dienstkonto anmelden" in page and 'name="password"' not in page
    emergency = client.get("/login?notfall=1").get_data(as_text=True)
    assert "Notfallzugang" in emergency and 'name="password"' in emergency


def emergency_login(app: Flask, email: str, password: str = PASSWORD):
    """A password login through the emergency form (the token from /login?notfall=1)."""
    client = app.test_client()
    token = csrf_from(client.get("/login?notfall=1").get_data(as_text=True))
    data = {"email": email, "password": password, "csrf_token": token}
    return client, client.post("/login", data=data)


def test_local_login_off_refuses_everyone_but_the_emergency_account(local_off):
    refused, response = emergency_login(local_off, "kreis@test.example")
    assert response.status_code == 200
    assert "Die Anmeldung mit Passwort ist abgeschaltet" in response.get_data(as_text=True)
    assert refused.get("/").status_code == 302
    event = audit_events(local_off, "login_failed")[-1]
    assert event.user_email == "kreis@test.example"
    assert event.new_values == {"method": "password", "reason": "local_login_off"}

    emergency, response = emergency_login(local_off, "notfall@test.example")
    assert response.status_code == 302
    assert emergency.get("/").status_code == 200
    assert audit_events(local_off, "login")[-1].new_values == {"method": "password"}
    # Single sign-on still works for everyone else.
    browser = Browser(local_off)
    assert browser.sign_in("sub-kreis").status_code == 302
    assert browser.app.get("/").status_code == 200


def test_wrong_password_of_the_emergency_account_is_still_wrong(local_off):
    _client, response = emergency_login(local_off, "notfall@test.example", PASSWORD + "x")
    assert "E-Mail-Adresse oder Passwort ist falsch." in response.get_data(as_text=True)


def test_throttle_counts_password_and_single_sign_on_failures_together(app_with):
    with app_with(KIM_LOGIN_LIMIT_CLIENT="2 per 15 minutes") as app:
        browser = Browser(app)
        wrong = Session(browser.app)
        assert wrong.login("niemand@test.example").status_code == 200  # failure 1
        back = browser.at_provider(browser.start(), "sub-fremd")
        assert browser.back_at_app(back).status_code == 403  # failure 2: no access
        again = browser.at_provider(browser.start(), "sub-fremd")
        response = browser.back_at_app(again)
        assert response.status_code == 429
        assert "Zu viele fehlgeschlagene Anmeldeversuche" in response.get_data(as_text=True)
        assert audit_events(app, "login_throttled")


# --- settings ----------------------------------------------------------------------------


def test_client_credentials_from_files(monkeypatch, tmp_path):
    (tmp_path / "id").write_text("kim-admin\n")
    (tmp_path / "secret").write_text(CLIENT_SECRET + "\n")
    monkeypatch.setenv("KIM_OIDC_ISSUER", "https://sso.kreis.example/realms/kreis")
    monkeypatch.setenv("KIM_OIDC_CLIENT_ID_FILE", str(tmp_path / "id"))
    monkeypatch.setenv("KIM_OIDC_CLIENT_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv(
        "KIM_OIDC_GROUP_MAP", "KIM-Kreis=district_admin, KIM Kommune=municipal_staff"
    )
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    assert app.config["KIM_OIDC_CLIENT_ID"] == "kim-admin"
    assert app.config["KIM_OIDC_CLIENT_SECRET"] == CLIENT_SECRET
    assert app.config["KIM_OIDC_GROUP_MAP"] == {
        "KIM-Kreis": "district_admin",
        "KIM Kommune": "municipal_staff",
    }


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"KIM_OIDC_GROUP_MAP": "KIM-Kreis=admin"}, "KIM_OIDC_GROUP_MAP"),
        ({"KIM_LOCAL_LOGIN": "off"}, "KIM_LOCAL_LOGIN=off braucht KIM_OIDC_ISSUER"),
        ({"KIM_LOCAL_LOGIN": "aus"}, "KIM_LOCAL_LOGIN"),
        ({"KIM_OIDC_ISSUER": "https://sso.example"}, "KIM_OIDC_CLIENT_ID fehlt"),
        (
            {
                "KIM_ENV": "production",
                "KIM_SECRET_KEY": "p" * 32,
                "KIM_OIDC_ISSUER": "http://sso.example",
                "KIM_OIDC_CLIENT_ID": "kim-admin",
            },
            "nur über https://",
        ),
    ],
)
def test_unworkable_settings_are_refused(monkeypatch, settings, complaint):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=re.escape(complaint)):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_forms_may_lead_to_the_provider(app, client):
    """Logout (a form) goes on to the provider: the CSP's form-action must allow it."""
    policy = client.get("/login").headers["Content-Security-Policy"]
    assert f"form-action 'self' {app.config['KIM_OIDC_ISSUER']}" in policy


# --- in a real browser ------------------------------------------------------------------


@pytest.mark.browser
def test_sign_on_and_logout_in_chromium(app, accounts, live_port):
    """The button, the provider's login, the start page, and logout through the provider,
    in Debian's chromium: the app's Content-Security-Policy lets both round trips pass."""
    from .test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, sync_api, watch

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    base = f"http://127.0.0.1:{live_port}"
    server = make_server("127.0.0.1", live_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_context(locale="de-DE").new_page()
                page.set_default_timeout(TIMEOUT_MS)
                problems = watch(page)
                page.goto(f"{base}/login")
                page.get_by_role("link", name="Mit Dienstkonto anmelden").click()
                page.fill("input[name=login]", "sub-kreis")
                page.fill("input[name=password]", "beliebig")
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/")
                assert "Sie sind angemeldet als Kreisverwaltung" in page.inner_text("main")
                page.click("#user-menu")
                page.get_by_role("button", name="Abmelden").click()
                page.get_by_role("button", name="Yes, sign me out").click()
                page.wait_for_url(f"{base}/login*")
                assert "Sie sind abgemeldet." in page.inner_text("main")
                assert [line for line in problems.csp if line.startswith(base)] == []
                assert problems.js_errors == []
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_group_claim_suggests_but_never_grants(app):
    """The provider's KIM-Kreis group meets a steering-group member: they stay one."""
    with app.app_context():
        factories.steering_member("kreis@test.example")
        db.session.commit()
    browser = Browser(app)
    assert browser.sign_in("sub-kreis").status_code == 302
    assert "Sie sind angemeldet als <strong>Steuerungsgruppe</strong>" in browser.page("/")
    assert user_row(app, "kreis@test.example").role == "steering_group"
    assert audit_events(app, "login")[-1].new_values["suggested_role"] == "Kreisverwaltung"


def test_unlink_command_lets_the_next_sign_on_link_anew(app, accounts):
    """A replaced provider account: `flask sso unlink` frees the address and ends sessions."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        user.oidc_issuer, user.oidc_subject = app.config["KIM_OIDC_ISSUER"], "sub-altes-konto"
        db.session.commit()
    password_session = Session(app.test_client())
    assert password_session.login(accounts.arnsberg).status_code == 302
    result = app.test_cli_runner().invoke(args=["sso", "unlink", "ARNSBERG@test.example"])
    assert result.exit_code == 0, result.output
    assert "Dienstkonto von arnsberg@test.example gelöst" in result.output
    assert password_session.get("/").status_code == 302
    assert Browser(app).sign_in("sub-arnsberg").status_code == 302
    assert user_row(app, accounts.arnsberg).oidc_subject == "sub-arnsberg"
    unknown = app.test_cli_runner().invoke(args=["sso", "unlink", "niemand@test.example"])
    assert unknown.exit_code != 0 and "Kein Benutzer" in unknown.output
