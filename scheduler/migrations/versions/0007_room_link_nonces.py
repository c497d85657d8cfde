"""room link nonces: one per role, so that one link can be revoked without the other

Revision ID: 0007
Revises: 0006

`bookings.room_nonce` was shared by the candidate's and the evaluator's room links: a
booking moved to another evaluator could not revoke the replaced evaluator's link. It
becomes `candidate_room_nonce`, and `evaluator_room_nonce` starts as a copy of it, so that
every link already mailed keeps working (the link's kind is inside its MAC, so the two
links were never interchangeable); from now on each is rotated on its own.

Plain `ALTER TABLE` on both databases: SQLite's batch mode would rebuild `bookings` and lose
its no-overlap triggers (0001). SQLite cannot add a NOT NULL column without a default, so
the new column carries an empty-string default there, which nothing relies on (the model
always sets a nonce); PostgreSQL drops it once the rows are filled.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE bookings RENAME COLUMN room_nonce TO candidate_room_nonce")
    op.execute(
        "ALTER TABLE bookings ADD COLUMN evaluator_room_nonce VARCHAR(64) NOT NULL DEFAULT ''"
    )
    op.execute("UPDATE bookings SET evaluator_room_nonce = candidate_room_nonce")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bookings ALTER COLUMN evaluator_room_nonce DROP DEFAULT")


def downgrade() -> None:
    # The candidate's nonce becomes the shared one again: an evaluator's link whose nonce
    # was rotated since (the booking went to another evaluator) stops working.
    op.execute("ALTER TABLE bookings DROP COLUMN evaluator_room_nonce")
    op.execute("ALTER TABLE bookings RENAME COLUMN candidate_room_nonce TO room_nonce")
