"""Background jobs: the evaluation report off the request, on a real RQ worker and Redis.

The queue tests use the Redis at 127.0.0.1:6379 (database :data:`REDIS_DB`), each
with a queue of its own name, and start ``flask jobs worker`` as a real subprocess
on the test's database. Killing that worker (its work horse, or the whole process
group) must leave the job failed with a German message, never lost.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import event, func, select

from kim_admin import jobs, report
from kim_admin.config import PROJECT_ROOT
from kim_admin.extensions import db
from kim_admin.report import job as report_job
from kim_admin.report import publication
from models import Indicator, Job, User

from . import factories
from .conftest import logged_in
from .support import follow_job, report_download, start_report

#: A Redis database of its own, so that the tests never meet an application's keys.
REDIS_DB = 13
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
TOWNS = ("Arnsberg", "Meschede")


def _redis():
    from redis import Redis

    connection = Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        connection.ping()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis at {REDIS_URL} not reachable ({exc})")
    return connection


@pytest.fixture
def world(app: Flask, accounts) -> dict:
    """2024 Q1–Q4 and 2025 Q1 approved for Arnsberg and Meschede, with contacts."""
    with app.app_context():
        towns = [factories.town(name) for name in TOWNS]
        contacts = db.session.scalar(select(Indicator).where(Indicator.code == "BER_KONT"))
        periods = [factories.period(2024, q, is_open=False) for q in (1, 2, 3, 4)]
        periods.append(factories.period(2025, 1, is_open=False))
        db.session.flush()
        for n, town in enumerate(towns, start=1):
            for k, period in enumerate(periods, start=1):
                factories.entry(town, period, contacts, 10 * n + k)
                factories.submission(town, period, "approved")
        db.session.commit()
        # A published report covers every KIM municipality (figures in two of them).
        return {
            "towns": sorted(publication.participant_ids()),
            "periods": [p.id for p in periods],
        }


def _form(world, first=0, last=3, **extra) -> dict:
    return {
        "first": str(world["periods"][first]),
        "last": str(world["periods"][last]),
        "municipalities": [str(t) for t in world["towns"]],
        "basis": "approved",
        **extra,
    }


@pytest.fixture
def queue(app: Flask) -> Iterator[str]:
    """Point ``app`` at a queue of its own in Redis; its keys are deleted afterwards."""
    connection = _redis()
    name = f"kim-test-{uuid.uuid4().hex[:12]}"
    app.config.update(
        KIM_JOBS_URL=REDIS_URL,
        KIM_JOBS_QUEUE=name,
        KIM_JOBS_HEARTBEAT_SECONDS=1,
        KIM_JOBS_STALE_SECONDS=4,
    )
    yield name
    from rq import Queue

    Queue(name, connection=connection).delete(delete_jobs=True)
    for key in connection.scan_iter(f"rq:*{name}*"):
        connection.delete(key)
    connection.close()


class Worker:
    """``flask jobs worker`` as a subprocess on the test's database and queue."""

    def __init__(self, app: Flask, queue: str, log: Path) -> None:
        env = {
            **os.environ,
            "FLASK_APP": "app.py",
            "KIM_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "KIM_SECRET_KEY": "w" * 32,
            "KIM_JOBS_URL": REDIS_URL,
            "KIM_JOBS_QUEUE": queue,
            "KIM_JOBS_HEARTBEAT_SECONDS": "1",
        }
        env.pop("KIM_DATABASE_PASSWORD", None)
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "flask", "jobs", "worker"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def horse(self) -> int | None:
        """The pid of the work horse (the worker's child running a job), if any."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def kill(self) -> None:
        """SIGKILL the worker, then its horse (RQ gives the horse a process group of its
        own, so both are named): as when the machine or container goes down."""
        horse = self.horse()
        for group in (self.process.pid, horse):
            if group:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


@pytest.fixture
def worker(app: Flask, queue: str, tmp_path: Path) -> Iterator[Worker]:
    running = Worker(app, queue, tmp_path / "worker.log")
    yield running
    running.stop()


def _wait_for(predicate, what: str, wait: float = 90.0):
    """Poll ``predicate`` until it returns something true (a bound, not a timing)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"waited {wait} s for {what}")


