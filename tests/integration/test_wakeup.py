"""The wake-up listener on a real PostgreSQL: notifications wake the workflows of their queue; a
lost notification connection is logged once, shown by the metric, and listened to again."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from msgcenter.events.model import Queue
from msgcenter.store.database import Database
from msgcenter.store.events import NOTIFY_CHANNEL
from msgcenter.workflows.wakeup import Wakeup


def listening() -> float | None:
    return REGISTRY.get_sample_value("msgcenter_wakeup_listening")


def fallbacks() -> float:
    return REGISTRY.get_sample_value("msgcenter_wakeup_fallbacks_total") or 0.0


async def until(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_notifications_wake_and_a_lost_connection_is_listened_to_again(pg_database):
    admin = sqlalchemy.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    db = Database(pg_database)

    def notify(queue: Queue) -> None:
        with admin.connect() as conn:
            conn.execute(
                sqlalchemy.text("SELECT pg_notify(:c, :q)"), {"c": NOTIFY_CHANNEL, "q": queue.value}
            )

    def kill_listener() -> int:
        with admin.connect() as conn:
            return conn.execute(
                sqlalchemy.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %' AND datname = current_database()"
                )
            ).scalar_one()

    async def scenario() -> list[dict]:
        wakeup = Wakeup()
        wakeup.bind(asyncio.get_running_loop())
        rt, batch = wakeup.event(Queue.RT), wakeup.event(Queue.BATCH)
        with capture_logs() as logs:

            def said(action: str) -> int:
                return sum(entry.get("action") == action for entry in logs)

            task = asyncio.create_task(wakeup.listen(db))
            try:
                await until(lambda: said("wakeup.listen") == 1, "the listener to listen")
                assert listening() == 1
                rt.clear(), batch.clear()
                await asyncio.to_thread(notify, Queue.BATCH)
                await until(batch.is_set, "the batch queue's wake-up")
                assert not rt.is_set()

                before = fallbacks()
                assert await asyncio.to_thread(kill_listener) == 1
                await until(lambda: said("wakeup.polling") == 1, "the fallback to be logged")
                assert fallbacks() == before + 1
                await until(lambda: said("wakeup.listen") == 2, "the listener to listen again")
                assert listening() == 1
                rt.clear()
                await asyncio.to_thread(notify, Queue.RT)
                await until(rt.is_set, "the real-time queue's wake-up after the reconnection")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert listening() == 0
        return logs

    try:
        logs = asyncio.run(scenario())
    finally:
        db.dispose()
        admin.dispose()
    actions = [entry["action"] for entry in logs if "wakeup" in str(entry.get("action"))]
    assert actions == ["wakeup.listen", "wakeup.polling", "wakeup.listen"]
    assert [e["event"] for e in logs if e.get("action") == "wakeup.listen"][-1].endswith("again")
