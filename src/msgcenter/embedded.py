"""``msgcenter up``: the embedded default for a first try, on SQLite, in one process.

It runs a control instance, an execution instance registered on it, and
built-in catchers for the three channels: an SMTP catcher that is the mail
relay of both, an SMSC simulator (SMPP) and local APNs and FCM endpoints with
throwaway credentials; what they caught is served by the control instance at
``/catcher``. Each instance has its own
SQLite file in the data directory. With ``--demo``, the command passes
:func:`msgcenter.demo.tour.walk`, which walks the whole path through the APIs
once both are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from rich.console import Console

from msgcenter.auth.admin import OperatorAdmin
from msgcenter.catcher import web as catcher_web
from msgcenter.catcher.push import PushCatcher
from msgcenter.catcher.server import SmtpCatcher
from msgcenter.catcher.smsc import ThreadedSmsc
from msgcenter.channels.push.config import PushSettings
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.control.app import create_control_app
from msgcenter.errors import ConfigurationError, ConflictError
from msgcenter.settings import Settings
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.web.exec_app import create_exec_app

#: the operator of both instances (loopback only): it pushes events to the execution
#: instance, and is the account the control instance uses to reach it
DEMO_LOGIN = "demo"
DEMO_PASSWORD = "demo"
#: files in the data directory holding the control instance's credentials key, and the
#: execution instance's secret key (bounce addresses, tracking links)
KEY_FILE = "control.key"
SECRET_FILE = "exec.secret"
#: how long the demo waits for both instances to start
STARTUP_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Embedded:
    """Where the embedded instances listen."""

    control_url: str
    exec_url: str
    smtp_port: int
    smpp_port: int
    #: the local APNs and FCM endpoints
    push_url: str


def prepare(database_url: str, rights: str) -> Database:
    """Migrate the database at ``database_url`` and make sure the demo operator exists there."""
    database = Database(database_url)
    upgrade(database)
    # the operator may be kept from an earlier run
    with contextlib.suppress(ConflictError):
        OperatorAdmin(database).add(DEMO_LOGIN, DEMO_PASSWORD, rights)
    return database


def kept_secret(path: Path, draw: Callable[[], str]) -> str:
    """The secret in ``path``, drawn with ``draw`` and written there (mode 0600) on the first run."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(draw())
    return path.read_text().strip()


def run(
    settings: Settings,
    data_dir: Path,
    *,
    control_port: int,
    smtp_port: int,
    smpp_port: int,
    push_port: int,
    console: Console,
    once_started: Callable[[Embedded, Console], None] | None = None,
) -> None:
    """Serve both instances until interrupted; ``once_started`` (the demo's walk) runs in a
    thread of its own once both are up."""
    host = "127.0.0.1"
    exec_settings = settings.model_copy(deep=True)
    exec_settings.database_url = f"sqlite:///{data_dir / 'exec.db'}"
    exec_settings.smtp.host, exec_settings.smtp.port = host, smtp_port
    exec_settings.processing.workflows_in_web_process = True
    if not exec_settings.secret_key.get_secret_value():
        exec_settings.secret_key = SecretStr(
            kept_secret(data_dir / SECRET_FILE, lambda: secrets.token_urlsafe(32))
        )
    control_settings = exec_settings.model_copy(deep=True)
    control_settings.database_url = f"sqlite:///{data_dir / 'control.db'}"
    control_settings.instance_name = "control"
    if not control_settings.control.credentials_key.get_secret_value():
        control_settings.control.credentials_key = SecretStr(
            kept_secret(data_dir / KEY_FILE, lambda: Fernet.generate_key().decode())
        )
    with contextlib.ExitStack() as stack:
        # the ports first, so that a taken one is said before anything starts
        control_socket = stack.enter_context(_listening(host, control_port, "--control-port"))
        exec_socket = stack.enter_context(_listening(host, settings.server.port, "--port"))
        # caught mail is kept in the data directory: a restart keeps it
        catcher = SmtpCatcher(host, smtp_port, directory=data_dir)
        _start(catcher.start, smtp_port, "--smtp-port")
        stack.callback(catcher.stop)
        # caught SMS and push notifications are kept in memory (the SMSC last: it logs that
        # it listens, and a taken port is the first thing said)
        push = PushCatcher(host=host, port=push_port)
        _start(push.start, push_port, "--push-port")
        stack.callback(push.stop)
        smsc = ThreadedSmsc(host, smpp_port)
        _start(smsc.start, smpp_port, "--smpp-port")
        stack.callback(smsc.stop)
        exec_settings.sms = SmsSettings(host=host, port=smsc.port, default_sender="DemoShop")
        exec_settings.push = PushSettings.model_validate(push.push_settings())
        where = Embedded(
            control_url=f"http://{host}:{control_port}",
            exec_url=f"http://{host}:{settings.server.port}",
            smtp_port=smtp_port,
            smpp_port=smsc.port,
            push_url=push.url,
        )
        exec_db = prepare(exec_settings.database_url, "mc_push,mc_admin")
        stack.callback(exec_db.dispose)
        control_db = prepare(control_settings.database_url, "mc_admin")
        stack.callback(control_db.dispose)
        control_app = create_control_app(control_settings, control_db)
        control_app.state.catcher = catcher
        control_app.state.smsc = smsc
        control_app.state.push_catcher = push
        control_app.include_router(catcher_web.router, prefix="/catcher")
        servers = {
            _server(control_app, host, control_port): control_socket,
            _server(create_exec_app(exec_settings, exec_db), host, settings.server.port): (
                exec_socket
            ),
        }
        _print_banner(where, console)
        if once_started is not None:
            threading.Thread(
                target=_when_started,
                args=(list(servers), once_started, where, console),
                daemon=True,
            ).start()
        asyncio.run(_serve(servers))


