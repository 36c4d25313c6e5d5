"""webhooks: delivery-status webhook subscriptions, their outbox, and the outbox's cursors

Revision ID: 0012
Revises: 0011

Operators subscribe URLs, per folder, to outcomes of events (SPEC §3.7). The
webhookOutbox workflow reads outcomes from their durable source tables past a
cursor per source and, in the same transaction, writes one outbox message per
subscription that wants each; webhookDelivery posts the outbox's due messages.
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=True),
        sa.Column(
            "previous_secret_until", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscription")),
    )
    op.create_table(
        "webhook_message",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("due", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_message")),
        sa.UniqueConstraint("message_id", name=op.f("uq_webhook_message_message_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("webhook_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_message_due",
            ["due"],
            postgresql_where=sa.text("status != 'delivered'"),
            sqlite_where=sa.text("status != 'delivered'"),
        )
        batch_op.create_index("ix_webhook_message_subscription", ["subscription_id", "created"])
    op.create_table(
        "webhook_cursor",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("position_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("gap_since", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_webhook_cursor")),
    )


def downgrade() -> None:
    op.drop_table("webhook_cursor")
    op.drop_table("webhook_message")
    op.drop_table("webhook_subscription")
