"""Structured logging: readable on a terminal, one JSON object per line in production.

Every line carries an ``action`` key (``intake.commit_failed``, ``soap.fault`` …)
that stays stable across versions so that log queries keep working.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from msgcenter.settings import LoggingSettings

#: keys whose values never reach a log line
SECRET_KEYS = frozenset({"password", "token", "sessiontoken", "authorization", "secret"})


def _mask_secrets(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in SECRET_KEYS.intersection(event):
        event[key] = "***"
    return event


def configure(settings: LoggingSettings) -> None:
    """Route structlog and the standard library's logging through one renderer."""
    renderer = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        # plain tracebacks: the default (rich, with every frame's local variables) takes
        # seconds per error in the event loop and prints event data that masking never sees
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info
                if settings.format == "json"
                else (lambda _l, _n, e: e),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    for noisy in ("uvicorn.access", "alembic.runtime.migration", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
