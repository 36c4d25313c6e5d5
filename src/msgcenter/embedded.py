"""``msgcenter up``: the embedded default for a first try, on SQLite, in one process.

It migrates a local SQLite database, makes sure a demo operator exists, and
serves the execution instance. With ``--demo`` it then pushes a few events
through the SOAP endpoint, exactly as an information system would, and shows
them read back through the REST API.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from msgcenter.auth.operators import parse_rights
from msgcenter.auth.passwords import hash_password
from msgcenter.errors import ConflictError
from msgcenter.settings import Settings
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.web.exec_app import create_exec_app

DEMO_LOGIN = "demo"
DEMO_PASSWORD = "demo"
DEMO_EVENTS = (
    (
        "order_confirmation",
        "ann@example.com",
        '<client firstname="Ann"/><order id="1001" total="42.50"/>',
    ),
    (
        "password_reset",
        "bob@example.com",
        '<client firstname="Bob"/><link>https://shop.example/reset/x1</link>',
    ),
    ("parcel_shipped", "cleo@example.com", '<client firstname="Cleo"/><parcel tracking="FR123"/>'),
)
SOAP_PUSH = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent">'
    "<soapenv:Body><urn:PushEvent><urn:sessiontoken>{login}/{password}</urn:sessiontoken><urn:domEvent>"
    '<rtEvent type="{type}" email="{email}" origin="msgcenter up --demo"><ctx>{ctx}</ctx></rtEvent>'
    "</urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
)


def prepare(settings: Settings) -> Database:
    """Migrate the database and make sure the demo operator exists."""
    database = Database(settings.database_url)
    upgrade(database)
    try:
        with database.write() as conn:
            operator_store.add(
                conn,
                DEMO_LOGIN,
                hash_password(DEMO_PASSWORD),
                parse_rights("mc_push,mc_admin"),
                (),
                None,
                datetime.now(UTC),
            )
    except ConflictError:
        pass  # kept from an earlier run
    return database


def run(settings: Settings, *, demo: bool, console: Console) -> None:
    """Serve until interrupted; with ``demo``, push sample events once the server is up."""
    database = prepare(settings)
    host, port = settings.server.host, settings.server.port
    base = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_exec_app(settings, database),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    console.print(
        f"[bold]msgcenter[/bold] execution instance on {base} (database {settings.database_url})"
    )
    console.print(
        f"operator [bold]{DEMO_LOGIN}[/bold] / password [bold]{DEMO_PASSWORD}[/bold] (loopback only)"
    )
    if demo:
        threading.Thread(target=_demo, args=(server, base, console), daemon=True).start()
    try:
        server.run()
    finally:
        database.dispose()


def _demo(server: uvicorn.Server, base: str, console: Console) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        return
    ids = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for event_type, email, ctx in DEMO_EVENTS:
            answer = client.post(
                "/nl/jsp/soaprouter.jsp",
                content=SOAP_PUSH.format(
                    login=DEMO_LOGIN, password=DEMO_PASSWORD, type=event_type, email=email, ctx=ctx
                ),
                headers={
                    "SOAPAction": '"nms:rtEvent#PushEvent"',
                    "Content-Type": "text/xml; charset=utf-8",
                },
            )
            answer.raise_for_status()
            ids.append(int(answer.text.split('xsi:type="xsd:long">')[1].split("<")[0]))
        table = Table(
            "id",
            "type",
            "email",
            "status",
            "received",
            title="events pushed over SOAP, read over REST",
        )
        for event_id in ids:
            stored = client.get(
                f"/api/v1/events/{event_id}", auth=(DEMO_LOGIN, DEMO_PASSWORD)
            ).json()
            table.add_row(
                str(stored["id"]),
                stored["type"],
                stored["email"],
                stored["status"],
                stored["created"],
            )
    console.print(table)
    console.print(
        "Look further:\n"
        f"  curl -u {DEMO_LOGIN}:{DEMO_PASSWORD} '{base}/api/v1/events?limit=10'\n"
        f"  curl '{base}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent'\n"
        f"  {base}/docs (REST API),  {base}/metrics (Prometheus)\n"
        "Press Ctrl+C to stop."
    )
