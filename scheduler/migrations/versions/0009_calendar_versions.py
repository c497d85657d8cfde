"""the organisation's calendar version, raised by every change of its slots

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch: SQLite would copy `organisations`, and dropping the
    # old copy fails while every other table's foreign keys point at it.
    op.add_column(
        'organisations',
        sa.Column('calendar_version', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    )


def downgrade() -> None:
    op.drop_column('organisations', 'calendar_version')  # SQLite >= 3.35 drops in place