def _cells(book: openpyxl.Workbook) -> dict[str, list[tuple]]:
    """Every sheet's values, without the moment of creation (which two builds never share)."""
    result = {}
    for sheet in book:
        rows = []
        for row in sheet.iter_rows(values_only=True):
            if row and row[0] == "Erstellt am":
                continue
            rows.append(
                tuple(
                    "Datenstand" if isinstance(v, str) and v.startswith("Datenstand") else v
                    for v in row
                )
            )
        result[sheet.title] = rows
    return result


def _direct(app: Flask, email: str, world: dict, **options) -> bytes:
    """The report the writer makes for ``email``, built here without any job."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        buffer = io.BytesIO()
        report.build(
            report.ReportOptions(
                world["periods"][0], world["periods"][3], tuple(world["towns"]), **options
            ),
            user,
            buffer,
        )
        db.session.remove()
    return buffer.getvalue()


# --- on a real worker ---------------------------------------------------------------------


def test_report_on_a_real_worker_equals_the_writer(app, world, accounts, queue, worker):
    """Submitted through the page, made by ``flask jobs worker``, downloaded: the same
    workbook as the report writer makes (read back with openpyxl)."""
    session = logged_in(app, accounts.steering)
    started = start_report(session, _form(world, publish="y"))
    assert started.status_code == 202
    state = follow_job(session, started)
    assert state["status"] == "done", (state, worker.log.read_text())
    assert state["progress"] == 100
    download = session.get(state["file"])
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].endswith(
        'filename="KIM-Evaluationsbericht_2024-Q1_2024-Q4.xlsx"'
    )
    got = openpyxl.load_workbook(io.BytesIO(download.data))
    expected = openpyxl.load_workbook(
        io.BytesIO(_direct(app, accounts.steering, world, publish=True, include_raw=False))
    )
    assert got.sheetnames == expected.sheetnames == report.SHEETS[:-1]
    assert _cells(got) == _cells(expected)
    with app.app_context():
        job = db.session.get(Job, started.get_json()["id"])
        assert job.started_at and job.finished_at and job.result_size == len(download.data)


def test_progress_moves_on_a_real_worker(app, queue, worker):
    """The page sees the progress of a running job move (a probe job that takes 3 s)."""
    with app.app_context():
        job = jobs._record("probe", {"seconds": 3}, None)
        jobs.runner().enqueue(job.id)
        seen = []

        def finished():
            db.session.expire_all()
            state = jobs.status(db.session.get(Job, job.id))
            seen.append((state["status"], state["progress"], state["step"]))
            return state["status"] in (jobs.DONE, jobs.FAILED) and state

        state = _wait_for(finished, "the probe job")
        assert state["status"] == jobs.DONE, worker.log.read_text()
        running = [p for s, p, _ in seen if s == jobs.RUNNING]
        assert len(set(running)) >= 2 and running == sorted(running), seen
        assert any(step.startswith("Probeauftrag: Sekunde 2") for _, _, step in seen)


def _running_probe(app: Flask, seconds: int = 60) -> str:
    """A probe job that the worker has started (its first progress written)."""
    with app.app_context():
        job = jobs._record("probe", {"seconds": seconds}, None)
        jobs.runner().enqueue(job.id)
        job_id = job.id

        def running():
            db.session.expire_all()
            found = db.session.get(Job, job_id)
            return found.status == jobs.RUNNING and found.step.startswith("Probeauftrag")

        _wait_for(running, "the probe job to run")
        db.session.remove()
    return job_id


def _ended(app: Flask, job_id: str) -> dict:
    with app.app_context():

        def ended():
            db.session.expire_all()
            state = jobs.status(db.session.get(Job, job_id))
            return state["status"] in (jobs.DONE, jobs.FAILED) and state

        state = _wait_for(ended, "the job to end")
        db.session.remove()
    return state


def test_work_horse_killed_mid_job_is_failed(app, queue, worker):
    """SIGKILL of the process doing the work: its worker marks the job failed at once."""
    job_id = _running_probe(app)
    horse = worker.horse()
    assert horse, worker.log.read_text()
    os.kill(horse, signal.SIGKILL)
    state = _ended(app, job_id)
    assert state["status"] == jobs.FAILED
    assert state["error"] == jobs.WORKER_DIED
    assert "Hintergrunddienst wurde während der Arbeit beendet" in state["error"]


def test_whole_worker_killed_mid_job_is_failed(app, queue, worker):
    """SIGKILL of the worker and its horse together: nobody is left to report, so the
    stopped heartbeat marks the job failed when the page next asks."""
    job_id = _running_probe(app)
    worker.kill()
    # On SQLite a job counts as dead only after the time limit (see jobs.check): a short
    # one here, set after the job was queued with the usual one.
    app.config["KIM_JOBS_TIMEOUT"] = 5
    state = _ended(app, job_id)
    assert state["status"] == jobs.FAILED and state["error"] == jobs.WORKER_DIED


def test_job_over_its_time_limit_is_failed(app, queue, worker):
    app.config["KIM_JOBS_TIMEOUT"] = 2
    with app.app_context():
        job = jobs._record("probe", {"seconds": 30}, None)
        jobs.runner().enqueue(job.id)
        job_id = job.id
        db.session.remove()
    state = _ended(app, job_id)
    assert state["status"] == jobs.FAILED and state["error"] == jobs.TIMED_OUT, (
        worker.log.read_text()
    )


def test_post_does_no_report_work(app, world, accounts, queue):
    """With no worker running, the POST of a published report only records the job:
    not one query of the figures (the disclosure audit needs them), no file."""
    session = logged_in(app, accounts.steering)
    form = _form(world, publish="y", raw="y")
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def listen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        started = start_report(session, form)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert started.status_code == 202
    assert any(s.startswith("INSERT INTO job") for s in statements)
    assert not [s for s in statements if "monitoring_entry" in s], "report work in the request"
    with app.app_context():
        job = db.session.get(Job, started.get_json()["id"])
        assert job.status == jobs.QUEUED and job.result is None and job.progress == 0
        assert job.parameters["publish"] is True and job.parameters["include_raw"] is True


def test_unreachable_queue_is_a_german_message(app, world, accounts):
    app.config["KIM_JOBS_URL"] = "redis://127.0.0.1:1/0"
    session = logged_in(app, accounts.steering)
    response = start_report(session, _form(world))
    assert response.status_code == 400
    assert jobs.QUEUE_DOWN in response.get_data(as_text=True)
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.status == jobs.FAILED and job.error == jobs.QUEUE_DOWN


# --- without Redis: a thread of the app process ------------------------------------------


def test_inline_runner_without_redis(app, world, accounts):
    assert not app.config["KIM_JOBS_URL"]
    with app.app_context():
        assert isinstance(jobs.runner(), jobs.InlineRunner)
    session = logged_in(app, accounts.district)
    response = report_download(session, _form(world))
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    expected = openpyxl.load_workbook(
        io.BytesIO(_direct(app, accounts.district, world, include_raw=False))
    )
    assert _cells(book) == _cells(expected)
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.status == jobs.DONE and job.kind == "report"
        assert job.parameters["include_raw"] is False


def test_failure_in_the_work_is_shown_in_german(app, world, accounts):
    """A report that cannot be made (the user deactivated meanwhile) fails in German."""
    session = logged_in(app, accounts.steering)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        job = jobs._record(
            "report",
            report_job.parameters(
                report.ReportOptions(
                    world["periods"][0], world["periods"][3], tuple(world["towns"])
                )
            ),
            user,
        )
        user.active = False
        db.session.commit()
        with pytest.raises(report.ReportError):
            jobs.run(job.id)
        db.session.expire_all()
        failed = db.session.get(Job, job.id)
        assert failed.status == jobs.FAILED
        assert failed.error == "Das Benutzerkonto ist nicht mehr aktiv."
    assert session.get(f"/bericht/auftrag/{job.id}/status").status_code == 302


def test_result_over_the_size_bound_fails(app, world, accounts):
    app.config["KIM_JOBS_MAX_RESULT_BYTES"] = 1000
    session = logged_in(app, accounts.steering)
    state = follow_job(session, start_report(session, _form(world)))
    assert state["status"] == "failed"
    assert "erlaubt sind höchstens 0,001 MB" in state["error"]
    assert "ohne Rohdaten" in state["error"]


# --- only the user who started a job ------------------------------------------------------


def test_nobody_else_can_poll_or_download_a_job(app, world, accounts):
    owner = logged_in(app, accounts.steering)
    started = start_report(owner, _form(world))
    state = follow_job(owner, started)
    assert state["status"] == "done"
    urls = started.get_json()
    for name in ("page", "status", "file"):
        assert owner.get(urls[name]).status_code == 200, name
    for email in (accounts.district, accounts.arnsberg, accounts.meschede):
        other = logged_in(app, email)
        for name in ("page", "status", "file"):
            response = other.get(urls[name])
            assert response.status_code == 404, (email, name)
            assert b"Evaluationsbericht_" not in response.data
    anonymous = app.test_client()
    for name in ("page", "status", "file"):
        response = anonymous.get(urls[name])
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert owner.get("/bericht/auftrag/" + "0" * 32 + "/status").status_code == 404


def test_a_moved_user_loses_their_old_jobs(app, world, accounts):
    """A municipal user moved to another municipality cannot fetch the old one's report."""
    arnsberg = logged_in(app, accounts.arnsberg)
    form = {**_form(world), "municipalities": [str(world["towns"][0])]}
    started = start_report(arnsberg, form)
    assert follow_job(arnsberg, started)["status"] == "done"
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.arnsberg))
        user.municipality = factories.town("Meschede")
        db.session.commit()
    again = logged_in(app, accounts.arnsberg)
    assert again.get(started.get_json()["file"]).status_code == 404


