"""Settings are read by the factory, not at import time."""

from __future__ import annotations

import stat

import pytest

from kim_admin import create_app
from kim_admin.config import _development_secret


def test_database_url_from_environment(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("KIM_DATABASE_URL", url)
    monkeypatch.setenv("KIM_SECRET_KEY", "aus-der-umgebung-" + "x" * 32)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url
    assert app.config["SECRET_KEY"] == "aus-der-umgebung-" + "x" * 32


def test_suppression_threshold_from_environment(monkeypatch):
    assert create_app({"SECRET_KEY": "x"}).config["KIM_SUPPRESSION_THRESHOLD"] == 3
    monkeypatch.setenv("KIM_SUPPRESSION_THRESHOLD", "5")
    assert create_app({"SECRET_KEY": "x"}).config["KIM_SUPPRESSION_THRESHOLD"] == 5


def test_shared_sums_from_environment(monkeypatch, tmp_path):
    assert create_app({"SECRET_KEY": "x"}).config["KIM_CACHE_SECONDS"] == 60
    monkeypatch.setenv("KIM_CACHE_SECONDS", "15")
    secret = tmp_path / "cache-url"
    secret.write_text("redis://127.0.0.1:6379/5\n", encoding="utf-8")
    monkeypatch.setenv("KIM_CACHE_URL_FILE", str(secret))
    app = create_app({"SECRET_KEY": "x"})
    assert app.config["KIM_CACHE_SECONDS"] == 15
    assert app.config["KIM_CACHE_URL"] == "redis://127.0.0.1:6379/5"
    (backend,) = app.extensions["cache"].values()  # Flask-Caching on that Redis
    assert type(backend).__name__ == "RedisCache"


def test_overrides_beat_environment(monkeypatch):
    monkeypatch.setenv("KIM_DATABASE_URL", "sqlite:///ignored.db")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite://"


def test_production_requires_secret_key(monkeypatch):
    monkeypatch.setenv("KIM_ENV", "production")
    monkeypatch.delenv("KIM_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="KIM_SECRET_KEY"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_production_sets_secure_cookie(monkeypatch):
    monkeypatch.setenv("KIM_ENV", "production")
    monkeypatch.setenv("KIM_SECRET_KEY", "g" * 32)
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_short_secret_key_refused(monkeypatch):
    monkeypatch.setenv("KIM_SECRET_KEY", "g" * 31)
    with pytest.raises(RuntimeError, match="zu kurz"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_unknown_environment_refused(monkeypatch):
    monkeypatch.setenv("KIM_ENV", "prod")
    with pytest.raises(RuntimeError, match="Unbekannter Wert KIM_ENV='prod'"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})


def test_development_secret_generated_once(tmp_path):
    first = _development_secret(tmp_path)
    assert len(first) == 64
    assert _development_secret(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_two_apps_side_by_side():
    """The Admin is built per app, so a second create_app() works (Flask-Admin #910)."""
    first = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "a"})
    second = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "b"})
    assert "room.index_view" in first.view_functions
    assert "room.index_view" in second.view_functions


def test_secrets_from_files(monkeypatch, tmp_path):
    """Docker secrets and systemd credentials: every secret may come from a file."""
    (tmp_path / "key").write_text("k" * 40 + "\n")
    (tmp_path / "pw").write_text("p@ss:w/rd#1\n")
    monkeypatch.setenv("KIM_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("KIM_DATABASE_URL", "postgresql+psycopg://kim@db.example/kim")
    monkeypatch.setenv("KIM_DATABASE_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.delenv("KIM_SECRET_KEY", raising=False)
    app = create_app()
    assert app.config["SECRET_KEY"] == "k" * 40
    from sqlalchemy.engine import make_url

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    assert url.password == "p@ss:w/rd#1" and url.host == "db.example"


def test_unreadable_secret_file_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.delenv("KIM_SECRET_KEY", raising=False)
    monkeypatch.setenv("KIM_SECRET_KEY_FILE", str(tmp_path / "fehlt"))
    with pytest.raises(RuntimeError, match="KIM_SECRET_KEY_FILE"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
