"""Figures' integrity and approval: bounded values, target group per breakdown,
first submission time, history lookups.

- ``monitoring_entry.value`` at most 9,999,999,999.99 (what Numeric(12, 2) holds
  on PostgreSQL; SQLite would store more);
- ``monitoring_entry.by_target_group`` mirrors whether a target group is named,
  and the composite key (indicator_id, by_target_group) → indicator ties it to
  the indicator's breakdown: a broken-down indicator's figure names a group,
  any other names none (it replaces the plain key on indicator_id);
- ``submission.first_submitted_at``, kept across returns (decides "on time");
- an index on the audit trail's (object_type, object_id) for a row's history.

Figures that break the target-group rule cannot be repaired automatically (to
which group would a total belong?), so the upgrade stops and names them.

Revision ID: a596107be955
Revises: 81962aa2829f
Create Date: 2026-11-25 18:30:28.074372

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a596107be955'
down_revision = '81962aa2829f'
branch_labels = None
depends_on = None


def _refuse_inconsistent_figures():
    bind = op.get_bind()
    bad = bind.execute(sa.text(
        "SELECT e.id FROM monitoring_entry e JOIN indicator i ON i.id = e.indicator_id "
        "WHERE (i.by_target_group AND e.target_group_id IS NULL) "
        "OR (NOT i.by_target_group AND e.target_group_id IS NOT NULL) "
        "OR e.value > 9999999999.99"
    )).scalars().all()
    if bad:
        raise RuntimeError(
            "Kennzahlwerte passen nicht zur Aufschlüsselung ihrer Kennzahl oder sind zu groß "
            f"(monitoring_entry.id: {', '.join(map(str, bad[:50]))}). Bitte diese Werte "
            "prüfen und korrigieren oder löschen, dann die Migration wiederholen."
        )


def upgrade():
    _refuse_inconsistent_figures()
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_audit_event_object', ['object_type', 'object_id'], unique=False)

    with op.batch_alter_table('indicator', schema=None) as batch_op:
        batch_op.create_index('uq_indicator_id_by_target_group', ['id', 'by_target_group'], unique=True)

    with op.batch_alter_table('monitoring_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('by_target_group', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.execute("UPDATE monitoring_entry SET by_target_group = (target_group_id IS NOT NULL)")
    with op.batch_alter_table('monitoring_entry', schema=None) as batch_op:
        batch_op.alter_column('by_target_group', server_default=None)
        batch_op.drop_constraint('fk_monitoring_entry_indicator_id_indicator', type_='foreignkey')
        batch_op.create_foreign_key(
            'fk_monitoring_entry_indicator_breakdown', 'indicator',
            ['indicator_id', 'by_target_group'], ['id', 'by_target_group'], ondelete='RESTRICT',
        )
        batch_op.create_check_constraint(
            op.f('ck_monitoring_entry_value_max'), 'value IS NULL OR value <= 9999999999.99'
        )
        batch_op.create_check_constraint(
            op.f('ck_monitoring_entry_target_group_matches'),
            '(by_target_group AND target_group_id IS NOT NULL) '
            'OR (NOT by_target_group AND target_group_id IS NULL)',
        )

    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_submitted_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE submission SET first_submitted_at = submitted_at")


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_column('first_submitted_at')

    with op.batch_alter_table('monitoring_entry', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_monitoring_entry_target_group_matches'), type_='check')
        batch_op.drop_constraint(op.f('ck_monitoring_entry_value_max'), type_='check')
        batch_op.drop_constraint('fk_monitoring_entry_indicator_breakdown', type_='foreignkey')
        batch_op.create_foreign_key(
            'fk_monitoring_entry_indicator_id_indicator', 'indicator', ['indicator_id'], ['id'],
            ondelete='RESTRICT',
        )
        batch_op.drop_column('by_target_group')

    with op.batch_alter_table('indicator', schema=None) as batch_op:
        batch_op.drop_index('uq_indicator_id_by_target_group')

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_object')