def test_too_many_jobs_at_once_are_refused(app, world, accounts, queue):
    session = logged_in(app, accounts.steering)
    for _ in range(jobs.MAX_ACTIVE_PER_USER):
        assert start_report(session, _form(world)).status_code == 202
    refused = start_report(session, _form(world))
    assert refused.status_code == 400
    assert "bereits 3 Aufträge von Ihnen in Arbeit" in refused.get_data(as_text=True)


# --- progress of the report itself ---------------------------------------------------------


def test_report_tells_its_progress_in_german(app, world, accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        seen: list[tuple[int, str]] = []
        options = report.ReportOptions(
            world["periods"][0], world["periods"][3], tuple(world["towns"]), publish=True
        )
        report.build(options, user, io.BytesIO(), lambda p, s: seen.append((p, s)))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and 0 < percents[0] and percents[-1] == 95
    steps = [s for _, s in seen]
    assert steps[0] == "Daten werden gelesen"
    assert "Geheimhaltung wird geprüft (Offenlegungsprüfung)" in steps
    assert "Blatt „Kennzahlen“ wird geschrieben" in steps
    # The disclosure audit comes before the first sheet.
    assert steps.index("Geheimhaltung wird geprüft (Offenlegungsprüfung)") < steps.index(
        "Blatt „Übersicht“ wird geschrieben"
    )


# --- "für Veröffentlichung": one whole calendar year --------------------------------------


def test_published_report_defaults_to_the_last_whole_year(app, world, accounts):
    with app.app_context():
        year = report.last_complete_year()
        assert [(p.year, p.quarter) for p in year] == [(2024, q) for q in (1, 2, 3, 4)]
    session = logged_in(app, accounts.steering)
    html = session.get("/bericht/").get_data(as_text=True)
    assert f'data-published-first="{world["periods"][0]}"' in html
    assert f'data-published-last="{world["periods"][3]}"' in html
    # A range that is not one calendar year is refused before any job, beside the box.
    refused = start_report(session, _form(world, first=1, last=4, publish="y"))
    assert refused.status_code == 400
    assert "genau ein Kalenderjahr" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.id))) == 0