class _SharedProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`_serve`, which stops every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    return _SharedProcessServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    )


async def _serve(servers: dict[uvicorn.Server, socket.socket]) -> None:
    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for stopping in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stopping, stop)
    try:
        await asyncio.gather(*(server.serve([bound]) for server, bound in servers.items()))
    finally:
        for stopping in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stopping)


@contextlib.contextmanager
def _listening(host: str, port: int, option: str) -> Iterator[socket.socket]:
    """A socket bound and listening on ``host``:``port``, for uvicorn to serve on."""
    bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        bound.bind((host, port))
        bound.listen(2048)
    except OSError as exc:
        bound.close()
        raise _port_taken(port, option, exc) from None
    with bound:
        yield bound


def _start(start: Callable[[], None], port: int, option: str) -> None:
    """Start a built-in catcher listening on ``port``; a taken port is a clear error."""
    try:
        start()
    except OSError as exc:
        raise _port_taken(port, option, exc) from None


def _port_taken(port: int, option: str, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot listen on 127.0.0.1:{port}",
        detail=f"{exc.strerror or exc}; choose another port with {option}",
    )


def _when_started(
    servers: list[uvicorn.Server],
    then: Callable[[Embedded, Console], None],
    where: Embedded,
    console: Console,
) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not all(server.started for server in servers):
        if time.monotonic() > deadline:
            console.print("[red]the instances did not start; no demo[/red]")
            return
        time.sleep(0.05)
    then(where, console)


def _print_banner(where: Embedded, console: Console) -> None:
    console.print(
        f"[bold]msgcenter[/bold] control instance   {where.control_url}  "
        f"(console; API docs {where.control_url}/docs)\n"
        f"          execution instance {where.exec_url}  (console, SOAP and REST intake; "
        f"API docs {where.exec_url}/docs)\n"
        f"mail of both goes to the built-in SMTP catcher on 127.0.0.1:{where.smtp_port}, SMS to "
        f"the SMSC simulator on 127.0.0.1:{where.smpp_port}, push notifications to the local "
        f"APNs and FCM endpoints at {where.push_url}: read them all at "
        f"{where.control_url}/catcher/\n"
        f"operator [bold]{DEMO_LOGIN}[/bold] / password [bold]{DEMO_PASSWORD}[/bold] "
        "on both (loopback only)"
    )
