"""retention: per-organisation retention periods and recording notices, legal holds,
evaluator erasure, and the retention runs

Revision ID: 0015
Revises: 0014

`organisations.retention` and `organisations.consent_notices` are JSON overrides of the
server's defaults (null: all defaults). `candidates.hold_reason`/`held_at` are a legal
hold; `evaluators.erased_at` marks an evaluator erased on request. `retention_runs` holds
each organisation's planned, running and finished retention runs (scheduler.retention_runs).
Nullable columns only, so plain `ADD COLUMN` on SQLite (no table rebuild, which would lose
the bookings' triggers, see 0001).
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('organisations', sa.Column('retention', sa.JSON(), nullable=True))
    op.add_column('organisations', sa.Column('consent_notices', sa.JSON(), nullable=True))
    op.add_column('candidates', sa.Column('hold_reason', sa.Text(), nullable=True))
    op.add_column(
        'candidates', sa.Column('held_at', mailer.models.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column(
        'evaluators',
        sa.Column('erased_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_table(
        'retention_runs',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('due_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('claimed_by', sa.String(length=64), nullable=True),
        sa.Column('lease_until', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('started_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('finished_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('counts', sa.JSON(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_retention_runs_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_runs')),
    )
    op.create_index(
        'ix_retention_runs_org_due', 'retention_runs', ['organisation_id', 'due_at'], unique=False
    )
    op.create_index(
        'uq_retention_runs_pending',
        'retention_runs',
        ['organisation_id'],
        unique=True,
        sqlite_where=sa.text('finished_at IS NULL'),
        postgresql_where=sa.text('finished_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index('uq_retention_runs_pending', table_name='retention_runs')
    op.drop_index('ix_retention_runs_org_due', table_name='retention_runs')
    op.drop_table('retention_runs')
    op.execute('ALTER TABLE evaluators DROP COLUMN erased_at')
    op.execute('ALTER TABLE candidates DROP COLUMN held_at')
    op.execute('ALTER TABLE candidates DROP COLUMN hold_reason')
    op.execute('ALTER TABLE organisations DROP COLUMN consent_notices')
    op.execute('ALTER TABLE organisations DROP COLUMN retention')
