"""Execution instances as a control instance registers them (external accounts, SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ExecInstance:
    """One registered execution instance; its secrets stay encrypted (and out of ``repr``)."""

    id: int
    name: str
    label: str
    url: str
    login: str
    password_encrypted: str = field(repr=False)
    enabled: bool
    #: "web" or "database"
    archive_method: str
    database_url_encrypted: str | None = field(repr=False)
    folder: str | None
    #: assigned by "Initialize connection" (None until then)
    instance_id: str | None
    created: datetime
    updated: datetime
