"""The triggers that keep ``audit_event`` append-only, in one place.

Migration ``c41d7e2a9b10`` creates them from here, and ``flask audit purge``
(:mod:`kim_admin.retention`) drops the one that refuses DELETE and recreates it from
the same text inside its transaction. Changing a statement here changes what the
migration would create: add a new migration that replaces the triggers instead.
"""

from __future__ import annotations

MESSAGE = "audit_event is append-only"
CONTENT = [
    "created_at",
    "user_email",
    "action",
    "object_type",
    "object_id",
    "old_values",
    "new_values",
]

_CHANGED = " OR ".join(f"NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" for c in ["id", *CONTENT])

POSTGRESQL_FUNCTION = f"""
            CREATE FUNCTION audit_event_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
                    RAISE EXCEPTION '{MESSAGE}';
                END IF;
                IF {_CHANGED}
                   OR (NEW.user_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM OLD.user_id)
                   OR (NEW.municipality_id IS NOT NULL
                       AND NEW.municipality_id IS DISTINCT FROM OLD.municipality_id) THEN
                    RAISE EXCEPTION '{MESSAGE}';
                END IF;
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
        """

#: name -> CREATE TRIGGER statement, per dialect, in the order the migration creates them.
TRIGGERS: dict[str, dict[str, str]] = {
    "postgresql": {
        "audit_event_append_only": """
            CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
        """,
        "audit_event_no_truncate": """
            CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
        """,
    },
    "sqlite": {
        "audit_event_no_delete": f"""
            CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """,
        "audit_event_no_update": f"""
            CREATE TRIGGER audit_event_no_update BEFORE UPDATE OF id, {", ".join(CONTENT)}
            ON audit_event BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """,
        "audit_event_only_unlink": f"""
            CREATE TRIGGER audit_event_only_unlink BEFORE UPDATE OF user_id, municipality_id
            ON audit_event
            WHEN (NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id)
              OR (NEW.municipality_id IS NOT NULL
                  AND NEW.municipality_id IS NOT OLD.municipality_id)
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """,
    },
}

#: The triggers that refuse DELETE (what a purge lifts for the length of its transaction).
DELETE_GUARDS = {"postgresql": ["audit_event_append_only"], "sqlite": ["audit_event_no_delete"]}


def _dialect(name: str) -> str:
    return "postgresql" if name == "postgresql" else "sqlite"


def create_statements(dialect: str) -> list[str]:
    """Everything the migration creates, in order."""
    head = [POSTGRESQL_FUNCTION] if _dialect(dialect) == "postgresql" else []
    return head + list(TRIGGERS[_dialect(dialect)].values())


def drop_statements(dialect: str) -> list[str]:
    """What the migration's downgrade drops, in order."""
    if _dialect(dialect) == "postgresql":
        return [
            "DROP TRIGGER audit_event_no_truncate ON audit_event",
            "DROP TRIGGER audit_event_append_only ON audit_event",
            "DROP FUNCTION audit_event_append_only()",
        ]
    return [f"DROP TRIGGER {name}" for name in TRIGGERS["sqlite"]]


def drop_trigger(dialect: str, name: str) -> str:
    """The statement that drops one trigger."""
    if _dialect(dialect) == "postgresql":
        return f"DROP TRIGGER {name} ON audit_event"
    return f"DROP TRIGGER {name}"


def create_trigger(dialect: str, name: str) -> str:
    """The statement that creates one trigger, exactly as the migration does."""
    return TRIGGERS[_dialect(dialect)][name]
