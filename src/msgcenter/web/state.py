"""How a route reaches the services of its application: ``app.state`` through a dependency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency giving ``request.app.state.<name>`` (a service the app factory stored).

    It is a coroutine function: FastAPI runs a plain function dependency in its thread
    pool, a hop that costs more than the lookup itself.
    """

    async def service(request: Request) -> Any:
        return getattr(request.app.state, name)

    service.__name__ = f"{name}_service"
    return service
