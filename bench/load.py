"""The quarterly deadline under load: 30 users against gunicorn on the NRW-sized data.

``python -m bench.load [--url URL] [--duration 180]`` starts gunicorn with the shipped
``gunicorn.conf.py`` (its defaults: 2 workers × 4 threads) on the database of
:mod:`bench.scale_data`, then runs 30 simulated users in threads for ``--duration``
seconds: 20 municipal users (start page, their entry form, a draft save, their list
of figures, Meldestand), 5 district users (start page, charts, list of figures with
sorts, filters and deep pages, Meldestand, Versorgung, submissions) and 5 members
of the steering group (start page, charts, Meldestand, Versorgung, list of figures).
Each user waits 0.5–1.5 s between requests (someone reading the page).

The users arrive over ``--ramp`` seconds (default 15 s: two people a second),
in a mixed order, as a load tool's spawn rate has them, and as people do at a
deadline: nobody's login lands in the same tenth of a second as 29 others'. The
throughput counts the whole run, ramp included. ``--ramp 0`` starts all 30 at once:
30 password checks (scrypt, about 0.1 s CPU each) then queue on the two cores, which
the login's p95 shows.

Every user comes through "a proxy" with an address of its own (``X-Forwarded-For``,
``KIM_TRUSTED_PROXIES=1``), as behind the production nginx: the login throttle counts
per address and would otherwise take 30 people for one.

Prints throughput, errors (HTTP ≥ 400, timeouts, refused connections) and p50/p95
per page, and for the municipal draft save. Targets (issue "NRW scale"): 0 errors,
save p95 ≤ 1 s, every page p95 ≤ 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

from .scale_data import (
    DEFAULT_URL,
    DISTRICT_USERS,
    PASSWORD,
    STEERING_USERS,
    district_email,
    municipal_email,
    steering_email,
)

ROOT = Path(__file__).resolve().parent.parent
MUNICIPAL_USERS = 20
SAVE = "Entwurf speichern (POST)"
SAVE_P95 = 1.0
PAGE_P95 = 2.0
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
FIELD = re.compile(r'<input[^>]*name="((?:value|version|comment)-[^"]+)"[^>]*>')
VALUE = re.compile(r'value="([^"]*)"')


class Results:
    """Latencies and errors per page, shared by the user threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def add(self, page: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.times[page].append(seconds)
            if error:
                self.errors[page].append(error)


class User(threading.Thread):
    """One person clicking through their pages until ``stop`` is set."""

    #: The open quarter (set before the users start).
    period: int | None = None

    def __init__(self, base: str, email: str, role: str, town: int | None, results, stop, n):
        super().__init__(daemon=True)
        self.base, self.email, self.role, self.town = base, email, role, town
        self.results, self.stop = results, stop
        self.random = random.Random(n)
        self.http = requests.Session()
        self.http.headers["X-Forwarded-For"] = f"10.0.{n // 250}.{n % 250 + 1}"

    def call(self, page: str, method: str, path: str, **kwargs) -> requests.Response | None:
        start = time.perf_counter()
        error = None
        response = None
        try:
            response = self.http.request(
                method, self.base + path, timeout=60, allow_redirects=False, **kwargs
            )
            if response.status_code >= 400:
                error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            error = type(exc).__name__
        self.results.add(page, time.perf_counter() - start, error)
        return response

    def login(self) -> bool:
        page = self.http.get(self.base + "/login", timeout=60).text
        token = CSRF.search(page).group(1)
        response = self.call(
            "Anmeldung (POST)",
            "POST",
            "/login",
            data={"email": self.email, "password": PASSWORD, "csrf_token": token},
        )
        return response is not None and response.status_code in (302, 303)

    def save_draft(self, period: int) -> None:
        path = f"/erfassung/?municipality={self.town}&period={period}"
        form = self.call("Dateneingabe", "GET", path)
        if form is None or form.status_code != 200:
            return
        html = form.text
        data = {"csrf_token": CSRF.search(html).group(1), "action": "save"}
        for tag in FIELD.finditer(html):
            value = VALUE.search(tag.group(0).replace(f'name="{tag.group(1)}"', ""))
            data[tag.group(1)] = value.group(1) if value else ""
        # One figure changes, as when a clerk corrects a value.
        keys = [k for k in data if k.startswith("value-")]
        if keys:
            key = self.random.choice(keys)
            data[key] = str(self.random.randint(0, 30))
        self.call(SAVE, "POST", path, data=data)

    #: Seconds after the start at which this user arrives (see ``--ramp``).
    delay: float = 0.0

    def run(self) -> None:
        if self.stop.wait(self.delay):
            return
        if not self.login():
            self.results.add("Anmeldung (POST)", 0, "Anmeldung fehlgeschlagen")
            return
        period = self.period
        while not self.stop.is_set():
            self.step(period)
            self.stop.wait(self.random.uniform(0.5, 1.5))

    def step(self, period: int | None) -> None:
        pick = self.random.random
        if self.role == "municipal_staff":
            choice = pick()
            if choice < 0.35 and period:
                self.save_draft(period)
            elif choice < 0.55:
                self.call("Startseite", "GET", "/")
            elif choice < 0.7:
                self.call("/dashboard.json", "GET", "/dashboard.json")
            elif choice < 0.85:
                self.call("Kennzahlwerte (Kommune)", "GET", "/monitoring_entry/")
            else:
                self.call("Meldestand", "GET", "/meldestand/")
            return
        choice = pick()
        if choice < 0.15:
            self.call("Startseite", "GET", "/")
        elif choice < 0.3:
            self.call("/dashboard.json", "GET", "/dashboard.json")
        elif choice < 0.55:
            query = self.random.choice(
                ["", "sort=0", "sort=2&desc=1", "sort=4", "page=5000", "search=Sprachkurs"]
            )
            self.call("Kennzahlwerte (Kreis)", "GET", f"/monitoring_entry/?{query}")
        elif choice < 0.7:
            self.call("Meldestand", "GET", "/meldestand/")
        elif choice < 0.85:
            self.call("Versorgung", "GET", "/versorgung/")
        else:
            self.call("Meldungen", "GET", "/submission/")


def login_burst(users: list[User]) -> Results:
    """Every user's login once more, all at the same moment (fresh sessions)."""
    results = Results()
    ready = threading.Barrier(len(users))

    def login(user: User) -> None:
        again = User(user.base, user.email, user.role, user.town, results, None, 0)
        again.http.headers["X-Forwarded-For"] = user.http.headers["X-Forwarded-For"]
        ready.wait()
        if not again.login():
            results.add("Anmeldung (POST)", 0, "Anmeldung fehlgeschlagen")

    threads = [threading.Thread(target=login, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def server_size() -> tuple[int, int]:
    """Workers and threads the shipped ``gunicorn.conf.py`` gives in this environment."""
    import runpy

    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return settings["workers"], settings["threads"]


def start_server(url: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "KIM_DATABASE_URL": url,
        "KIM_SECRET_KEY": "bench-load-" + "x" * 40,
        "KIM_BIND": f"127.0.0.1:{port}",
        "KIM_TRUSTED_PROXIES": "1",
        "KIM_LOG_FORMAT": "text",
    }
    server = subprocess.Popen(  # noqa: S603 (our own gunicorn, our own config)
        [str(Path(sys.executable).parent / "gunicorn"), "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(120):
        try:
            if requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"gunicorn antwortet nicht (Protokoll: {log})")


def town_ids(url: str, count: int) -> tuple[list[int], int]:
    """Municipalities whose open quarter is still editable (see bench.scale_data),
    and that quarter."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        ids = conn.scalars(text("SELECT id FROM municipality ORDER BY id LIMIT :n"), {"n": count})
        ids = list(ids)
        period = conn.scalar(text("SELECT id FROM reporting_period WHERE is_open"))
    engine.dispose()
    return ids, period


def percentile(values: list[float], share: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def run(url: str, duration: float, port: int, say, ramp: float = 15.0) -> dict:
    """Start gunicorn, run the 30 users for ``duration`` seconds (arriving over the
    first ``ramp`` seconds), print the figures."""
    results = Results()
    stop = threading.Event()
    workers, threads = server_size()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(url, port, Path(tmp) / "gunicorn.log")
        try:
            base = f"http://127.0.0.1:{port}"
            towns, User.period = town_ids(url, MUNICIPAL_USERS)
            users = [
                User(base, municipal_email(t), "municipal_staff", t, results, stop, n)
                for n, t in enumerate(towns)
            ]
            users += [
                User(base, district_email(k), "district_admin", None, results, stop, 100 + k)
                for k in range(1, DISTRICT_USERS + 1)
            ]
            users += [
                User(base, steering_email(k), "steering_group", None, results, stop, 200 + k)
                for k in range(1, STEERING_USERS + 1)
            ]
            # Arrival order mixed (a fixed one, so runs compare), evenly over the ramp.
            arrivals = list(users)
            random.Random(30).shuffle(arrivals)
            for k, user in enumerate(arrivals):
                user.delay = ramp * k / len(arrivals)
            for user in users:
                user.start()
            start = time.perf_counter()
            stop.wait(duration)
            stop.set()
            for user in users:
                user.join(timeout=90)
            elapsed = time.perf_counter() - start
            burst = login_burst(users)
        finally:
            server.terminate()
            server.wait(timeout=60)
    total = sum(len(t) for t in results.times.values())
    errors = sum(len(e) for e in results.errors.values())
    say(
        f"{len(users)} Nutzer ({MUNICIPAL_USERS} Kommune, {DISTRICT_USERS} Kreis, "
        f"{STEERING_USERS} Steuerungsgruppe), {elapsed:.0f} s gegen gunicorn "
        f"(gunicorn.conf.py: {workers} Worker × {threads} Threads), "
        + (f"Ankunft über {ramp:g} s verteilt:" if ramp else "alle gleichzeitig angemeldet:")
    )
    say(
        f"{total} Anfragen, {total / elapsed:.1f} Anfragen/s, {errors} Fehler "
        f"({100 * errors / max(total, 1):.2f} %)."
    )
    say()
    say("| Seite | Anfragen | Fehler | p50 (s) | p95 (s) | Urteil |")
    say("|---|---:|---:|---:|---:|---|")
    verdicts = {}
    for page in sorted(results.times):
        times = results.times[page]
        p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
        target = SAVE_P95 if page == SAVE else PAGE_P95
        failed = results.errors.get(page, [])
        ok = p95 <= target and not failed
        verdicts[page] = ok
        note = "PASS" if ok else "MISS"
        if p95 > target:
            note += f" (p95 {p95 - target:+.2f} s über {target:g} s)"
        if failed:
            kinds = ", ".join(sorted(set(failed)))
            note += f" ({kinds})"
        say(f"| {page} | {len(times)} | {len(failed)} | {p50:.2f} | {p95:.2f} | {note} |")
    say()
    times = burst.times["Anmeldung (POST)"]
    say(
        f"Zum Vergleich, nach dem Lauf: alle {len(users)} melden sich in derselben Sekunde "
        f"an: p50 {percentile(times, 0.5):.2f} s, p95 {percentile(times, 0.95):.2f} s, "
        f"{sum(len(e) for e in burst.errors.values())} Fehler."
    )
    say()
    return {"requests": total, "errors": errors, "rate": total / elapsed, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--ramp", type=float, default=15.0, help="seconds over which the users arrive"
    )
    options = parser.parse_args(argv)

    def say(text: str = "") -> None:
        print(text, flush=True)

    run(options.url, options.duration, options.port, say, options.ramp)


if __name__ == "__main__":
    main()
