"""The audit trail: every change to a row is written as an :class:`AuditEvent`.

Changes are collected from the SQLAlchemy session just before each flush, so
that every path that writes (views, bulk actions, CLI, the reporting workflow)
is logged in the same transaction as the change itself. Logins, exports and
workflow transitions are logged explicitly with :func:`record`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import has_request_context
from flask_login import current_user
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from models import AuditEvent

from .extensions import db

# Columns whose values never go into the trail (only the fact that they changed).
SECRET_COLUMNS = {"password_hash", "session_token"}
# Columns that change on every write and would only add noise.
NOISE_COLUMNS = {"updated_at", "updated_by_id", "version", "last_login_at"}


def _plain(value: Any) -> Any:
    """A JSON-compatible rendering of a column value."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return sorted(str(v) for v in value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _actor() -> tuple[int | None, str | None]:
    """Id and e-mail of the logged-in user, or the command line."""
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user.id, current_user.email
    if has_request_context():
        return None, None
    return None, "Kommandozeile"


def record(
    action: str,
    object_type: str | None = None,
    object_id: Any = None,
    municipality_id: int | None = None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    user_email: str | None = None,
    session: Session | None = None,
) -> AuditEvent:
    """Add an audit event to the current session (committed with the caller's work)."""
    user_id, email = _actor()
    audit_event = AuditEvent(
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        municipality_id=municipality_id,
        user_id=user_id,
        user_email=user_email or email,
        old_values=old,
        new_values=new,
    )
    (session or db.session).add(audit_event)
    return audit_event


