"""Long work off the request: background jobs on RQ, or in a thread without Redis.

A request that asks for long work (the evaluation report) only records a
:class:`~models.Job` and hands its id to a runner; it answers at once, and the
page polls :func:`status` until the file can be downloaded. The job row is the
one record of the work, whichever runner does it:

* **RQ** when ``KIM_JOBS_URL`` names a Redis (production): ``flask jobs worker``
  runs the jobs in other processes, each in a forked work horse with a time
  limit (``KIM_JOBS_TIMEOUT``).
* **In a thread** of the app process otherwise, so that ``make run`` needs
  nothing else. At most :data:`INLINE_THREADS` jobs run at a time.

A job never disappears silently. The work itself marks its row failed on any
error, with a German message. A work horse that dies (killed, out of memory) is
reported by its RQ worker (:func:`horse_killed`); a job RQ gave up on (time
limit, abandoned) is marked failed when the page next asks (:func:`status`);
and while a job runs, a heartbeat touches its row, so a job whose whole worker
died is marked failed once the heartbeat is older than ``KIM_JOBS_STALE_SECONDS``.

Only the user who started a job may see it, and only with the role and
municipality it was started with (:func:`get_for`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import IO, Any

import click
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup
from sqlalchemy import create_engine, delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from models import JOB_STATUSES, Job
from models._common import utcnow

from .extensions import db

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = (code for code, _ in JOB_STATUSES)
#: German label of each status.
STATUS_LABELS = dict(JOB_STATUSES)
#: How the page names the work of each kind of job (subject of its German sentences).
SUBJECTS = {"report": "Der Bericht", "export": "Der Export", "probe": "Der Probeauftrag"}
#: States in which a job still changes.
ACTIVE = (QUEUED, RUNNING)
#: Jobs of one user that may wait or run at the same time.
MAX_ACTIVE_PER_USER = 3
#: Jobs the thread runner (no Redis) runs at the same time in one process.
INLINE_THREADS = 2

#: What each kind of job runs: ``work(job, progress, target) -> file name``, imported
#: when needed (the report package imports the models, as this module does).
WORK = {
    "report": "kim_admin.report.job:run",
    "export": "kim_admin.jobs:export",
    "probe": "kim_admin.jobs:probe",
}
#: Rows of a list export written between two progress reports.
EXPORT_PROGRESS_ROWS = 10_000

# German messages shown for a failed job.
FAILED_UNEXPECTEDLY = (
    "Der Auftrag ist mit einem unerwarteten Fehler abgebrochen. Bitte erneut starten; "
    "hilft das nicht, bitte die Kreisverwaltung informieren."
)
WORKER_DIED = (
    "Der Hintergrunddienst wurde während der Arbeit beendet; der Auftrag ist abgebrochen. "
    "Bitte erneut starten."
)
TIMED_OUT = "Der Auftrag hat länger gedauert als erlaubt und wurde abgebrochen."
LOST = "Der Auftrag ist in der Warteschlange verloren gegangen. Bitte erneut starten."
NEVER_STARTED = (
    "Der Auftrag wurde nicht gestartet (der Server wurde neu gestartet). Bitte erneut starten."
)
QUEUE_DOWN = "Die Warteschlange für Berichte ist nicht erreichbar. Bitte später erneut versuchen."


class JobError(RuntimeError):
    """A job cannot be started (German message)."""


class WorkError(RuntimeError):
    """The work of a job failed for a reason its user should read (German message)."""


# --- starting and reading jobs ---------------------------------------------------------


def submit(kind: str, parameters: dict[str, Any], user: Any) -> Job:
    """Record a job of ``kind`` for ``user`` and hand it to the runner; returns it at once.

    Raises :class:`JobError` when the user has too many jobs under way or the queue
    cannot be reached (the job is then recorded as failed).
    """
    purge()
    active = db.session.scalar(
        select(func.count(Job.id)).where(Job.user_id == user.id, Job.status.in_(ACTIVE))
    )
    if active >= MAX_ACTIVE_PER_USER:
        raise JobError(
            f"Es sind bereits {active} Aufträge von Ihnen in Arbeit. Bitte warten Sie, bis "
            "einer fertig ist."
        )
    job = _record(kind, parameters, user)
    try:
        runner().enqueue(job.id)
    except Exception as exc:
        log.exception("job %s could not be queued", job.id)
        _finish(job.id, FAILED, error=QUEUE_DOWN)
        raise JobError(QUEUE_DOWN) from exc
    return job


def _record(kind: str, parameters: dict[str, Any], user: Any) -> Job:
    """A new queued job of ``kind``, committed (``user`` None: the command line)."""
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        user_id=user.id if user is not None else None,
        role=user.role if user is not None else "",
        municipality_id=user.municipality_id if user is not None else None,
        parameters=parameters,
        status=QUEUED,
        step="Wartet auf den Start",
    )
    db.session.add(job)
    db.session.commit()
    return job


def get_for(job_id: str, user: Any) -> Job | None:
    """The job ``job_id`` if ``user`` started it with their present role and municipality.

    Anyone else's job, and an unknown id, are None alike (the caller answers 404).
    """
    if not job_id or len(job_id) > 32 or user is None or not user.is_authenticated:
        return None
    job = db.session.get(Job, job_id)
    if (
        job is None
        or job.user_id != user.id
        or job.role != user.role
        or job.municipality_id != user.municipality_id
    ):
        return None
    return job


def status(job: Job) -> dict[str, Any]:
    """What the page shows of ``job``: status, progress, step, error (German).

    Checks first whether a job that should be under way still is (see the module doc).
    """
    if job.status in ACTIVE:
        check(job)
    return {
        "id": job.id,
        "kind": job.kind,
        "subject": SUBJECTS[job.kind],
        "status": job.status,
        "label": STATUS_LABELS[job.status],
        "progress": job.progress,
        "step": job.step,
        "error": job.error,
        "filename": job.filename if job.status == DONE else "",
        "size": job.result_size if job.status == DONE else None,
    }


def check(job: Job) -> None:
    """Mark ``job`` failed if its worker is gone; refreshes it from the database."""
    runner().check(job)
    if job.status == RUNNING:
        config = current_app.config
        stale = config["KIM_JOBS_STALE_SECONDS"]
        if db.engine.dialect.name == "sqlite":
            # A long read (the raw-data sheet) keeps SQLite from writing the heartbeat
            # (see _bookkeeping): only a job silent for longer than any job may run is dead.
            stale = max(stale, config["KIM_JOBS_TIMEOUT"])
        beat = job.heartbeat_at or job.started_at or job.created_at
        if utcnow() - beat > timedelta(seconds=stale):
            _finish(job.id, FAILED, error=WORKER_DIED, only_active=True)
    db.session.refresh(job)


def result_file(job: Job) -> bytes:
    """The finished file of ``job`` (loaded only now: it may be large)."""
    return db.session.scalar(select(Job.result).where(Job.id == job.id)) or b""


def purge() -> int:
    """Delete jobs (and their files) older than ``KIM_JOBS_KEEP_HOURS``; returns how many."""
    limit = utcnow() - timedelta(hours=current_app.config["KIM_JOBS_KEEP_HOURS"])
    deleted = db.session.execute(
        delete(Job).where(
            Job.created_at < limit,
            or_(Job.status.not_in(ACTIVE), Job.created_at < limit - timedelta(days=1)),
        )
    ).rowcount
    db.session.commit()
    return deleted or 0


# --- doing the work ----------------------------------------------------------------------


def run(job_id: str) -> None:
    """Do the work of job ``job_id`` (needs an app context); the row says how it ended."""
    app = current_app._get_current_object()
    started = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(status=RUNNING, started_at=utcnow(), heartbeat_at=utcnow(), progress=1)
    ).rowcount
    db.session.commit()
    if not started:
        return  # failed meanwhile (never started in time), or unknown
    job = db.session.get(Job, job_id)
    work = _import(WORK[job.kind])
    with _bookkeeping(app, job_id) as progress, tempfile.TemporaryFile() as target:
        try:
            filename = work(job, progress, target)
            size = target.seek(0, 2)
            limit = app.config["KIM_JOBS_MAX_RESULT_BYTES"]
            if size > limit:
                raise WorkError(
                    f"Die Datei wäre {_megabytes(size)} MB groß, erlaubt sind höchstens "
                    f"{_megabytes(limit)} MB. Bitte ohne Rohdaten oder einen kürzeren Zeitraum "
                    "wählen."
                )
            target.seek(0)
            content = target.read()
        except Exception as exc:
            db.session.rollback()
            message = str(exc) if isinstance(exc, (WorkError, *_user_errors())) else None
            if message is None:
                log.exception("job %s failed", job_id)
            timeout = _is_timeout(exc)
            _finish(
                job_id, FAILED, error=message or (TIMED_OUT if timeout else FAILED_UNEXPECTEDLY)
            )
            raise
    db.session.rollback()  # the report's read transaction; the result goes in anew
    db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(
            status=DONE,
            progress=100,
            step="Fertig",
            filename=filename,
            result=content,
            result_size=len(content),
            finished_at=utcnow(),
        )
    )
    db.session.commit()


def _megabytes(size: int) -> str:
    """``1,5`` for 1,500,000 bytes (German decimal comma, no needless zeros)."""
    return f"{size / 1e6:.3f}".rstrip("0").rstrip(".").replace(".", ",")


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is written for the user (German)."""
    from .report import ReportError

    return (ReportError,)


