"""An execution instance behind PgBouncer in transaction mode (issue 11, docs/scaling.md).

In transaction mode PgBouncer gives each transaction whichever server connection is
free, so nothing may rely on a session: no ``SET`` without ``LOCAL``, no session
advisory lock, no temporary table used across transactions, no ``LISTEN`` on a pooled
connection, and (before PgBouncer 1.21; Debian 12 ships 1.18) no server-side prepared
statement. The tests start Debian's ``pgbouncer`` on a free loopback port in front of the
machine's PostgreSQL, with fewer server connections than msgcenter's processes hold client
connections (so transactions really move between server connections), and run the real
``msgcenter exec serve`` and ``exec worker`` through it, with
``database_prepared_statements = false`` and ``database_listen_url`` pointing at
PostgreSQL directly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy
from sqlalchemy import func, select, text

from msgcenter.errors import StoreUnavailableError
from msgcenter.events.model import EventStatus
from msgcenter.store import database as database_module
from msgcenter.store.database import Database
from msgcenter.store.events import NOTIFY_CHANNEL
from msgcenter.store.schema import upgrade
from msgcenter.store.tables import event
from tests.acceptance.servers import ServerProcess, WorkerProcess, msgcenter_cli
from tests.conftest import PG_ADMIN_URL, PG_REQUIRED, add_operator, free_port, wait_for
from tests.smtp import SmtpServer

pytestmark = pytest.mark.slow

ADMIN = ("mc", "secret")
PUBLICATION = Path(__file__).parents[1] / "fixtures" / "order_confirmation.toml"
#: server connections PgBouncer opens to the database: fewer than msgcenter's clients
SERVER_POOL = 3


def _unavailable(message: str) -> None:
    if PG_REQUIRED:
        pytest.fail(message + " (MSGCENTER_TEST_PG=required)")
    pytest.skip(message)


@dataclass
class PgBouncer:
    """Debian's ``pgbouncer`` in transaction mode on a free loopback port, in front of one
    database of the machine's PostgreSQL (trust authentication, as the tests' server)."""

    binary: str
    database: str
    pg_host: str
    pg_port: int
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="msgcenter-pgbouncer-"))
        self.log = self.root / "pgbouncer.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> PgBouncer:
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            f"""[databases]
{self.database} = host={self.pg_host} port={self.pg_port} dbname={self.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.root}/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {SERVER_POOL}
max_client_conn = 200
logfile = {self.log}
"""
        )
        command = [self.binary, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.root, "postgres")
            for path in self.root.iterdir():
                shutil.chown(path, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for(self._answers, timeout=20, message="pgbouncer to accept connections")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"pgbouncer exited with {self.process.returncode}: {log}")
        try:
            with psycopg.connect(self.url.replace("+psycopg", ""), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def stats(self) -> dict[str, int]:
        """This database's line of ``SHOW STATS`` on the admin console (simple protocol only)."""
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(admin, autocommit=True) as conn:
            result = conn.pgconn.exec_(b"SHOW STATS")
            names = [result.fname(i).decode() for i in range(result.nfields)]  # type: ignore[union-attr]
            for row in range(result.ntuples):
                values = {
                    n: (result.get_value(row, i) or b"").decode() for i, n in enumerate(names)
                }
                if values["database"] == self.database:
                    return {n: int(v) for n, v in values.items() if v.isdigit()}
        return {}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # runuser passes SIGTERM on to pgbouncer
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def direct_url() -> Iterator[str]:
    """A fresh, migrated database of its own on the machine's PostgreSQL, dropped at the end."""
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        _unavailable(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.orig}")
    name = f"msgcenter_pgbouncer_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    database = Database(url)
    upgrade(database)  # migrations go straight to PostgreSQL, as docs/scaling.md says
    database.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pgbouncer(direct_url: str) -> Iterator[PgBouncer]:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        _unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    parsed = sqlalchemy.make_url(direct_url)
    bouncer = PgBouncer(
        str(found), str(parsed.database), parsed.host or "127.0.0.1", parsed.port or 5432
    )
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def order(n: int) -> dict[str, Any]:
    return {
        "type": "order_confirmation",
        "email": f"c{n}@example.com",
        "ctx": {"client": {"firstname": f"C{n}"}, "order": {"id": str(n)}},
    }


def test_psycopgs_prepared_statements_break_behind_pgbouncer_unless_turned_off(pgbouncer):
    """Why ``database_prepared_statements`` exists: two client connections whose transactions
    share one server connection each prepare the statement they run often under the same name."""

    def run(prepared: bool) -> Exception | None:
        database = Database(pgbouncer.url, pool_size=2, prepared_statements=prepared)
        try:
            with database.engine.connect() as first, database.engine.connect() as second:
                for _ in range(8):
                    for conn in (first, second):
                        conn.execute(select(func.count()).select_from(event)).scalar_one()
                        conn.commit()  # ends the transaction: the server connection goes back
        except sqlalchemy.exc.DBAPIError as exc:
            return exc
        finally:
            database.dispose()
        return None

    failure = run(prepared=True)
    assert failure is not None and "prepared statement" in str(failure), failure
    assert run(prepared=False) is None


