"""Routes whose endpoint reads its own parameters: documented by FastAPI, not solved by it.

FastAPI solves and validates an endpoint's declared parameters on every request, inside
exit stacks kept for dependencies with ``yield``. For the REST push of one event that was
a quarter of the instructions the whole application ran per request
(``bench/instructions.py``). A :class:`PlainRoute` is served as a Starlette route is: its
endpoint gets the request alone. Its ``openapi_extra`` documents the parameters that the
endpoint reads and checks itself, and a parameter refused with :func:`invalid_parameter`
is answered as FastAPI's own validation refusals are, by the same problem+json handler.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.routing import request_response


class PlainRoute(APIRoute):
    """An API route whose async endpoint takes the request alone (see the module's docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The endpoint itself: no parameters solved, no response model applied."""
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


def invalid_parameter(location: str, name: str, message: str) -> RequestValidationError:
    """The refusal of parameter ``name`` of the request's ``location`` (path, query, header),
    worded as FastAPI words its own."""
    return RequestValidationError(
        [{"loc": (location, name), "msg": message, "type": "value_error"}]
    )
