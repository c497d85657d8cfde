"""timer retries (attempts, retry_at, last_error) and the mail lease's owner

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('timers') as batch:
        batch.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(
            sa.Column('retry_at', mailer.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column('last_error', sa.Text(), nullable=True))
    with op.batch_alter_table('outbox_messages') as batch:
        batch.add_column(
            sa.Column(
                'claimed_by',
                sa.String(length=300),
                nullable=True,
                comment="sending: the worker holding the lease, so a restarted one takes its rows back.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('outbox_messages') as batch:
        batch.drop_column('claimed_by')
    with op.batch_alter_table('timers') as batch:
        batch.drop_column('last_error')
        batch.drop_column('retry_at')
        batch.drop_column('attempts')
