"""The schema, declared once with SQLAlchemy Core; Alembic migrations must match it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from msgcenter.store.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: 64-bit ids on PostgreSQL; INTEGER PRIMARY KEY (the rowid, also 64-bit) on SQLite
Id = BigInteger().with_variant(Integer(), "sqlite")

event = Table(
    "event",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # "rt" or "batch": both queues share one table so that ids are unique across them
    Column("queue", String(5), nullable=False),
    Column("type", String(64), nullable=False),
    Column("status", SmallInteger, nullable=False, server_default=text("0")),
    Column("email", String(255)),
    Column("mobile_phone", String(32)),
    Column("registration_token", Text),
    Column("mobile_app_uuid", String(255)),
    Column("wished_channel", SmallInteger, nullable=False),
    Column("email_format", SmallInteger, nullable=False),
    Column("external_id", String(255)),
    Column("origin", String(255)),
    Column("language", String(255)),
    Column("country", String(255)),
    Column("correlation_id", String(255)),
    Column("scheduled", UtcDateTime),
    Column("ctx", Text, nullable=False),
    Column("ctx_format", String(4), nullable=False),
    # unknown attributes the caller sent, as a JSON object (kept, not rejected)
    Column("extra", Text),
    Column("idempotency_key", String(255)),
    Column("operator_id", Integer),
    Column("folder", String(64)),
    Column("error_count", SmallInteger, nullable=False, server_default=text("0")),
    Column("process_requested_on", UtcDateTime, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    Column("publication_id", BigInteger),
    Column("delivery_id", BigInteger),
    Column("delivery_log_id", BigInteger),
)

# The workers' claim: pending events of one queue that are due, oldest first.
Index(
    "ix_event_claim",
    event.c.queue,
    event.c.process_requested_on,
    postgresql_where=event.c.status == 0,
    sqlite_where=event.c.status == 0,
)
Index("ix_event_email", event.c.email)
Index("ix_event_external_id", event.c.external_id)
Index("ix_event_type_created", event.c.type, event.c.created)
Index("ix_event_status_last_modified", event.c.status, event.c.last_modified)
Index("ix_event_created", event.c.created)
Index(
    "uq_event_idempotency",
    event.c.operator_id,
    event.c.idempotency_key,
    unique=True,
    postgresql_where=event.c.idempotency_key.isnot(None),
    sqlite_where=event.c.idempotency_key.isnot(None),
)

# Transitions after creation; the creation itself (pending, at ``event.created``) is
# not repeated here, so intake writes one row per event, not two.
event_status_change = Table(
    "event_status_change",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, nullable=False, index=True),
    Column("status", SmallInteger, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text),
)

operator = Table(
    "operator",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    # comma-separated rights: mc_push, mc_admin
    Column("rights", String(255), nullable=False),
    # comma-separated CIDR masks; empty means any address
    Column("trusted_networks", Text, nullable=False, server_default=text("''")),
    Column("folder", String(64)),
    # SOAP correlationId acts as an idempotency key for this operator's pushes
    Column("correlation_idempotency", Boolean, nullable=False, server_default=text("false")),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

operator_session = Table(
    "operator_session",
    metadata,
    # SHA-256 of the token: a leaked database does not leak live sessions
    Column("token_hash", String(64), primary_key=True),
    Column("operator_id", Integer, nullable=False, index=True),
    Column("created", UtcDateTime, nullable=False),
    Column("expires", UtcDateTime, nullable=False, index=True),
)
