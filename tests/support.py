"""Test helpers: the test configuration, and a logged-in client that carries its CSRF token."""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jinja2.bccache import Bucket, BytecodeCache

from kim_admin import create_app

PASSWORD = "richtig-geheim-42"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# One iteration of PBKDF2 instead of scrypt: hashing is what made user set-up and every
# login slow (about 0.1 s each). Production keeps scrypt (tests/test_auth.py checks it).
FAST_HASH = "pbkdf2:sha256:1"
TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret",
    "KIM_PASSWORD_HASH_METHOD": FAST_HASH,
    # Pages show what the test just wrote; tests/test_caching.py switches sharing on.
    "KIM_CACHE_SECONDS": 0,
}


class SharedBytecodeCache(BytecodeCache):
    """Compiled templates kept in memory for every app of the session.

    Each fresh app has its own Jinja environment and would compile every template
    again (about half a second per test that renders the admin layout). All test apps
    configure Jinja alike, so one compilation serves them all; Jinja checks each
    entry against the template's source, so an edited template is compiled anew.
    """

    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self._store:
            bucket.bytecode_from_string(self._store[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._store[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CACHE = SharedBytecodeCache()


def make_app(url: str, **config: Any) -> Flask:
    """A fresh application from the factory on the database at ``url``."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url, **config})
    app.jinja_env.bytecode_cache = TEMPLATE_CACHE
    return app


class Session:
    """A logged-in test client that knows its CSRF token (flaskr's AuthActions)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token = ""

    def login(self, email: str, password: str = PASSWORD):
        page = self.client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        response = self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        home = self.client.get("/")
        if home.status_code == 200:
            self.token = csrf_from(home.get_data(as_text=True))
        return response

    def csrf_of(self, url: str) -> str:
        """The CSRF token printed on the page at ``url``."""
        return csrf_from(self.client.get(url).get_data(as_text=True))

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, **kwargs):
        """POST a form with the session's CSRF token added."""
        payload = dict(data or {})
        payload.setdefault("csrf_token", self.token)
        return self.client.post(url, data=payload, **kwargs)


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


# --- background jobs (the evaluation report) ---------------------------------------


def start_report(session: Session, data: dict) -> Any:
    """POST the report form as the page's script does; the answer names the job (202)."""
    return session.post("/bericht/", data, headers={"X-Requested-With": "fetch"})


def follow_job(session: Session, started: Any, wait: float = 120.0) -> dict:
    """Ask for the state of the job ``started`` names (the 202 answer of
    :func:`start_report`, or the job's status URL) until it has ended; returns the last.

    Not a timing: ``wait`` only keeps a broken runner from hanging the suite.
    """
    if isinstance(started, str):
        url = started
    else:
        assert started.status_code == 202, started.get_data(as_text=True)[:2000]
        url = started.get_json()["status"]
    deadline = time.monotonic() + wait
    while True:
        state = session.get(url).get_json()
        if state["status"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, f"job still {state['status']} after {wait} s"
        time.sleep(0.05)


def report_download(session: Session, data: dict) -> Any:
    """Start a report, wait for its job and download the file (the response)."""
    state = follow_job(session, start_report(session, data))
    assert state["status"] == "done", state
    return session.get(state["file"])
