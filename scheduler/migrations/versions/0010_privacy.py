"""privacy: candidates.erased_at (erasure on request), bookings.recording (one booking
not recorded), room_consents (consent to recording)

Revision ID: 0010
Revises: 0009

A candidate's row stays after erasure (their bookings keep pointing at it, anonymous, for
the organisation's statistics); `erased_at` says it was erased, and the API answers 404
for it from then on. `bookings.recording` is null while the booking follows its
organisation's choice, false when the organisation turned recording off for it (a
participant who does not consent). Nullable columns need no table rebuild on SQLite
(which would lose the bookings' no-overlap triggers, see 0001), so plain `ADD COLUMN`.
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'candidates', sa.Column('erased_at', mailer.models.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column('bookings', sa.Column('recording', sa.Boolean(), nullable=True))
    op.create_table(
        'room_consents',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('booking_id', sa.Uuid(), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('notice', sa.String(length=64), nullable=False),
        sa.Column('consented_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_room_consents')),
    )
    op.create_index(
        'uq_room_consents_booking_role_notice',
        'room_consents',
        ['booking_id', 'role', 'notice'],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index('uq_room_consents_booking_role_notice', table_name='room_consents')
    op.drop_table('room_consents')
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild of bookings would lose its triggers.
    op.execute('ALTER TABLE bookings DROP COLUMN recording')
    op.execute('ALTER TABLE candidates DROP COLUMN erased_at')
