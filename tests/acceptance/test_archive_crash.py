"""Archiving is crash-safe (SPEC §4): ``msgcenter control archive run`` as a real process, SIGKILLed
half-way, leaves exactly the events up to its watermark archived, and the next run completes the
archive without loss or duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, tuple_

from msgcenter.store.database import Database
from msgcenter.store.tables import (
    archive_state,
    archived_delivery_log,
    archived_event,
    delivery_log,
    event,
)
from tests.archiving import archived_count, fill_final_events
from tests.conftest import add_operator, start_exec_server, wait_for
from tests.control import KEY

pytestmark = pytest.mark.slow

EVENTS = 6_000
ADMIN = ("mc", "secret")


def msgcenter_cli(*args: str, env: dict[str, str]) -> str:
    """Run one ``msgcenter`` command with ``MSGCENTER_*`` settings ``env``; its output, or the test fails."""
    done = subprocess.run(
        [sys.executable, "-m", "msgcenter", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert done.returncode == 0, f"msgcenter {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


class ArchiveSetup:
    """An execution instance full of final events, registered with the CLI on a control database."""

    def __init__(
        self, db: Database, control_db: Database, exec_url: str, method: str, tmp_path: Path
    ) -> None:
        self.db, self.control_db, self.tmp_path = db, control_db, tmp_path
        # a lease of 3 × 4 s, so that a run killed half-way holds the archive only briefly
        self.env = {
            "MSGCENTER_DATABASE_URL": control_db.url,
            "MSGCENTER_CONTROL__CREDENTIALS_KEY": KEY,
            "MSGCENTER_CONTROL__ARCHIVE_PAGE_SIZE": "100",
            "MSGCENTER_CONTROL__INSTANCE_TIMEOUT_SECONDS": "4",
            "MSGCENTER_LOGGING__FORMAT": "json",
        }
        database = ["--database-url", db.url] if method == "database" else []
        msgcenter_cli(
            "control", "instance", "add", "exec1", "--url", exec_url, "--login", ADMIN[0],
            "--password", ADMIN[1], "--archive-method", method, *database, env=self.env,
        )  # fmt: skip
        msgcenter_cli("control", "instance", "init", "exec1", env=self.env)

    def start_run(self, name: str) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "msgcenter", "control", "archive", "run", "exec1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def assert_archive_complete(self) -> None:
        """Every event and delivery log archived once, with its status; the watermark at the newest."""
        with self.db.read() as conn:
            events = set(conn.execute(select(event.c.id, event.c.status)).all())
            logs = set(conn.execute(select(delivery_log.c.id, delivery_log.c.status)).all())
            newest = conn.execute(
                select(event.c.id)
                .order_by(event.c.last_modified.desc(), event.c.id.desc())
                .limit(1)
            ).scalar_one()
        with self.control_db.read() as conn:
            archived = conn.execute(
                select(archived_event.c.event_id, archived_event.c.status)
            ).all()
            archived_logs = conn.execute(
                select(archived_delivery_log.c.delivery_log_id, archived_delivery_log.c.status)
            ).all()
            watermark_id, counted, lease = conn.execute(
                select(
                    archive_state.c.watermark_id,
                    archive_state.c.archived_events,
                    archive_state.c.lease_until,
                )
            ).one()
        assert len(archived) == len(set(archived)) == EVENTS and set(archived) == events
        assert len(archived_logs) == len(logs) and set(archived_logs) == logs
        assert (watermark_id, counted, lease) == (newest, EVENTS, None)


def archived_up_to_watermark_without_holes(db: Database, control_db: Database) -> int:
    """How many events are archived, checking that they are exactly those up to the watermark."""
    with control_db.read() as conn:
        at, last_id = conn.execute(
            select(archive_state.c.watermark_at, archive_state.c.watermark_id)
        ).one()
        archived = set(conn.execute(select(archived_event.c.event_id)).scalars())
    with db.read() as conn:
        covered = set(
            conn.execute(
                select(event.c.id).where(
                    tuple_(event.c.last_modified, event.c.id) <= tuple_(at, last_id)
                )
            ).scalars()
        )
    assert archived == covered
    return len(archived)


@pytest.fixture
def exec_url(db: Database) -> Iterator[str]:
    fill_final_events(
        db, EVENTS, start=datetime.now(UTC) - timedelta(days=10), spread=timedelta(days=9)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded:
        yield server.url


@pytest.mark.parametrize("method", ["database", "web"])
def test_a_run_killed_half_way_resumes_without_loss_or_duplicates(
    db, control_db, exec_url, tmp_path, method
):
    setup = ArchiveSetup(db, control_db, exec_url, method, tmp_path)
    killed = setup.start_run("killed")
    wait_for(
        lambda: archived_count(control_db) >= EVENTS // 5 or killed.poll() is not None,
        timeout=120,
        interval=0.02,
        message="a fifth of the archive",
    )
    assert killed.poll() is None, setup.output("killed")
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    partial = archived_up_to_watermark_without_holes(db, control_db)
    assert 0 < partial < EVENTS

    # the dead run's lease is still there for a few seconds: the next run waits it out
    resumed = " ".join(
        msgcenter_cli("control", "archive", "run", "exec1", "--wait", "30", env=setup.env).split()
    )
    assert f"({EVENTS - partial} new)" in resumed
    setup.assert_archive_complete()
    status = msgcenter_cli("control", "archive", "status", env=setup.env)
    assert "exec1" in status and str(EVENTS) in status
