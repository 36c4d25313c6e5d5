"""Where the catcher keeps what it caught: a SQLite file in the data directory, or memory.

One row per message: the envelope, what the list shows and searches (From, To,
Subject), and the raw bytes, parsed again when the message is opened. The
mailbox is bounded: at most ``max_messages`` messages and ``max_bytes`` of raw
messages, the oldest dropped first (the newest is always kept, even alone
above ``max_bytes``); freed pages go back to the file system, so the file stays
near that size.

This is a developer's mailbox beside msgcenter's database, not part of it: one
local file with one writer, written through the standard library's ``sqlite3``
rather than the store package (which speaks to msgcenter's own database, on
SQLite or PostgreSQL). A file that cannot be read (damaged, or written by a
newer msgcenter) is moved aside and a new one started: the catcher never stops
``msgcenter up`` from starting.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from msgcenter.catcher.message import CaughtMessage, CaughtSummary

log = structlog.get_logger(__name__)

#: the file in the data directory
FILE_NAME = "catcher.db"
DEFAULT_MAX_MESSAGES = 1000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: ``PRAGMA user_version`` of the file this code writes
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE message (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a link stays wrong, not misleading
    kind        TEXT NOT NULL,                      -- 'email' (later 'sms', 'push')
    received_at TEXT NOT NULL,                      -- ISO 8601, UTC
    mail_from   TEXT NOT NULL,                      -- the envelope
    rcpt_tos    TEXT NOT NULL,                      -- JSON array
    sender      TEXT NOT NULL,                      -- From
    recipients  TEXT NOT NULL,                      -- To
    subject     TEXT NOT NULL,
    search      TEXT NOT NULL,                      -- casefolded envelope, From, To, Subject
    size        INTEGER NOT NULL,
    raw         BLOB NOT NULL
)
"""
_SUMMARY_COLUMNS = "id, kind, received_at, mail_from, rcpt_tos, sender, recipients, subject, size"


