"""reports: hourly aggregates, archived queue-size samples, archived-event search indexes

Revision ID: 0006
Revises: 0005

The aggregates start empty: ``archive_state.reports_built`` is false for every
archive, so the next archiving run of each instance builds them from the rows
already archived before it imports a page (``store/reports.rebuild``).
"""

import sqlalchemy as sa
from alembic import op

import msgcenter.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# the histogram as this revision declares it (msgcenter.reports: 42 buckets per measure)
MEASURES = ("queue", "sending", "total")
BUCKETS = 42


def _histogram() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(f"{measure}_b{b:02d}", sa.Integer(), server_default=sa.text("0"), nullable=False)
        for measure in MEASURES
        for b in range(BUCKETS)
    ]


def upgrade() -> None:
    utc = msgcenter.store.types.UtcDateTime(timezone=True)
    op.create_table(
        "archived_stats_sample",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("pending_events", sa.Integer(), nullable=False),
        sa.Column("pending_messages", sa.Integer(), nullable=False),
        sa.Column("events_received", sa.Integer(), nullable=False),
        sa.Column("messages_sent", sa.Integer(), nullable=False),
        sa.Column("messages_failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "sample_id", name=op.f("pk_archived_stats_sample")),
    )
    with op.batch_alter_table("archived_stats_sample", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_archived_stats_sample_at"), ["at"], unique=False)

    op.create_table(
        "report_hour",
        sa.Column("hour", utc, nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivery_failed", sa.Integer(), nullable=False),
        sa.Column("ignored", sa.Integer(), nullable=False),
        sa.Column("not_taken_into_account", sa.Integer(), nullable=False),
        sa.Column("expired", sa.Integer(), nullable=False),
        sa.Column("queue_count", sa.Integer(), nullable=False),
        sa.Column("queue_ms", sa.BigInteger(), nullable=False),
        sa.Column("sending_count", sa.Integer(), nullable=False),
        sa.Column("sending_ms", sa.BigInteger(), nullable=False),
        sa.Column("total_ms", sa.BigInteger(), nullable=False),
        *_histogram(),
        sa.PrimaryKeyConstraint(
            "hour", "instance_id", "event_type", "channel", "folder", name=op.f("pk_report_hour")
        ),
    )
    op.create_table(
        "report_queue_hour",
        sa.Column("hour", utc, nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=5), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("pending_events_sum", sa.BigInteger(), nullable=False),
        sa.Column("pending_events_min", sa.Integer(), nullable=False),
        sa.Column("pending_events_max", sa.Integer(), nullable=False),
        sa.Column("pending_messages_sum", sa.BigInteger(), nullable=False),
        sa.Column("pending_messages_min", sa.Integer(), nullable=False),
        sa.Column("pending_messages_max", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "instance_id", "queue", name=op.f("pk_report_queue_hour")),
    )
    with op.batch_alter_table("archive_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stats_at", utc, nullable=True))
        batch_op.add_column(
            sa.Column(
                "reports_built", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )

    with op.batch_alter_table("archived_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", utc, nullable=True))
        batch_op.add_column(sa.Column("sent_at", utc, nullable=True))
    # the events archived so far take their times from their delivery logs
    op.execute(
        "UPDATE archived_event SET queued_at = l.created, sent_at = l.sent_at "
        "FROM archived_delivery_log AS l WHERE l.instance_id = archived_event.instance_id "
        "AND l.delivery_log_id = archived_event.delivery_log_id"
    )
    with op.batch_alter_table("archived_event", schema=None) as batch_op:
        for column in ("email", "mobile_phone", "external_id"):
            where = sa.text(f"{column} IS NOT NULL")
            batch_op.create_index(
                f"ix_archived_event_{column}",
                [column],
                unique=False,
                postgresql_where=where,
                sqlite_where=where,
            )
        batch_op.create_index(
            "ix_archived_event_status_created",
            ["status", "created"],
            unique=False,
            postgresql_where=sa.text("status != 2"),
            sqlite_where=sa.text("status != 2"),
        )

    with op.batch_alter_table("archived_tracking_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_archived_tracking_log_event", ["instance_id", "event_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        # The search filters by status and type together; without their joint frequencies
        # the planner takes a rare pair for a common one and walks the whole creation index
        # for a page that never fills (a second instead of milliseconds).
        op.execute(
            "CREATE STATISTICS st_archived_event_status_type (mcv) ON status, type "
            "FROM archived_event"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_archived_event_status_type")
    with op.batch_alter_table("archived_tracking_log", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_tracking_log_event")

    with op.batch_alter_table("archived_event", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_event_status_created")
        batch_op.drop_index("ix_archived_event_external_id")
        batch_op.drop_index("ix_archived_event_mobile_phone")
        batch_op.drop_index("ix_archived_event_email")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("queued_at")

    with op.batch_alter_table("archive_state", schema=None) as batch_op:
        batch_op.drop_column("reports_built")
        batch_op.drop_column("stats_at")

    op.drop_table("report_queue_hour")
    op.drop_table("report_hour")
    with op.batch_alter_table("archived_stats_sample", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archived_stats_sample_at"))
    op.drop_table("archived_stats_sample")
