"""Login sessions that really end: logout, idle and absolute timeouts.

Flask's session cookie only carries a random token (signed); what it opens is
decided here, on the server, at every request. Logging out deletes the row, so
a copied cookie is worthless afterwards; a password change or deactivation
replaces the user's ``session_token`` and thereby ends every older session,
also across a later reactivation.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, or_, select

from models import LoginSession, User
from models._common import utcnow

from .extensions import db

#: Seconds between two writes of ``last_seen_at`` for one session (not one write per request).
TOUCH_AFTER = 60


def token_hash(token: str) -> str:
    """The key of a session's row: the SHA-256 of its token."""
    return hashlib.sha256(token.encode()).hexdigest()


_hash = token_hash


def _limits() -> tuple[timedelta, timedelta]:
    config = current_app.config
    return (
        timedelta(minutes=config["KIM_SESSION_IDLE_MINUTES"]),
        timedelta(hours=config["KIM_SESSION_MAX_HOURS"]),
    )


def start(user: User, **details: Any) -> str:
    """Open a session for ``user``; return the token for the cookie. The caller commits.

    ``details`` are further columns of the row (the ID token of a single sign-on).
    """
    idle, absolute = _limits()
    now = utcnow()
    # Expired rows of anyone go now (cheap: both columns are indexed).
    db.session.execute(
        delete(LoginSession).where(
            or_(LoginSession.last_seen_at < now - idle, LoginSession.created_at < now - absolute)
        )
    )
    token = secrets.token_urlsafe(32)
    db.session.add(
        LoginSession(
            token_hash=_hash(token),
            user_id=user.id,
            user_token=user.session_token,
            created_at=now,
            last_seen_at=now,
            **details,
        )
    )
    user.login_token = token
    return token


def resolve(token: str | None) -> User | None:
    """The active user whose live session ``token`` names, or None (and commits a touch)."""
    if not token or len(token) > 100:
        return None
    row = db.session.get(LoginSession, _hash(token))
    if row is None:
        return None
    user = row.user
    idle, absolute = _limits()
    now = utcnow()
    expired = now - row.last_seen_at > idle or now - row.created_at > absolute
    if expired or not user.active or row.user_token != user.session_token:
        db.session.delete(row)
        db.session.commit()
        return None
    if (now - row.last_seen_at).total_seconds() > TOUCH_AFTER:
        row.last_seen_at = now
        db.session.commit()
    user.login_token = token
    return user


def end(token: str | None) -> None:
    """Close the session of ``token`` (logout). The caller commits."""
    if token:
        db.session.execute(delete(LoginSession).where(LoginSession.token_hash == _hash(token)))


def active_count(user: Any) -> int:
    """How many sessions of ``user`` are open (for tests and the user list)."""
    return len(
        db.session.scalars(select(LoginSession).where(LoginSession.user_id == user.id)).all()
    )
