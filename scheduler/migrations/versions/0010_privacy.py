"""privacy: candidates.erased_at (erasure on request), bookings.recording (one booking
not recorded)

Revision ID: 0010
Revises: 0008

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
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'candidates', sa.Column('erased_at', mailer.models.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column('bookings', sa.Column('recording', sa.Boolean(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild of bookings would lose its triggers.
    op.execute('ALTER TABLE bookings DROP COLUMN recording')
    op.execute('ALTER TABLE candidates DROP COLUMN erased_at')
