"""The console on an instance's application: its state, and the pages of the instance's role."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI

from msgcenter.console import (
    bounces,
    design,
    history,
    instances,
    login,
    operations,
    publishing,
    reports,
)
from msgcenter.console.web import ConsoleSessions
from msgcenter.sending.email import DEVELOPMENT_SECRET
from msgcenter.settings import Settings


def install_console(
    app: FastAPI, role: Literal["control", "execution"], settings: Settings
) -> None:
    """Serve the console of a ``role`` instance: ``/`` and the login page, then the pages of
    the role (the services they call must be in ``app.state`` already)."""
    secret = settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET
    app.state.console_role = role
    app.state.console_sessions = ConsoleSessions(
        secret, settings.security.console_idle_seconds, f"{role}_{settings.instance_name}"
    )
    app.include_router(login.router)
    if role == "execution":
        app.include_router(operations.router)
        app.include_router(bounces.router)
        return
    for router in (
        instances.router,
        design.router,
        publishing.router,
        history.router,
        reports.router,
    ):
        app.include_router(router)
