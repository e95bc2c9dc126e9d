"""Store each calendar year's publication as it was first published.

The audit of a year counts on the previous year's published values and hidden cells;
stored, they are read instead of recomputing earlier years' suppression, and later
corrections of a published year no longer change what the next audit assumes.

Revision ID: 74d3fe732687
Revises: 5e7b1c0d4a18
Create Date: 2026-11-26 00:01:20.730179

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '74d3fe732687'
down_revision = '5e7b1c0d4a18'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('published_year',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('municipality_ids', sa.JSON(), nullable=False),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.Column('equations', sa.JSON(), nullable=False),
    sa.Column('totals', sa.JSON(), nullable=False),
    sa.Column('hidden', sa.JSON(), nullable=False),
    sa.Column('unprotected', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('threshold >= 1', name=op.f('ck_published_year_threshold_positive')),
    sa.CheckConstraint('width >= 0', name=op.f('ck_published_year_width_not_negative')),
    sa.CheckConstraint('year BETWEEN 2000 AND 2100', name=op.f('ck_published_year_year_range')),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_published_year_created_by_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_published_year')),
    sa.UniqueConstraint('year', 'threshold', 'width', name=op.f('uq_published_year_year_threshold_width'))
    )


def downgrade():
    op.drop_table('published_year')
