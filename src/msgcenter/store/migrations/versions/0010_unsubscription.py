"""unsubscription: one-click opt-outs of a template's stream (RFC 8058)

Revision ID: 0010
Revises: 0009

The execution instance's one-click unsubscribe endpoint records the address that
opted out of a template (in its folder); the processing workflows ignore that
template's messages to it.
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unsubscription",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unsubscription")),
    )
    with op.batch_alter_table("unsubscription", schema=None) as batch_op:
        batch_op.create_index(
            "uq_unsubscription_stream", ["address", "channel", "template", "folder"], unique=True
        )


def downgrade() -> None:
    op.drop_table("unsubscription")