class Mailbox:
    """The caught messages, newest first; safe to use from several threads."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a mailbox keeps at least one message and one byte")
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = self._open()
        # the bounds may be lower than when the file was written
        with self._lock, self._transaction():
            self._trim()
        self._release_pages()
        # what :attr:`version` says: another value after a restart, or any change
        self._epoch = secrets.token_hex(4)
        self._changes = 0

    # -- reading ---------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Changes whenever the list of messages does (a page polls it to refresh)."""
        return f"{self._epoch}.{self._changes}"

    def summaries(self, query: str = "", limit: int | None = None) -> list[CaughtSummary]:
        """The messages, newest first; with ``query``, those where every word of it is in the
        envelope, From, To or Subject (case-insensitive)."""
        words = query.casefold().split()
        where = " AND ".join("instr(search, ?) > 0" for _ in words) or "1"
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM message WHERE {where} ORDER BY id DESC"
        parameters: list[object] = list(words)
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, parameters).fetchall()
        return [_summary(row) for row in rows]

    def get(self, message_id: int) -> CaughtMessage | None:
        """The message with this id, parsed, if it is still kept."""
        with self._lock:
            row = self._conn.execute(
                "SELECT kind, received_at, mail_from, rcpt_tos, raw FROM message WHERE id = ?",
                (message_id,),
            ).fetchone()
        if row is None:
            return None
        kind, received_at, mail_from, rcpt_tos, raw = row
        parsed = CaughtMessage.parse(
            message_id, mail_from, orjson.loads(rcpt_tos), raw, datetime.fromisoformat(received_at)
        )
        return parsed if kind == parsed.kind else replace(parsed, kind=kind)

    def stats(self) -> tuple[int, int]:
        """How many messages are kept, and their raw bytes."""
        with self._lock:
            count, size = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM message"
            ).fetchone()
        return int(count), int(size)

    # -- writing ---------------------------------------------------------------------------

    def add(self, message: CaughtMessage) -> int:
        """Keep ``message`` (its ``id`` is ignored) and drop the oldest beyond the bounds;
        the id it is kept under."""
        search = " ".join(
            (message.mail_from, *message.rcpt_tos, message.sender, message.to, message.subject)
        ).casefold()
        with self._lock, self._transaction():
            cursor = self._conn.execute(
                "INSERT INTO message (kind, received_at, mail_from, rcpt_tos, sender, recipients,"
                " subject, search, size, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.kind,
                    message.received_at.astimezone(UTC).isoformat(),
                    message.mail_from,
                    orjson.dumps(list(message.rcpt_tos)).decode(),
                    message.sender,
                    message.to,
                    message.subject,
                    search,
                    len(message.raw),
                    message.raw,
                ),
            )
            message_id = cursor.lastrowid
            assert message_id is not None
            self._trim()
            self._changes += 1
        self._release_pages()
        return message_id

    def delete(self, message_id: int) -> bool:
        """Forget one message; whether it was kept."""
        with self._lock, self._transaction():
            deleted = self._conn.execute("DELETE FROM message WHERE id = ?", (message_id,))
            if deleted.rowcount:
                self._changes += 1
        self._release_pages()
        return deleted.rowcount > 0

    def clear(self) -> int:
        """Forget every message; how many there were."""
        with self._lock, self._transaction():
            deleted = self._conn.execute("DELETE FROM message")
            self._changes += 1
        self._release_pages()
        return deleted.rowcount

    def close(self) -> None:
        """Close the file (the mailbox is unusable afterwards)."""
        with self._lock:
            self._conn.close()

    # -- inside ----------------------------------------------------------------------------

    def _trim(self) -> None:
        """Drop the oldest messages beyond ``max_messages`` and ``max_bytes`` (lock held)."""
        kept, total, oldest_kept = 0, 0, None
        for message_id, size in self._conn.execute("SELECT id, size FROM message ORDER BY id DESC"):
            if kept and (kept >= self.max_messages or total + size > self.max_bytes):
                break
            kept, total, oldest_kept = kept + 1, total + size, message_id
        if oldest_kept is not None:
            self._conn.execute("DELETE FROM message WHERE id < ?", (oldest_kept,))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _release_pages(self) -> None:
        # give the pages of dropped messages back to the file system (auto_vacuum=INCREMENTAL)
        with self._lock:
            self._conn.execute("PRAGMA incremental_vacuum")

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            return _prepare(_connect(":memory:"))
        try:
            return _prepare(_connect(str(self.path)))
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(
                f"{self.path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}"
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
            log.warning(
                "the catcher's mailbox was unreadable; a new one is started",
                action="catcher.mailbox_reset",
                path=str(self.path),
                moved_to=str(aside),
                error=str(exc),
            )
            return _prepare(_connect(str(self.path)))


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an error), on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _connect(where: str) -> sqlite3.Connection:
    # one connection shared by the SMTP thread and the web threads, under the mailbox's lock;
    # autocommit mode, transactions explicit
    return sqlite3.connect(where, check_same_thread=False, isolation_level=None, timeout=5)


def _prepare(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Check or create the schema; raises :class:`sqlite3.DatabaseError` for a file that is not
    a mailbox this code can read."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this msgcenter's ({SCHEMA_VERSION})"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise sqlite3.DatabaseError("the file holds another database")
            # before the first table: only then can auto_vacuum be chosen
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.executescript(f"BEGIN; {_SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        conn.execute("PRAGMA journal_mode = WAL")
        # a committed message survives a crash of the process; a power loss may lose the last
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("SELECT count(*) FROM message").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _summary(row: Any) -> CaughtSummary:
    message_id, kind, received_at, mail_from, rcpt_tos, sender, recipients, subject, size = row
    return CaughtSummary(
        id=message_id,
        received_at=datetime.fromisoformat(received_at),
        mail_from=mail_from,
        rcpt_tos=tuple(orjson.loads(rcpt_tos)),
        subject=subject,
        sender=sender,
        to=recipients,
        size=size,
        kind=kind,
    )
