"""intake: events, status changes, operators, sessions

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("mobile_phone", sa.String(length=32), nullable=True),
        sa.Column("registration_token", sa.Text(), nullable=True),
        sa.Column("mobile_app_uuid", sa.String(length=255), nullable=True),
        sa.Column("wished_channel", sa.SmallInteger(), nullable=False),
        sa.Column("email_format", sa.SmallInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("origin", sa.String(length=255), nullable=True),
        sa.Column("language", sa.String(length=255), nullable=True),
        sa.Column("country", sa.String(length=255), nullable=True),
        sa.Column("correlation_id", sa.String(length=255), nullable=True),
        sa.Column("scheduled", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ctx", sa.Text(), nullable=False),
        sa.Column("ctx_format", sa.String(length=4), nullable=False),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("error_count", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "process_requested_on", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("publication_id", sa.BigInteger(), nullable=True),
        sa.Column("delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_claim",
            ["queue", "process_requested_on"],
            unique=False,
            postgresql_where=sa.text("status = 0"),
            sqlite_where=sa.text("status = 0"),
        )
        batch_op.create_index("ix_event_created", ["created"], unique=False)
        batch_op.create_index("ix_event_email", ["email"], unique=False)
        batch_op.create_index("ix_event_external_id", ["external_id"], unique=False)
        batch_op.create_index(
            "ix_event_status_last_modified", ["status", "last_modified"], unique=False
        )
        batch_op.create_index("ix_event_type_created", ["type", "created"], unique=False)
        batch_op.create_index(
            "uq_event_idempotency",
            ["operator_id", "idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )

    op.create_table(
        "event_status_change",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_status_change")),
    )
    with op.batch_alter_table("event_status_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_status_change_event_id"), ["event_id"], unique=False
        )

    op.create_table(
        "operator",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("rights", sa.String(length=255), nullable=False),
        sa.Column("trusted_networks", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column(
            "correlation_idempotency", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator")),
        sa.UniqueConstraint("login", name=op.f("uq_operator_login")),
    )
    op.create_table(
        "operator_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_operator_session")),
    )
    with op.batch_alter_table("operator_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_session_expires"), ["expires"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_operator_session_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("operator_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_session_operator_id"))
        batch_op.drop_index(batch_op.f("ix_operator_session_expires"))

    op.drop_table("operator_session")
    op.drop_table("operator")
    with op.batch_alter_table("event_status_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_status_change_event_id"))

    op.drop_table("event_status_change")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_event_idempotency",
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_event_type_created")
        batch_op.drop_index("ix_event_status_last_modified")
        batch_op.drop_index("ix_event_external_id")
        batch_op.drop_index("ix_event_email")
        batch_op.drop_index("ix_event_created")
        batch_op.drop_index(
            "ix_event_claim",
            postgresql_where=sa.text("status = 0"),
            sqlite_where=sa.text("status = 0"),
        )

    op.drop_table("event")
