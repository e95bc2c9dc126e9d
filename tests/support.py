"""Test helpers: a logged-in client that carries its CSRF token."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

PASSWORD = "richtig-geheim-42"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


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
