"""The ``msgcenter`` command."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from msgcenter.allocator import tune_allocator
from msgcenter.auth.admin import ClientCredentials, OperatorAdmin
from msgcenter.commandline import (
    LOCAL_ADMIN,
    ConfigOption,
    DbOption,
    cli_database,
    cli_errors,
    cli_instance,
    cli_settings,
    console,
)
from msgcenter.control.archiving import cli as archiving_cli
from msgcenter.control.design import cli as design_cli
from msgcenter.control.instances import cli as instances_cli
from msgcenter.control.publishing import cli as publishing_cli
from msgcenter.control.reports import cli as reports_cli
from msgcenter.execution import bounce_reports_cli, webhooks_cli
from msgcenter.execution.publications import PublicationService
from msgcenter.filepush import cli as filepush_cli
from msgcenter.publications import load_spec
from msgcenter.settings import Settings
from msgcenter.store.database import Database
from msgcenter.store.schema import current_revision, head_revision, require_current, upgrade
from msgcenter.workflows.admin import WorkflowAdmin

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(
    help="msgcenter: transactional messaging (events in, messages out).", no_args_is_help=True
)
exec_app = typer.Typer(
    help="Execution instance: event intake and processing.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
operator_app = typer.Typer(
    help="API operators (accounts that push events and administer).", no_args_is_help=True
)
workflow_app = typer.Typer(
    help="Technical workflows: list, start, pause, stop.", no_args_is_help=True
)
publication_app = typer.Typer(help="Publications on this execution instance.", no_args_is_help=True)
exec_app.add_typer(publication_app, name="publication")
exec_app.add_typer(webhooks_cli.commands, name="webhooks")
exec_app.add_typer(bounce_reports_cli.commands, name="bounce-reports")
control_app = typer.Typer(
    help="Control instance: design, publication, archiving.", no_args_is_help=True
)
for group in (design_cli, instances_cli, publishing_cli, archiving_cli, reports_cli):
    control_app.add_typer(group.commands)
app.add_typer(control_app, name="control")
app.add_typer(exec_app, name="exec")
app.add_typer(workflow_app, name="workflow")
app.add_typer(db_app, name="db")
app.add_typer(operator_app, name="operator")
# SPEC §5 names it `msgcenter report`; it is also `msgcenter control report`
app.add_typer(reports_cli.commands)
app.command("push")(filepush_cli.push)


@app.command("up")
def up(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="walk one message's path: design, preview, publish, push, send, archive",
        ),
    ] = False,
    data_dir: Annotated[
        Path, typer.Option(help="where the SQLite databases and the credentials key live")
    ] = Path("msgcenter-data"),
    port: Annotated[int, typer.Option(help="port of the execution instance (loopback)")] = 8080,
    control_port: Annotated[
        int, typer.Option(help="port of the control instance (loopback)")
    ] = 8081,
    smtp_port: Annotated[
        int, typer.Option(help="port of the built-in SMTP catcher (loopback)")
    ] = 2525,
    smpp_port: Annotated[
        int, typer.Option(help="port of the built-in SMSC simulator (SMPP, loopback)")
    ] = 2775,
    push_port: Annotated[
        int, typer.Option(help="port of the built-in APNs and FCM endpoints (loopback)")
    ] = 2443,
    config: ConfigOption = None,
) -> None:
    """Start msgcenter on the embedded default (SQLite, one process: control and execution
    instances, catchers of mail, SMS and push) — the first thing to run."""
    from msgcenter import embedded
    from msgcenter.demo.tour import walk

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = cli_settings(config, None)
    settings.server.host, settings.server.port = "127.0.0.1", port
    with cli_errors():
        embedded.run(
            settings,
            data_dir,
            control_port=control_port,
            smtp_port=smtp_port,
            smpp_port=smpp_port,
            push_port=push_port,
            console=console,
            once_started=walk if demo else None,
        )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, db: DbOption = None) -> None:
    """Create or migrate the database schema to the newest revision."""
    settings = cli_settings(config, db)
    database = Database.from_settings(settings)
    before = current_revision(database)
    upgrade(database)
    after = current_revision(database)
    database.dispose()
    console.print(
        f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})")
    )


@db_app.command("status")
def db_status(config: ConfigOption = None, db: DbOption = None) -> None:
    """Show the database's schema revision and the code's."""
    settings = cli_settings(config, db)
    database = Database.from_settings(settings)
    current, head = current_revision(database), head_revision(database)
    database.dispose()
    console.print(f"database revision {current or 'none'}, code revision {head}")
    if current != head:
        raise typer.Exit(1)


@exec_app.command("serve")
def exec_serve(
    config: ConfigOption = None,
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,  # noqa: UP007
    port: Annotated[int | None, typer.Option(help="listen port")] = None,  # noqa: UP007
    workers: Annotated[int | None, typer.Option(help="web worker processes")] = None,  # noqa: UP007
    reuse_port: Annotated[
        bool,
        typer.Option(hidden=True, help="bind with SO_REUSEPORT (the processes of --workers)"),
    ] = False,
) -> None:
    """Run the execution instance's web API (SOAP, REST, health, metrics)."""
    _serve(
        "msgcenter.web.exec_app:app_from_environment",
        config,
        db,
        host,
        port,
        workers,
        reuse_port=reuse_port,
    )


