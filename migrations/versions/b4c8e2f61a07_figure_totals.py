"""Running totals of the figures per municipality, quarter and indicator (start page).

Filled from the figures here; kept by kim_admin.monitoring.totals from then on.

Revision ID: b4c8e2f61a07
Revises: 74d3fe732687
Create Date: 2026-11-26 00:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b4c8e2f61a07'
down_revision = '74d3fe732687'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'figure_total',
        sa.Column('municipality_id', sa.Integer(), nullable=False),
        sa.Column('period_id', sa.Integer(), nullable=False),
        sa.Column('indicator_id', sa.Integer(), nullable=False),
        sa.Column('value_sum', sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column('value_count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['indicator_id'], ['indicator.id'], name=op.f('fk_figure_total_indicator_id_indicator'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['municipality_id'], ['municipality.id'], name=op.f('fk_figure_total_municipality_id_municipality'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['period_id'], ['reporting_period.id'], name=op.f('fk_figure_total_period_id_reporting_period'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('municipality_id', 'period_id', 'indicator_id', name=op.f('pk_figure_total')),
    )
    with op.batch_alter_table('figure_total', schema=None) as batch_op:
        batch_op.create_index(
            'ix_figure_total_chart',
            ['period_id', 'indicator_id', 'municipality_id'],
            unique=False,
            postgresql_include=['value_sum', 'value_count'],
        )
    op.execute(
        'INSERT INTO figure_total (municipality_id, period_id, indicator_id, value_sum, value_count) '
        'SELECT municipality_id, period_id, indicator_id, COALESCE(SUM(value), 0), COUNT(value) '
        'FROM monitoring_entry GROUP BY municipality_id, period_id, indicator_id'
    )


def downgrade():
    with op.batch_alter_table('figure_total', schema=None) as batch_op:
        batch_op.drop_index('ix_figure_total_chart', postgresql_include=['value_sum', 'value_count'])
    op.drop_table('figure_total')
