"""Production operation: settings refused in production, proxies, request ids and logs,
health checks, and gunicorn with two workers sharing the login throttle through Redis."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import request
from flask_migrate import stamp, upgrade

from kim_admin import create_app
from kim_admin.operations import make_formatter

ROOT = Path(__file__).resolve().parent.parent
STRONG = "Tasse-Wolke-Fahrrad-42"


def make_app(url: str, **config):
    """An app in test mode on ``url`` (cheap password hashes, as the suite's own)."""
    settings = {"TESTING": True, "SECRET_KEY": "test-secret", "SQLALCHEMY_DATABASE_URI": url}
    return create_app({**settings, "KIM_PASSWORD_HASH_METHOD": "pbkdf2:sha256:1", **config})


# --- settings refused in production ---------------------------------------------


@pytest.fixture
def production(monkeypatch):
    monkeypatch.setenv("KIM_ENV", "production")
    monkeypatch.setenv("KIM_SECRET_KEY", "p" * 32)
    for name in ("KIM_WORKERS", "WEB_CONCURRENCY", "KIM_RATELIMIT_STORAGE_URL", "FLASK_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["KIM_WORKERS", "WEB_CONCURRENCY"])
def test_memory_throttle_refused_with_several_workers(production, variable):
    production.setenv(variable, "2")
    with pytest.raises(RuntimeError, match="KIM_RATELIMIT_STORAGE_URL") as refused:
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert "Worker-Prozessen" in str(refused.value)


def test_one_worker_or_shared_store_accepted(production):
    production.setenv("KIM_WORKERS", "1")
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}).config["KIM_WORKERS"] == 1
    production.setenv("KIM_WORKERS", "4")
    production.setenv("KIM_RATELIMIT_STORAGE_URL", "redis://127.0.0.1:6379")
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}).config["KIM_WORKERS"] == 4


def test_several_workers_in_development_allowed(monkeypatch):
    monkeypatch.setenv("KIM_WORKERS", "3")
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})


def test_debug_refused_in_production(production):
    production.setenv("FLASK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="Debug-Modus"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_database_errors_logged_without_values_in_production(production, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    with app.app_context():
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        from kim_admin.extensions import db

        with pytest.raises(DBAPIError) as failed:
            db.session.execute(text("SELECT * FROM nirgends WHERE x = :v"), {"v": "4711,5"})
        assert "4711,5" not in str(failed.value)
        db.session.remove()
        db.engine.dispose()


def test_unknown_log_format_refused(monkeypatch):
    monkeypatch.setenv("KIM_LOG_FORMAT", "xml")
    with pytest.raises(RuntimeError, match="KIM_LOG_FORMAT"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})


def test_pool_settings_for_server_databases(monkeypatch):
    monkeypatch.setenv("KIM_DB_POOL_SIZE", "3")
    monkeypatch.setenv("KIM_DB_MAX_OVERFLOW", "2")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@127.0.0.1:9/x", "SECRET_KEY": "x"}
    )
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options == {"pool_size": 3, "max_overflow": 2, "pool_pre_ping": True}
    with app.app_context():
        from kim_admin.extensions import db

        assert db.engine.pool.size() == 3
        db.engine.dispose()
    # SQLite keeps its own pool, and the class default is not changed for other apps.
    sqlite = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    assert sqlite.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True}


# --- health ----------------------------------------------------------------------


def test_health_needs_no_login_and_sets_no_cookie(app):
    client = app.test_client()
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.is_json, path
        assert response.headers["Cache-Control"] == "no-store, private"
        assert "Set-Cookie" not in response.headers
    assert client.get("/healthz").json == {"status": "ok"}


def test_ready_only_at_migrations_head(app):
    client = app.test_client()
    # The test world is built from the models, without a migration stamp.
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {
        "database": "ok",
        "migrations": "nicht aktuell (flask db upgrade)",
    }
    with app.app_context():
        stamp()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}