def test_last_whole_year_needs_four_ended_quarters(app, accounts):
    with app.app_context():
        this_year = date.today().year
        for quarter in (1, 2, 3, 4):
            factories.period(this_year, quarter)  # this year has not ended
        for quarter in (2, 3, 4):
            factories.period(this_year - 1, quarter)  # last year lacks Q1
        db.session.commit()
        assert report.last_complete_year() == []
        factories.period(this_year - 1, 1)
        db.session.commit()
        assert [p.year for p in report.last_complete_year()] == [this_year - 1] * 4


def test_old_jobs_are_purged(app, world, accounts):
    session = logged_in(app, accounts.steering)
    state = follow_job(session, start_report(session, _form(world)))
    assert state["status"] == "done"
    app.config["KIM_JOBS_KEEP_HOURS"] = 0
    with app.app_context():
        assert jobs.purge() == 1
        assert db.session.scalar(select(func.count(Job.id))) == 0


def test_probe_command_runs_inline(app):
    result = app.test_cli_runner().invoke(args=["jobs", "probe", "--seconds", "0"])
    assert result.exit_code == 0, result.output
    assert "Die Hintergrundaufträge laufen." in result.output


def test_worker_command_needs_redis(app):
    result = app.test_cli_runner().invoke(args=["jobs", "worker"])
    assert result.exit_code != 0 and "KIM_JOBS_URL ist nicht gesetzt" in result.output


