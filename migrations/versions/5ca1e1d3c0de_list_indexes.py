"""Indexes for the list of figures at a million rows: sorts, filters, comment search.

Each sort the list offers walks an index (ties broken by the primary key), a filter
on a relation with the default sort reads one index range, and the comment search
uses a trigram index on PostgreSQL (pg_trgm; a plain index elsewhere). The start
page's chart sums read a covering index.

Revision ID: 5ca1e1d3c0de
Revises: 7b3f0c2e9d41
Create Date: 2026-11-25 21:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5ca1e1d3c0de'
down_revision = '7b3f0c2e9d41'
branch_labels = None
depends_on = None

INDEXES = [
    ('ix_monitoring_entry_updated_at_id', ['updated_at', 'id']),
    ('ix_monitoring_entry_value_id', ['value', 'id']),
    ('ix_monitoring_entry_municipality_updated', ['municipality_id', 'updated_at', 'id']),
    ('ix_monitoring_entry_period_updated', ['period_id', 'updated_at', 'id']),
    ('ix_monitoring_entry_indicator_updated', ['indicator_id', 'updated_at', 'id']),
    ('ix_monitoring_entry_target_group_updated', ['target_group_id', 'updated_at', 'id']),
]


def upgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    with op.batch_alter_table('monitoring_entry', schema=None) as batch_op:
        for name, columns in INDEXES:
            batch_op.create_index(name, columns, unique=False)
        batch_op.create_index(
            'ix_monitoring_entry_chart',
            ['period_id', 'indicator_id', 'municipality_id'],
            unique=False,
            postgresql_include=['value'],
        )
        batch_op.create_index(
            'ix_monitoring_entry_comment_trgm',
            ['comment'],
            unique=False,
            postgresql_using='gin',
            postgresql_ops={'comment': 'gin_trgm_ops'},
        )
    with op.batch_alter_table('indicator', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_indicator_sort_order'), ['sort_order'], unique=False)


def downgrade():
    with op.batch_alter_table('indicator', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_indicator_sort_order'))
    with op.batch_alter_table('monitoring_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_monitoring_entry_comment_trgm')
        batch_op.drop_index('ix_monitoring_entry_chart')
        for name, _ in reversed(INDEXES):
            batch_op.drop_index(name)
    # pg_trgm stays: other objects of the database may use it.
