"""The migrated schema is exactly the declared one, on both stores; older databases are
upgraded with their data, and refused until they are."""

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text

from msgcenter.errors import ConfigurationError
from msgcenter.store.database import Database
from msgcenter.store.schema import current_revision, head_revision, require_current, upgrade
from msgcenter.store.tables import archive_state, metadata


def test_migrated_schema_equals_metadata(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_database_is_at_head(db):
    assert current_revision(db) == head_revision(db)
    require_current(db)


def test_an_empty_database_is_refused_with_the_fix(tmp_path):
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        require_current(empty)
    except ConfigurationError as exc:
        assert "msgcenter db upgrade" in exc.detail
        assert "revision none" in exc.detail
    else:
        raise AssertionError("an unmigrated database was accepted")
    finally:
        empty.dispose()


def test_upgrading_a_database_with_data_keeps_it(tmp_path):
    older = Database(f"sqlite:///{tmp_path / 'older.db'}")
    try:
        upgrade(older, "0003")
        with older.write() as conn:
            conn.execute(insert(archive_state).values(exec_instance_id=1, archived_events=7))
        upgrade(older)
        require_current(older)
        with older.read() as conn:
            kept = conn.execute(select(archive_state)).mappings().one()
        assert (kept["archived_events"], kept["tracking_at"]) == (7, None)
    finally:
        older.dispose()


@pytest.mark.parametrize(
    "command",
    [("operator", "list"), ("control", "event-type", "list"), ("control", "archive", "status")],
)
@pytest.mark.slow  # runs the msgcenter command as a process
def test_commands_on_a_database_behind_the_code_say_to_upgrade_it(tmp_path, command):
    older = Database(f"sqlite:///{tmp_path / 'older.db'}")
    upgrade(older, "0003")
    older.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "msgcenter", *command, "--db", older.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "run `msgcenter db upgrade`" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


#: an event row as revision 0006 holds it (the columns without defaults)
EVENT_ROW = {
    "queue": "rt",
    "type": "t",
    "status": 0,
    "wished_channel": 0,
    "email_format": 0,
    "ctx": "{}",
    "ctx_format": "json",
    "error_count": 0,
    "process_requested_on": "2026-01-01 00:00:00",
    "created": "2026-01-01 00:00:00",
    "last_modified": "2026-01-01 00:00:00",
}
INSERT_EVENT = text(
    f"INSERT INTO event ({', '.join(EVENT_ROW)}) VALUES ({', '.join(':' + c for c in EVENT_ROW)})"
)
INDEXES = text("SELECT name FROM sqlite_master WHERE type = 'index'")


def test_0007_rebuilds_sqlite_tables_with_autoincrement_keeping_rows_and_indexes(tmp_path):
    """Before 0007 SQLite gave a deleted newest row's id again; after, never, and the rows
    and indexes of the rebuilt tables are all there."""
    older = Database(f"sqlite:///{tmp_path / 'older.db'}")
    try:
        upgrade(older, "0006")
        with older.write() as conn:
            for _ in range(3):
                conn.execute(INSERT_EVENT, EVENT_ROW)
            indexes_before = set(conn.execute(INDEXES).scalars())
        upgrade(older)
        with older.write() as conn:
            assert conn.execute(text("SELECT count(*) FROM event")).scalar_one() == 3
            conn.execute(text("DELETE FROM event WHERE id = 3"))
            conn.execute(INSERT_EVENT, EVENT_ROW)
            newest = conn.execute(text("SELECT max(id) FROM event")).scalar_one()
            indexes_after = set(conn.execute(INDEXES).scalars())
        assert newest == 4
        assert indexes_before <= indexes_after
    finally:
        older.dispose()
