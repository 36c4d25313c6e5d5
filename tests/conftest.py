"""Shared fixtures: a fresh database on each store, operators, a real HTTP server on loopback.

Storage-touching tests take the ``database_url`` fixture and so run on SQLite and
on PostgreSQL. PostgreSQL comes from ``MSGCENTER_TEST_PG_URL`` (default: the local
server, trust auth); when it is unreachable those tests are skipped, unless
``MSGCENTER_TEST_PG=required`` (as in CI), where they fail.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy
import structlog
import uvicorn
from argon2 import PasswordHasher

from msgcenter.operators import Operator, parse_networks, parse_rights
from msgcenter.settings import Settings
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.store.tables import metadata
from msgcenter.web.exec_app import create_exec_app

PG_ADMIN_URL = os.environ.get(
    "MSGCENTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_REQUIRED = os.environ.get("MSGCENTER_TEST_PG", "").lower() == "required"
#: the stores storage-touching tests run on (``make test-fast`` sets ``sqlite`` alone)
STORES = [
    store.strip()
    for store in os.environ.get("MSGCENTER_TEST_STORES", "sqlite,postgresql").split(",")
    if store.strip()
]
#: real Argon2id at its lowest cost: the server verifies whatever parameters a hash carries,
#: and the production cost (~0.1-0.5 s per hash here) would dominate the suite's time
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


#: test servers' ports are drawn below Linux's ephemeral range (32768-60999 by default): a
#: port the kernel picked from that range could become an outgoing connection's source
#: port (to PostgreSQL, say) between its choice and its server's bind
FIRST_TEST_PORT = 20_000
#: each pytest-xdist worker draws from a slice of its own, so two never choose the same port
PORTS_PER_WORKER = 2_000
WORKER_SLICES = 6
_port_draws = itertools.count()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to and no other test process hands out."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = FIRST_TEST_PORT + int(worker or 0) % WORKER_SLICES * PORTS_PER_WORKER
    for _ in range(PORTS_PER_WORKER):
        port = first + next(_port_draws) % PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or still in TIME_WAIT from an earlier test
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + PORTS_PER_WORKER - 1}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every acceptance test is in the slow tier (it starts real processes)."""
    for item in items:
        if "acceptance" in item.path.parts and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid}: acceptance modules carry pytestmark = slow")


@pytest.fixture(scope="session", autouse=True)
def uncached_loggers() -> Iterator[None]:
    """Loggers stay uncached in tests: a CLI test run in-process configures logging as the
    command does (a logger cached on its first use), and structlog's ``capture_logs`` cannot
    see a cached logger, so a test checking logs after it would miss them."""
    configure = structlog.configure

    def uncached(**options: Any) -> None:
        configure(**{**options, "cache_logger_on_first_use": False})

    with mock.patch.object(structlog, "configure", uncached):
        yield


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session, migrated once, dropped at the end."""
    if "postgresql" not in STORES:
        pytest.skip("PostgreSQL is not among MSGCENTER_TEST_STORES")
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.orig}"
        if PG_REQUIRED:
            pytest.fail(message + " (MSGCENTER_TEST_PG=required)")
        pytest.skip(message)
    name = f"msgcenter_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"TRUNCATE {tables} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file, copied for each test (a migration per test costs more)."""
    path = tmp_path_factory.mktemp("template") / "msgcenter.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "msgcenter.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A :class:`Database` on ``database_url``."""
    database = Database(database_url)
    yield database
    database.dispose()


def add_operator(
    db: Database,
    login: str,
    password: str,
    rights: str = "mc_push,mc_admin",
    *,
    trusted: str = "",
    folder: str | None = None,
    correlation_idempotency: bool = False,
) -> Operator:
    """Create an operator directly in the store."""
    with db.write() as conn:
        return operator_store.add(
            conn,
            login,
            TEST_HASHER.hash(password),
            parse_rights(rights),
            parse_networks(trusted),
            folder,
            datetime.now(UTC),
            correlation_idempotency=correlation_idempotency,
        )


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RunningServer:
    """A server started by a test: its base URL and what it runs on."""

    url: str
    db: Database
    settings: Settings
    #: the thread serving it (and running its workflows), when the test started it in-process
    thread: threading.Thread | None = None

    def loop_cpu_seconds(self) -> float:
        """CPU time used so far by the thread that runs the server's event loop (Linux)."""
        assert self.thread is not None and self.thread.native_id is not None
        stat = Path(f"/proc/self/task/{self.thread.native_id}/stat").read_text()
        # the fields after the command name, which is in parentheses and may hold spaces
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: how long a test server may take to stop (a clean stop lets sends under way end, up to 10 s)
STOP_TIMEOUT_SECONDS = 20.0


class ThreadedServer:
    """Runs an ASGI app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="on",
            # a request still under way must not hold the stop (and the workflows) forever
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STOP_TIMEOUT_SECONDS)
        if self.thread.is_alive():
            # a server left running would go on working on the next tests' database
            self.server.force_exit = True
            self.thread.join(timeout=5)
            raise RuntimeError(
                f"the test server did not stop within {STOP_TIMEOUT_SECONDS:.0f} s"
                + (" (and is still running)" if self.thread.is_alive() else "")
            )


def start_exec_server(
    db: Database, *, clock: FakeClock | None = None, **overrides: object
) -> tuple[ThreadedServer, RunningServer]:
    """An execution instance on ``db`` with settings ``overrides``; use the first item as a context.

    The technical workflows stay off (intake tests see events as pushed) unless
    ``processing`` overrides say otherwise. With a ``clock``, its logon throttle and
    credential cache see only that clock's time, so a test decides when a delay has
    passed, however slowly the machine runs it.
    """
    overrides.setdefault("processing", {"workflows_in_web_process": False})
    settings = Settings(database_url=db.url, **overrides)  # type: ignore[arg-type]
    app = create_exec_app(settings, db, clock=clock or time.monotonic)
    threaded = ThreadedServer(app)
    return threaded, RunningServer(
        f"http://127.0.0.1:{threaded.port}", db, settings, thread=threaded.thread
    )


@pytest.fixture
def exec_server(db: Database) -> Iterator[RunningServer]:
    """An execution instance with default settings on a fresh database (both stores)."""
    threaded, running = start_exec_server(db)
    with threaded:
        yield running


#: processing settings that make retries and wake-ups fast enough for tests
FAST_PROCESSING = {
    "workflows_in_web_process": True,
    "retry_base_seconds": 0.2,
    "retry_max_seconds": 0.5,
    "poll_interval_seconds": 0.1,
    "status_copy_interval_seconds": 0.2,
    "claim_lease_seconds": 5,
}


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    """A recording aiosmtpd server on loopback."""
    from tests.smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_databases():  # type: ignore[no-untyped-def]
    """Extra PostgreSQL databases for tests running several instances, reused over the session."""
    from tests.archiving import PgDatabases

    databases = PgDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def control_db(db: Database, tmp_path, request: pytest.FixtureRequest) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    """A control instance's database, on the store of ``db`` (the execution instance's)."""
    from tests.archiving import pooled_database

    pg = request.getfixturevalue("pg_databases") if db.dialect == "postgresql" else None
    with pooled_database(db, "control", tmp_path, pg) as database:
        yield database
