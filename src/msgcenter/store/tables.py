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

from msgcenter.reports import BUCKETS, MEASURES, bucket_column
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
    # SHA-256 of the event as the request that carried its Idempotency-Key sent it (the
    # key reused for another event is refused); none for SOAP correlation ids
    Column("idempotency_fingerprint", String(64)),
    Column("operator_id", Integer),
    Column("folder", String(64)),
    Column("error_count", SmallInteger, nullable=False, server_default=text("0")),
    Column("process_requested_on", UtcDateTime, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    Column("publication_id", BigInteger),
    Column("delivery_id", BigInteger),
    Column("delivery_log_id", BigInteger),
    # a channel fallback's new event: the event whose delivery failed (SPEC §3.7); unique,
    # so an event falls back once whatever retries or workers do
    Column("fallback_of", BigInteger),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
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
    "uq_event_fallback_of",
    event.c.fallback_of,
    unique=True,
    postgresql_where=event.c.fallback_of.isnot(None),
    sqlite_where=event.c.fallback_of.isnot(None),
)
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
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
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
    # "person" (logs on with a password) or "technical" (OAuth client credentials)
    Column("kind", String(16), nullable=False, server_default=text("'person'")),
    # a technical account's OAuth client id
    Column("client_id", String(64)),
    # a technical account's last access token
    Column("last_used", UtcDateTime),
    # a technical account revoked: no new access token
    Column("revoked", UtcDateTime),
)
Index("uq_operator_client_id", operator.c.client_id, unique=True)

