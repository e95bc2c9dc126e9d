"""Kreis-wide aggregates shared for a short while (Flask-Caching).

The start page of the district and the steering group sums the figures of every
municipality: at NRW scale (396 towns) that is the most expensive page of all, and
everyone in the Kreisverwaltung sees the same sums. :func:`kreis_wide` keeps such a
result for ``KIM_CACHE_SECONDS`` (default 60) in a cache shared by the workers
(Redis: ``KIM_CACHE_URL``, else ``KIM_JOBS_URL``; without one, each process keeps
its own), and the page says how old it is. Municipal staff see only their own
town's figures, which are cheap: theirs are computed on every request, so a town
sees its saved figures at once. A cache that cannot be reached is skipped, never
an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import current_app
from flask_caching import Cache

from .permissions import is_scoped

log = logging.getLogger(__name__)
cache = Cache()
T = TypeVar("T")


def init_app(app: Any) -> None:
    seconds = int(app.config.get("KIM_CACHE_SECONDS") or 0)
    url = app.config.get("KIM_CACHE_URL") or app.config.get("KIM_JOBS_URL")
    if seconds <= 0:
        config: dict[str, Any] = {"CACHE_TYPE": "NullCache"}
    elif url:
        config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url}
    else:
        config = {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 500}
    # Several deployments (or test runs) on one Redis keep apart.
    prefix = app.config.get("KIM_JOBS_QUEUE") or "kim"
    config |= {"CACHE_DEFAULT_TIMEOUT": max(seconds, 1), "CACHE_KEY_PREFIX": f"{prefix}:cache:"}
    cache.init_app(app, config=config)


def kreis_wide(name: str, user: Any, build: Callable[[], T], *key: Any) -> tuple[T, datetime]:
    """``build()`` and when it was computed (UTC): shared for a user who sees every
    municipality, fresh for municipal staff (see the module doc)."""
    if is_scoped(user, "monitoring_entry") or not current_app.config.get("KIM_CACHE_SECONDS"):
        return build(), datetime.now(UTC)
    cache_key = ":".join([name, str(user.role), *map(str, key)])
    try:
        found = cache.get(cache_key)
    except Exception:  # noqa: BLE001 (a cache outage must not break the page)
        log.warning("cache unreachable, computing %s", name, exc_info=True)
        found = None
    if found is not None:
        return found
    value = build(), datetime.now(UTC)
    try:
        cache.set(cache_key, value)
    except Exception:  # noqa: BLE001
        log.warning("cache unreachable, not storing %s", name, exc_info=True)
    return value