def test_a_listen_through_pgbouncer_is_refused_by_its_probe_and_a_direct_one_hears(
    pgbouncer, direct_url, monkeypatch
):
    """A ``LISTEN`` through transaction pooling succeeds but hears nothing: the listener's probe
    notification (sent through the pool, as intake sends its own) says so instead of leaving the
    workflows polling in silence; with ``database_listen_url`` the probe comes back."""
    monkeypatch.setattr(database_module, "LISTEN_PROBE_SECONDS", 2.0)

    async def listen(database: Database) -> Exception | None:
        listening = asyncio.Event()
        task = asyncio.create_task(
            database.listen(NOTIFY_CHANNEL, lambda _payload: None, on_listening=listening.set)
        )
        waiter = asyncio.create_task(listening.wait())
        await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            return task.exception()
        assert listening.is_set(), "neither listening nor refused"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    pooled = Database(pgbouncer.url, prepared_statements=False)
    direct = Database(pgbouncer.url, prepared_statements=False, listen_url=direct_url)
    try:
        refused = asyncio.run(listen(pooled))
        assert isinstance(refused, StoreUnavailableError), refused
        assert "database_listen_url" in refused.detail
        assert asyncio.run(listen(direct)) is None
    finally:
        pooled.dispose()
        direct.dispose()


def test_an_execution_instance_behind_pgbouncer_sends_every_event_once_and_wakes_on_notify(
    pgbouncer, direct_url, relay, tmp_path, monkeypatch
):
    poll = 5.0
    for name, value in {
        "DATABASE_PREPARED_STATEMENTS": "false",
        "DATABASE_LISTEN_URL": direct_url,
        "SMTP__HOST": "127.0.0.1",
        "SMTP__PORT": str(relay.port),
        "SMTP__TIMEOUT_SECONDS": "10",
        "PROCESSING__WORKFLOWS_IN_WEB_PROCESS": "false",
        # a long poll: an event sent within a second was woken by LISTEN/NOTIFY
        "PROCESSING__POLL_INTERVAL_SECONDS": str(poll),
    }.items():
        monkeypatch.setenv(f"MSGCENTER_{name}", value)
    through = Database(pgbouncer.url, prepared_statements=False)
    add_operator(through, *ADMIN)
    msgcenter_cli("exec", "publication", "load", str(PUBLICATION), "--db", pgbouncer.url)
    server = ServerProcess(pgbouncer.url, tmp_path / "serve.log")
    worker = WorkerProcess(pgbouncer.url, tmp_path / "worker.log")
    direct = Database(direct_url)
    try:
        server.start()
        worker.start()
        worker.wait_for_log("wakeup.listen")

        rt, batch = 200, 600
        events = [order(n) for n in range(rt + batch)]
        with httpx.Client(base_url=server.url, auth=ADMIN, timeout=30) as client:
            answer = client.post("/api/v1/events/batch", json=events[rt:])
            assert answer.status_code == 201, answer.text
            for start in range(0, rt, 20):
                answer = client.post("/api/v1/events/rt", json=events[start : start + 20])
                assert answer.status_code == 201, answer.text

            def statuses() -> Counter[str]:
                with direct.read() as conn:
                    rows = conn.execute(
                        select(event.c.status, func.count()).group_by(event.c.status)
                    )
                    return Counter({EventStatus(s).label: n for s, n in rows})

            wait_for(
                lambda: statuses() == Counter({"sent": rt + batch}),
                timeout=90,
                message="every event sent",
            )
            per_address = Counter(a for r in relay.handler.received for a in r.rcpt_tos)
            assert set(per_address) == {e["email"] for e in events}, "an event was never sent"
            assert [a for a, n in per_address.items() if n > 1] == [], "an event was sent twice"

            # The real-time workflow now sleeps for the poll interval: only a notification,
            # received on the direct LISTEN connection, gets a new event out within a second.
            latencies = []
            for n in range(rt + batch, rt + batch + 3):
                started = time.monotonic()
                answer = client.post("/api/v1/events/rt", json=order(n))
                assert answer.status_code == 201, answer.text
                wait_for(
                    lambda n=n: relay.handler.to(f"c{n}@example.com"),
                    timeout=3 * poll,
                    interval=0.005,
                    message=f"message {n}",
                )
                latencies.append(time.monotonic() - started)
        print(f"\nbehind pgbouncer: push-to-relay {[round(s, 3) for s in latencies]} s")
        assert max(latencies) < 1.5, (
            f"a real-time event waited for the poll ({poll} s): {latencies}"
        )
        assert worker.logged("wakeup.polling") == 0

        # Everything went through PgBouncer, on at most SERVER_POOL server connections.
        stats = pgbouncer.stats()
        assert stats.get("total_xact_count", 0) > rt // 20 + 1, stats
        with direct.read() as conn:
            backends = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        # the pool's server connections, the worker's LISTEN connection, and this test's
        # other pooled direct connection at most
        assert backends <= SERVER_POOL + 2, backends
    finally:
        worker.stop()
        server.stop()
        direct.dispose()
        through.dispose()
