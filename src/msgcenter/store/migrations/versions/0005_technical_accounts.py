"""technical accounts: OAuth client ids and secrets of operators

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operator", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind", sa.String(length=16), server_default=sa.text("'person'"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("last_used", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("revoked", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("uq_operator_client_id", ["client_id"], unique=True)

    op.create_table(
        "client_secret",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_secret")),
    )
    with op.batch_alter_table("client_secret", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_client_secret_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("client_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_secret_operator_id"))
    op.drop_table("client_secret")
    with op.batch_alter_table("operator", schema=None) as batch_op:
        batch_op.drop_index("uq_operator_client_id")
        batch_op.drop_column("revoked")
        batch_op.drop_column("last_used")
        batch_op.drop_column("client_id")
        batch_op.drop_column("kind")
