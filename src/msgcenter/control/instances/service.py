"""Execution instances registered on a control instance (external accounts, SPEC §4):
registration, "Test connection" and "Initialize connection".

Passwords and database URLs are encrypted before they reach the store and are
decrypted only to open a connection; they never appear in answers or logs.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy.engine import make_url

from msgcenter.control.credentials import cipher
from msgcenter.control.exec_client import (
    ExecInstanceError,
    Failure,
    InstanceIdentity,
    client_for,
)
from msgcenter.control.publishing.service import PublishingService
from msgcenter.designs import FOLDER
from msgcenter.errors import ConflictError, InvalidInputError, MsgcenterError
from msgcenter.instances import ExecInstance
from msgcenter.operators import LOGIN, Right
from msgcenter.queues import QueueSize, Throughput
from msgcenter.settings import Settings
from msgcenter.store import control_instances as instance_store
from msgcenter.store import control_publications as publication_store
from msgcenter.store import instance_info
from msgcenter.store.database import Database, translate_errors
from msgcenter.store.schema import current_revision, head_revision
from msgcenter.workflow_states import REQUIRED_WORKFLOWS, WorkflowState, unready_workflows

log = structlog.get_logger(__name__)

#: the archiving workflow is named mcSynch_<name>, within the 64 characters of a workflow name
NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,47}$"
NO_DATABASE_URL = "the database archiving method needs a database URL"
#: which "Test connection" step a failure belongs to
STEP = {
    Failure.UNREACHABLE: "reach",
    Failure.TIMEOUT: "reach",
    Failure.TLS: "reach",
    Failure.NOT_MSGCENTER: "reach",
    Failure.REFUSED: "reach",
    Failure.CREDENTIALS: "credentials",
    Failure.RIGHTS: "rights",
}


def _base_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.userinfo:
        raise ValueError("put the login and password in their own fields, not in the URL")
    if url.query or url.fragment:
        raise ValueError("must not carry a query or a fragment")
    return str(url).rstrip("/")


def _database_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    url = value.get_secret_value()
    if url.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy's bare postgresql:// means psycopg2, which we do not ship.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    return SecretStr(url)


class _AccountFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _base_url(value)

    @field_validator("database_url", check_fields=False)
    @classmethod
    def _database(cls, value: SecretStr | None) -> SecretStr | None:
        return _database_url(value)


class AccountIn(_AccountFields):
    """A new execution instance, as the API and the CLI accept it."""

    name: str = Field(pattern=NAME, description="internal name (archiving runs as mcSynch_<name>)")
    label: str = Field(min_length=1, max_length=255)
    url: str = Field(description="base URL of the execution instance, http(s)://host:port")
    login: str = Field(pattern=f"^{LOGIN.pattern}$", description="its operator, with mc_admin")
    password: SecretStr = Field(description="stored encrypted; never returned")
    enabled: bool = True
    archive_method: Literal["web", "database"] = "web"
    database_url: SecretStr | None = Field(
        None, description="for the database method; stored encrypted, never returned"
    )
    folder: str | None = Field(
        None, pattern=FOLDER, description="publications without a folder of their own go there"
    )


class AccountPatch(_AccountFields):
    """Changes to a registered instance; a field left out stays, ``folder: null`` clears it."""

    label: str | None = Field(None, min_length=1, max_length=255)
    url: str | None = None
    login: str | None = Field(None, pattern=f"^{LOGIN.pattern}$")
    password: SecretStr | None = None
    archive_method: Literal["web", "database"] | None = None
    database_url: SecretStr | None = None
    folder: str | None = Field(None, pattern=FOLDER)


@dataclass(frozen=True, slots=True)
class Check:
    """One step of "Test connection"."""

    step: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """What "Test connection" found, step by step."""

    instance: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failure(self) -> str | None:
        """The first failed step's explanation."""
        return next((check.detail for check in self.checks if not check.ok), None)


