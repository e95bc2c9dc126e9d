"""KIM-Admin: the web tool of a Kreis' Kommunales Integrationsmanagement."""

from __future__ import annotations

from typing import Any

from flask import Flask

from .config import PROJECT_ROOT, Config, finalize, load_environment
from .extensions import babel, csrf, db, login_manager, migrate

#: The release (see CHANGELOG.md).
__version__ = "1.0.0"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the application: load settings, then bind extensions and views."""
    app = Flask(__name__, instance_path=str(PROJECT_ROOT / "instance"), static_url_path="/assets")
    app.config.from_object(Config)
    load_environment(app)
    if config:
        app.config.update(config)
    finalize(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    babel.init_app(app, locale_selector=lambda: "de")
    csrf.init_app(app)

    # Imported here, as in Flask's tutorial: these modules import the models,
    # and the models import this package's extensions.
    from views import init_admin

    from . import (
        accessibility,
        audit,
        auth,
        caching,
        cli,
        errors,
        formatting,
        health,
        operations,
        security,
    )
    from .monitoring import totals

    operations.init_app(app)
    login_manager.init_app(app)
    audit.init_app(app)
    totals.init_app(app)
    caching.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    health.init_app(app)
    accessibility.init_app(app)
    formatting.init_app(app)
    cli.init_app(app)
    init_admin(app)
    return app
