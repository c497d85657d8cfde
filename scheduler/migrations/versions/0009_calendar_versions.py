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
    with op.batch_alter_table('organisations') as batch:
        batch.add_column(
            sa.Column('calendar_version', sa.BigInteger(), server_default=sa.text('0'), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('organisations') as batch:
        batch.drop_column('calendar_version')