@dataclass(frozen=True, slots=True)
class InstanceOverview:
    """What the dashboard shows of one execution instance, asked of it now; ``failure`` says
    why it could not answer (the rest is then empty)."""

    instance: ExecInstance
    failure: str | None
    workflows: list[WorkflowState]
    #: the required workflows that are not running, with why
    unready: list[str]
    queues: list[QueueSize]
    throughput: dict[str, Throughput]


class InstanceService:
    """The execution instances registered on one control instance.

    A new or re-enabled instance is due what has been published so far: it is pushed at
    once through the publishing service (what fails stays pending for the catch-up), and
    ``on_usable`` (the control server starts its archiving workflow) is awaited.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        publishing: PublishingService,
        *,
        on_usable: Callable[[ExecInstance], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._publishing = publishing
        self._on_usable = on_usable

    def get(self, name: str) -> ExecInstance:
        """The registered instance ``name``."""
        with self._db.read() as conn:
            return instance_store.get(conn, name)

    def list_all(self) -> list[ExecInstance]:
        """Every registered instance, by name."""
        with self._db.read() as conn:
            return instance_store.list_all(conn)

    async def add(self, new: AccountIn) -> tuple[ExecInstance, int]:
        """Register an execution instance and, when enabled, push it what has been published;
        returns it and how many publications stay pending on it."""
        added = await asyncio.to_thread(self._register, new)
        return added, await self._now_usable(added)

    def change(self, name: str, patch: AccountPatch) -> ExecInstance:
        """Apply the fields ``patch`` sets; secrets are encrypted again."""
        given = patch.model_dump(exclude_unset=True)
        values = {k: v for k, v in given.items() if k not in ("password", "database_url")}
        for field in ("label", "url", "login", "archive_method", "password"):
            if field in given and given[field] is None:
                raise InvalidInputError(
                    f"'{field}' cannot be null", detail=f"leave '{field}' out to keep it"
                )
        secret = cipher(self._settings)
        if patch.password is not None:
            values["password_encrypted"] = secret.encrypt(patch.password.get_secret_value())
        if "database_url" in given:
            values["database_url_encrypted"] = (
                secret.encrypt(patch.database_url.get_secret_value())
                if patch.database_url
                else None
            )
        with self._db.write() as conn:
            changed = instance_store.change(conn, name, values, datetime.now(UTC))
            if changed.archive_method == "database" and changed.database_url_encrypted is None:
                raise InvalidInputError(
                    NO_DATABASE_URL, detail=f"{NO_DATABASE_URL}: set database_url"
                )
        return changed

    async def set_enabled(self, name: str, enabled: bool) -> tuple[ExecInstance, int]:
        """Enable (it gets what was published meanwhile) or disable an instance; returns it
        and how many publications stay pending on it."""
        changed = await asyncio.to_thread(self._set_enabled, name, enabled)
        return changed, await self._now_usable(changed)

    async def check_connection(self, name: str) -> ConnectionReport:
        """Check reachability, credentials, the mc_admin right, the folder and (database
        method) the database."""
        instance = await asyncio.to_thread(self.get, name)
        checks: list[Check] = []
        identity: InstanceIdentity | None = None
        try:
            async with client_for(instance, self._settings) as client:
                identity = await client.identity()
        except ExecInstanceError as exc:
            checks.append(Check(STEP[exc.failure], False, exc.detail))
        else:
            checks += _identity_checks(instance, identity)
        if instance.archive_method == "database":
            checks.append(
                await asyncio.to_thread(_database_check, instance, self._settings, identity)
            )
        report = ConnectionReport(instance.name, checks)
        log.info(
            "connection tested",
            action="instance.tested",
            instance=instance.name,
            ok=report.ok,
            failure=report.failure,
        )
        return report

    async def overview(self, name: str) -> InstanceOverview:
        """The instance's workflows, queues and recent throughput, asked of it now."""
        instance = await asyncio.to_thread(self.get, name)
        try:
            async with client_for(instance, self._settings) as client:
                workflows, queues, throughput = await asyncio.gather(
                    client.workflows(), client.queues(), client.throughput()
                )
            states = [_workflow_state(w) for w in workflows]
            return InstanceOverview(
                instance,
                None,
                states,
                unready_workflows(states, set(REQUIRED_WORKFLOWS), datetime.now(UTC)),
                [_queue_size(q) for q in queues],
                {period: _throughput(t) for period, t in throughput.items()},
            )
        except (MsgcenterError, KeyError, TypeError, ValueError) as exc:
            reason = exc.detail if isinstance(exc, MsgcenterError) else f"unexpected answer: {exc}"
            return InstanceOverview(instance, reason, [], [], [], {})

    async def initialize(self, name: str, *, force: bool) -> ExecInstance:
        """Give the execution instance its unique instance id, stored on both sides.

        The id this control instance already assigned is kept; without one, an id the
        execution instance already holds (another control instance sharing it through a
        folder) is adopted; otherwise a new one is drawn. An execution instance holding a
        different id refuses it (:class:`ConflictError`) unless ``force``.
        """
        instance = await asyncio.to_thread(self.get, name)
        async with client_for(instance, self._settings) as client:
            identity = await client.identity()
            if Right.MC_ADMIN not in identity.rights:
                raise ExecInstanceError(name, Failure.RIGHTS, _lacks_admin(identity))
            wanted = instance.instance_id or identity.instance_id or _new_instance_id(name)
            holder = await asyncio.to_thread(self._holder_of, wanted)
            if holder not in (None, name):
                raise ConflictError(
                    f"execution instance '{name}' is already registered here",
                    detail=f"the execution instance at {instance.url} holds instance id "
                    f"'{wanted}', which belongs to registration '{holder}' of this control "
                    "instance",
                )
            if identity.instance_id != wanted:
                await client.assign_instance_id(wanted, force=force)
        initialized = await asyncio.to_thread(self._store_instance_id, name, wanted)
        log.info(
            "execution instance initialized",
            action="instance.initialized",
            instance=name,
            instance_id=wanted,
        )
        return initialized

    def _register(self, new: AccountIn) -> ExecInstance:
        if new.archive_method == "database" and new.database_url is None:
            raise InvalidInputError(NO_DATABASE_URL, detail=f"{NO_DATABASE_URL}: set database_url")
        secret = cipher(self._settings)
        values = new.model_dump(exclude={"password", "database_url"}) | {
            "password_encrypted": secret.encrypt(new.password.get_secret_value()),
            "database_url_encrypted": (
                secret.encrypt(new.database_url.get_secret_value()) if new.database_url else None
            ),
        }
        now = datetime.now(UTC)
        with self._db.write() as conn:
            added = instance_store.add(conn, values, now)
            if added.enabled:
                publication_store.reconcile_instance(conn, added.id, now)
        log.info(
            "execution instance registered",
            action="instance.registered",
            instance=added.name,
            url=added.url,
        )
        return added

    def _set_enabled(self, name: str, enabled: bool) -> ExecInstance:
        now = datetime.now(UTC)
        with self._db.write() as conn:
            changed = instance_store.change(conn, name, {"enabled": enabled}, now)
            if enabled:
                publication_store.reconcile_instance(conn, changed.id, now)
        log.info(
            "execution instance " + ("enabled" if enabled else "disabled"),
            action="instance.enabled" if enabled else "instance.disabled",
            instance=name,
        )
        return changed

    async def _now_usable(self, instance: ExecInstance) -> int:
        if not instance.enabled:
            return 0
        if self._on_usable is not None:
            await self._on_usable(instance)
        return await self._publishing.catch_up(instance=instance.name)

    def _holder_of(self, instance_id: str) -> str | None:
        with self._db.read() as conn:
            return instance_store.holder_of(conn, instance_id)

    def _store_instance_id(self, name: str, instance_id: str) -> ExecInstance:
        with self._db.write() as conn:
            return instance_store.change(
                conn, name, {"instance_id": instance_id}, datetime.now(UTC)
            )


