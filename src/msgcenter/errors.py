"""The exception tree: one root, subclasses that carry what a caller needs to decide.

The core raises these; the SOAP and REST adapters map them to a SOAP Fault or a
problem+json response. Nothing here knows about HTTP.
"""

from __future__ import annotations


class MsgcenterError(Exception):
    """Root of every error msgcenter raises on purpose."""

    #: a short, stable, machine-readable name (used as the problem type and in logs)
    code = "error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the precise explanation shown to the caller (defaults to the message)
        self.detail = detail or message


class InvalidInputError(MsgcenterError):
    """The caller sent something msgcenter cannot accept; retrying it unchanged won't help."""

    code = "invalid-input"


class MalformedXmlError(InvalidInputError):
    """The request is not well-formed XML."""

    code = "malformed-xml"

    def __init__(self, reason: str, *, line: int, column: int) -> None:
        super().__init__(
            "request is not well-formed XML",
            detail=f"XML parse error at line {line}, column {column}: {reason}",
        )
        self.line = line
        self.column = column


class HostileXmlError(InvalidInputError):
    """The XML uses a construct msgcenter refuses (DTD, entity, excessive nesting)."""

    code = "hostile-xml"


class PayloadTooLargeError(InvalidInputError):
    """A request or event is larger than the configured limit."""

    code = "payload-too-large"


class InvalidEventError(InvalidInputError):
    """One event failed validation; ``field`` names the attribute, ``position`` its place (1-based)."""

    code = "invalid-event"

    def __init__(self, field: str, reason: str, *, position: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.position = position
        where = f"event {position}: " if position is not None else ""
        subject = f"invalid '{field}'" if field else "invalid event"
        super().__init__(f"{where}{subject}", detail=f"{where}{subject}: {reason}")

    def at_position(self, position: int) -> InvalidEventError:
        """The same error, located at ``position`` in a collection (1-based)."""
        return InvalidEventError(self.field, self.reason, position=position)


class SoapVersionMismatchError(InvalidInputError):
    """The request is an envelope of another SOAP version (1.2) than the one served (1.1)."""

    code = "version-mismatch"


class IdempotencyKeyReusedError(InvalidInputError):
    """An idempotency key already used by another request (a replay must repeat the request)."""

    code = "idempotency-key-reused"


class UnknownOperationError(InvalidInputError):
    """The request names a service or method msgcenter does not offer."""

    code = "unknown-operation"


class AuthenticationError(MsgcenterError):
    """The caller could not be identified (unknown login, wrong password, bad token)."""

    code = "authentication-failed"

    def __init__(self, detail: str) -> None:
        super().__init__("authentication failed", detail=detail)


class TooManyFailedLoginsError(AuthenticationError):
    """Logons for this login or address are refused for a while after repeated failures."""

    code = "too-many-failed-logins"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PermissionDeniedError(MsgcenterError):
    """The caller is identified but may not do this (missing right, IP not trusted, zone)."""

    code = "permission-denied"

    def __init__(self, detail: str) -> None:
        super().__init__("permission denied", detail=detail)


class NotFoundError(MsgcenterError):
    """The named object does not exist (or is outside the caller's folder)."""

    code = "not-found"


class ConflictError(MsgcenterError):
    """The object already exists or is in a state that forbids the change."""

    code = "conflict"


class StoreUnavailableError(MsgcenterError):
    """The database could not be reached or refused the work; temporary, retry later."""

    code = "store-unavailable"


class UpstreamError(MsgcenterError):
    """Another service this instance called (an execution instance, a relay) failed or answered badly."""

    code = "upstream"


class ConfigurationError(MsgcenterError):
    """The settings are inconsistent or the database schema is not at the expected revision."""

    code = "configuration"


def describe_error(exc: BaseException) -> str:
    """One line naming what exactly failed, never a statement's parameters (for a workflow's
    last error and for logs)."""
    if isinstance(exc, MsgcenterError):
        text = exc.message if exc.detail == exc.message else f"{exc.message}: {exc.detail}"
    else:
        # a driver error wrapped by SQLAlchemy: its own text would carry the SQL and its parameters
        exc = getattr(exc, "orig", None) or exc
        text = str(exc)
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
