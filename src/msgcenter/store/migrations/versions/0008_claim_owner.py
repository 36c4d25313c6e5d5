"""claim owner: each claimed delivery log names the worker process that holds it

Revision ID: 0008
Revises: 0007

A worker that starts takes back at once the claims of a dead process of its own
machine (``processing.worker_id``, same boot) instead of waiting out their
lease. Claims made before this revision have no owner and wait out their lease.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_log", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
