"""candidates.erased_at: when a candidate's personal data was erased on request

Revision ID: 0010
Revises: 0008

The row stays (their bookings keep pointing at it, anonymous, for the organisation's
statistics); the API answers 404 for it from then on. A nullable column needs no table
rebuild on SQLite, so plain `ADD COLUMN` on both databases.
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


def downgrade() -> None:
    with op.batch_alter_table('candidates') as batch:
        batch.drop_column('erased_at')