def test_published_report_of_some_municipalities_is_refused_before_any_job(app, world, accounts):
    """Two published reports over different municipalities could be subtracted."""
    session = logged_in(app, accounts.steering)
    some = _form(world, publish="y", municipalities=[str(world["towns"][0])])
    refused = start_report(session, some)
    assert refused.status_code == 400
    assert "alle KIM-Kommunen wählen" in refused.get_data(as_text=True)
    provisional = _form(world, publish="y", basis="all")
    refused = start_report(session, provisional)
    assert refused.status_code == 400
    assert "nur freigegebene Zahlen" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.id))) == 0


# --- large list exports -----------------------------------------------------------------------


@pytest.fixture
def rooms(app: Flask, accounts) -> None:
    """Three rooms in Arnsberg, two in Meschede."""
    with app.app_context():
        for name in ("A1", "A2", "A3"):
            factories.room("Arnsberg", f"Raum {name}")
        for name in ("M1", "M2"):
            factories.room("Meschede", f"Raum {name}")
        db.session.commit()


@pytest.mark.parametrize("export_type", ["csv", "xlsx"])
def test_large_list_export_runs_as_a_job(app, rooms, accounts, export_type):
    """Above KIM_JOBS_EXPORT_ROWS the export is a job whose file is the export the
    request would have sent (filters and sort kept); below it, the request sends it."""
    path = f"/room/export/{export_type}/?sort=0&search=Raum"
    session = logged_in(app, accounts.district)
    direct = session.get(path)
    assert direct.status_code == 200 and direct.headers["Content-Disposition"]
    app.config["KIM_JOBS_EXPORT_ROWS"] = 4
    started = session.get(path)
    assert started.status_code == 303
    page = started.headers["Location"]
    assert "/bericht/auftrag/" in page
    state = follow_job(session, page + "status")
    assert state["status"] == "done" and state["subject"] == "Der Export"
    assert state["filename"].startswith("Raeume_") and state["filename"].endswith(export_type)
    download = session.get(state["file"])
    if export_type == "csv":
        assert download.data == direct.data
    else:
        rows = [
            list(openpyxl.load_workbook(io.BytesIO(r.data)).active.iter_rows(values_only=True))
            for r in (download, direct)
        ]
        assert rows[0] == rows[1] and len(rows[0]) == 6
    html = session.get(page).get_data(as_text=True)
    assert "Der Export ist fertig" in html


def test_export_job_keeps_the_users_scope(app, rooms, accounts):
    app.config["KIM_JOBS_EXPORT_ROWS"] = 2
    arnsberg = logged_in(app, accounts.arnsberg)
    started = arnsberg.get("/room/export/csv/")
    assert started.status_code == 303
    state = follow_job(arnsberg, started.headers["Location"] + "status")
    text = arnsberg.get(state["file"]).get_data(as_text=True)
    assert "Raum A1" in text and "Raum M1" not in text
    steering = logged_in(app, accounts.steering)
    assert steering.get(state["file"]).status_code == 404
    # Below the bound (two rows for Meschede) the export stays in the request.
    meschede = logged_in(app, accounts.meschede)
    assert meschede.get("/room/export/csv/").status_code == 200