def _identity_checks(instance: ExecInstance, identity: InstanceIdentity) -> list[Check]:
    admin = Right.MC_ADMIN in identity.rights
    checks = [
        Check("reach", True, f"msgcenter {identity.version} answers at {instance.url}"),
        Check("credentials", True, f"operator '{identity.login}' is accepted"),
        Check(
            "rights",
            admin,
            f"operator '{identity.login}' holds mc_admin" if admin else _lacks_admin(identity),
        ),
    ]
    if identity.folder is not None and instance.folder not in (None, identity.folder):
        checks.append(
            Check(
                "folder",
                False,
                f"operator '{identity.login}' is restricted to folder '{identity.folder}' there, "
                f"but this registration publishes into folder '{instance.folder}'",
            )
        )
    elif identity.folder is not None or instance.folder is not None:
        checks.append(
            Check(
                "folder", True, f"publications go to folder '{identity.folder or instance.folder}'"
            )
        )
    return checks


def _lacks_admin(identity: InstanceIdentity) -> str:
    rights = ", ".join(sorted(identity.rights)) or "none"
    return f"operator '{identity.login}' lacks mc_admin (its rights: {rights})"


def _database_check(
    instance: ExecInstance, settings: Settings, identity: InstanceIdentity | None
) -> Check:
    assert instance.database_url_encrypted is not None
    url = cipher(settings).decrypt(
        instance.database_url_encrypted,
        what=f"the database URL of execution instance '{instance.name}'",
    )
    shown = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite") and not Path(make_url(url).database or "").is_file():
        # Opening a missing SQLite file would create an empty database.
        return Check("database", False, f"no database file at {shown}")
    database = Database(url, pool_size=1)
    try:
        with translate_errors():
            current = current_revision(database)
            with database.read() as conn:
                held = instance_info.instance_id(conn) if current else None
        head = head_revision(database)
    except MsgcenterError as exc:
        return Check("database", False, f"cannot connect to {shown}: {exc.detail}")
    finally:
        database.dispose()
    if current is None:
        return Check("database", False, f"{shown} has no msgcenter schema")
    if current != head:
        return Check(
            "database",
            False,
            f"{shown} is at schema revision {current}, this control instance expects {head}",
        )
    web_id = identity.instance_id if identity else None
    if held and web_id and held != web_id:
        return Check(
            "database",
            False,
            f"{shown} belongs to instance '{held}', but the web API answers as instance '{web_id}'",
        )
    return Check("database", True, f"{shown} is reachable, at schema revision {current}")


def _new_instance_id(name: str) -> str:
    return f"{name}-{secrets.token_hex(6)}"


def _workflow_state(answer: dict[str, Any]) -> WorkflowState:
    return WorkflowState(
        name=str(answer["name"]),
        state=str(answer["state"]),
        last_run=_moment(answer.get("last_run")),
        last_error=answer.get("last_error"),
        last_error_at=_moment(answer.get("last_error_at")),
        watermark=None,
    )


def _queue_size(answer: dict[str, Any]) -> QueueSize:
    return QueueSize(
        queue=str(answer["queue"]),
        pending_events=int(answer["pending_events"]),
        pending_messages=int(answer["pending_messages"]),
        oldest_pending=_moment(answer.get("oldest_pending")),
    )


def _throughput(answer: dict[str, Any]) -> Throughput:
    return Throughput(
        seconds=float(answer["seconds"]),
        events_received=int(answer["events_received"]),
        messages_sent=int(answer["messages_sent"]),
        messages_failed=int(answer["messages_failed"]),
    )


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text)) if text else None