def _changes(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Old and new values of the attributes changed on ``obj``."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    state = inspect(obj)
    for attr in state.mapper.attrs:
        key = attr.key
        if key in NOISE_COLUMNS:
            continue
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        is_collection = getattr(attr, "uselist", False)
        is_relation = hasattr(attr, "direction")
        if is_relation and not is_collection:
            continue  # the foreign key column carries the change
        if is_collection:
            before = list(history.unchanged) + list(history.deleted)
            after = list(history.unchanged) + list(history.added)
        else:
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
        if key in SECRET_COLUMNS:
            before, after = "***", "*** (geändert)"
        old[key], new[key] = _plain(before), _plain(after)
    return old, new


def _snapshot(obj: Any) -> dict[str, Any]:
    """All column values of ``obj`` (secrets masked)."""
    values = {}
    for column in inspect(obj).mapper.column_attrs:
        key = column.key
        values[key] = "***" if key in SECRET_COLUMNS else _plain(getattr(obj, key))
    return values


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    """before_flush: note what is about to change, while the old values are known."""
    pending = session.info.setdefault("kim_audit_pending", [])
    for obj in session.new:
        if _audited(obj):
            pending.append(("create", obj, None, None))
    for obj in session.dirty:
        if not _audited(obj) or not session.is_modified(obj):
            continue
        old, new = _changes(obj)
        if new:
            pending.append(("update", obj, old, new))
    for obj in session.deleted:
        if _audited(obj):
            pending.append(("delete", obj, _snapshot(obj), None))


def _audited(obj: Any) -> bool:
    """Every row is audited except the trail itself and models that opt out."""
    return not isinstance(obj, AuditEvent) and getattr(obj, "__audit__", True)


def _write(session: Session, flush_context: Any) -> None:
    """after_flush_postexec: add the events; ids of created rows are known now.

    The events are flushed by the next flush, which ``commit()`` runs itself.
    """
    pending = session.info.pop("kim_audit_pending", [])
    for action, obj, old, new in pending:
        identity = inspect(obj).identity
        municipality_id = _municipality_of(obj)
        if action == "create":
            new = _snapshot(obj)
        elif action == "delete" and obj.__tablename__ == "municipality":
            municipality_id = None  # the row is gone; its values stay in old_values
        record(
            action,
            object_type=obj.__tablename__,
            object_id=identity[0] if identity else None,
            municipality_id=municipality_id,
            old=old,
            new=new,
            session=session,
        )


def _discard(session: Session, *args: Any) -> None:
    """after_rollback: forget changes that never happened."""
    session.info.pop("kim_audit_pending", None)


def _municipality_of(obj: Any) -> int | None:
    if obj.__tablename__ == "municipality":
        identity = inspect(obj).identity
        return identity[0] if identity else None
    return getattr(obj, "municipality_id", None)


def init_app(app: Any) -> None:
    """Listen to the app's scoped session (once per process: the session is shared)."""
    for name, listener in (
        ("before_flush", _collect),
        ("after_flush_postexec", _write),
        ("after_soft_rollback", _discard),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)


# --- display (the Protokoll view) ---------------------------------------------------

#: German words for the trail's actions. Workflow steps ("submission_<step>") take the
#: words of the workflow itself (kim_admin.monitoring.workflow), as the entry page does.
ACTION_LABELS = {
    "create": "angelegt",
    "update": "geändert",
    "delete": "gelöscht",
    "login": "Anmeldung",
    "login_failed": "Anmeldung fehlgeschlagen",
    "login_throttled": "Anmeldung gesperrt (zu viele Versuche)",
    "logout": "Abmeldung",
    "password_changed": "Passwort geändert",
    "password_change_failed": "Passwortänderung fehlgeschlagen",
    "export": "Export",
    "import": "Import",
    "warnings_acknowledged": "Warnungen bestätigt",
    "submission_exception": "Ausnahme gewährt",
    "submission_exception_revoked": "Ausnahme aufgehoben",
    "demo_reset": "Demo-Daten neu geladen",
    "audit_purge": "Protokoll bereinigt",
}

#: German names of the audited tables (and other objects of the trail).
OBJECT_LABELS = {
    "indicator": "Kennzahl",
    "login_session": "Anmeldesitzung",
    "monitoring_entry": "Kennzahlwert",
    "municipality": "Kommune",
    "needs_assessment": "Bedarfserhebung",
    "partner": "Kooperationspartner",
    "partner_municipality": "Partner–Kommune",
    "partner_target_group": "Partner–Zielgruppe",
    "post": "Stelle",
    "post_target_group": "Stelle–Zielgruppe",
    "published_year": "Veröffentlichtes Jahr",
    "reporting_period": "Meldezeitraum",
    "report": "Evaluationsbericht",
    "room": "Raum",
    "submission": "Meldung",
    "target_group": "Zielgruppe",
    "user": "Benutzer",
    "validation_rule": "Prüfregel",
    "audit_event": "Protokoll",
}

#: Shown for an empty value, here and wherever a value may be missing.
EMPTY = "–"


def action_labels() -> dict[str, str]:
    """Every action's German words, the workflow's steps included."""
    from .monitoring.workflow import TRANSITIONS  # the workflow writes to this trail

    steps = {f"submission_{name}": f"Meldung {t.done}" for name, t in TRANSITIONS.items()}
    return {**steps, **ACTION_LABELS}


def action_label(action: str | None) -> str:
    """``Anmeldung`` for ``login``; unknown actions as they are."""
    if not action:
        return EMPTY
    return action_labels().get(action, action)


def object_label(object_type: str | None) -> str:
    """``Raum`` for ``room``; unknown types as they are."""
    if not object_type:
        return EMPTY
    return OBJECT_LABELS.get(object_type, object_type)


def display_value(value: Any) -> str:
    """One stored value as a reader expects it: Ja/Nein, 31.12.2025, 1,5, "–" for none."""
    from .formatting import de_number

    if value is None or value == "" or value == []:
        return EMPTY
    if isinstance(value, bool):
        return "Ja" if value else "Nein"
    if isinstance(value, int | float):
        return de_number(value)
    if isinstance(value, list):
        return ", ".join(display_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {display_value(v)}" for k, v in value.items())
    text = str(value)
    try:
        if len(text) == 10:
            return date.fromisoformat(text).strftime("%d.%m.%Y")
        if len(text) >= 16 and text[10] == "T":
            return datetime.fromisoformat(text).strftime("%d.%m.%Y %H:%M")
    except ValueError:
        pass
    return text
