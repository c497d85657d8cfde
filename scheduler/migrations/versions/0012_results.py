"""results: what the organisation certifies per candidate, its former versions

Revision ID: 0012
Revises: 0011

`results` holds one row per candidate (the current version); `result_versions` keeps each
published version a correction replaced. The verification code itself is never stored:
only its SHA-256 (`code_hash`), for the look-up of /v/{code} (scheduler.results).
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'results',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('candidate_id', sa.Uuid(), nullable=False),
        sa.Column('booking_id', sa.Uuid(), nullable=True),
        sa.Column('oral_level', sa.String(length=32), nullable=True),
        sa.Column('parts', sa.JSON(), nullable=False),
        sa.Column('overall_level', sa.String(length=32), nullable=False),
        sa.Column('target_level', sa.String(length=32), nullable=True),
        sa.Column('target_reached', sa.Boolean(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('published_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('link_nonce', sa.String(length=64), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=True),
        sa.Column('revoked_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoke_reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ['booking_id'], ['bookings.id'], name=op.f('fk_results_booking_id_bookings')
        ),
        sa.ForeignKeyConstraint(
            ['candidate_id'], ['candidates.id'], name=op.f('fk_results_candidate_id_candidates')
        ),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_results_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
        sa.UniqueConstraint('candidate_id', name=op.f('uq_results_candidate_id')),
        sa.UniqueConstraint('code_hash', name=op.f('uq_results_code_hash')),
    )
    op.create_index(
        op.f('ix_results_organisation_id'), 'results', ['organisation_id'], unique=False
    )
    op.create_table(
        'result_versions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('result_id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('replaced_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('actor_name', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_result_versions_organisation_id_organisations'),
        ),
        sa.ForeignKeyConstraint(
            ['result_id'], ['results.id'], name=op.f('fk_result_versions_result_id_results')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_result_versions')),
    )
    op.create_index(
        op.f('ix_result_versions_result_id'), 'result_versions', ['result_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_result_versions_result_id'), table_name='result_versions')
    op.drop_table('result_versions')
    op.drop_index(op.f('ix_results_organisation_id'), table_name='results')
    op.drop_table('results')