def _is_timeout(exc: BaseException) -> bool:
    try:
        from rq.timeouts import JobTimeoutException
    except ImportError:  # pragma: no cover - rq is a runtime requirement
        return False
    return isinstance(exc, JobTimeoutException)


def _finish(job_id: str, state: str, error: str = "", only_active: bool = False) -> None:
    """Set the end state of a job through a connection of its own (any session may be
    in the middle of something)."""
    query = update(Job).where(Job.id == job_id)
    if only_active:
        query = query.where(Job.status.in_(ACTIVE))
    values: dict[str, Any] = {"status": state, "finished_at": utcnow()}
    if error:
        values.update(error=error[:500], step="Abgebrochen")
    with db.engine.begin() as conn:
        conn.execute(query.values(**values))


@contextmanager
def _bookkeeping(app: Flask, job_id: str) -> Iterator[Callable[[int, str], None]]:
    """Progress and heartbeat of a running job, written apart from the work's own session.

    The work reads in one long transaction; progress must be visible at once, so it
    goes through a connection of its own. On SQLite a long read (the raw-data
    cursor) can hold a lock a writer waits for: progress is then skipped rather
    than waited for (it is only news), which the short ``timeout`` ensures.
    """
    engine = _side_engine(app)
    last = [0.0]

    def write(values: dict[str, Any]) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(
                    update(Job).where(Job.id == job_id, Job.status == RUNNING).values(**values)
                )
        except OperationalError:
            log.info("progress of job %s skipped (database busy)", job_id)

    def progress(percent: int, step: str) -> None:
        write({"progress": max(1, min(99, percent)), "step": step[:200], "heartbeat_at": utcnow()})
        last[0] = time.monotonic()

    stop = threading.Event()
    interval = app.config["KIM_JOBS_HEARTBEAT_SECONDS"]

    def beat() -> None:
        while not stop.wait(interval):
            if time.monotonic() - last[0] >= interval:
                write({"heartbeat_at": utcnow()})

    heart = threading.Thread(target=beat, name=f"kim-job-heartbeat-{job_id[:8]}", daemon=True)
    heart.start()
    try:
        yield progress
    finally:
        stop.set()
        heart.join(timeout=interval + 5)
        if engine is not db.engine:
            engine.dispose()


