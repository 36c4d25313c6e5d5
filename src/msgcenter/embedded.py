"""``msgcenter up``: the embedded default for a first try, on SQLite, in one process.

It runs an execution instance (intake, workflows) whose SMTP relay is a
built-in catcher, and serves the caught messages at ``/catcher``. With
``--demo`` it publishes a sample template and pushes a few events through the
SOAP endpoint, exactly as an information system would, then shows them sent.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from msgcenter.auth.operators import Operator, Right, parse_rights
from msgcenter.auth.passwords import hash_password
from msgcenter.catcher import SmtpCatcher, catcher_router
from msgcenter.errors import ConflictError
from msgcenter.publications import load_spec
from msgcenter.settings import Settings
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.web.admin import publish
from msgcenter.web.exec_app import create_exec_app

DEMO_LOGIN = "demo"
DEMO_PASSWORD = "demo"
DEMO_EVENTS = (
    (
        "ann@example.com",
        "Ann",
        "1001",
        "42.50",
        '<article label="Blue mug" qty="2"/><article label="Tea, 100 g" qty="1"/>',
    ),
    ("bob@example.com", "Bob", "1002", "19.90", '<article label="Notebook" qty="1"/>'),
    ("cleo@example.com", "Cléo", "1003", "7.00", '<article label="Pencils &amp; eraser" qty="3"/>'),
)
SOAP_PUSH = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent">'
    "<soapenv:Body><urn:PushEvent><urn:sessiontoken>{login}/{password}</urn:sessiontoken><urn:domEvent>"
    '<rtEvent type="order_confirmation" email="{email}" emailFormat="2" origin="msgcenter up --demo">'
    '<ctx><client firstname="{name}"/><order id="{order}" total="{total}">{articles}</order></ctx>'
    "</rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
)
#: the CLI and the demo act as a local administrator of the embedded database
LOCAL_ADMIN = Operator(id=0, login="up", rights=frozenset(Right))


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


def run(settings: Settings, *, demo: bool, smtp_port: int, console: Console) -> None:
    """Serve until interrupted; with ``demo``, publish and push sample events once the server is up."""
    settings.smtp.host, settings.smtp.port = "127.0.0.1", smtp_port
    settings.processing.workflows_in_web_process = True
    database = prepare(settings)
    catcher = SmtpCatcher("127.0.0.1", smtp_port)
    catcher.start()
    app = create_exec_app(settings, database)
    app.include_router(catcher_router(catcher), prefix="/catcher")
    host, port = settings.server.host, settings.server.port
    base = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    )
    console.print(
        f"[bold]msgcenter[/bold] execution instance on {base} (database {settings.database_url})"
    )
    console.print(
        f"mail goes to the built-in SMTP catcher on 127.0.0.1:{smtp_port}: read it at {base}/catcher/"
    )
    console.print(
        f"operator [bold]{DEMO_LOGIN}[/bold] / password [bold]{DEMO_PASSWORD}[/bold] (loopback only)"
    )
    if demo:
        threading.Thread(target=_demo, args=(server, database, base, console), daemon=True).start()
    try:
        server.run()
    finally:
        catcher.stop()
        database.dispose()


def _demo(server: uvicorn.Server, database: Database, base: str, console: Console) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        return
    sample = Path(str(resources.files("msgcenter.demo").joinpath("order_confirmation.toml")))
    published = publish(database, load_spec(sample), LOCAL_ADMIN)
    console.print(
        f"published [bold]{published[0].template}[/bold] v{published[0].version} "
        f"for event type '{published[0].event_type}'"
    )
    with httpx.Client(base_url=base, timeout=10, auth=(DEMO_LOGIN, DEMO_PASSWORD)) as client:
        ids = [_push(client, *sample_event) for sample_event in DEMO_EVENTS]
        events = _wait_until_final(client, ids)
        caught = client.get("/catcher/api/messages").json()
    table = Table("event", "to", "status", "read it at", title="events pushed over SOAP")
    for stored in events:
        message = next((m for m in caught if stored["email"] in m.get("to", "")), None)
        table.add_row(
            str(stored["id"]),
            stored["email"],
            stored["status"],
            f"/catcher/messages/{message['id']}" if message else "-",
        )
    console.print(table)
    console.print(
        "Look further:\n"
        f"  caught mail:     {base}/catcher/\n"
        f"  one event:       curl -u {DEMO_LOGIN}:{DEMO_PASSWORD} {base}/api/v1/events/{ids[0]}\n"
        f"  search:          curl -u {DEMO_LOGIN}:{DEMO_PASSWORD} '{base}/api/v1/events?status=sent'\n"
        f"  workflows:       curl -u {DEMO_LOGIN}:{DEMO_PASSWORD} {base}/api/v1/admin/workflows\n"
        f"  SOAP WSDL:       {base}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent\n"
        f"  REST API docs:   {base}/docs      metrics: {base}/metrics\n"
        "Press Ctrl+C to stop."
    )


def _push(
    client: httpx.Client, email: str, name: str, order: str, total: str, articles: str
) -> int:
    answer = client.post(
        "/nl/jsp/soaprouter.jsp",
        content=SOAP_PUSH.format(
            login=DEMO_LOGIN,
            password=DEMO_PASSWORD,
            email=email,
            name=name,
            order=order,
            total=total,
            articles=articles,
        ).encode(),
        headers={
            "SOAPAction": '"nms:rtEvent#PushEvent"',
            "Content-Type": "text/xml; charset=utf-8",
        },
    )
    answer.raise_for_status()
    return int(answer.text.split('xsi:type="xsd:long">')[1].split("<")[0])


def _wait_until_final(client: httpx.Client, ids: list[int]) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 20
    while True:
        events = [client.get(f"/api/v1/events/{i}").json() for i in ids]
        if (
            all(e["status"] not in ("pending", "pending_delivery") for e in events)
            or time.monotonic() > deadline
        ):
            return events
        time.sleep(0.1)
