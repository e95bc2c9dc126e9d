"""The evaluation report as a job at NRW scale: how fast the request answers, how long the job.

``python -m bench.report_job [--url URL] [--redis URL] [--requests 10]`` uses the data of
:mod:`bench.scale_data`. Each of up to ten users (the district's five, then the steering
group's five) opens the report form and sends it with its defaults (every KIM
municipality, the last four quarters, no raw-data sheet) the way the page's script
does, with RQ on a real Redis (a queue of its own name). Only then does it start
``flask jobs worker``, so that the answer times are the request's alone (target
< 200 ms, issue "NRW scale"), and waits until the worker has made every report. It
prints the answer times, each job's time from ``started_at`` to ``finished_at``, the
file's size and sheets, and checks that the raw-data sheet is off by default.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .pages import _app, login
from .scale_data import (
    DEFAULT_URL,
    DISTRICT_USERS,
    STEERING_USERS,
    district_email,
    steering_email,
)

ROOT = Path(__file__).resolve().parent.parent
ANSWER_MS = 200.0
REDIS_URL = "redis://127.0.0.1:6379/0"


def _worker(url: str, redis_url: str, queue: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "FLASK_APP": "app.py",
        "KIM_DATABASE_URL": url,
        "KIM_SECRET_KEY": "bench-report-job-" + "x" * 32,
        "KIM_JOBS_URL": redis_url,
        "KIM_JOBS_QUEUE": queue,
    }
    return subprocess.Popen(  # noqa: S603 (our own interpreter and CLI)
        [sys.executable, "-m", "flask", "jobs", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def measure(url: str, redis_url: str, requests: int, wait: float = 900.0) -> dict:
    """Send the report form ``requests`` times, then let one worker make the reports."""
    import openpyxl
    from redis import Redis
    from rq import Queue
    from sqlalchemy import delete, select

    from kim_admin import report
    from kim_admin.extensions import db
    from kim_admin.report.sheets import SHEETS
    from models import Job, User

    queue = f"kim-bench-{uuid.uuid4().hex[:12]}"
    app = _app(url, KIM_JOBS_URL=redis_url, KIM_JOBS_QUEUE=queue)
    # One report each for the district's and the steering group's users (a person may
    # have three jobs under way at once).
    emails = [district_email(k) for k in range(1, DISTRICT_USERS + 1)]
    emails += [steering_email(k) for k in range(1, STEERING_USERS + 1)]
    answers, ids, forms, towns, raw_default, starters = [], [], [], 0, False, {}
    for email in emails[:requests]:
        client = app.test_client()
        login(client, email)
        start = time.perf_counter()
        page = client.get("/bericht/")
        forms.append((time.perf_counter() - start) * 1000)
        html = page.get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
        raw_default |= bool(re.search(r'<input[^>]*name="raw"[^>]*checked', html))
        with app.app_context():
            user = db.session.scalar(select(User).where(User.email == email))
            defaults = report.default_options(user)
            db.session.remove()
        towns = max(towns, len(defaults["municipalities"]))
        data = {
            "csrf_token": token,
            "first": str(defaults["first"]),
            "last": str(defaults["last"]),
            "municipalities": [str(t) for t in defaults["municipalities"]],
            "basis": "approved",
        }
        start = time.perf_counter()
        response = client.post("/bericht/", data=data, headers={"X-Requested-With": "fetch"})
        answers.append((time.perf_counter() - start) * 1000)
        if response.status_code != 202:
            raise RuntimeError(f"Bericht nicht gestartet: HTTP {response.status_code}")
        ids.append(response.get_json()["id"])
        starters[ids[-1]] = client  # only the starter sees a job
    redis = Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        worker = _worker(url, redis_url, queue, log)
        try:
            deadline = time.monotonic() + wait
            while True:
                with app.app_context():
                    jobs = db.session.scalars(select(Job).where(Job.id.in_(ids))).all()
                    ended = [j for j in jobs if j.status in ("done", "failed")]
                    if len(ended) == len(ids) or time.monotonic() > deadline:
                        states = {j.id: j.status for j in jobs}
                        seconds = [
                            (j.finished_at - j.started_at).total_seconds()
                            for j in jobs
                            if j.status == "done" and j.started_at and j.finished_at
                        ]
                        sizes = [j.result_size or 0 for j in jobs if j.status == "done"]
                        errors = [j.error for j in jobs if j.status == "failed"]
                        db.session.remove()
                        break
                    db.session.remove()
                time.sleep(0.5)
            first = next((i for i in ids if states.get(i) == "done"), None)
            sheets: list[str] = []
            if first:
                download = starters[first].get(f"/bericht/auftrag/{first}/datei")
                book = openpyxl.load_workbook(io.BytesIO(download.data), read_only=True)
                sheets = book.sheetnames
                book.close()
        finally:
            worker.terminate()
            with app.app_context():  # the bench's own jobs (and their files) go
                db.session.execute(delete(Job).where(Job.id.in_(ids)))
                db.session.commit()
                db.session.remove()
            worker.wait(timeout=60)
            Queue(queue, connection=redis).delete(delete_jobs=True)
            for key in redis.scan_iter(f"rq:*{queue}*"):
                redis.delete(key)
            redis.close()
    with app.app_context():
        db.engine.dispose()
    return {
        "form_ms": statistics.median(forms),
        "answers_ms": answers,
        "towns": towns,
        "done": sum(1 for s in states.values() if s == "done"),
        "failed": sum(1 for s in states.values() if s == "failed"),
        "unfinished": len(ids) - sum(1 for s in states.values() if s in ("done", "failed")),
        "errors": errors,
        "job_seconds": seconds,
        "sizes": sizes,
        "sheets": sheets,
        "raw_default": raw_default,
        "raw_sheet": SHEETS[-1] in sheets,
    }


def report_lines(result: dict, say) -> None:
    answers = sorted(result["answers_ms"])
    p95 = answers[min(len(answers) - 1, round(0.95 * len(answers)) - 1)]
    ok = p95 < ANSWER_MS and not result["failed"] and not result["unfinished"]
    say(
        "Evaluationsbericht als Auftrag (RQ auf Redis, ein `flask jobs worker`), "
        f"je einmal von {len(answers)} Nutzern aus Kreis und Steuerungsgruppe abgeschickt, "
        f"mit den Voreinstellungen des Formulars ({result['towns']} Kommunen):"
    )
    say()
    say("| Messung | Wert | Urteil |")
    say("|---|---:|---|")
    say(f"| Formular (GET), Median | {result['form_ms']:.0f} ms | |")
    say(
        f"| Antwort auf das Absenden ({len(answers)}×), Median / p95 | "
        f"{statistics.median(answers):.0f} / {p95:.0f} ms | "
        f"{'PASS' if p95 < ANSWER_MS else 'MISS'} (Ziel < {ANSWER_MS:.0f} ms) |"
    )
    if result["job_seconds"]:
        times = result["job_seconds"]
        say(
            f"| Auftrag im Worker, Median (min–max) | {statistics.median(times):.1f} s "
            f"({min(times):.1f}–{max(times):.1f} s) | |"
        )
    if result["sizes"]:
        say(f"| Datei | {statistics.median(result['sizes']) / 1e6:.2f} MB | |")
    say(
        f"| Aufträge fertig / fehlgeschlagen / offen | {result['done']} / {result['failed']} / "
        f"{result['unfinished']} | {'PASS' if ok else 'MISS'} |"
    )
    raw_ok = not result["raw_default"] and not result["raw_sheet"]
    say(
        f"| Rohdaten voreingestellt / im Bericht | "
        f"{'ja' if result['raw_default'] else 'nein'} / "
        f"{'ja' if result['raw_sheet'] else 'nein'} | {'PASS' if raw_ok else 'MISS'} |"
    )
    say()
    if result["sheets"]:
        say("Blätter: " + ", ".join(result["sheets"]) + ".")
    if result["errors"]:
        say("Fehler: " + "; ".join(sorted(set(result["errors"]))))
    say()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--redis", default=os.environ.get("KIM_JOBS_URL") or REDIS_URL)
    parser.add_argument("--requests", type=int, default=10)
    options = parser.parse_args(argv)

    def say(text: str = "") -> None:
        print(text, flush=True)

    report_lines(measure(options.url, options.redis, options.requests), say)


if __name__ == "__main__":
    main()
