"""Routes every instance serves alike: its liveness probe, its API documentation and the
console's static files, all from the package (nothing is fetched from the internet)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse

#: where the vendored front-end files are served (see scripts/vendor-assets.sh)
STATIC = "/console/static"
VENDOR = f"{STATIC}/vendor"


def add_landing_routes(app: FastAPI) -> None:
    """``/healthz`` says the process is alive; ``/docs`` is Swagger UI, served from files
    vendored in the package; ``/console/static`` serves the console's files.

    The application must be created with ``docs_url=None, redoc_url=None``.
    """
    app.mount(STATIC, StaticFiles(packages=[("msgcenter.console", "static")]), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        return RedirectResponse(f"{STATIC}/favicon.svg", status_code=301)

    @app.get("/healthz", tags=["monitoring"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}