# A technical account's client secrets (Argon2 hashes); two at most, so that a new one can
# be rolled out while the previous one still works.
client_secret = Table(
    "client_secret",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("operator_id", Integer, nullable=False, index=True),
    Column("secret_hash", String(255), nullable=False),
    Column("created", UtcDateTime, nullable=False),
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

# -- processing (execution instance) -----------------------------------------------------

# A published template flavour. Rows are immutable: publishing a new version
# inserts a row and deactivates the previous ones of the same (template, queue,
# folder); unpublishing deactivates them all. Delivery logs keep pointing at the
# version that was actually sent.
publication = Table(
    "publication",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("template", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("folder", String(64)),
    # "rt" or "batch" flavour
    Column("queue", String(5), nullable=False),
    Column("version", Integer, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    # the frozen content as JSON: message parts, sender, attachments, blocks inlined
    Column("content", Text, nullable=False),
    # the channel an event falls back to when its message failed (content.fallback_channel)
    Column("fallback_channel", SmallInteger),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created", UtcDateTime, nullable=False),
    Column("retired", UtcDateTime),
)
Index("ix_publication_route", publication.c.event_type, publication.c.channel, publication.c.queue)
Index("ix_publication_template", publication.c.template, publication.c.folder)

# One delivery per template flavour, channel, folder and calendar month (SPEC §1).
delivery = Table(
    "delivery",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("template", String(64), nullable=False),
    Column("queue", String(5), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("folder", String(64), nullable=False, server_default=text("''")),
    # "YYYY-MM"
    Column("month", String(7), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)
Index(
    "uq_delivery_key",
    delivery.c.template,
    delivery.c.queue,
    delivery.c.channel,
    delivery.c.folder,
    delivery.c.month,
    unique=True,
)

# One row per message sent or attempted.
delivery_log = Table(
    "delivery_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("publication_id", BigInteger, nullable=False),
    Column("queue", String(5), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("address", String(255), nullable=False),
    Column("folder", String(64)),
    # msgcenter.deliveries.DeliveryStatus
    Column("status", SmallInteger, nullable=False),
    Column("failure_type", String(32)),
    Column("failure_reason", Text),
    Column("attempts", SmallInteger, nullable=False, server_default=text("0")),
    # pending: when the next attempt is due; sending: until when the claim holds
    Column("due", UtcDateTime, nullable=False),
    # sending: the worker process that holds the claim, "<worker id>|<boot>|<pid>|<start>"
    # (msgcenter.workflows.owners): its successor on the machine takes the claim back at once
    Column("claimed_by", String(255)),
    # the end of the delivery validity period
    Column("valid_until", UtcDateTime, nullable=False),
    Column("message_id", String(255)),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)
# The senders' claim: due attempts (status pending) and lapsed claims (status sending).
Index(
    "ix_delivery_log_due",
    delivery_log.c.queue,
    delivery_log.c.due,
    postgresql_where=delivery_log.c.status.in_([0, 4]),
    sqlite_where=delivery_log.c.status.in_([0, 4]),
)
Index("ix_delivery_log_event_id", delivery_log.c.event_id)
Index("ix_delivery_log_last_modified", delivery_log.c.last_modified)
# late outcomes name their message by the id the next hop gave it (an SMSC's message id)
Index("ix_delivery_log_message_id", delivery_log.c.channel, delivery_log.c.message_id)

# Addresses that must not be sent to (SPEC §1, §3.7).
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("address", String(255), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("failure_type", String(32), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("delivery_log_id", BigInteger),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)
Index("uq_quarantine_address", quarantine.c.address, quarantine.c.channel, unique=True)
Index("ix_quarantine_last_modified", quarantine.c.last_modified)

# Opt-outs of one template's stream (RFC 8058 one-click unsubscribe): messages of that
# template (in that folder) to that address are ignored, the address's other mail is not.
unsubscription = Table(
    "unsubscription",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # lower-cased, as the quarantine's
    Column("address", String(255), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("template", String(64), nullable=False),
    Column("folder", String(64), nullable=False, server_default=text("''")),
    # the message whose List-Unsubscribe was used
    Column("delivery_log_id", BigInteger, nullable=False),
    Column("created", UtcDateTime, nullable=False),
)
Index(
    "uq_unsubscription_stream",
    unsubscription.c.address,
    unsubscription.c.channel,
    unsubscription.c.template,
    unsubscription.c.folder,
    unique=True,
)

# Opens and clicks of tracked emails (SPEC §3.7); rows are only ever added.
tracking_log = Table(
    "tracking_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_log_id", BigInteger, nullable=False, index=True),
    Column("event_id", BigInteger, nullable=False),
    # the delivery log's folder, so that a brand's archiving sees only its own
    Column("folder", String(64)),
    # "open" or "click"
    Column("kind", String(8), nullable=False),
    Column("url", Text),
    Column("user_agent", String(512)),
    Column("created", UtcDateTime, nullable=False, index=True),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)

# Mail received at bounce addresses (SPEC §3.7), one row per report whatever it said:
# msgcenter.bounces.ReportKind. Purged by the cleanup workflow (bounces.retention_days).
bounce_report = Table(
    "bounce_report",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received", UtcDateTime, nullable=False, index=True),
    # hard, soft, complaint, unknown or malformed
    Column("kind", String(16), nullable=False),
    # the delivery log its bounce address named; null when that log is not here
    Column("delivery_log_id", BigInteger, index=True),
    # the delivery log's address (lower-cased), or else the one the report names
    Column("recipient", String(255)),
    Column("reason", Text, nullable=False),
    # bytes of the mail as received
    Column("size", Integer, nullable=False),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)
# soft bounces of one address within the window
Index(
    "ix_bounce_report_recipient_kind",
    bounce_report.c.recipient,
    bounce_report.c.kind,
    bounce_report.c.received,
)

# Delivery-status webhooks (SPEC §3.7): who receives which outcomes of which folder.
webhook_subscription = Table(
    "webhook_subscription",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # null: every folder
    Column("folder", String(64)),
    Column("url", String(2048), nullable=False),
    # comma-separated msgcenter.webhooks.WebhookType values
    Column("event_types", Text, nullable=False),
    # the signing secret (whsec_…): HMAC needs it in clear, so it is never returned nor logged
    Column("secret", String(128), nullable=False),
    # the secret before the last rotation, which still signs until previous_secret_until
    Column("previous_secret", String(128)),
    Column("previous_secret_until", UtcDateTime),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text),
    # since when every post failed; null after a success
    Column("failing_since", UtcDateTime),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

# The outbox: one row per webhook message of one subscription, posted at least once.
webhook_message = Table(
    "webhook_message",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, nullable=False),
    # the webhook-id header: the same on every retry and replay
    Column("message_id", String(64), nullable=False, unique=True),
    Column("type", String(40), nullable=False),
    # the JSON body, exactly as posted and signed
    Column("payload", Text, nullable=False),
    # msgcenter.webhooks.OutboxStatus: pending, sending or delivered
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # pending: when the next attempt is due; sending: until when the claim holds
    Column("due", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("created", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    # SQLite: never give the id of a deleted row again
    sqlite_autoincrement=True,
)
# The senders' claim: messages not yet delivered, by due time.
Index(
    "ix_webhook_message_due",
    webhook_message.c.due,
    postgresql_where=webhook_message.c.status != "delivered",
    sqlite_where=webhook_message.c.status != "delivered",
)
Index(
    "ix_webhook_message_subscription", webhook_message.c.subscription_id, webhook_message.c.created
)

# How far webhookOutbox has read each source of outcomes (msgcenter.store.webhooks.SOURCES).
webhook_cursor = Table(
    "webhook_cursor",
    metadata,
    Column("source", String(32), primary_key=True),
    # the last id read (keyset sources: with position_at, the last (timestamp, id) read)
    Column("position", BigInteger, nullable=False),
    Column("position_at", UtcDateTime),
    # since when the id after position is missing (null: no gap seen there)
    Column("gap_since", UtcDateTime),
    Column("updated", UtcDateTime, nullable=False),
)

# Technical workflows: the state operators set, and what the runners report.
workflow = Table(
    "workflow",
    metadata,
    Column("name", String(64), primary_key=True),
    # running, paused, stopped or failed
    Column("state", String(16), nullable=False),
    Column("last_run", UtcDateTime),
    Column("last_error", Text),
    Column("last_error_at", UtcDateTime),
    # workflow-specific progress marker (e.g. updateEventStatus's last copied log)
    Column("watermark", BigInteger),
    Column("updated", UtcDateTime, nullable=False),
)

# Queue sizes and throughput sampled every few seconds (statsSampler) for reports.
stats_sample = Table(
    "stats_sample",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("queue", String(5), nullable=False),
    Column("pending_events", Integer, nullable=False),
    Column("pending_messages", Integer, nullable=False),
    Column("events_received", Integer, nullable=False),
    Column("messages_sent", Integer, nullable=False),
    Column("messages_failed", Integer, nullable=False),
    # SQLite: never give the id of a deleted row again (0007)
    sqlite_autoincrement=True,
)

# -- execution instance identity ---------------------------------------------------------

# Key/value facts about this instance; "instance_id" is assigned by the control instance
# ("Initialize connection") so that archived histories of several executions stay apart.
instance_info = Table(
    "instance_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

# -- control instance (SPEC §4) ----------------------------------------------------------
# Every instance has the whole schema; a control instance's database simply leaves the
# execution tables empty and the other way round, which keeps one migration chain.

event_type = Table(
    "event_type",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False),
    Column("retired", Boolean, nullable=False, server_default=text("false")),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

template = Table(
    "template",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # internal name: what the execution instances know the publication by
    Column("name", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    # "" for no folder, so that the uniqueness below also holds without one
    Column("folder", String(64), nullable=False, server_default=text("''")),
    # msgcenter.publications.PublishedContent as JSON, without blocks (they live apart)
    Column("content", Text, nullable=False),
    # the newest version published (0: never), and whether it is published now
    Column("published_version", Integer, nullable=False, server_default=text("0")),
    Column("published", Boolean, nullable=False, server_default=text("false")),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)
Index(
    "uq_template_route", template.c.event_type, template.c.channel, template.c.folder, unique=True
)

# Personalisation blocks, shared by templates; frozen into each publication.
block = Table(
    "block",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("content", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

# Test recipients of a template, with test data shaped like real events.
seed = Table(
    "seed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template_id", Integer, nullable=False, index=True),
    Column("label", String(255), nullable=False),
    Column("address", String(255), nullable=False),
    Column("external_id", String(255)),
    Column("ctx", Text, nullable=False),
    Column("ctx_format", String(4), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

proof = Table(
    "proof",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("template_id", Integer, nullable=False, index=True),
    Column("seed_id", Integer, nullable=False),
    Column("address", String(255), nullable=False),
    Column("subject", Text, nullable=False),
    # "sent" or "failed"
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("sent_by", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# Each published version, frozen (blocks included) exactly as sent to the executions.
template_version = Table(
    "template_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template_id", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    # msgcenter.publications.PublicationSpec as JSON
    Column("spec", Text, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("published_by", String(64), nullable=False),
)
Index(
    "uq_template_version", template_version.c.template_id, template_version.c.version, unique=True
)

# Who published or unpublished what, and when (SPEC §4).
publication_log = Table(
    "publication_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("template_id", Integer, nullable=False, index=True),
    # "publish" or "unpublish"
    Column("action", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("operator", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# Execution instances registered on this control instance (external accounts).
exec_instance = Table(
    "exec_instance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False),
    Column("url", String(1024), nullable=False),
    Column("login", String(64), nullable=False),
    # encrypted with the control instance's key (Fernet); never logged nor returned
    Column("password_encrypted", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    # "web" (the execution's archive API) or "database" (its database, read directly)
    Column("archive_method", String(16), nullable=False, server_default=text("'web'")),
    Column("database_url_encrypted", Text),
    Column("folder", String(64)),
    # assigned by "Initialize connection", stored on the execution instance too
    Column("instance_id", String(64), unique=True),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

# Where each template stands on each execution instance.
instance_publication = Table(
    "instance_publication",
    metadata,
    Column("exec_instance_id", Integer, primary_key=True),
    Column("template_id", Integer, primary_key=True),
    # the version the execution instance has (0: none)
    Column("version", Integer, nullable=False, server_default=text("0")),
    # "published", "unpublished", or "pending" while the instance has not caught up
    Column("state", String(16), nullable=False),
    Column("failure_reason", Text),
    Column("last_attempt", UtcDateTime),
    Column("updated", UtcDateTime, nullable=False),
)

# The archiving workflow's progress per execution instance.
archive_state = Table(
    "archive_state",
    metadata,
    Column("exec_instance_id", Integer, primary_key=True),
    # keyset watermark over the execution's (last_modified, id) of final events
    Column("watermark_at", UtcDateTime),
    Column("watermark_id", BigInteger, nullable=False, server_default=text("0")),
    # quarantine changes are pulled since their own watermark
    Column("quarantine_at", UtcDateTime),
    # and tracking logs since theirs (their creation time)
    Column("tracking_at", UtcDateTime),
    Column("last_run", UtcDateTime),
    Column("last_success", UtcDateTime),
    Column("last_error", Text),
    Column("last_error_at", UtcDateTime),
    # a run holds the archive until this time; overlapping runs wait or skip
    Column("lease_until", UtcDateTime),
    Column("archived_events", BigInteger, nullable=False, server_default=text("0")),
    # queue-size samples are pulled since their own watermark (their time)
    Column("stats_at", UtcDateTime),
    # the report aggregates hold every archived event of the instance (false: rebuild them
    # from the archived rows before the next page, as after the upgrade that added them)
    Column("reports_built", Boolean, nullable=False, server_default=text("false")),
)

archived_event = Table(
    "archived_event",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("event_id", BigInteger, primary_key=True),
    Column("queue", String(5), nullable=False),
    Column("type", String(64), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("wished_channel", SmallInteger, nullable=False),
    Column("email", String(255)),
    Column("mobile_phone", String(32)),
    Column("external_id", String(255)),
    Column("folder", String(64)),
    Column("template", String(64)),
    Column("delivery_log_id", BigInteger),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    Column("archived_at", UtcDateTime, nullable=False),
    # its delivery log's creation and sending (copied with the event: the report aggregates
    # take an event's times from its own row)
    Column("queued_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
)
Index("ix_archived_event_created", archived_event.c.created)
Index("ix_archived_event_type_created", archived_event.c.type, archived_event.c.created)
# The archived-event search (GET /api/v1/archive/events): by address or external id, and by
# a status other than sent (sent events are most events: the created index finds them fast).
Index(
    "ix_archived_event_email",
    archived_event.c.email,
    postgresql_where=archived_event.c.email.isnot(None),
    sqlite_where=archived_event.c.email.isnot(None),
)
Index(
    "ix_archived_event_mobile_phone",
    archived_event.c.mobile_phone,
    postgresql_where=archived_event.c.mobile_phone.isnot(None),
    sqlite_where=archived_event.c.mobile_phone.isnot(None),
)
Index(
    "ix_archived_event_external_id",
    archived_event.c.external_id,
    postgresql_where=archived_event.c.external_id.isnot(None),
    sqlite_where=archived_event.c.external_id.isnot(None),
)
Index(
    "ix_archived_event_status_created",
    archived_event.c.status,
    archived_event.c.created,
    postgresql_where=archived_event.c.status != 2,
    sqlite_where=archived_event.c.status != 2,
)

# One archived delivery per execution instance, template, channel and ISO week.
archived_delivery = Table(
    "archived_delivery",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("instance_id", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("folder", String(64), nullable=False, server_default=text("''")),
    # ISO week of the logs' last update, "2026-W49"
    Column("iso_week", String(8), nullable=False),
    Column("created", UtcDateTime, nullable=False),
)
Index(
    "uq_archived_delivery_key",
    archived_delivery.c.instance_id,
    archived_delivery.c.template,
    archived_delivery.c.channel,
    archived_delivery.c.folder,
    archived_delivery.c.iso_week,
    unique=True,
)

archived_delivery_log = Table(
    "archived_delivery_log",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("delivery_log_id", BigInteger, primary_key=True),
    Column("archived_delivery_id", BigInteger, nullable=False, index=True),
    Column("event_id", BigInteger, nullable=False),
    Column("channel", SmallInteger, nullable=False),
    Column("address", String(255), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("failure_type", String(32)),
    Column("failure_reason", Text),
    Column("attempts", SmallInteger, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
)
Index("ix_archived_delivery_log_last_modified", archived_delivery_log.c.last_modified)

archived_quarantine = Table(
    "archived_quarantine",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("address", String(255), primary_key=True),
    Column("channel", SmallInteger, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("failure_type", String(32), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("last_modified", UtcDateTime, nullable=False),
)

archived_tracking_log = Table(
    "archived_tracking_log",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("tracking_log_id", BigInteger, primary_key=True),
    Column("delivery_log_id", BigInteger, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("url", Text),
    Column("user_agent", String(512)),
    Column("created", UtcDateTime, nullable=False, index=True),
)
# An event's opens and clicks, for its timeline in the archived-event API.
Index(
    "ix_archived_tracking_log_event",
    archived_tracking_log.c.instance_id,
    archived_tracking_log.c.event_id,
)

# Queue-size and throughput samples of the execution instances (their statsSampler), archived
# for the processing-time report; rows are only ever added.
archived_stats_sample = Table(
    "archived_stats_sample",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("sample_id", BigInteger, primary_key=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("queue", String(5), nullable=False),
    Column("pending_events", Integer, nullable=False),
    Column("pending_messages", Integer, nullable=False),
    Column("events_received", Integer, nullable=False),
    Column("messages_sent", Integer, nullable=False),
    Column("messages_failed", Integer, nullable=False),
)

# -- report aggregates (SPEC §4 reports), maintained by the archiving run ----------------


def _histogram(measure: str) -> list[Column[int]]:
    return [
        Column(bucket_column(measure, b), Integer, nullable=False, server_default=text("0"))
        for b in range(BUCKETS)
    ]


# Archived events per hour of their creation, event type, channel and folder of each
# instance: counts by final status, sums of times (milliseconds) and a log-scale histogram
# of each time (msgcenter.reports.BUCKET_BOUNDS). The archiving run adds each page's
# difference to it, in the page's transaction (msgcenter.store.reports).
report_hour = Table(
    "report_hour",
    metadata,
    Column("hour", UtcDateTime, primary_key=True),
    Column("instance_id", String(64), primary_key=True),
    Column("event_type", String(64), primary_key=True),
    # the event's wished channel, which routing sends on
    Column("channel", SmallInteger, primary_key=True),
    # "" for no folder
    Column("folder", String(64), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("delivery_failed", Integer, nullable=False),
    Column("ignored", Integer, nullable=False),
    Column("not_taken_into_account", Integer, nullable=False),
    Column("expired", Integer, nullable=False),
    # events with a delivery log: from the event's creation to the log's (queuing)
    Column("queue_count", Integer, nullable=False),
    Column("queue_ms", BigInteger, nullable=False),
    # sent events: from the log's creation to its sending, and from the event's creation
    Column("sending_count", Integer, nullable=False),
    Column("sending_ms", BigInteger, nullable=False),
    Column("total_ms", BigInteger, nullable=False),
    *(column for measure in MEASURES for column in _histogram(measure)),
)

# Queue sizes per hour and queue of each instance, from its archived samples.
report_queue_hour = Table(
    "report_queue_hour",
    metadata,
    Column("hour", UtcDateTime, primary_key=True),
    Column("instance_id", String(64), primary_key=True),
    Column("queue", String(5), primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("pending_events_sum", BigInteger, nullable=False),
    Column("pending_events_min", Integer, nullable=False),
    Column("pending_events_max", Integer, nullable=False),
    Column("pending_messages_sum", BigInteger, nullable=False),
    Column("pending_messages_min", Integer, nullable=False),
    Column("pending_messages_max", Integer, nullable=False),
)