@control_app.command("serve")
def control_serve(
    config: ConfigOption = None,
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
) -> None:
    """Run the control instance (design API, publication, archiving workflows)."""
    _serve("msgcenter.control.app:app_from_environment", config, db, host, port, 1)


def _serve(
    factory: str,
    config: Path | None,
    db: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    *,
    reuse_port: bool = False,
) -> None:
    """Run the app ``factory`` builds under uvicorn; its processes read the settings from the
    environment, so the options go there first.

    Several workers are several processes of this command, each listening on its own
    socket with ``SO_REUSEPORT``, so that the kernel spreads the connections evenly over
    them. With uvicorn's own workers, which share one socket, the first process to wake
    took every connection of a burst (32 keep-alive connections of the intake bench, all
    on one process, the other idle).
    """
    import uvicorn

    if db:
        os.environ["MSGCENTER_DATABASE_URL"] = db
    if config:
        os.environ["MSGCENTER_CONFIG"] = str(config)
    settings = cli_settings(None, None)
    with cli_instance(None, None) as (_settings, database):
        where = database.location
    server = settings.server
    host, port = host or server.host, port or server.port
    worker_count = workers or server.workers
    if worker_count > 1:
        from msgcenter.processes import msgcenter_command, run_processes

        console.print(f"database: {where}; {worker_count} web processes", highlight=False)
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="msgcenter-metrics-")
        one = ["--workers", "1", "--reuse-port", "--host", host, "--port", str(port)]
        command = msgcenter_command("exec", "serve", *one)
        raise typer.Exit(run_processes(command, worker_count, name="web"))
    console.print(f"database: {where}", highlight=False)
    options = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        access_log=False,
        proxy_headers=bool(server.forwarded_allow_ips),
        forwarded_allow_ips=",".join(server.forwarded_allow_ips) or None,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(options).run(sockets=[_reuse_port_socket(host, port)] if reuse_port else None)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` that other processes may bind too
    (``SO_REUSEPORT``: the kernel gives each new connection to one of them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


@control_app.command("new-key")
def control_new_key() -> None:
    """Print a new key for `control.credentials_key` (encrypts execution-instance credentials)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@exec_app.command("worker")
def exec_worker(
    config: ConfigOption = None,
    db: DbOption = None,
    procs: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes to run (one core each at most: as many as the host has "
            "cores left beside the web process and the database)",
        ),
    ] = 1,
) -> None:
    """Run the technical workflows (routing, sending, status, cleanup, stats) without the web API."""
    import asyncio

    import uvloop

    from msgcenter.processes import msgcenter_command, run_processes
    from msgcenter.workflows.worker import run_worker

    with cli_errors():
        settings = cli_settings(config, db)
        database = Database.from_settings(settings)
        require_current(database)
        if procs > 1:
            database.dispose()
            console.print(
                f"{procs} worker processes on {database.location}: workflows running "
                "(Ctrl+C to stop)"
            )
            given = [*(["--config", str(config)] if config else []), *(["--db", db] if db else [])]
            command = msgcenter_command("exec", "worker", *given)
            raise typer.Exit(run_processes(command, procs, name="worker"))
        console.print(f"worker on {database.location}: workflows running (Ctrl+C to stop)")
        try:
            # uvloop, as uvicorn uses for the web process: measured +60-80% worker throughput
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run_worker(settings, database))
        except KeyboardInterrupt:
            pass
        finally:
            database.dispose()


@exec_app.command("bounces")
def exec_bounces(
    config: ConfigOption = None,
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="listen address (bounces.host)")] = None,  # noqa: UP007
    port: Annotated[int | None, typer.Option(help="listen port (bounces.port)")] = None,  # noqa: UP007
) -> None:
    """Run the receiver of asynchronous bounces and complaints alone (SMTP, for the bounce
    domain); `exec serve` runs it too when bounces.enabled is set."""
    import asyncio

    import uvloop

    from msgcenter.errors import ConfigurationError
    from msgcenter.sending.bounces import run_receiver

    with cli_errors():
        settings = cli_settings(config, db)
        if host is not None:
            settings.bounces.host = host
        if port is not None:
            settings.bounces.port = port
        database = Database.from_settings(settings)
        require_current(database)
        console.print(
            f"bounce receiver on {settings.bounces.host}:{settings.bounces.port}, "
            f"database {database.location} (Ctrl+C to stop)",
            highlight=False,
        )
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run_receiver(settings, database))
        except KeyboardInterrupt:
            pass
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise ConfigurationError(
                "cannot listen for bounces",
                detail=f"{settings.bounces.host}:{settings.bounces.port}: {exc.strerror or exc}",
            ) from None
        finally:
            database.dispose()


@publication_app.command("load")
def publication_load(
    file: Annotated[
        Path, typer.Argument(help="a publication as TOML or JSON (see docs/publications.md)")
    ],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Publish a template from a file (both flavours), as the control instance would."""
    with cli_instance(config, db) as (settings, database):
        # the CLI administers its database
        stored = PublicationService(database, settings.smtp).publish(load_spec(file), LOCAL_ADMIN)
    first = stored[0]
    console.print(
        f"published {first.template} v{first.version} for type '{first.event_type}' "
        f"({first.channel.label}) as publications {', '.join(str(p.id) for p in stored)}"
    )


@publication_app.command("list")
def publication_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List active publications."""
    with cli_database(config, db) as database:
        found = PublicationService(database).active(LOCAL_ADMIN)
    table = Table(
        "id", "template", "event type", "channel", "queue", "version", "folder", "published"
    )
    for p in found:
        table.add_row(
            str(p.id),
            p.template,
            p.event_type,
            p.channel.label,
            p.queue.value,
            str(p.version),
            p.folder or "",
            p.published_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@workflow_app.command("list")
def workflow_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List workflows with their state, last run and last error."""
    with cli_database(config, db) as database:
        states = WorkflowAdmin(database).list()
    table = Table("workflow", "state", "last run", "last error")
    for w in states:
        table.add_row(
            w.name,
            w.state,
            w.last_run.isoformat(timespec="seconds") if w.last_run else "never",
            (w.last_error or "")[:80],
        )
    console.print(table)


def _act(name: str, action: str, config: Path | None, db: str | None) -> None:
    with cli_database(config, db) as database:
        changed = WorkflowAdmin(database).act(name, action)
    console.print(f"workflow {name}: {changed.state}")


@workflow_app.command("start")
def workflow_start(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Start (or resume) a workflow."""
    _act(name, "start", config, db)


@workflow_app.command("pause")
def workflow_pause(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Pause a workflow: it does no work until started again."""
    _act(name, "pause", config, db)


@workflow_app.command("stop")
def workflow_stop(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Stop a workflow: it does no work until started again, and the instance reports unready."""
    _act(name, "stop", config, db)


@exec_app.command("openapi")
def exec_openapi() -> None:
    """Print the execution instance's OpenAPI document (committed as docs/openapi-exec.json)."""
    from msgcenter.web.exec_app import create_exec_app

    _print_openapi(create_exec_app)


@control_app.command("openapi")
def control_openapi() -> None:
    """Print the control instance's OpenAPI document (committed as docs/openapi-control.json)."""
    from msgcenter.control.app import create_control_app

    _print_openapi(create_control_app)


def _print_openapi(create: Callable[[Settings], FastAPI]) -> None:
    import json

    # The app is only built, never started: the database is not opened.
    unused = Path(tempfile.gettempdir()) / "msgcenter-openapi.db"
    settings = Settings(
        database_url=f"sqlite:///{unused}", processing={"workflows_in_web_process": False}
    )
    typer.echo(json.dumps(create(settings).openapi(), indent=2, sort_keys=True))


@operator_app.command("add")
def operator_add(
    login: str,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="password ('' for none: only usable where a zone allows it)",
        ),
    ],
    rights: Annotated[str, typer.Option(help="comma-separated: mc_push, mc_admin")] = "mc_push",
    trusted_ip: Annotated[
        list[str] | None,
        typer.Option("--trusted-ip", help="CIDR allowed to connect (repeatable); none means any"),
    ] = None,  # noqa: UP007,E501
    folder: Annotated[str | None, typer.Option(help="folder the operator is restricted to")] = None,  # noqa: UP007
    correlation_idempotency: Annotated[
        bool, typer.Option(help="treat SOAP correlationId as an idempotency key")
    ] = False,  # noqa: E501
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Create an operator."""
    with cli_database(config, db) as database:
        created = OperatorAdmin(database).add(
            login,
            password,
            rights,
            trusted=trusted_ip or [],
            folder=folder,
            correlation_idempotency=correlation_idempotency,
        )
    console.print(
        f"operator '{created.login}' created with rights {', '.join(sorted(created.rights)) or 'none'}"
    )


@operator_app.command("list")
def operator_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List operators."""
    with cli_database(config, db) as database:
        found = OperatorAdmin(database).list()
    table = Table(
        "login",
        "kind",
        "rights",
        "trusted IP masks",
        "folder",
        "correlationId idempotency",
        "client id",
        "last used",
    )
    for op in found:
        table.add_row(
            op.login,
            op.kind.value + (" (revoked)" if op.revoked else ""),
            ", ".join(sorted(op.rights)),
            ", ".join(str(n) for n in op.trusted_networks) or "any",
            op.folder or "",
            "yes" if op.correlation_idempotency else "no",
            op.client_id or "",
            op.last_used.isoformat(timespec="seconds") if op.last_used else "",
        )
    console.print(table)


@operator_app.command("add-technical")
def operator_add_technical(
    login: str,
    rights: Annotated[str, typer.Option(help="comma-separated: mc_push, mc_admin")] = "mc_push",
    trusted_ip: Annotated[
        list[str] | None,
        typer.Option("--trusted-ip", help="CIDR allowed to connect (repeatable); none means any"),
    ] = None,  # noqa: UP007
    folder: Annotated[str | None, typer.Option(help="folder the account is restricted to")] = None,  # noqa: UP007
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Create a technical account (OAuth client credentials); prints its client id and
    secret, this once."""
    with cli_database(config, db) as database:
        created = OperatorAdmin(database).add_technical(
            login, rights, trusted=trusted_ip or [], folder=folder
        )
    _print_credentials(created, "created")


@operator_app.command("rotate-secret")
def operator_rotate_secret(login: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Draw a new client secret; the previous one works until the next rotation."""
    with cli_database(config, db) as database:
        rotated = OperatorAdmin(database).rotate_secret(login)
    _print_credentials(rotated, "has a new secret (the previous one works until the next rotation)")


@operator_app.command("revoke")
def operator_revoke(login: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Revoke a technical account: no new access token; those issued expire on their own."""
    with cli_database(config, db) as database:
        OperatorAdmin(database).revoke(login)
    console.print(
        f"technical account '{login}' revoked: its access tokens expire within "
        "security.access_token_seconds"
    )


def _print_credentials(credentials: ClientCredentials, what: str) -> None:
    console.print(f"technical account '{credentials.login}' {what}", highlight=False)
    # plain lines, for scripts: the secret is never shown again
    typer.echo(f"client_id={credentials.client_id}")
    typer.echo(f"client_secret={credentials.client_secret}")


@operator_app.command("passwd")
def operator_passwd(
    login: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Change an operator's password (its sessions end)."""
    with cli_database(config, db) as database:
        OperatorAdmin(database).set_password(login, password)
    console.print(f"password of '{login}' changed; its sessions are closed")


@operator_app.command("remove")
def operator_remove(login: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Delete an operator and its sessions."""
    with cli_database(config, db) as database:
        OperatorAdmin(database).remove(login)
    console.print(f"operator '{login}' removed")


def main() -> None:
    """Entry point of the ``msgcenter`` command."""
    tune_allocator()
    app()
