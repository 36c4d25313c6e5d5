"""Schema migrations (Alembic): upgrade to head, and check that a database is current."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from msgcenter.errors import ConfigurationError
from msgcenter.store.database import Database

SCRIPT_LOCATION = "msgcenter.store:migrations"


def alembic_config(database: Database) -> Config:
    """An Alembic configuration bound to ``database`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply every pending migration."""
    config = alembic_config(database)
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def head_revision(database: Database) -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def current_revision(database: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(database: Database) -> None:
    """Raise :class:`ConfigurationError` when the database is not at the code's head revision."""
    current, head = current_revision(database), head_revision(database)
    if current != head:
        raise ConfigurationError(
            "the database schema is not current",
            detail=(
                f"database {database.location} is at revision {current or 'none'}, "
                f"the code expects {head}: run `msgcenter db upgrade`"
            ),
        )
