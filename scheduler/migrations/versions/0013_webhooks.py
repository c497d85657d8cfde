"""webhooks: webhook_endpoints (an organisation's receivers, secrets encrypted) and
webhook_deliveries (the durable queue of signed events)

Revision ID: 0013
Revises: 0012
"""

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('previous_secret', sa.Text(), nullable=True),
        sa.Column('previous_until', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_webhook_endpoints_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    op.create_index(
        op.f('ix_webhook_endpoints_organisation_id'),
        'webhook_endpoints',
        ['organisation_id'],
        unique=False,
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Uuid(), nullable=False, comment='Also the webhook-id.'),
        sa.Column('endpoint_id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('booking_id', sa.Uuid(), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('retry_until', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claimed_by', sa.String(length=300), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_response', sa.Text(), nullable=True),
        sa.Column('created_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['endpoint_id'],
            ['webhook_endpoints.id'],
            name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['organisation_id'],
            ['organisations.id'],
            name=op.f('fk_webhook_deliveries_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    )
    op.create_index(
        'ix_webhook_deliveries_due',
        'webhook_deliveries',
        ['status', 'next_attempt_at'],
        unique=False,
    )
    op.create_index(
        'ix_webhook_deliveries_chain',
        'webhook_deliveries',
        ['endpoint_id', 'booking_id', 'position'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_chain', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index(op.f('ix_webhook_endpoints_organisation_id'), table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
