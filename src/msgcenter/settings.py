"""Typed settings: defaults, then a TOML file, then ``MSGCENTER_*`` environment variables.

Every setting is declared once here, with its default; ``msgcenter.sample.toml``
shows each one with a comment. Nested settings are reached from the environment
with a double underscore: ``MSGCENTER_INTAKE__MAX_EVENT_BYTES=131072``.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from msgcenter.channels.email.config import AttachmentSettings, SmtpSettings
from msgcenter.channels.push.config import PushSettings
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.errors import ConfigurationError
from msgcenter.reports import INDICATORS, Threshold, Thresholds
from msgcenter.tracking import safe_base_url

#: the file read when neither ``--config`` nor ``MSGCENTER_CONFIG`` names one (if it exists)
DEFAULT_CONFIG_FILE = Path("msgcenter.toml")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Section(BaseModel):
    """A settings section: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """Where the web process listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: web API processes (each with its own group committer and SO_REUSEPORT socket)
    workers: int = Field(default=1, ge=1, le=64)
    #: addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    forwarded_allow_ips: list[str] = Field(default_factory=list)


class IntakeSettings(Section):
    """Limits and behaviour of event intake (SPEC §3.2)."""

    max_event_bytes: int = Field(default=64 * 1024, ge=1024)
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=4096)
    max_events_per_request: int = Field(default=10_000, ge=1)
    #: deepest element nesting accepted in a SOAP document (envelope included)
    max_xml_depth: int = Field(default=64, ge=8, le=250)
    #: most attributes on one element of a SOAP document (lxml and C14N slow down
    #: quadratically with them)
    max_xml_attributes: int = Field(default=256, ge=32, le=10_000)
    #: most namespace declarations in one SOAP document (C14N slows down with them)
    max_xml_namespaces: int = Field(default=64, ge=8, le=10_000)
    #: most events committed in one group-commit transaction
    group_commit_max_events: int = Field(default=5_000, ge=1)
    #: idle time the committer waits for more work before committing a lone request (µs);
    #: 0 commits as soon as the previous commit ends (concurrency alone forms groups)
    group_commit_delay_us: int = Field(default=0, ge=0, le=100_000)


class ZoneSettings(Section):
    """A security zone: IP ranges and the authentication forms allowed from them (SPEC §3.9)."""

    name: str
    networks: list[IpNetwork]
    #: the ``login/`` session-token form (operator with an empty password)
    allow_empty_password: bool = False
    #: the ``login/password`` session-token form (credentials in every request)
    allow_login_password_token: bool = False
    #: plain HTTP (otherwise HTTPS, or X-Forwarded-Proto https from a trusted proxy)
    allow_http: bool = True


def _default_zones() -> list[ZoneSettings]:
    return [
        ZoneSettings(
            name="loopback",
            networks=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")],
            allow_empty_password=True,
            allow_login_password_token=True,
            allow_http=True,
        )
    ]


class SecuritySettings(Section):
    """Sessions, failed-logon throttling and security zones."""

    session_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    #: failed logons of one login from one client address, within the window, before each
    #: further try of it must wait (a delay doubling from 1 s up to the maximum)
    failed_login_limit: int = Field(default=5, ge=1)
    #: failed logons (any login, or bad session tokens) from one client address, within
    #: the window, before each further try from it must wait
    failed_address_limit: int = Field(default=50, ge=1)
    #: failures older than this (seconds) are forgotten
    failed_login_window_seconds: int = Field(default=300, ge=1)
    #: the longest wait imposed between two tries of a throttled login or address (seconds)
    failed_login_max_delay_seconds: int = Field(default=60, ge=1, le=3_600)
    #: how long a verified password or session stays cached in a process (seconds)
    credential_cache_seconds: int = Field(default=30, ge=0, le=300)
    #: a console left idle this long (seconds) asks for the password again
    console_idle_seconds: int = Field(default=1_800, ge=60, le=86_400)
    #: lifetime of the OAuth access tokens of technical accounts (seconds): a revoked
    #: account's tokens work until they expire
    access_token_seconds: int = Field(default=300, ge=30, le=86_400)
    #: keys that sign access tokens, "kid:secret" (32 characters or more), newest first: the
    #: first signs, every one verifies. Rotate by putting a new key first and dropping the
    #: old one after a token lifetime. Empty: one key derived from secret_key.
    access_token_keys: list[SecretStr] = Field(default_factory=list)
    #: the issuer and audience of access tokens; empty: "urn:msgcenter:<instance_name>".
    #: Instances behind one load balancer that share keys share an issuer too.
    token_issuer: str = ""
    #: first matching zone wins; an address in no zone gets ``default_zone``
    zones: list[ZoneSettings] = Field(default_factory=_default_zones)
    default_zone: ZoneSettings = Field(
        default_factory=lambda: ZoneSettings(name="default", networks=[], allow_http=True)
    )


class ProcessingSettings(Section):
    """Routing and delivery by the processing workflows (SPEC §3.4, §3.7, §3.8)."""

    #: run the technical workflows inside the web process (else: `msgcenter exec worker`)
    workflows_in_web_process: bool = True
    #: real-time events claimed per transaction
    rt_claim_size: int = Field(default=200, ge=1, le=10_000)
    #: batch events claimed per transaction
    batch_claim_size: int = Field(default=1_000, ge=1, le=50_000)
    #: messages being rendered and sent at once by one worker process
    send_concurrency: int = Field(default=32, ge=1, le=1_000)
    #: how long a claimed message stays with its sender before another may retry it (seconds);
    #: a message accepted by the relay just before a crash is sent again after this delay
    claim_lease_seconds: int = Field(default=120, ge=1)
    #: delivery validity period: temporary failures are retried until it ends (seconds)
    rt_validity_seconds: int = Field(default=3_600, ge=1)
    batch_validity_seconds: int = Field(default=86_400, ge=1)
    #: first retry delay after a temporary failure; doubles at each attempt, up to the maximum
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=3_600.0, gt=0)
    #: an event whose processing fails unexpectedly (not a delivery failure: its claim
    #: itself) is tried again with the same backoff, and expires after this many tries
    max_event_tries: int = Field(default=5, ge=1, le=100)
    #: fallback wake-up of the processing workflows (new events wake them at once)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    #: outcomes are written in groups at least this often (milliseconds)
    outcome_flush_ms: int = Field(default=20, ge=1, le=5_000)
    #: while the database is unavailable, how often it is tried (seconds); the first success
    #: wakes every workflow at once, whatever backoff it was waiting out
    store_probe_seconds: float = Field(default=1.0, gt=0, le=60)
    #: while the relay is unreachable, how often a session is tried (seconds); once it answers,
    #: the messages that failed during the outage are retried at once instead of after their
    #: backoff
    relay_probe_seconds: float = Field(default=2.0, gt=0, le=300)
    #: names this machine (or container) in the claims its workers hold; empty: the host name.
    #: A worker that starts takes back at once the claims of a dead process of the same id on
    #: the same machine (instead of waiting out their lease): never give two machines one id
    worker_id: str = Field(default="", max_length=100, pattern=r"^[^|]*$")
    #: updateEventStatus: how often it reconciles events with late delivery-log changes
    status_copy_interval_seconds: float = Field(default=5.0, gt=0)
    #: statsSampler: how often queue sizes and throughput are sampled
    stats_interval_seconds: float = Field(default=5.0, gt=0)
    #: cleanup: how often it runs, and what it keeps
    cleanup_interval_seconds: float = Field(default=3_600.0, gt=0)
    event_retention_days: float = Field(default=30.0, gt=0)
    stats_retention_days: float = Field(default=90.0, gt=0)


class TrackingSettings(Section):
    """Open and click tracking of emails whose template has tracking on (SPEC §3.7)."""

    #: the URL at which recipients reach this execution instance's tracking links and its
    #: one-click unsubscribe endpoint (https://t.example.com): https, or http on loopback
    #: only; empty uses http://<server.host>:<server.port>, which only a recipient on this
    #: machine can reach (links are then left untracked unless that host is loopback)
    base_url: str = Field(default="", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")
    #: tracking logs are purged by the cleanup workflow after this many days
    retention_days: float = Field(default=90.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _https_outside_loopback(cls, url: str) -> str:
        # Clicks, opens and unsubscribe requests must not cross a network in clear text.
        if url and not safe_base_url(url):
            raise ValueError("must be an https:// URL (http:// is allowed on loopback only)")
        return url


class WebhookSettings(Section):
    """Delivery-status webhooks (SPEC §3.7): outcomes posted to the URLs subscribed per folder,
    signed to the Standard Webhooks specification, at least once from a durable outbox
    (workflows webhookOutbox and webhookDelivery; docs/channels.md "Webhooks")."""

    #: post to loopback, private, link-local and other non-public addresses (off: SSRF guard,
    #: checked when a subscription is saved and again before each attempt)
    allow_private_networks: bool = False
    #: webhookOutbox: how often it reads new outcomes into the outbox (seconds)
    collect_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    #: rows read per source (status changes, bounce reports, tracking logs, delivery receipts)
    #: and per transaction
    collect_batch: int = Field(default=1_000, ge=1, le=50_000)
    #: an id missing from a source (a transaction that took it has not committed yet, or rolled
    #: back) holds the reading this long before it is passed over (seconds)
    gap_wait_seconds: float = Field(default=10.0, ge=0)
    #: delivery receipts are read once their timestamp is this old, so that every transaction
    #: stamped before it has committed (seconds)
    settle_seconds: float = Field(default=2.0, ge=0)
    #: webhookDelivery: messages claimed per round, and posted at once at most
    deliver_batch: int = Field(default=200, ge=1, le=10_000)
    concurrency: int = Field(default=16, ge=1, le=1_000)
    #: seconds allowed for one post (connection, request and answer)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: how long a claimed message stays with its sender before another may post it (seconds);
    #: a message posted just before a crash is posted again (same webhook-id) after it
    claim_lease_seconds: float = Field(default=120.0, gt=0)
    #: first retry delay after a failed post; doubles at each attempt, up to the maximum
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=3_600.0, gt=0)
    #: a subscription whose every post has failed for this long is disabled (seconds)
    disable_after_seconds: float = Field(default=86_400.0, gt=0)
    #: after a secret rotation, messages are signed with the previous secret too this long
    secret_overlap_seconds: float = Field(default=86_400.0, ge=0)
    #: delivered messages are kept (for GET …/messages and replays) this many days
    retention_days: float = Field(default=30.0, gt=0)
    #: largest body accepted by the webhook API (bytes)
    max_api_body_bytes: int = Field(default=64 * 1024, ge=1_024)


class BounceSettings(Section):
    """The receiver of asynchronous bounces and complaints sent back to the VERP bounce
    addresses (SPEC §3.7). It accepts mail only for signed bounce addresses of this instance
    at ``smtp.bounce_domain`` (at any domain when that is empty)."""

    #: run the receiver inside `msgcenter exec serve` (`msgcenter exec bounces` runs it alone)
    enabled: bool = False
    #: where it listens: what the bounce domain's MX (or the MTA in front) delivers to
    host: str = "127.0.0.1"
    port: int = Field(default=2526, ge=1, le=65535)
    #: name in its greeting; empty: smtp.helo_name, or else this machine's fully qualified name
    hostname: str = ""
    #: largest mail accepted (bytes); a bigger one is refused (552) as soon as it exceeds it
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: seconds an SMTP client may stay silent before its session is closed
    timeout_seconds: float = Field(default=60.0, gt=0)
    #: soft bounces (delays, full mailboxes …) of one address within the window that put it
    #: in quarantine
    soft_bounce_threshold: int = Field(default=3, ge=1)
    soft_bounce_window_days: float = Field(default=7.0, gt=0)
    #: kept reports are purged by the cleanup workflow after this many days
    retention_days: float = Field(default=90.0, gt=0)


class ControlSettings(Section):
    """The control instance: execution-instance accounts, publication, archiving (SPEC §4)."""

    #: Fernet key (urlsafe base64 of 32 bytes) that encrypts execution-instance passwords and
    #: database URLs at rest; generate one with `msgcenter control new-key`. Required to
    #: register execution instances.
    credentials_key: SecretStr = SecretStr("")
    #: seconds allowed for each call to an execution instance
    instance_timeout_seconds: float = Field(default=10.0, gt=0)
    #: how often an execution instance that missed a publication is tried again
    publication_retry_seconds: float = Field(default=30.0, gt=0)
    #: how often each archiving workflow (mcSynch_<name>) runs
    archive_interval_seconds: float = Field(default=3_600.0, gt=0)
    #: events pulled per archive page
    archive_page_size: int = Field(default=5_000, ge=1, le=100_000)
    #: archived events, delivery logs and deliveries are purged after this many days
    archive_retention_days: float = Field(default=400.0, gt=0)


class ThresholdSettings(Section):
    """The warning and alert levels of one report indicator: a value at or above a level has
    crossed it; a level left out is not watched."""

    warning: float | None = Field(default=None, ge=0)
    alert: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _alert_above_warning(self) -> ThresholdSettings:
        if self.warning is not None and self.alert is not None and self.alert < self.warning:
            raise ValueError("alert must not be below warning")
        return self

    def threshold(self) -> Threshold:
        """As the reports take it."""
        return Threshold(self.warning, self.alert)


#: the indicators thresholds watch (``msgcenter.reports.INDICATORS``)
ReportIndicator = Literal[
    "error_rate",
    "average_queue_seconds",
    "average_sending_seconds",
    "average_total_seconds",
    "p95_total_seconds",
    "p99_total_seconds",
    "max_queue_size",
]


class ReportSettings(Section):
    """Reports of the control instance (SPEC §4): warning and alert thresholds per indicator
    (each a table that replaces the default one whole; {} watches nothing), overrides per
    event type, and what ``/metrics`` exposes."""

    #: share of events not sent (not taken into account, expired, delivery failed, ignored)
    error_rate: ThresholdSettings = ThresholdSettings(warning=0.05, alert=0.2)
    #: from an event's creation to its delivery log's (seconds)
    average_queue_seconds: ThresholdSettings = ThresholdSettings(warning=60, alert=600)
    #: from a delivery log's creation to the message being sent (seconds)
    average_sending_seconds: ThresholdSettings = ThresholdSettings(warning=10, alert=60)
    #: from an event's creation to its message being sent (seconds)
    average_total_seconds: ThresholdSettings = ThresholdSettings(warning=120, alert=900)
    p95_total_seconds: ThresholdSettings = ThresholdSettings(warning=300, alert=1_800)
    p99_total_seconds: ThresholdSettings = ThresholdSettings(warning=600, alert=3_600)
    #: most events waiting in one queue of an execution instance (its statsSampler's samples)
    max_queue_size: ThresholdSettings = ThresholdSettings(warning=10_000, alert=100_000)
    #: per event type, thresholds that replace the ones above for that type
    event_types: dict[str, dict[ReportIndicator, ThresholdSettings]] = Field(default_factory=dict)
    #: /metrics exposes each indicator over the hours (of the events' creation) that overlap
    #: this many last hours
    metrics_window_hours: int = Field(default=1, ge=1, le=168)
    #: /metrics reads the aggregates at most this often (seconds)
    metrics_cache_seconds: float = Field(default=30.0, ge=0, le=3_600)

    def thresholds(self) -> Thresholds:
        """As the reports take them."""
        return Thresholds(
            defaults={name: getattr(self, name).threshold() for name in INDICATORS},
            per_type={
                event_type: {name: t.threshold() for name, t in overrides.items()}
                for event_type, overrides in self.event_types.items()
            },
        )


class LoggingSettings(Section):
    """Log format and level."""

    #: "console" is readable on a terminal, "json" one object per line for production
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseSettings):
    """Everything an instance reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="MSGCENTER_", env_nested_delimiter="__", extra="forbid"
    )

    #: SQLAlchemy URL; SQLite (embedded default) or postgresql+psycopg://…
    database_url: str = "sqlite:///msgcenter.db"
    #: PostgreSQL: let psycopg prepare statements run often on a connection. Turn off when
    #: database_url points at PgBouncer in transaction mode before 1.21, which does not
    #: carry prepared statements from one server connection to another.
    database_prepared_statements: bool = True
    #: PostgreSQL: a direct URL (not through a transaction-mode pooler) for the LISTEN
    #: connection that wakes the workflows; empty uses database_url.
    database_listen_url: str = ""
    #: name of this instance in logs, metrics and Message-IDs
    instance_name: str = "exec"
    #: signs VERP bounce addresses; set a long random value in production (shared by all
    #: processes of an instance). Empty uses a fixed development key and says so in the log.
    secret_key: SecretStr = SecretStr("")
    server: ServerSettings = Field(default_factory=ServerSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    push: PushSettings = Field(default_factory=PushSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    bounces: BounceSettings = Field(default_factory=BounceSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    def tracking_base_url(self) -> str:
        """Where recipients reach the tracking links: ``tracking.base_url`` or this server."""
        host = self.server.host
        if ":" in host:  # an IPv6 address goes in brackets in a URL (RFC 3986 §3.2.2)
            host = f"[{host}]"
        return self.tracking.base_url or f"http://{host}:{self.server.port}"

    def token_issuer(self) -> str:
        """The issuer and audience of this instance's access tokens."""
        return self.security.token_issuer or f"urn:msgcenter:{self.instance_name}"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if url.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy's bare postgresql:// means psycopg2, which we do not ship.
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        if not url.startswith(("sqlite", "postgresql+psycopg")):
            raise ValueError("database_url must be a sqlite:// or postgresql+psycopg:// URL")
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _config_file() -> Path | None:
    named = os.environ.get("MSGCENTER_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"MSGCENTER_CONFIG names {path}, which is not a file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, the TOML file, the environment, then explicit ``overrides``.

    ``config_file`` takes the place of ``MSGCENTER_CONFIG``; ``overrides`` whose value
    is None are ignored so that CLI options left unset do not mask the file.
    Raises :class:`ConfigurationError` naming every bad setting (never its value, which
    may be a secret), a config file that is missing or not TOML, or an environment
    variable that does not parse.
    """
    if config_file is not None:
        os.environ["MSGCENTER_CONFIG"] = str(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigurationError(
            "invalid settings", detail="; ".join(_problem(error) for error in exc.errors())
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError("invalid settings", detail=f"{_config_file()}: {exc}") from None
    except (FileNotFoundError, SettingsError) as exc:
        raise ConfigurationError("invalid settings", detail=str(exc)) from None


def _problem(error: Any) -> str:
    """One setting's problem: its dotted name and what is wrong, without the value."""
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{name}: unknown setting"
    return f"{name}: {error['msg']}"
