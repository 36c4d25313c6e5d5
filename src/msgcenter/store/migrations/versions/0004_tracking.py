"""tracking logs: opens and clicks, and their archive

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_tracking_log",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("tracking_log_id", sa.BigInteger(), nullable=False),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "instance_id", "tracking_log_id", name=op.f("pk_archived_tracking_log")
        ),
    )
    with op.batch_alter_table("archived_tracking_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archived_tracking_log_created"), ["created"], unique=False
        )

    op.create_table(
        "tracking_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_log")),
    )
    with op.batch_alter_table("tracking_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tracking_log_created"), ["created"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tracking_log_delivery_log_id"), ["delivery_log_id"], unique=False
        )

    with op.batch_alter_table("archive_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "tracking_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("archive_state", schema=None) as batch_op:
        batch_op.drop_column("tracking_at")

    with op.batch_alter_table("tracking_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_log_delivery_log_id"))
        batch_op.drop_index(batch_op.f("ix_tracking_log_created"))

    op.drop_table("tracking_log")
    with op.batch_alter_table("archived_tracking_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archived_tracking_log_created"))

    op.drop_table("archived_tracking_log")
