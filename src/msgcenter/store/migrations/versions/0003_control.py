"""control instance: design objects, execution instances, publication state, archives

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _archive_tables()
    _design_tables()
    _instance_tables()
    _proof_tables()
    _template_tables()


def _archive_tables() -> None:
    """The archive of the execution instances' history."""
    op.create_table(
        "archive_state",
        sa.Column("exec_instance_id", sa.Integer(), nullable=False),
        sa.Column("watermark_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("watermark_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("quarantine_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_run", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_success", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("archived_events", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("exec_instance_id", name=op.f("pk_archive_state")),
    )
    op.create_table(
        "archived_delivery",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("iso_week", sa.String(length=8), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archived_delivery")),
    )
    with op.batch_alter_table("archived_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "uq_archived_delivery_key",
            ["instance_id", "template", "channel", "folder", "iso_week"],
            unique=True,
        )

    op.create_table(
        "archived_delivery_log",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=False),
        sa.Column("archived_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("failure_type", sa.String(length=32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("sent_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "instance_id", "delivery_log_id", name=op.f("pk_archived_delivery_log")
        ),
    )
    with op.batch_alter_table("archived_delivery_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archived_delivery_log_archived_delivery_id"),
            ["archived_delivery_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_archived_delivery_log_last_modified", ["last_modified"], unique=False
        )

    op.create_table(
        "archived_event",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("wished_channel", sa.SmallInteger(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("mobile_phone", sa.String(length=32), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=64), nullable=True),
        sa.Column("delivery_log_id", sa.BigInteger(), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("archived_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "event_id", name=op.f("pk_archived_event")),
    )
    with op.batch_alter_table("archived_event", schema=None) as batch_op:
        batch_op.create_index("ix_archived_event_created", ["created"], unique=False)
        batch_op.create_index("ix_archived_event_type_created", ["type", "created"], unique=False)

    op.create_table(
        "archived_quarantine",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failure_type", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "last_modified", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "instance_id", "address", "channel", name=op.f("pk_archived_quarantine")
        ),
    )


def _design_tables() -> None:
    """Personalisation blocks and event types."""
    op.create_table(
        "block",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block")),
        sa.UniqueConstraint("name", name=op.f("uq_block_name")),
    )
    op.create_table(
        "event_type",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("retired", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_type")),
        sa.UniqueConstraint("name", name=op.f("uq_event_type_name")),
    )


def _instance_tables() -> None:
    """Execution instances, the instance's own identity, and where publications stand."""
    op.create_table(
        "exec_instance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "archive_method", sa.String(length=16), server_default=sa.text("'web'"), nullable=False
        ),
        sa.Column("database_url_encrypted", sa.Text(), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exec_instance")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_exec_instance_instance_id")),
        sa.UniqueConstraint("name", name=op.f("uq_exec_instance_name")),
    )
    op.create_table(
        "instance_info",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_instance_info")),
    )
    op.create_table(
        "instance_publication",
        sa.Column("exec_instance_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("last_attempt", msgcenter.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "exec_instance_id", "template_id", name=op.f("pk_instance_publication")
        ),
    )


def _proof_tables() -> None:
    """Proofs, the publication log and seeds."""
    op.create_table(
        "proof",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("seed_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("sent_by", sa.String(length=64), nullable=False),
        sa.Column("at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proof")),
    )
    with op.batch_alter_table("proof", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proof_template_id"), ["template_id"], unique=False)

    op.create_table(
        "publication_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publication_log")),
    )
    with op.batch_alter_table("publication_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_publication_log_template_id"), ["template_id"], unique=False
        )

    op.create_table(
        "seed",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("ctx", sa.Text(), nullable=False),
        sa.Column("ctx_format", sa.String(length=4), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seed")),
    )
    with op.batch_alter_table("seed", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_seed_template_id"), ["template_id"], unique=False)


def _template_tables() -> None:
    """Templates and their published versions."""
    op.create_table(
        "template",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("published_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("published", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template")),
        sa.UniqueConstraint("name", name=op.f("uq_template_name")),
    )
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.create_index("uq_template_route", ["event_type", "channel", "folder"], unique=True)

    op.create_table(
        "template_version",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("published_at", msgcenter.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_version")),
    )
    with op.batch_alter_table("template_version", schema=None) as batch_op:
        batch_op.create_index("uq_template_version", ["template_id", "version"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("template_version", schema=None) as batch_op:
        batch_op.drop_index("uq_template_version")

    op.drop_table("template_version")
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.drop_index("uq_template_route")

    op.drop_table("template")
    with op.batch_alter_table("seed", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seed_template_id"))

    op.drop_table("seed")
    with op.batch_alter_table("publication_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_publication_log_template_id"))

    op.drop_table("publication_log")
    with op.batch_alter_table("proof", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proof_template_id"))

    op.drop_table("proof")
    op.drop_table("instance_publication")
    op.drop_table("instance_info")
    op.drop_table("exec_instance")
    op.drop_table("event_type")
    op.drop_table("block")
    op.drop_table("archived_quarantine")
    with op.batch_alter_table("archived_event", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_event_type_created")
        batch_op.drop_index("ix_archived_event_created")

    op.drop_table("archived_event")
    with op.batch_alter_table("archived_delivery_log", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_delivery_log_last_modified")
        batch_op.drop_index(batch_op.f("ix_archived_delivery_log_archived_delivery_id"))

    op.drop_table("archived_delivery_log")
    with op.batch_alter_table("archived_delivery", schema=None) as batch_op:
        batch_op.drop_index("uq_archived_delivery_key")

    op.drop_table("archived_delivery")
    op.drop_table("archive_state")
