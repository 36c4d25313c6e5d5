"""The database handle: engines for SQLite and PostgreSQL, transactions, error translation."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import psycopg
import sqlalchemy.exc
from psycopg import sql
from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    create_engine,
    delete,
    event,
    func,
    literal_column,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from msgcenter.errors import InvalidInputError, StoreUnavailableError

#: SQLite pragmas: WAL lets readers run beside the writer; NORMAL is durable in WAL mode
#: except for the last transactions on power loss (not on a process crash).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


#: how long :meth:`Database.listen` waits for its probe notification to come back
LISTEN_PROBE_SECONDS = 10.0


class DatabaseSettings(Protocol):
    """The settings :meth:`Database.from_settings` reads (``msgcenter.settings.Settings``)."""

    @property
    def database_url(self) -> str: ...
    @property
    def database_prepared_statements(self) -> bool: ...
    @property
    def database_listen_url(self) -> str: ...


class Database:
    """One instance's database: a write path and a read path over a pooled engine.

    On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that concurrent
    writers queue on the busy timeout instead of failing on a lock upgrade; reads
    use plain deferred transactions and run beside the writer thanks to WAL.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        prepared_statements: bool = True,
        listen_url: str = "",
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        #: where :meth:`listen` connects: ``url`` unless a direct URL is given (behind a
        #: pooler in transaction mode, ``LISTEN`` needs a session of its own on the server)
        self.listen_url = listen_url or url
        if listen_url:
            make_url(listen_url)  # a malformed URL fails here, at start, not at each listen
        # SQLite has one writer at a time. Threads of this process queue on a lock
        # instead of in SQLite's busy handler, which polls with sleeps of up to
        # 100 ms; other processes still wait on the busy timeout.
        self._write_lock: threading.Lock | nullcontext[None] = nullcontext()
        if self.is_sqlite:
            self._write_lock = threading.Lock()
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=8)
            self._writer_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            # No pre-ping: it would cost a round trip per checkout on the hot paths. A
            # connection found dead fails its transaction once and is then replaced.
            # psycopg prepares a statement on the server from its fifth execution on a
            # connection. Behind PgBouncer in transaction mode before 1.21, the next
            # transaction may run on another server connection that never saw it ("prepared
            # statement does not exist"): ``prepared_statements=False`` turns that off.
            connect_args: dict[str, Any] = {}
            if not prepared_statements:
                connect_args["prepare_threshold"] = None
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=8,
                pool_recycle=3600,
                connect_args=connect_args,
            )
            self._writer_engine = self.engine.execution_options()

    @classmethod
    def from_settings(cls, settings: DatabaseSettings, *, pool_size: int = 8) -> Database:
        """The database of an instance's settings (``database_*``)."""
        return cls(
            settings.database_url,
            pool_size=pool_size,
            prepared_statements=settings.database_prepared_statements,
            listen_url=settings.database_listen_url,
        )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def location(self) -> str:
        """Where the data is, for people: a SQLite file's absolute path, else the server and
        database (never the password)."""
        url = self.engine.url
        if self.is_sqlite:
            in_memory = url.database in (None, "", ":memory:")
            return "memory" if in_memory else str(Path(str(url.database)).resolve())
        return (
            f"{url.get_backend_name()}://{url.host or 'localhost'}:{url.port or ''}/{url.database}"
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit, rolled back on error."""
        with self._write_lock, translate_errors(), self._writer_engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (its transaction is rolled back on exit)."""
        with translate_errors(), self.engine.connect() as conn:
            yield conn

    async def listen(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        *,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        """Call ``on_notify`` with the payload of each PostgreSQL notification on ``channel``
        until cancelled, on a connection of its own to :attr:`listen_url` (``LISTEN`` needs a
        session, which pooled connections shared by transactions cannot keep, in this process
        or in PgBouncer's transaction mode); ``on_listening`` once listening.

        Listening counts from the moment a probe notification, sent through the pooled
        engine as intake sends its own, has come back: a ``LISTEN`` made through a pooler in
        transaction mode succeeds but hears nothing, and a listen URL naming another database
        hears other notifications; either would leave the workflows polling in silence.

        Raises :class:`StoreUnavailableError` when the connection cannot be made or is lost,
        or the probe does not come back within :data:`LISTEN_PROBE_SECONDS`; the caller
        decides when to listen again.
        """
        if self.is_sqlite:
            raise StoreUnavailableError("SQLite has no notifications", detail="poll instead")
        conninfo = (
            make_url(self.listen_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                probe = f"probe-{uuid.uuid4().hex}"  # other listeners ignore it (no queue)
                await asyncio.to_thread(self._notify, channel, probe)
                heard = False
                async for notify in conn.notifies(timeout=LISTEN_PROBE_SECONDS):
                    if notify.payload == probe:
                        heard = True
                        break
                    on_notify(notify.payload)
                if not heard:
                    raise StoreUnavailableError(
                        "notifications do not arrive",
                        detail=f"a notification sent through database_url did not reach the "
                        f"LISTEN connection within {LISTEN_PROBE_SECONDS:g} s: if database_url "
                        f"points at a pooler in transaction mode, set database_listen_url to "
                        f"the database itself",
                    )
                if on_listening is not None:
                    on_listening()
                async for notify in conn.notifies():
                    on_notify(notify.payload)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                "the notification connection is lost", detail=f"database error: {exc}"
            ) from exc

    def _notify(self, channel: str, payload: str) -> None:
        with self.write() as conn:
            conn.execute(select(func.pg_notify(channel, payload)))

    def ping(self) -> None:
        """Check that the database answers (:class:`StoreUnavailableError` if not)."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


#: SQLite primary result codes that mean "unavailable for now", not "this statement is
#: wrong" (https://www.sqlite.org/rescode.html): BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL,
#: CANTOPEN, PROTOCOL. sqlite3 raises OperationalError for SQLITE_ERROR too ("no such
#: table"), which is a fault of the code or the schema that waiting does not cure.
SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver-level connection and lock failures into :class:`StoreUnavailableError`,
    and text PostgreSQL cannot store (a NUL character) into :class:`InvalidInputError`."""
    try:
        yield
    except sqlalchemy.exc.DataError as exc:
        # psycopg refuses a NUL before sending: it is in the caller's text (a name in a path,
        # a label), which SQLite would store; any other DataError is a fault of ours
        if "NUL" not in str(exc.orig):
            raise
        raise InvalidInputError(
            "a NUL character", detail="text with a NUL character (\\x00) cannot be stored"
        ) from exc
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF not in SQLITE_UNAVAILABLE:
            raise
        raise StoreUnavailableError(
            "the database is unavailable", detail=f"database error: {exc.orig or exc}"
        ) from exc


def dialect_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the connection's dialect, which offers ``on_conflict_do_*`` on both stores."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def delete_some(conn: Connection, table: Table, *conditions: Any, limit: int) -> int:
    """Delete up to ``limit`` rows of ``table`` matching ``conditions`` (one batch of a purge,
    so that no transaction grows with the backlog); how many went."""
    chosen = select(table.c.id).where(*conditions).limit(limit).scalar_subquery()
    return int(conn.execute(delete(table).where(table.c.id.in_(chosen))).rowcount)


def insert_or_ignore(
    conn: Connection, table: Table, values: dict[str, Any], index_elements: list[str]
) -> bool:
    """Insert one row unless it conflicts on ``index_elements`` (a unique index); whether it
    was inserted."""
    # RETURNING, not the row count: psycopg reports none (-1) for this INSERT
    inserted: CursorResult[Any] = conn.execute(
        dialect_insert(conn, table)
        .values(values)
        .on_conflict_do_nothing(index_elements=index_elements)
        .returning(literal_column("1"))
    )
    return inserted.first() is not None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
