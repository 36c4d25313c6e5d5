"""Reading a request body under a size limit, without buffering more than the limit."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from msgcenter.errors import InvalidInputError, PayloadTooLargeError


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``; :class:`PayloadTooLargeError` as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            "request body too large",
            detail=f"the body is {declared} bytes; at most {limit} are accepted",
        )
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    "request body too large", detail=f"the body exceeds {limit} bytes"
                )
            chunks.append(chunk)
    except ClientDisconnect:
        # nobody reads the answer; the error keeps it out of the log as a traceback
        raise InvalidInputError(
            "client disconnected", detail=f"the client went away after {size} bytes of the body"
        ) from None
    return b"".join(chunks)
