"""The migrated schema is exactly the declared one, on both stores."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from msgcenter.errors import ConfigurationError
from msgcenter.store.database import Database
from msgcenter.store.schema import current_revision, head_revision, require_current
from msgcenter.store.tables import metadata


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
