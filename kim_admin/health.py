"""Health checks for load balancers and monitoring: no login, no data, no cookie.

``/healthz`` says the process answers; ``/readyz`` says it can serve: the database
answers and its schema is at the migrations' head. Plain blueprint routes, outside
Flask-Admin, so the access rules of ``views/base.py`` never see them.
"""

from __future__ import annotations

import functools
import logging

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .config import PROJECT_ROOT
from .extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@functools.cache
def script_heads() -> frozenset[str]:
    """The head revision(s) of ``migrations/`` (read once per process)."""
    return frozenset(ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads())


def _answer(body: dict, status: int = 200):
    response = jsonify(body)
    response.status_code = status
    # Never from a cache: a stale "ok" would hide an outage ("private" as on every page
    # of a signed-in user, which these may be asked by, too).
    response.headers["Cache-Control"] = "no-store, private"
    return response


@bp.route("/healthz")
def healthz():
    """The process is alive."""
    return _answer({"status": "ok"})


@bp.route("/readyz")
def readyz():
    """The database answers and its schema is at the migrations' head."""
    checks = {"database": "ok", "migrations": "ok"}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError:
        log.warning("readiness: database not reachable", exc_info=True)
        checks = {"database": "nicht erreichbar", "migrations": "unbekannt"}
    else:
        if current != script_heads():
            checks["migrations"] = "nicht aktuell (flask db upgrade)"
    ready = all(value == "ok" for value in checks.values())
    return _answer(
        {"status": "ok" if ready else "nicht bereit", "checks": checks}, 200 if ready else 503
    )


def init_app(app: Flask) -> None:
    """Register the two routes (no CSRF needed: GET only)."""
    app.register_blueprint(bp)
