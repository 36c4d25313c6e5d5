"""unique ids: SQLite never hands out an id twice; idempotent pushes keep a request fingerprint

Revision ID: 0007
Revises: 0006

Without ``AUTOINCREMENT`` SQLite gives the ids of the newest rows again once they are
deleted (by a purge, or by hand): to clients, and to the control instance's archive,
keyed by (instance, row id). The tables whose rows are purged and archived are rebuilt
with it (SQLite only; PostgreSQL's sequences never go back). ``event`` gains the
fingerprint of each event pushed with an ``Idempotency-Key``: the same key for another
event is refused instead of answered with the first id.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: the execution instance's tables whose rows are purged and whose ids leave the instance
PURGED_TABLES = (
    "event",
    "event_status_change",
    "delivery",
    "delivery_log",
    "quarantine",
    "tracking_log",
    "stats_sample",
)


def upgrade() -> None:
    op.add_column("event", sa.Column("idempotency_fingerprint", sa.String(length=64)))
    if op.get_bind().dialect.name == "sqlite":
        for name in PURGED_TABLES:
            # a rebuild copies the rows; sqlite_sequence starts at their largest id
            with op.batch_alter_table(
                name, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass


def downgrade() -> None:
    op.drop_column("event", "idempotency_fingerprint")
