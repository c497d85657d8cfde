"""external calendars: evaluators.feed_nonce (their calendar feed's link), external_calendars
(their own calendars, read for busy times), external_busy (the last good busy times) and
external_pushed (interviews written back into a CalDAV calendar)

Revision ID: 0014
Revises: 0013

`feed_nonce` is a nullable ADD COLUMN (no table rebuild on SQLite, which would lose the
triggers of 0001), then each existing evaluator gets a random nonce, as new ones do.
"""

import secrets

from alembic import op
import sqlalchemy as sa
import mailer.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('evaluators', sa.Column('feed_nonce', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    evaluators = sa.table('evaluators', sa.column('id', sa.Uuid()), sa.column('feed_nonce'))
    for (ident,) in bind.execute(sa.select(evaluators.c.id)).all():
        bind.execute(
            evaluators.update()
            .where(evaluators.c.id == ident)
            .values(feed_nonce=secrets.token_urlsafe(16))
        )
    op.create_table(
        'external_calendars',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('organisation_id', sa.Uuid(), nullable=False),
        sa.Column('evaluator_id', sa.Uuid(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('username', sa.String(length=200), nullable=True),
        sa.Column('secret', sa.Text(), nullable=True),
        sa.Column('created_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('due_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_attempt_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_success_at', mailer.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('write_back', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.ForeignKeyConstraint(
            ['evaluator_id'], ['evaluators.id'],
            name=op.f('fk_external_calendars_evaluator_id_evaluators'),
        ),
        sa.ForeignKeyConstraint(
            ['organisation_id'], ['organisations.id'],
            name=op.f('fk_external_calendars_organisation_id_organisations'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_external_calendars')),
    )
    op.create_index(
        op.f('ix_external_calendars_evaluator_id'), 'external_calendars', ['evaluator_id']
    )
    op.create_table(
        'external_pushed',
        sa.Column('calendar_id', sa.Uuid(), nullable=False),
        sa.Column('booking_id', sa.Uuid(), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('pushed_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['booking_id'], ['bookings.id'],
            name=op.f('fk_external_pushed_booking_id_bookings'),
        ),
        sa.ForeignKeyConstraint(
            ['calendar_id'], ['external_calendars.id'],
            name=op.f('fk_external_pushed_calendar_id_external_calendars'),
        ),
        sa.PrimaryKeyConstraint('calendar_id', 'booking_id', name=op.f('pk_external_pushed')),
    )
    op.create_table(
        'external_busy',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('calendar_id', sa.Uuid(), nullable=False),
        sa.Column('evaluator_id', sa.Uuid(), nullable=False),
        sa.Column('start_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('end_at', mailer.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['calendar_id'], ['external_calendars.id'],
            name=op.f('fk_external_busy_calendar_id_external_calendars'),
        ),
        sa.ForeignKeyConstraint(
            ['evaluator_id'], ['evaluators.id'],
            name=op.f('fk_external_busy_evaluator_id_evaluators'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_external_busy')),
    )
    op.create_index(op.f('ix_external_busy_calendar_id'), 'external_busy', ['calendar_id'])
    op.create_index(
        'ix_external_busy_evaluator_start', 'external_busy', ['evaluator_id', 'start_at']
    )


def downgrade() -> None:
    op.drop_index('ix_external_busy_evaluator_start', table_name='external_busy')
    op.drop_index(op.f('ix_external_busy_calendar_id'), table_name='external_busy')
    op.drop_table('external_busy')
    op.drop_table('external_pushed')
    op.drop_index(op.f('ix_external_calendars_evaluator_id'), table_name='external_calendars')
    op.drop_table('external_calendars')
    op.execute('ALTER TABLE evaluators DROP COLUMN feed_nonce')
