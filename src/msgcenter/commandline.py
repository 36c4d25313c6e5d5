"""What every ``msgcenter`` command shares: the consoles, the ``--config`` and ``--db`` options,
the settings and the database a command works on, and errors printed as one line.

The command groups (``msgcenter.cli`` and the ``cli`` module of each feature of
the control instance) import this module; it imports none of them.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from msgcenter.errors import MsgcenterError
from msgcenter.logs import configure as configure_logging
from msgcenter.operators import Operator, Right
from msgcenter.settings import Settings, load_settings
from msgcenter.store.database import Database
from msgcenter.store.schema import require_current

#: wider than a terminal's 80 columns when writing to a pipe or a file: tables keep whole
#: values (client ids, URLs) for the scripts that read them
PIPE_WIDTH = 200


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else PIPE_WIDTH)


console = _console(stderr=False)
err_console = _console(stderr=True)
#: the CLI administers the database it is given, as a local operator with every right
LOCAL_ADMIN = Operator(id=0, login="cli", rights=frozenset(Right))

ConfigOption = Annotated[
    Path | None,  # noqa: UP007 - typer needs Optional
    typer.Option(
        "--config", "-c", help="TOML settings file (else MSGCENTER_CONFIG, else ./msgcenter.toml)"
    ),
]
DbOption = Annotated[
    str | None,  # noqa: UP007
    typer.Option("--db", help="database URL (else MSGCENTER_DATABASE_URL, else the settings file)"),
]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Print a msgcenter error as one clear line and exit 1, instead of a traceback."""
    try:
        yield
    except MsgcenterError as exc:
        err_console.print(
            f"[red]error:[/red] {exc.message}"
            + (f": {exc.detail}" if exc.detail != exc.message else ""),
            highlight=False,
        )
        raise typer.Exit(1) from None


def cli_settings(config: Path | None, db: str | None) -> Settings:
    """The settings a command runs with; bad ones end it with one line naming them."""
    with cli_errors():
        settings = load_settings(config, database_url=db)
    configure_logging(settings.logging)
    return settings


@contextmanager
def cli_instance(config: Path | None, db: str | None) -> Iterator[tuple[Settings, Database]]:
    """The settings and the database a command works on, the schema checked to be current (else
    the error says to run ``msgcenter db upgrade``), closed at the end; errors printed as by
    :func:`cli_errors`."""
    with cli_errors():
        settings = cli_settings(config, db)
        database = Database.from_settings(settings)
        try:
            require_current(database)
            yield settings, database
        finally:
            database.dispose()


@contextmanager
def cli_database(config: Path | None, db: str | None) -> Iterator[Database]:
    """The database of :func:`cli_instance`."""
    with cli_instance(config, db) as (_settings, database):
        yield database


def cli_login() -> str:
    """Who logs name a change made from the CLI: ``cli:<user>``."""
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except OSError:  # no user name in this environment
        return "cli"
