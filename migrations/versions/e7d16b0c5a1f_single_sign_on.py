"""Single sign-on: the provider's subject on users, ID-token details on login sessions.

Revision ID: e7d16b0c5a1f
Revises: f7d3a1c5e9b2
Create Date: 2026-11-25 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e7d16b0c5a1f'
down_revision = 'f7d3a1c5e9b2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_token', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refresh_token', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('recheck_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oidc_issuer', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('oidc_subject', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint('uq_user_oidc_issuer_oidc_subject', ['oidc_issuer', 'oidc_subject'])


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_constraint('uq_user_oidc_issuer_oidc_subject', type_='unique')
        batch_op.drop_column('oidc_subject')
        batch_op.drop_column('oidc_issuer')

    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.drop_column('recheck_at')
        batch_op.drop_column('refresh_token')
        batch_op.drop_column('id_token')
