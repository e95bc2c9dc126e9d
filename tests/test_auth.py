"""Login, logout, password change and session handling."""

from __future__ import annotations

from sqlalchemy import select

from kim_admin import create_app
from kim_admin.config import Config
from kim_admin.extensions import db
from models import User

from .support import PASSWORD, Session, csrf_from


def test_login_page_is_german(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'lang="de"' in page
    assert "E-Mail-Adresse" in page and "Passwort" in page and "Anmelden" in page


def test_login_and_logout(app, accounts):
    session = Session(app.test_client())
    response = session.login(accounts.district)
    assert response.status_code == 302
    home = session.get("/")
    assert home.status_code == 200
    assert "Sie sind angemeldet als" in home.get_data(as_text=True)
    assert session.post("/logout").status_code == 302
    assert session.get("/").status_code == 302


def test_logout_needs_post(as_district):
    assert as_district.get("/logout").status_code == 405


def test_wrong_password_german_message(app, accounts):
    session = Session(app.test_client())
    response = session.login(accounts.district, "falsch-falsch")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "E-Mail-Adresse oder Passwort ist falsch." in body
    # The typed e-mail address is kept, the password is not echoed.
    assert accounts.district in body and "falsch-falsch" not in body


def test_unknown_user_gets_same_message(client, accounts):
    session = Session(client)
    body = session.login("niemand@test.example").get_data(as_text=True)
    assert "E-Mail-Adresse oder Passwort ist falsch." in body


def test_password_is_hashed(app, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.district))
        assert PASSWORD not in user.password_hash
        # Tests hash cheaply (tests/support.py); the method comes from the configuration.
        assert user.password_hash.startswith(app.config["KIM_PASSWORD_HASH_METHOD"] + "$")
        assert user.check_password(PASSWORD) and not user.check_password(PASSWORD + "x")


def test_production_hashes_are_scrypt():
    """Without the test suite's override, every new password is hashed with scrypt."""
    assert Config.KIM_PASSWORD_HASH_METHOD == "scrypt"
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    user = User(email="x@test.example", role="steering_group")
    with app.app_context():
        user.set_password(PASSWORD)
    assert user.password_hash.startswith("scrypt:")
    assert user.check_password(PASSWORD)
    user.set_password(PASSWORD)  # outside any app, e.g. a script
    assert user.password_hash.startswith("scrypt:")


def test_cheap_test_hashes_still_verify_after_switching_back(app, accounts):
    """A hash keeps its own method: switching the setting does not lock anyone out."""
    app.config["KIM_PASSWORD_HASH_METHOD"] = "scrypt"
    session = Session(app.test_client())
    assert session.login(accounts.district).status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.district))
        user.set_password("ein-neues-passwort")
        assert user.password_hash.startswith("scrypt:")


def test_login_without_csrf_token_refused(client, accounts):
    response = client.post("/login", data={"email": accounts.district, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_next_accepts_only_local_paths(app, accounts):
    for target, expected in (
        ("/room/", "/room/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        response = client.post(
            "/login",
            query_string={"next": target},
            data={"email": accounts.district, "password": PASSWORD, "csrf_token": token},
        )
        assert response.headers["Location"] == expected, target


def test_anonymous_redirected_to_login_with_next(client):
    response = client.get("/room/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_password_change(app, accounts):
    session = Session(app.test_client())
    session.login(accounts.arnsberg)
    other = Session(app.test_client())
    other.login(accounts.arnsberg)
    assert other.get("/").status_code == 200

    page = session.get("/konto/").get_data(as_text=True)
    assert "Aktuelles Passwort" in page
    bad = session.post(
        "/konto/", {"current": "falsch", "new": "neues-passwort-1", "confirm": "neues-passwort-1"}
    )
    assert "Das aktuelle Passwort ist falsch." in bad.get_data(as_text=True)
    short = session.post("/konto/", {"current": PASSWORD, "new": "kurz", "confirm": "kurz"})
    assert "mindestens 10 Zeichen" in short.get_data(as_text=True)

    ok = session.post(
        "/konto/",
        {"current": PASSWORD, "new": "neues-passwort-1", "confirm": "neues-passwort-1"},
        follow_redirects=True,
    )
    assert "Ihr Passwort wurde geändert" in ok.get_data(as_text=True)
    # This session goes on, the other one has ended.
    assert session.get("/").status_code == 200
    assert other.get("/").status_code == 302
    fresh = Session(app.test_client())
    assert fresh.login(accounts.arnsberg, "neues-passwort-1").status_code == 302


def test_deactivated_user_logged_out_at_next_request(app, accounts, as_district):
    session = Session(app.test_client())
    session.login(accounts.meschede)
    assert session.get("/").status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.meschede))
        user.active = False
        db.session.commit()
    assert session.get("/").status_code == 302
    again = Session(app.test_client())
    body = again.login(accounts.meschede).get_data(as_text=True)
    assert "E-Mail-Adresse oder Passwort ist falsch." in body


def test_session_cookie_flags(app, accounts):
    client = app.test_client()
    Session(client).login(accounts.district)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
