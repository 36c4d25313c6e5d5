"""The states of technical workflows (SPEC §3.4), and when they make an instance unready."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

#: the workflows an execution instance is unready without
REQUIRED_WORKFLOWS = frozenset({"rtEventsProcessing", "batchEventsProcessing", "updateEventStatus"})
#: a running workflow whose last heartbeat is older than this is reported as not running
HEARTBEAT_TIMEOUT_SECONDS = 30.0


class RunState(enum.StrEnum):
    """What a workflow is doing: operators set running, paused or stopped; the runner sets
    failed after an unexpected error, and running again once a round succeeds."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


#: what operators ask for (CLI, admin API, console), and the state it sets
ACTIONS = {"start": RunState.RUNNING, "pause": RunState.PAUSED, "stop": RunState.STOPPED}


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """Where one workflow stands."""

    name: str
    state: str
    last_run: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    watermark: int | None


def unready_workflows(
    states: Iterable[WorkflowState], required: set[str], now: datetime
) -> list[str]:
    """Names (with the reason) of required workflows that are not running right now."""
    by_name = {s.name: s for s in states}
    problems = []
    for name in sorted(required):
        state = by_name.get(name)
        if state is None:
            problems.append(f"{name}: never started")
        elif state.state != RunState.RUNNING:
            problems.append(
                f"{name}: {state.state}"
                + (f" ({state.last_error})" if state.state == RunState.FAILED else "")
            )
        elif (
            state.last_run is None
            or (now - state.last_run).total_seconds() > HEARTBEAT_TIMEOUT_SECONDS
        ):
            problems.append(
                f"{name}: no heartbeat for over {int(HEARTBEAT_TIMEOUT_SECONDS)} s "
                "(no worker running?)"
            )
    return problems
