"""bounce reports: every mail received at a bounce address, kept with what it was read as

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_report",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("received", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_report")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("bounce_report", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounce_report_received"), ["received"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_bounce_report_delivery_log_id"), ["delivery_log_id"], unique=False
        )
        batch_op.create_index(
            "ix_bounce_report_recipient_kind", ["recipient", "kind", "received"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bounce_report", schema=None) as batch_op:
        batch_op.drop_index("ix_bounce_report_recipient_kind")
        batch_op.drop_index(batch_op.f("ix_bounce_report_delivery_log_id"))
        batch_op.drop_index(batch_op.f("ix_bounce_report_received"))
    op.drop_table("bounce_report")