def test_not_ready_without_database(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'missing' / 'kim.db'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "nicht erreichbar"


def test_health_open_while_signed_in(as_district):
    assert as_district.get("/healthz").status_code == 200
    assert as_district.get("/readyz").status_code == 503  # not stamped, not refused


# --- proxies and request ids ---------------------------------------------------------


def _echo_app(url: str, **config):
    app = make_app(url, **config)
    app.add_url_rule("/_echo", "echo", lambda: f"{request.remote_addr} {request.scheme}")
    return app


@pytest.mark.parametrize(("proxies", "expected"), [(0, "127.0.0.1 http"), (1, "203.0.113.9 https")])
def test_forwarded_headers_only_from_trusted_proxies(tmp_path, proxies, expected):
    app = _echo_app(f"sqlite:///{tmp_path / 'x.db'}", KIM_TRUSTED_PROXIES=proxies)
    response = app.test_client().get(
        "/_echo",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.get_data(as_text=True) == expected


@pytest.mark.parametrize(
    ("proxies", "incoming", "kept"),
    [
        (1, "nginx-7f3a9c0d2e", True),
        (0, "nginx-7f3a9c0d2e", False),
        (1, "bad id <script>", False),
        (1, "x" * 65, False),
        (1, "short", False),
    ],
)
def test_request_id(tmp_path, proxies, incoming, kept):
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", KIM_TRUSTED_PROXIES=proxies)
    response = app.test_client().get("/healthz", headers={"X-Request-ID": incoming})
    sent = response.headers["X-Request-ID"]
    assert (sent == incoming) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,64}", sent)


def test_one_log_line_per_request_without_values(as_district, caplog):
    caplog.set_level(logging.INFO, logger="kim_admin.requests")
    response = as_district.get("/admin/auditevent/?search=geheim-suche&page=0")
    lines = [r for r in caplog.records if r.name == "kim_admin.requests"]
    assert len(lines) == 1
    record = lines[0]
    assert record.method == "GET"
    assert record.path == "/admin/auditevent/"
    assert record.query_keys == "page,search"
    assert record.status == response.status_code
    assert record.user_id is not None
    assert record.request_id == response.headers["X-Request-ID"]
    assert isinstance(record.duration_ms, float)
    assert "geheim-suche" not in caplog.text


def test_login_password_never_logged(app, accounts, caplog):
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    client.get("/login")
    client.post("/login", data={"email": accounts.district, "password": "Falsch-Passwort-99"})
    assert caplog.records
    assert "Falsch-Passwort-99" not in caplog.text


def test_json_log_line():
    record = logging.LogRecord(
        "kim_admin.requests", logging.INFO, __file__, 1, "GET / 200", (), None
    )
    record.request_id = "abc12345"
    record.status = 200
    line = json.loads(make_formatter("json").format(record))
    assert line["level"] == "INFO"
    assert line["logger"] == "kim_admin.requests"
    assert line["request_id"] == "abc12345"
    assert line["status"] == 200
    assert line["message"] == "GET / 200"


def test_error_page_and_log_carry_request_id(tmp_path, caplog):
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", TESTING=False)

    def broken():
        raise ValueError("kaputt")

    app.add_url_rule("/_broken", "broken", broken)
    caplog.set_level(logging.INFO)
    response = app.test_client().get("/_broken")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    page = response.get_data(as_text=True)
    assert "Interner Fehler" in page
    assert f'Fehlernummer für Rückfragen: <span class="text-monospace">{request_id}</span>' in page
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].request_id == request_id
    assert errors[0].exc_info is not None


# --- gunicorn, two workers, Redis ---------------------------------------------------------


