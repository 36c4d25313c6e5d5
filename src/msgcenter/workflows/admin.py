"""Operators' control of technical workflows: list them, start, pause or stop one (SPEC §3.4)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from msgcenter.errors import InvalidInputError, NotFoundError
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.workflow_states import ACTIONS, WorkflowState


class WorkflowAdmin:
    """The workflows of one instance, as its ``workflow`` table records them."""

    def __init__(self, db: Database, on_change: Callable[[str, str], None] | None = None) -> None:
        self._db = db
        #: told (name, state) after a change: the runner of this process applies it at once
        self._on_change = on_change

    def list(self) -> list[WorkflowState]:
        """Every workflow with its state, last run and last error, by name."""
        with self._db.read() as conn:
            return workflow_store.list_all(conn)

    def act(self, name: str, action: str) -> WorkflowState:
        """Start, pause or stop workflow ``name``; returns its new state."""
        if action not in ACTIONS:
            raise InvalidInputError(
                f"unknown action {action!r}", detail=f"known actions: {', '.join(ACTIONS)}"
            )
        with self._db.write() as conn:
            workflow_store.set_state(conn, name, ACTIONS[action], datetime.now(UTC))
            found = [s for s in workflow_store.list_all(conn) if s.name == name]
        if not found:
            raise NotFoundError(f"no workflow '{name}'")
        if self._on_change is not None:
            self._on_change(name, found[0].state)
        return found[0]
