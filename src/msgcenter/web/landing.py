"""Routes every instance serves alike: its root address and its liveness probe."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response


def add_landing_routes(app: FastAPI) -> None:
    """``/`` leads a person to the API documentation; ``/healthz`` says the process is alive."""

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/docs")

    @app.get("/healthz", tags=["monitoring"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}