def test_gunicorn_settings_from_environment(monkeypatch):
    for name in ("KIM_WORKERS", "WEB_CONCURRENCY", "KIM_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    defaults = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (defaults["bind"], defaults["workers"], defaults["threads"]) == ("127.0.0.1:8000", 2, 4)
    assert defaults["accesslog"] is None
    monkeypatch.setenv("KIM_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("KIM_THREADS", "8")
    monkeypatch.setenv("KIM_TIMEOUT", "120")
    monkeypatch.setenv("KIM_ACCESS_LOG", "-")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["bind"], conf["workers"], conf["threads"], conf["timeout"]) == (
        "0.0.0.0:9000",
        5,
        8,
        120,
    )
    assert conf["accesslog"] == "-"
    monkeypatch.setenv("KIM_WORKERS", "3")  # ours wins over the platform's
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"] == 3


def _redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001 (no server, no module: skip)
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """Plain HTTP with a cookie jar that also returns Secure cookies (we test over http)."""

    def __init__(self, port: int, forwarded_for: str | None = None) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.forwarded_for = forwarded_for

    def request(self, method: str, path: str, form: dict | None = None, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Connection": "close", **headers}
            if self.forwarded_for:
                sent["X-Forwarded-For"] = self.forwarded_for
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = None
            if form is not None:
                body = urlencode(form)
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return response.status, response.headers, text
        finally:
            conn.close()

    def csrf(self) -> str:
        status, _, page = self.request("GET", "/login")
        assert status == 200
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    def login(self, email: str, password: str, token: str) -> int:
        form = {"email": email, "password": password, "csrf_token": token}
        return self.request("POST", "/login", form)[0]


@pytest.fixture
def served_database(db_url):
    """A migrated database with the reference data and one district admin (by the CLI)."""
    app = make_app(db_url)
    with app.app_context():
        upgrade()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["reference", "load"]).exit_code == 0
    result = runner.invoke(
        args=[
            "users",
            "create",
            "betrieb@test.example",
            "--role",
            "district_admin",
            "--password-stdin",
        ],
        input=STRONG + "\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        from kim_admin.extensions import db

        db.engine.dispose()
    return db_url


def _start_gunicorn(db_url: str, log: Path, trusted: int, workers: int):
    port = _free_port()
    env = {
        **os.environ,
        "KIM_DATABASE_URL": db_url,
        "KIM_ENV": "production",
        "KIM_SECRET_KEY": "s" * 32,
        "KIM_WORKERS": str(workers),
        # One thread per worker: a busy worker accepts nothing, so two requests sent at
        # once are served by two workers (with threads, one idle worker may take all).
        "KIM_THREADS": "1",
        "KIM_TIMEOUT": "20",
        "KIM_BIND": f"127.0.0.1:{port}",
        "KIM_TRUSTED_PROXIES": str(trusted),
        "KIM_LOG_FORMAT": "json",
        "KIM_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379",
        # A namespace of its own per run: counters of other runs never interfere.
        "KIM_RATELIMIT_KEY_PREFIX": f"kim-test-{uuid.uuid4().hex}",
        "KIM_GUNICORN_LOGLEVEL": "warning",
    }
    env.pop("KIM_TEST_DATABASE_URL", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        # The production entry script itself (migrate, then gunicorn), as the container runs it.
        process = subprocess.Popen(
            ["/bin/sh", str(ROOT / "deploy" / "entrypoint.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port


def _request_lines(log: Path) -> list[dict]:
    """The app's JSON request lines in a gunicorn log."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "kim_admin.requests"]


def _wait_until_up(process, port: int, log: Path, workers: int) -> None:
    """Until every worker has answered (a booting worker takes no requests)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn ended: {log.read_text()}")
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda _: Browser(port).request("GET", "/healthz"), range(workers)))
        except OSError:
            time.sleep(0.1)
            continue
        if len({line["process"] for line in _request_lines(log)}) >= workers:
            return
    pytest.fail(f"gunicorn did not answer with {workers} workers: {log.read_text()}")


def _stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.mark.skipif(not _redis_available(), reason="no Redis at 127.0.0.1:6379")
def test_gunicorn_two_workers(served_database, tmp_path):
    """Two servers: two workers behind a trusted proxy, and one without a proxy."""
    started = []
    try:
        # The second only shows that X-Forwarded-For is ignored: one worker is enough.
        for trusted, workers in ((1, 2), (0, 1)):
            log = tmp_path / f"gunicorn-{trusted}.log"
            process, port = _start_gunicorn(served_database, log, trusted, workers)
            started.append((process, port, log, workers))
        for process, port, log, workers in started:
            _wait_until_up(process, port, log, workers)
        (_, behind_proxy, proxy_log, _), (_, direct, _, _) = started

        # Health over HTTP, without a cookie.
        status, headers, body = Browser(behind_proxy).request("GET", "/readyz")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        assert headers["Cache-Control"] == "no-store, private"
        assert headers.get("Set-Cookie") is None

        # A real login, the session served by whichever worker answers.
        user = Browser(behind_proxy, forwarded_for="198.51.100.1")
        assert user.login("betrieb@test.example", STRONG, user.csrf()) == 302
        for _ in range(4):
            assert user.request("GET", "/")[0] == 200

        # Failed logins of one account are counted across the workers: the sixth is refused.
        # Two at a time, so that both workers take attempts of the same account.
        attackers = [Browser(behind_proxy, forwarded_for="198.51.100.2") for _ in range(2)]
        tokens = [attacker.csrf() for attacker in attackers]
        codes = []
        with ThreadPoolExecutor(2) as pool:
            for _ in range(2):
                codes += pool.map(
                    lambda n: attackers[n].login("betrieb@test.example", "falsch", tokens[n]),
                    range(2),
                )
        # The fifth and the sixth one after the other: the sixth is refused.
        codes += [attackers[0].login("betrieb@test.example", "falsch", tokens[0]) for _ in range(2)]
        assert codes == [200] * 5 + [429]

        # Behind a trusted proxy each client address has its own 20 attempts ...
        one = Browser(behind_proxy, forwarded_for="203.0.113.7")
        token = one.csrf()
        codes = [one.login(f"a{i}@test.example", "", token) for i in range(21)]
        assert codes == [200] * 20 + [429]
        other = Browser(behind_proxy, forwarded_for="203.0.113.8")
        assert other.login("b@test.example", "", other.csrf()) == 200

        # ... without one, X-Forwarded-For is ignored: every attempt is the peer's.
        spoofer = Browser(direct)
        token = spoofer.csrf()
        codes = []
        for i in range(21):
            spoofer.forwarded_for = f"203.0.113.{i + 10}"
            codes.append(spoofer.login(f"c{i}@test.example", "", token))
        assert codes == [200] * 20 + [429]
    finally:
        for process, *_ in started:
            _stop(process)

    # One JSON line per request, with the fields support needs; the failed logins above
    # were served by both workers, so the throttle really counted across them.
    requests = _request_lines(proxy_log)
    logins = [line for line in requests if line["path"] == "/login" and line["method"] == "POST"]
    assert len(logins) == 1 + 6 + 21 + 1
    assert {line["status"] for line in logins} == {200, 302, 429}
    assert len({line["process"] for line in logins}) == 2
    assert all(line["request_id"] and line["duration_ms"] is not None for line in requests)
    assert any(line["user_id"] for line in requests if line["path"] == "/")
    assert STRONG not in proxy_log.read_text()
