"""Make the audit trail append-only in the database.

Rows of ``audit_event`` can be inserted, never deleted, and never changed, with
one exception: when a user or municipality is deleted, the foreign keys set
``user_id``/``municipality_id`` to NULL (the e-mail and the values stay in the
row). Triggers enforce this on PostgreSQL and SQLite alike, for every role that
connects, so neither the application nor a command can rewrite history.

Revision ID: c41d7e2a9b10
Revises: a596107be955
Create Date: 2026-11-25 19:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c41d7e2a9b10'
down_revision = 'a596107be955'
branch_labels = None
depends_on = None

MESSAGE = "audit_event is append-only"
CONTENT = ["created_at", "user_email", "action", "object_type", "object_id",
           "old_values", "new_values"]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        changed = " OR ".join(
            f"NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" for c in ["id", *CONTENT]
        )
        op.execute(f"""
            CREATE FUNCTION audit_event_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
                    RAISE EXCEPTION '{MESSAGE}';
                END IF;
                IF {changed}
                   OR (NEW.user_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM OLD.user_id)
                   OR (NEW.municipality_id IS NOT NULL
                       AND NEW.municipality_id IS DISTINCT FROM OLD.municipality_id) THEN
                    RAISE EXCEPTION '{MESSAGE}';
                END IF;
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
        """)
        op.execute("""
            CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
        """)
    else:
        op.execute(f"""
            CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """)
        op.execute(f"""
            CREATE TRIGGER audit_event_no_update BEFORE UPDATE OF id, {", ".join(CONTENT)}
            ON audit_event BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """)
        op.execute(f"""
            CREATE TRIGGER audit_event_only_unlink BEFORE UPDATE OF user_id, municipality_id
            ON audit_event
            WHEN (NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id)
              OR (NEW.municipality_id IS NOT NULL
                  AND NEW.municipality_id IS NOT OLD.municipality_id)
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_event_no_truncate ON audit_event")
        op.execute("DROP TRIGGER audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION audit_event_append_only()")
    else:
        for name in ("audit_event_no_delete", "audit_event_no_update", "audit_event_only_unlink"):
            op.execute(f"DROP TRIGGER {name}")