def _side_engine(app: Flask) -> Engine:
    """The engine of the job's bookkeeping: the app's own, except on SQLite (see above)."""
    if db.engine.dialect.name != "sqlite":
        return db.engine
    return create_engine(db.engine.url, poolclass=NullPool, connect_args={"timeout": 0.2})


def _import(path: str) -> Callable[..., str]:
    module, _, name = path.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def probe(job: Job, progress: Callable[[int, str], None], target: IO[bytes]) -> str:
    """A job that only waits ``parameters["seconds"]`` and reports progress each second:
    ``flask jobs probe`` checks with it that the workers run (and the tests kill one)."""
    seconds = int(job.parameters.get("seconds", 1))
    for second in range(seconds):
        progress(100 * second // max(seconds, 1), f"Probeauftrag: Sekunde {second + 1}")
        time.sleep(1)
    target.write(b"ok\n")
    return "probe.txt"


# --- large list exports -------------------------------------------------------------------


def export_in_background(view: Any, export_type: str) -> Any:
    """Hook of a list export (``SecureModelView.export``): with more rows than
    ``KIM_JOBS_EXPORT_ROWS`` the export becomes a job, and the browser is sent to the
    job's page (which shows the progress and then offers the file). Returns that
    redirect, or None to export in the request as before.

    The rows are counted only up to the bound, without the list's sort, so the
    question costs little whatever the table's size.
    """
    from flask import redirect, request, url_for
    from flask_login import current_user

    bound = current_app.config.get("KIM_JOBS_EXPORT_ROWS") or 0
    if bound <= 0:
        return None
    capped = view.export_query().order_by(None).limit(bound + 1).subquery()
    if db.session.scalar(select(func.count()).select_from(capped)) <= bound:
        return None
    job = submit(
        "export",
        {
            "endpoint": view.endpoint,
            "resource": view.resource,
            "export_type": export_type,
            "query": request.query_string.decode()[:2000],
        },
        current_user,
    )
    return redirect(url_for("report.job_page", job_id=job.id), code=303)


def export(job: Job, progress: Callable[[int, str], None], target: IO[bytes]) -> str:
    """Write the list export of ``job`` as its user would get it in the request: the
    same view, the same list arguments (filters, search, sort), the user's scope."""
    from flask_login import login_user

    from . import exports
    from .permissions import EXPORT

    parameters = job.parameters
    app = current_app._get_current_object()
    # Flask-Admin keeps its views in a list without a public lookup by endpoint.
    view = next(
        v for v in app.extensions["admin"][0]._views if v.endpoint == parameters["endpoint"]
    )
    path = f"/{view.endpoint}/export/{parameters['export_type']}/?{parameters['query']}"
    with app.test_request_context(path):
        if job.user is None or not job.user.is_active:
            raise WorkError("Das Benutzerkonto ist nicht mehr aktiv.")
        login_user(job.user)
        if not view.allowed(EXPORT):
            raise WorkError("Für diesen Export fehlt die Berechtigung.")
        table = view.export_table()
        progress(2, "Zeilen werden gezählt")
        total = max(view.export_query().order_by(None).count(), 1)
        rows = table.rows

        def counted() -> Iterator[Any]:
            for n, row in enumerate(rows, start=1):
                if n % EXPORT_PROGRESS_ROWS == 0:
                    shown = f"{min(n, total):,} von {total:,}".replace(",", ".")
                    progress(
                        5 + 90 * min(n, total) // total, f"Zeilen werden geschrieben ({shown})"
                    )
                yield row

        table.rows = counted()
        progress(5, "Zeilen werden geschrieben")
        if parameters["export_type"] == "csv":
            for chunk in exports.csv_chunks(table):
                target.write(chunk)
        else:
            exports.write_xlsx(table, target)
        return view.get_export_name(parameters["export_type"])


# --- runners ------------------------------------------------------------------------------


class InlineRunner:
    """Runs jobs in threads of the app process (no Redis configured)."""

    slots = threading.BoundedSemaphore(INLINE_THREADS)

    def __init__(self, app: Flask) -> None:
        self.app = app

    def enqueue(self, job_id: str) -> None:
        thread = threading.Thread(
            target=self._run, args=(job_id,), name=f"kim-job-{job_id[:8]}", daemon=True
        )
        thread.start()

    def _run(self, job_id: str) -> None:
        with self.slots, self.app.app_context():
            try:
                run(job_id)
            except Exception:  # noqa: S110 - recorded on the job by run()
                pass
            finally:
                db.session.remove()

    def check(self, job: Job) -> None:
        """A job still waiting long after any slot must have come free was lost with the
        process that held its thread (a restart); a running one has its heartbeat."""
        waited = utcnow() - job.created_at
        if job.status == QUEUED and waited > timedelta(
            seconds=INLINE_THREADS * self.app.config["KIM_JOBS_TIMEOUT"]
        ):
            _finish(job.id, FAILED, error=NEVER_STARTED, only_active=True)


class RQRunner:
    """Puts jobs on an RQ queue in Redis; ``flask jobs worker`` runs them."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def connection(self) -> Any:
        """The app's Redis client for ``KIM_JOBS_URL`` (one pool per app and URL)."""
        from redis import Redis

        url = self.app.config["KIM_JOBS_URL"]
        clients = self.app.extensions.setdefault("kim_jobs_redis", {})
        if url not in clients:
            clients[url] = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return clients[url]

    def queue(self, connection: Any = None) -> Any:
        from rq import Queue

        return Queue(self.app.config["KIM_JOBS_QUEUE"], connection=connection or self.connection())

    def enqueue(self, job_id: str) -> None:
        from rq import Callback

        timeout = self.app.config["KIM_JOBS_TIMEOUT"]
        self.queue().enqueue(
            execute,
            job_id,
            job_id=job_id,
            job_timeout=timeout,
            # RQ's own record is only needed while the job is under way: ours is the row.
            result_ttl=600,
            failure_ttl=24 * 3600,
            on_failure=Callback(rq_failed),
        )

    def check(self, job: Job) -> None:
        """Mark ``job`` failed if RQ has given up on it or no longer knows it."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob
        from rq.job import JobStatus

        try:
            rq_job = RQJob.fetch(job.id, connection=self.connection())
            state = rq_job.get_status()
        except NoSuchJobError:
            _finish(job.id, FAILED, error=LOST, only_active=True)
            return
        except Exception:  # Redis away for a moment: the heartbeat still guards
            log.warning("could not ask the queue about job %s", job.id, exc_info=True)
            return
        if state in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            _finish(job.id, FAILED, error=WORKER_DIED, only_active=True)


def runner(app: Flask | None = None) -> InlineRunner | RQRunner:
    """The runner the configuration asks for."""
    app = app or current_app._get_current_object()
    return RQRunner(app) if app.config.get("KIM_JOBS_URL") else InlineRunner(app)


@contextmanager
def _app_context() -> Iterator[None]:
    """The app's context in a worker: the one ``flask jobs worker`` pushed, or a new app
    (``rq worker`` started without Flask)."""
    if has_app_context():
        yield
        return
    from . import create_app

    with create_app().app_context():
        yield


def execute(job_id: str) -> None:
    """RQ's entry point of every job (runs in the work horse)."""
    with _app_context():
        # The horse is a fork of the worker: connections of the parent's pool must not
        # be shared with it (close=False leaves them to the parent).
        db.engine.dispose(close=False)
        try:
            run(job_id)
        finally:
            db.session.remove()


def rq_failed(rq_job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ's failure callback: a job that failed outside our own handling (time limit,
    abandoned by a worker that died) is marked failed too."""
    with _app_context():
        timeout = exc is not None and _is_timeout(exc)
        _finish(rq_job.id, FAILED, error=TIMED_OUT if timeout else WORKER_DIED, only_active=True)


def horse_killed(rq_job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
    """Told by the RQ worker when a work horse died (killed, out of memory)."""
    with _app_context():
        _finish(rq_job.id, FAILED, error=WORKER_DIED, only_active=True)


# --- command line ---------------------------------------------------------------------------

jobs_cli = AppGroup("jobs", help="Hintergrundaufträge (Evaluationsbericht).")


@jobs_cli.command("worker")
@click.option("--burst", is_flag=True, help="Nur die wartenden Aufträge abarbeiten, dann enden.")
def worker_command(burst: bool) -> None:
    """Run the jobs of the queue in KIM_JOBS_URL (one job at a time per worker)."""
    from rq import Worker

    app = current_app._get_current_object()
    if not app.config.get("KIM_JOBS_URL"):
        raise click.ClickException(
            "KIM_JOBS_URL ist nicht gesetzt: Ohne Redis laufen Aufträge im App-Prozess selbst, "
            "ein Worker ist nicht nötig."
        )
    rq_runner = RQRunner(app)
    connection = rq_runner.connection()
    # The parent keeps no database connection: each horse opens its own.
    db.engine.dispose()
    worker = Worker(
        [rq_runner.queue(connection)],
        connection=connection,
        work_horse_killed_handler=horse_killed,
    )
    worker.work(burst=burst, with_scheduler=False)


@jobs_cli.command("probe")
@click.option("--seconds", default=2, show_default=True, type=click.IntRange(0, 600))
@click.option("--wait/--no-wait", default=True, help="Auf das Ende warten.")
def probe_command(seconds: int, wait: bool) -> None:
    """Start a test job that waits SECONDS and check that a worker finishes it."""
    job = _record("probe", {"seconds": seconds}, None)
    runner().enqueue(job.id)
    click.echo(f"Probeauftrag {job.id} gestartet.")
    if not wait:
        return
    limit = time.monotonic() + seconds + current_app.config["KIM_JOBS_STALE_SECONDS"] + 30
    while time.monotonic() < limit:
        db.session.expire_all()
        found = db.session.get(Job, job.id)
        state = status(found)
        if state["status"] == DONE:
            click.echo("Probeauftrag erledigt: Die Hintergrundaufträge laufen.")
            return
        if state["status"] == FAILED:
            raise click.ClickException(f"Probeauftrag fehlgeschlagen: {state['error']}")
        time.sleep(0.5)
    raise click.ClickException("Probeauftrag nicht rechtzeitig erledigt: Läuft ein Worker?")
