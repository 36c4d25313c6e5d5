"""Alembic environment: runs migrations on the connection msgcenter hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from msgcenter.store.tables import metadata


def run_migrations() -> None:
    """Migrate over ``config.attributes['connection']``, or a new engine on ``sqlalchemy.url``."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
