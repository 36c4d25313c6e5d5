"""An HTTP client for an execution instance's admin API, whose errors say precisely what failed.

The control instance publishes, initializes and tests execution instances
through it (SPEC §2, §4). Every transport failure and every unexpected answer
becomes an :class:`ExecInstanceError` naming the instance and the cause: nothing
listening, a timeout, TLS, a server that is not msgcenter, wrong credentials,
a missing right, or a refusal with the instance's own explanation.
"""

from __future__ import annotations

import enum
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from msgcenter import __version__
from msgcenter.control.credentials import cipher
from msgcenter.errors import ConflictError, MsgcenterError, UpstreamError
from msgcenter.instances import ExecInstance
from msgcenter.publications import PublicationSpec
from msgcenter.settings import Settings

PROBLEM_TYPE = "urn:msgcenter:problem:"


class Failure(enum.StrEnum):
    """What went wrong when talking to an execution instance."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    TLS = "tls"
    NOT_MSGCENTER = "not_msgcenter"
    CREDENTIALS = "credentials"
    RIGHTS = "rights"
    #: the instance understood the request and refused it (its explanation follows)
    REFUSED = "refused"

    @property
    def instance_wide(self) -> bool:
        """Whether every further call to the instance would fail the same way."""
        return self not in (Failure.RIGHTS, Failure.REFUSED)


class ExecInstanceError(UpstreamError):
    """A call to an execution instance failed; ``failure`` says how, ``detail`` precisely why."""

    code = "exec-instance"

    def __init__(self, instance: str, failure: Failure, reason: str) -> None:
        super().__init__(f"execution instance '{instance}' failed ({failure})", detail=reason)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class InstanceIdentity:
    """What ``GET /api/v1/admin/instance`` says: the instance, and the operator calling it."""

    version: str
    instance_id: str | None
    login: str
    rights: frozenset[str]
    folder: str | None


class ExecClient:
    """One execution instance's admin API, as operator ``login``; use as an async context manager."""

    def __init__(self, name: str, url: str, login: str, password: str, timeout: float) -> None:
        self.name = name
        self.login = login
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=url,
            auth=(login, password),
            timeout=timeout,
            headers={"User-Agent": f"msgcenter-control/{__version__}"},
        )

    async def __aenter__(self) -> ExecClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def identity(self) -> InstanceIdentity:
        """Who the instance is and what the operator may do there (checks reachability and credentials)."""
        body = self._json(await self.request("GET", "/api/v1/admin/instance", expect={200}))
        operator = body.get("operator") if isinstance(body, dict) else None
        if not isinstance(operator, dict) or body.get("product") != "msgcenter":
            raise self._not_msgcenter("GET /api/v1/admin/instance answered JSON of another kind")
        return InstanceIdentity(
            version=str(body.get("version")),
            instance_id=body.get("instance_id"),
            login=str(operator.get("login")),
            rights=frozenset(operator.get("rights") or ()),
            folder=operator.get("folder"),
        )

    async def assign_instance_id(self, instance_id: str, *, force: bool) -> None:
        """Store ``instance_id`` on the instance; :class:`ConflictError` if it holds another one."""
        await self.request(
            "PUT",
            "/api/v1/admin/instance",
            json={"instance_id": instance_id, "force": force},
            expect={200},
        )

    async def publish(self, spec: PublicationSpec) -> None:
        """Create both flavours of ``spec`` on the instance (replacing the previous version)."""
        answer = await self.request(
            "PUT", "/api/v1/admin/publications", json=spec.model_dump(mode="json"), expect={201}
        )
        stored = self._json(answer)
        if not isinstance(stored, list) or not all(
            isinstance(p, dict) and p.get("version") == spec.version for p in stored
        ):
            raise self._not_msgcenter(
                "PUT /api/v1/admin/publications answered JSON that is not the stored publications"
            )

    async def workflows(self) -> list[dict[str, Any]]:
        """The instance's technical workflows and their states."""
        return self._list(await self.request("GET", "/api/v1/admin/workflows", expect={200}))

    async def queues(self) -> list[dict[str, Any]]:
        """The instance's queue sizes and oldest waiting events."""
        return self._list(await self.request("GET", "/api/v1/admin/queues", expect={200}))

    async def throughput(self) -> dict[str, dict[str, Any]]:
        """Events received, messages sent and failed in the last hour and day."""
        body = self._json(await self.request("GET", "/api/v1/admin/throughput", expect={200}))
        if not isinstance(body, dict):
            raise self._not_msgcenter("GET /api/v1/admin/throughput answered JSON of another kind")
        return body

    async def unpublish(self, template: str, folder: str | None) -> None:
        """Remove both flavours of ``template``; a template the instance does not have counts as removed."""
        path = f"/api/v1/admin/publications/{template}"
        answer = await self.request(
            "DELETE",
            path,
            params={"folder": folder} if folder else None,
            expect={200},
            absent_ok=True,
        )
        if answer.status_code == 200 and not isinstance(self._json(answer), dict):
            raise self._not_msgcenter(f"DELETE {path} answered JSON of another kind")

    async def request(
        self,
        method: str,
        path: str,
        *,
        expect: set[int],
        json: Any = None,
        params: dict[str, Any] | None = None,
        absent_ok: bool = False,
    ) -> httpx.Response:
        """One call; an answer with a status in ``expect`` is returned, anything else raises.

        ``absent_ok`` also accepts msgcenter's own 404 (the object is not there).
        """
        try:
            answer = await self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            phase = (
                "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for the answer"
            )
            raise ExecInstanceError(
                self.name,
                Failure.TIMEOUT,
                f"timed out after {self._timeout:g} s {phase} ({method} {self._http.base_url.join(path)})",
            ) from exc
        except httpx.ConnectError as exc:
            raise ExecInstanceError(self.name, *self._connect_failure(exc)) from exc
        except httpx.HTTPError as exc:
            raise self._not_msgcenter(
                f"the answer to {method} {path} is not valid HTTP ({exc})"
            ) from exc
        if answer.status_code in expect:
            return answer
        problem = _problem(answer)
        if absent_ok and answer.status_code == 404 and problem is not None:
            return answer
        raise self._refusal(method, path, answer, problem)

    def _refusal(
        self, method: str, path: str, answer: httpx.Response, problem: dict[str, Any] | None
    ) -> MsgcenterError:
        status = answer.status_code
        said = f": {problem.get('detail')}" if problem else ""
        if status == 401:
            return ExecInstanceError(
                self.name,
                Failure.CREDENTIALS,
                f"wrong login or password for operator '{self.login}'",
            )
        if status == 429:
            return ExecInstanceError(
                self.name,
                Failure.CREDENTIALS,
                f"operator '{self.login}' is locked out after failed logons{said}",
            )
        if problem is None:
            kind = answer.headers.get("content-type", "no content type").split(";")[0]
            return self._not_msgcenter(f"{method} {path} answered HTTP {status} with {kind}")
        if status == 403:
            return ExecInstanceError(
                self.name, Failure.RIGHTS, f"operator '{self.login}' is refused{said}"
            )
        if status == 409:
            return ConflictError(
                f"execution instance '{self.name}' refused the change",
                detail=str(problem.get("detail")),
            )
        return ExecInstanceError(
            self.name, Failure.REFUSED, f"{method} {path} refused with HTTP {status}{said}"
        )

    def _connect_failure(self, exc: httpx.ConnectError) -> tuple[Failure, str]:
        where = f"{self._http.base_url.host}:{self._http.base_url.port or ''}".rstrip(":")
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return (
                    Failure.TLS,
                    f"TLS certificate of {where} not trusted: {cause.verify_message}",
                )
            if isinstance(cause, ssl.SSLError):
                return Failure.TLS, f"TLS handshake with {where} failed: {cause.reason or cause}"
            if isinstance(cause, ConnectionRefusedError):
                return (
                    Failure.UNREACHABLE,
                    f"connection refused by {where} (nothing listening there?)",
                )
            if isinstance(cause, socket.gaierror):
                return (
                    Failure.UNREACHABLE,
                    f"cannot resolve host '{self._http.base_url.host}': {cause.strerror}",
                )
        return Failure.UNREACHABLE, f"cannot connect to {where}: {exc}"

    def _list(self, answer: httpx.Response) -> list[dict[str, Any]]:
        body = self._json(answer)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            path = answer.request.url.path
            raise self._not_msgcenter(f"GET {path} answered JSON that is not a list of objects")
        return body

    def _json(self, answer: httpx.Response) -> Any:
        try:
            return answer.json()
        except ValueError:
            kind = answer.headers.get("content-type", "no content type").split(";")[0]
            raise self._not_msgcenter(
                f"{answer.request.method} {answer.request.url.path} answered HTTP {answer.status_code} "
                f"with {kind}, not JSON"
            ) from None

    def _not_msgcenter(self, what: str) -> ExecInstanceError:
        return ExecInstanceError(
            self.name, Failure.NOT_MSGCENTER, f"not an msgcenter execution instance: {what}"
        )


def client_for(instance: ExecInstance, settings: Settings) -> ExecClient:
    """A client of ``instance``'s admin API with its decrypted credentials."""
    password = cipher(settings).decrypt(
        instance.password_encrypted, what=f"the password of execution instance '{instance.name}'"
    )
    return ExecClient(
        instance.name,
        instance.url,
        instance.login,
        password,
        settings.control.instance_timeout_seconds,
    )


def _problem(answer: httpx.Response) -> dict[str, Any] | None:
    """msgcenter's problem+json body of ``answer``, or None when it is anything else."""
    if not answer.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if isinstance(body, dict) and str(body.get("type", "")).startswith(PROBLEM_TYPE):
        return body
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__
