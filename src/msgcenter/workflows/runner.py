"""The workflow runner: drives each workflow's loop, honours the state operators set, reports health.

A workflow is a small object with ``run_once()``; the runner calls it in a loop,
waits between rounds (or until woken), skips rounds while the workflow is
paused or stopped, and records a heartbeat and any unexpected error in the
``workflow`` table. An unexpected error marks the workflow failed and is
retried with backoff; it never ends the loop. The database being unavailable is
not the workflow's fault: it is reported to the :class:`StoreWatch` (one warning
per outage, no traceback), and the workflow is woken as soon as the database is
back instead of waiting out its backoff.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from msgcenter.errors import StoreUnavailableError, describe_error
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.workflows.outages import StoreWatch

log = structlog.get_logger(__name__)

#: how often the runner re-reads the states operators set
STATE_REFRESH_SECONDS = 1.0
#: how often a healthy workflow records that it ran
HEARTBEAT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0
#: how often a runner made without a StoreWatch probes an unavailable database
STORE_PROBE_SECONDS = 1.0


class Workflow(abc.ABC):
    """One technical workflow."""

    #: internal name, as in the model product (rtEventsProcessing …)
    name: str
    #: whether the instance is unready when this workflow is not running
    required: bool = True

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    @abc.abstractmethod
    async def run_once(self) -> float:
        """Do one round of work; return the seconds to wait before the next round (0: go on at once)."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release what the workflow keeps open between rounds (the runner calls it when it
        stops); nothing by default."""


class WorkflowRunner:
    """Runs workflows concurrently in the current event loop."""

    def __init__(
        self, db: Database, workflows: list[Workflow], store: StoreWatch | None = None
    ) -> None:
        self._db = db
        self.workflows = {w.name: w for w in workflows}
        self.store = store or StoreWatch(db, STORE_PROBE_SECONDS)
        for workflow in workflows:
            self.store.wake_on_return(workflow.wake)
        self._states: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Register the workflows (new ones start running) and start their loops."""
        self._event_loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._ensure)
        await self._refresh_states()
        self._tasks = [asyncio.create_task(self._states_loop(), name="workflow-states")]
        self._tasks += [
            asyncio.create_task(self._loop(w), name=f"workflow-{w.name}")
            for w in self.workflows.values()
        ]

    async def stop(self) -> None:
        """Cancel every loop, then let each workflow release what it keeps open."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for workflow in self.workflows.values():
            await workflow.close()
        await self.store.stop()

    async def add(self, workflow: Workflow) -> None:
        """Register and start one more workflow while running (a newly registered instance's)."""
        if workflow.name in self.workflows:
            return
        self.workflows[workflow.name] = workflow
        self.store.wake_on_return(workflow.wake)
        await asyncio.to_thread(self._ensure)
        await self._refresh_states()
        self._tasks.append(
            asyncio.create_task(self._loop(workflow), name=f"workflow-{workflow.name}")
        )

    def note_state(self, name: str, state: str) -> None:
        """Take a state an operator just set in this process into account at once (the states
        set by other processes are read every ``STATE_REFRESH_SECONDS``); any thread."""
        workflow = self.workflows.get(name)
        if workflow is None or self._event_loop is None:
            return
        self._states[name] = state
        self._event_loop.call_soon_threadsafe(workflow.wake.set)

    def _ensure(self) -> None:
        with self._db.write() as conn:
            workflow_store.ensure(conn, list(self.workflows), datetime.now(UTC))

    async def _refresh_states(self) -> None:
        def read() -> dict[str, str]:
            with self._db.read() as conn:
                return {w.name: w.state for w in workflow_store.list_all(conn)}

        self._states = await asyncio.to_thread(read)

    async def _states_loop(self) -> None:
        while True:
            await asyncio.sleep(STATE_REFRESH_SECONDS)
            try:
                await self._refresh_states()
            except StoreUnavailableError as exc:
                self.store.failed(exc, "workflow states")
            except Exception as exc:  # noqa: BLE001 - keep the last known states
                log.warning(
                    "workflow states unreadable",
                    action="workflow.states_unreadable",
                    error=str(exc),
                )

    async def _loop(self, workflow: Workflow) -> None:
        failures = 0
        last_heartbeat = 0.0
        while True:
            if self._states.get(workflow.name, "running") not in ("running", "failed"):
                # a wake-up that stayed set would end every wait at once and spin this loop;
                # none is needed, since the first round after resuming runs anyway
                workflow.wake.clear()
                await _wait(workflow.wake, STATE_REFRESH_SECONDS)
                continue
            workflow.wake.clear()  # a wake-up during the round triggers the next one at once
            started = time.monotonic()
            try:
                delay = await workflow.run_once()
                if failures:
                    self.store.check_now()  # the database answered: an outage may be over
                recovered = failures > 0 or self._states.get(workflow.name) == "failed"
                if recovered or time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                    # a heartbeat the database refused is a round that met the outage: the
                    # workflow is woken at its end and records that it runs at once, rather
                    # than a heartbeat interval later (a round can succeed without the
                    # database, waiting for the dispatcher to drain)
                    await self._beat(workflow.name, recovered)
                    last_heartbeat = time.monotonic()
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError as exc:
                # not the workflow's fault: one warning per outage, and a wake-up at its end
                failures += 1
                waits = self.store.failed(exc, workflow.name, since=started)
                delay = min(2.0**failures, MAX_BACKOFF_SECONDS) if waits else 0
            except Exception as exc:  # noqa: BLE001 - a workflow never dies of one error
                failures += 1
                log.exception(
                    "workflow round failed", action="workflow.failed", workflow=workflow.name
                )
                await self._quietly(self._record_failure, workflow.name, describe_error(exc))
                delay = min(2.0**failures, MAX_BACKOFF_SECONDS)
            else:
                failures = 0
            if delay > 0:
                await _wait(workflow.wake, delay)

    async def _beat(self, name: str, recovered: bool) -> None:
        """Record that the workflow ran (and is running again if ``recovered``); an unavailable
        database raises, any other failure is only logged."""
        try:
            await asyncio.to_thread(self._heartbeat, name, recovered)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not kill the loop
            log.warning(
                "workflow bookkeeping failed", action="workflow.bookkeeping_failed", error=str(exc)
            )
            return
        if recovered:
            self._states[name] = "running"

    async def _quietly(self, function: Callable[..., object], *args: object) -> None:
        """Bookkeeping that must not kill the loop; an unavailable database goes to the watch."""
        started = time.monotonic()
        try:
            await asyncio.to_thread(function, *args)
        except StoreUnavailableError as exc:
            self.store.failed(exc, "workflow bookkeeping", since=started)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not kill the loop
            log.warning(
                "workflow bookkeeping failed", action="workflow.bookkeeping_failed", error=str(exc)
            )

    def _heartbeat(self, name: str, recovered: bool) -> None:
        with self._db.write() as conn:
            workflow_store.heartbeat(conn, name, datetime.now(UTC), recovered=recovered)

    def _record_failure(self, name: str, error: str) -> None:
        with self._db.write() as conn:
            workflow_store.record_failure(conn, name, error, datetime.now(UTC))
        self._states[name] = "failed"


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
