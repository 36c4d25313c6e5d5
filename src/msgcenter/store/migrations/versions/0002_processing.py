"""processing: publications, deliveries, delivery logs, quarantine, workflows, stats

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _delivery_tables()
    _routing_tables()
    _workflow_tables()


def _delivery_tables() -> None:
    """Deliveries and delivery logs."""
    op.create_table(
        "delivery",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "uq_delivery_key", ["template", "queue", "channel", "folder", "month"], unique=True
        )

    op.create_table(
        "delivery_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("publication_id", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("failure_type", sa.String(length=32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("due", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("sent_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_log")),
    )
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_log_due",
            ["queue", "due"],
            unique=False,
            postgresql_where=sa.text("status IN (0, 4)"),
            sqlite_where=sa.text("status IN (0, 4)"),
        )
        batch_op.create_index("ix_delivery_log_event_id", ["event_id"], unique=False)
        batch_op.create_index("ix_delivery_log_last_modified", ["last_modified"], unique=False)


def _routing_tables() -> None:
    """Publications and the quarantine."""
    op.create_table(
        "publication",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("published_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("retired", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publication")),
    )
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.create_index(
            "ix_publication_route", ["event_type", "channel", "queue"], unique=False
        )
        batch_op.create_index("ix_publication_template", ["template", "folder"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failure_type", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_last_modified", ["last_modified"], unique=False)
        batch_op.create_index("uq_quarantine_address", ["address", "channel"], unique=True)


def _workflow_tables() -> None:
    """Statistics samples and workflow states."""
    op.create_table(
        "stats_sample",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("pending_events", sa.Integer(), nullable=False),
        sa.Column("pending_messages", sa.Integer(), nullable=False),
        sa.Column("events_received", sa.Integer(), nullable=False),
        sa.Column("messages_sent", sa.Integer(), nullable=False),
        sa.Column("messages_failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_sample")),
    )
    with op.batch_alter_table("stats_sample", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stats_sample_at"), ["at"], unique=False)

    op.create_table(
        "workflow",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_run", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("watermark", sa.BigInteger(), nullable=True),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workflow")),
    )


def downgrade() -> None:
    op.drop_table("workflow")
    with op.batch_alter_table("stats_sample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stats_sample_at"))

    op.drop_table("stats_sample")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("uq_quarantine_address")
        batch_op.drop_index("ix_quarantine_last_modified")

    op.drop_table("quarantine")
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.drop_index("ix_publication_template")
        batch_op.drop_index("ix_publication_route")

    op.drop_table("publication")
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_log_last_modified")
        batch_op.drop_index("ix_delivery_log_event_id")
        batch_op.drop_index(
            "ix_delivery_log_due",
            postgresql_where=sa.text("status IN (0, 4)"),
            sqlite_where=sa.text("status IN (0, 4)"),
        )

    op.drop_table("delivery_log")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("uq_delivery_key")

    op.drop_table("delivery")
