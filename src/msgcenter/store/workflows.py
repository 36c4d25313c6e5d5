"""Named queries on technical workflow states."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from msgcenter.errors import NotFoundError
from msgcenter.store.database import insert_or_ignore
from msgcenter.store.tables import workflow
from msgcenter.workflow_states import WorkflowState


def ensure(conn: Connection, names: list[str], now: datetime) -> None:
    """Create the rows of workflows seen for the first time, in state running."""
    for name in names:
        insert_or_ignore(
            conn, workflow, {"name": name, "state": "running", "updated": now}, ["name"]
        )


def list_all(conn: Connection) -> list[WorkflowState]:
    """Every workflow, by name."""
    rows = conn.execute(select(workflow).order_by(workflow.c.name)).mappings()
    return [
        WorkflowState(
            r["name"],
            r["state"],
            r["last_run"],
            r["last_error"],
            r["last_error_at"],
            r["watermark"],
        )
        for r in rows
    ]


def create(conn: Connection, name: str, now: datetime) -> bool:
    """Create workflow ``name`` in state running; False when it exists already."""
    return insert_or_ignore(
        conn, workflow, {"name": name, "state": "running", "updated": now}, ["name"]
    )


def states(conn: Connection) -> dict[str, str]:
    """The state of every workflow, by name."""
    return {name: state for name, state in conn.execute(select(workflow.c.name, workflow.c.state))}


def set_state(conn: Connection, name: str, state: str, now: datetime) -> None:
    """Set the state an operator asked for (running, paused, stopped)."""
    changed = conn.execute(
        update(workflow).where(workflow.c.name == name).values(state=state, updated=now)
    ).rowcount
    if not changed:
        raise NotFoundError(f"no workflow '{name}'")


def heartbeat(conn: Connection, name: str, now: datetime, *, recovered: bool) -> None:
    """Record a successful run; a failed workflow that ran again is running again."""
    values: dict[str, object] = {"last_run": now}
    query = update(workflow).where(workflow.c.name == name)
    conn.execute(query.values(**values))
    if recovered:
        conn.execute(query.where(workflow.c.state == "failed").values(state="running", updated=now))


def record_failure(conn: Connection, name: str, error: str, now: datetime) -> None:
    """Record an unexpected error: the workflow is failed until it runs cleanly again."""
    conn.execute(
        update(workflow)
        .where(workflow.c.name == name, workflow.c.state == "running")
        .values(state="failed", updated=now)
    )
    conn.execute(
        update(workflow)
        .where(workflow.c.name == name)
        .values(last_error=error[:4000], last_error_at=now)
    )


def record_errors(conn: Connection, errors: dict[str, tuple[str, datetime]]) -> None:
    """Record the last error each named workflow met, and when, leaving its state alone (an
    outage of the database, recorded once the database is back)."""
    for name, (error, at) in errors.items():
        conn.execute(
            update(workflow)
            .where(workflow.c.name == name)
            .values(last_error=error[:4000], last_error_at=at)
        )


def set_watermark(conn: Connection, name: str, watermark: int) -> None:
    """Store a workflow's progress marker."""
    conn.execute(update(workflow).where(workflow.c.name == name).values(watermark=watermark))
