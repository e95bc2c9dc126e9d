"""Backups of the whole database: ``flask backup create PATH`` / ``flask backup restore PATH``.

PostgreSQL: ``pg_dump --format=custom`` of the whole database (schema with the audit
trail's triggers, data, migration stamp) and ``pg_restore`` in one transaction. The
connection settings go to the tools through ``PG*`` variables, so a password never
appears in a process list. SQLite: the online backup API, consistent while the app runs.

A restore only goes into an *empty* database: restoring over live data would mix two
states, and the audit trail cannot be emptied (it is append-only).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL

from .extensions import db


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is German."""


def _url() -> URL:
    return db.engine.url


def _sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("Eine SQLite-Datenbank im Arbeitsspeicher kann nicht gesichert werden.")
    return Path(url.database)


def _pg_env(url: URL) -> dict[str, str]:
    """libpq's variables for ``url`` (host, port, user, password, database)."""
    env = dict(os.environ)
    for variable, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[variable] = str(value)
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} fehlt; bitte das Paket postgresql-client installieren "
            "(Version mindestens die des Servers)."
        )
    return path


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} ist fehlgeschlagen: {result.stderr.strip()}")


def create(path: Path) -> None:
    """Write a backup of the app's database to ``path`` (which must not exist yet)."""
    if path.exists():
        raise BackupError(f"{path} gibt es schon; bitte einen neuen Dateinamen wählen.")
    url = _url()
    if url.get_backend_name() == "postgresql":
        _run([_tool("pg_dump"), "--format=custom", f"--file={path}"], _pg_env(url))
        return
    source = sqlite3.connect(_sqlite_file(url))
    target = sqlite3.connect(path)
    try:
        with target:
            source.backup(target)
    finally:
        target.close()
        source.close()


def restore(path: Path) -> None:
    """Restore the backup at ``path`` into the app's database, which must be empty."""
    if not path.is_file():
        raise BackupError(f"Die Sicherung {path} gibt es nicht.")
    tables = inspect(db.engine).get_table_names()
    if tables:
        raise BackupError(
            f"Die Zieldatenbank ist nicht leer ({len(tables)} Tabellen). Eine Sicherung wird "
            "nur in eine leere Datenbank zurückgespielt."
        )
    url = _url()
    db.engine.dispose()
    if url.get_backend_name() == "postgresql":
        # Owners, privileges and comments belong to the old server's roles: the role
        # that restores owns everything afterwards.
        options = ["--no-owner", "--no-acl", "--no-comments", "--exit-on-error"]
        command = [_tool("pg_restore"), *options, "--single-transaction"]
        _run([*command, f"--dbname={url.database}", str(path)], _pg_env(url))
        return
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = sqlite3.connect(_sqlite_file(url))
    try:
        try:
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path} ist keine SQLite-Sicherung.") from exc
        with target:
            source.backup(target)
    finally:
        target.close()
        source.close()
