"""channels: delivery logs found by their next hop's message id, and channel fallback

Revision ID: 0011
Revises: 0010

An SMS delivery receipt names its message by the id the SMSC gave it: an index on
(channel, message_id) finds the delivery log. A channel fallback's new event
points at the event whose delivery failed, uniquely, so that an event falls back
once whatever retries or workers do; the publication that failed says which
channel to fall back to.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fallback_of", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "uq_event_fallback_of",
            ["fallback_of"],
            unique=True,
            postgresql_where=sa.text("fallback_of IS NOT NULL"),
            sqlite_where=sa.text("fallback_of IS NOT NULL"),
        )
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_log_message_id", ["channel", "message_id"])
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fallback_channel", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.drop_column("fallback_channel")
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_log_message_id")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("uq_event_fallback_of")
        batch_op.drop_column("fallback_of")
