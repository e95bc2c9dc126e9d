"""The database under test, and images of known worlds that are put back in milliseconds.

Building a world (schema, reference data, the rows a module needs) costs far more than
copying it, so each world is built once per session and *restored* per test:

- SQLite: every test has its own file; restoring copies the image file over it.
- PostgreSQL: one database for the whole suite; restoring deletes every row, inserts
  the image's rows again and sets each id sequence after the largest id, as a fresh
  database would. The schema is rebuilt only when a test left a different one behind
  (migration tests).

A test that writes still starts from a clean, known world: its own restore.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from kim_admin.extensions import db


@dataclass
class Image:
    """A saved world: a file (SQLite) or every table's rows (PostgreSQL)."""

    name: str
    path: Path | None = None
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class TestDatabase:
    """Where the suite's data lives: a SQLite file per test, or one PostgreSQL database."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, server_url: str | None, image_dir: Path) -> None:
        self.server_url = server_url
        self.image_dir = image_dir
        self._engine: Engine | None = None
        # url -> number of the restore that last wrote it (see ``still_holds``)
        self._writes: dict[str, int] = {}
        self._counter = 0

    @property
    def is_sqlite(self) -> bool:
        return self.server_url is None

    def url(self, tmp_path: Path) -> str:
        """The database a test under ``tmp_path`` uses."""
        return self.server_url or f"sqlite:///{tmp_path / 'test.db'}"

    # --- putting a world in place ------------------------------------------

    def empty(self, url: str) -> None:
        """Drop every table (and the migration stamp) so a test starts from nothing."""
        self._mark(url)
        if self.is_sqlite:
            _sqlite_path(url).unlink(missing_ok=True)
            return
        with self._connect(url).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))

    def capture(self, url: str, name: str) -> Image:
        """Save what the database at ``url`` holds now (its engines must be closed)."""
        if self.is_sqlite:
            path = self.image_dir / f"{name}.db"
            shutil.copyfile(_sqlite_path(url), path)
            return Image(name, path=path)
        rows = {}
        with self._connect(url).connect() as conn:
            for table in db.metadata.sorted_tables:
                rows[table.name] = [dict(r) for r in conn.execute(select(table)).mappings()]
        return Image(name, rows=rows)

    def restore(self, image: Image, url: str) -> int:
        """Make the database at ``url`` hold exactly ``image``; returns a token for
        :meth:`still_holds`."""
        token = self._mark(url)
        if self.is_sqlite:
            assert image.path is not None
            shutil.copyfile(image.path, _sqlite_path(url))
            return token
        tables = db.metadata.sorted_tables
        with self._connect(url).begin() as conn:
            rebuild = set(inspect(conn).get_table_names()) != {t.name for t in tables}
            if not rebuild:
                # DELETE rather than TRUNCATE: TRUNCATE gives each table new files
                # (~80 ms for this schema); deleting a test's few rows takes a few ms.
                try:
                    with conn.begin_nested():
                        conn.exec_driver_sql(_script(_delete_all(conn, t) for t in tables[::-1]))
                except DBAPIError:  # e.g. a trigger keeps rows (an append-only table)
                    rebuild = True
            if rebuild:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
                db.metadata.create_all(conn)
            for table in tables:
                if image.rows.get(table.name):
                    conn.execute(table.insert(), image.rows[table.name])
            conn.exec_driver_sql(_script(_next_id_follows_rows(conn, t) for t in tables))
        return token

    def still_holds(self, url: str, token: int) -> bool:
        """Whether no restore or reset touched ``url`` since the one that returned ``token``."""
        return self._writes.get(url) == token

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- internals -------------------------------------------------------------

    def _mark(self, url: str) -> int:
        self._counter += 1
        self._writes[url] = self._counter
        return self._counter

    def _connect(self, url: str) -> Engine:
        if self._engine is None:
            self._engine = create_engine(url)
        return self._engine


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database, f"not a SQLite file: {url}"
    return Path(database)


def _name(conn, table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _script(statements) -> str:
    """Several statements sent as one (the names in them come from the models)."""
    return ";\n".join(s for s in statements if s)


def _delete_all(conn, table) -> str:
    return f"DELETE FROM {_name(conn, table)}"  # noqa: S608


def _next_id_follows_rows(conn, table) -> str:
    """SQL that lets the next generated id of ``table`` follow its largest one."""
    column = table.autoincrement_column
    if column is None:
        return ""
    name = _name(conn, table)
    return (
        f"SELECT setval(pg_get_serial_sequence('{name}', '{column.name}'), "  # noqa: S608
        f"COALESCE((SELECT MAX({column.name}) FROM {name}), 0) + 1, false)"
    )
