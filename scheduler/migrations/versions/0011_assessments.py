"""assessments: the evaluator's assessment of an interview, and each organisation's scheme

Revision ID: 0011
Revises: 0010

`organisations.assessment_scheme` is null while the organisation uses the default scheme
(CEFR levels); a plain ADD COLUMN, as in 0009, because a batch rebuild of `organisations`
fails while other tables' foreign keys point at it. `assessments` has one row per booking:
the draft the evaluator saves as they type, then the submitted assessment.
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('organisations', sa.Column('assessment_scheme', sa.JSON(), nullable=True))
    op.create_table(
        'assessments',
        sa.Column('booking_id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('scheme', sa.JSON(), nullable=False),
        sa.Column('levels', sa.JSON(), nullable=False),
        sa.Column('overall_level', sa.String(length=32), nullable=True),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('submitted_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('updated_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['booking_id'], ['bookings.id'], name=op.f('fk_assessments_booking_id_bookings')
        ),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_assessments_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('booking_id', name=op.f('pk_assessments')),
    )
    op.create_index(
        op.f('ix_assessments_organisation_id'), 'assessments', ['organisation_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_assessments_organisation_id'), table_name='assessments')
    op.drop_table('assessments')
    op.execute('ALTER TABLE organisations DROP COLUMN assessment_scheme')
