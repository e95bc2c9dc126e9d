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

# The statements live in kim_admin.audit_guard, so that `flask audit purge` can lift
# the DELETE guard and put it back exactly as created here (same text, same module).
from kim_admin.audit_guard import create_statements, drop_statements

# revision identifiers, used by Alembic.
revision = 'c41d7e2a9b10'
down_revision = 'a596107be955'
branch_labels = None
depends_on = None


def upgrade():
    for statement in create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade():
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
