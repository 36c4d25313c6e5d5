"""The ``msgcenter up --demo`` walk: one message's whole path, through the public APIs.

Event type → template → seed → preview on the control instance; the execution
instance registered, tested and initialized; the template published to it;
events pushed over SOAP exactly as an information system sends them; the
messages sent (to the SMTP catcher); the history archived back into the
control instance. Each step says where to see its result. A step that fails
stops the walk with the API's own explanation; the instances keep running.
"""

from __future__ import annotations

import time
import tomllib
from importlib import resources
from typing import Any, cast

import httpx
from rich.console import Console
from rich.table import Table

from msgcenter.embedded import DEMO_LOGIN, DEMO_PASSWORD, Embedded

#: the execution instance's internal name on the control instance
INSTANCE = "exec"
#: (recipient attributes, first name, order, total, articles) of the events pushed: three
#: emails, an SMS and an iOS push notification
DEMO_EVENTS = (
    (
        'email="ann@example.com"',
        "Ann",
        "1001",
        "42.50",
        '<article label="Blue mug" qty="2"/><article label="Tea, 100 g" qty="1"/>',
    ),
    ('email="bob@example.com"', "Bob", "1002", "19.90", '<article label="Notebook" qty="1"/>'),
    (
        'email="cleo@example.com"',
        "Cléo",
        "1003",
        "7.00",
        '<article label="Pencils &amp; eraser" qty="3"/>',
    ),
    ('wishedChannel="1" mobilePhone="+33612345678"', "Dan", "1004", "5.00", ""),
    (
        'wishedChannel="41" registrationToken="'
        '6a1f3c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f"',
        "Eve",
        "1005",
        "64.00",
        "",
    ),
)
SOAP_PUSH = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent">'
    "<soapenv:Body><urn:PushEvent><urn:sessiontoken>{login}/{password}</urn:sessiontoken><urn:domEvent>"
    '<rtEvent type="{event_type}" {recipient} emailFormat="2" origin="msgcenter up --demo">'
    '<ctx><client firstname="{name}"/><order id="{order}" total="{total}">{articles}</order></ctx>'
    "</rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
)
#: wished channel codes -> what step 8 calls them
CHANNELS = {0: "email", 1: "sms", 41: "ios push", 42: "android push"}
#: how long the walk waits for the messages to be sent
SEND_SECONDS = 30


class StepFailedError(Exception):
    """A step of the walk got an answer it cannot go on with."""

    @classmethod
    def answered(cls, step: str, answer: httpx.Response) -> StepFailedError:
        """The step failed with this HTTP answer."""
        return cls(f"{step}: HTTP {answer.status_code} {_problem_text(answer)}")


def walk(where: Embedded, console: Console) -> None:
    """Walk the demo against the running instances at ``where``, printing each step."""
    design = tomllib.loads(
        resources.files(__package__).joinpath("order_confirmation.toml").read_text("utf-8")
    )
    auth = (DEMO_LOGIN, DEMO_PASSWORD)
    try:
        with (
            httpx.Client(base_url=f"{where.control_url}/api/v1", auth=auth, timeout=60) as control,
            httpx.Client(base_url=where.exec_url, auth=auth, timeout=30) as execution,
        ):
            _walk(design, control, execution, where, console)
    except (StepFailedError, httpx.HTTPError) as exc:
        console.print(f"[red]the demo stopped: {exc}[/red]")


def _walk(
    design: dict[str, Any],
    control: httpx.Client,
    execution: httpx.Client,
    where: Embedded,
    console: Console,
) -> None:
    api = f"{where.control_url}/api/v1"
    template = _design(design, control, api, console)
    _publish(control, [template, *_channel_templates(design, control)], where, console)
    ids = [_push(execution, design["event_type"]["name"], *sample) for sample in DEMO_EVENTS]
    _step(
        console,
        7,
        f"pushed events {', '.join(map(str, ids))} over SOAP",
        f"{where.exec_url}/api/v1/events/{ids[0]}",
    )
    _show_sent(execution, ids, where, console)
    # its workflow may be archiving the instance just now: wait for that run, then run again
    run = _ok("archive", control.post(f"/archives/{INSTANCE}/run", params={"wait": 60}))
    if run["outcome"] != "complete":
        console.print(f"[red]the demo stopped: archiving {run['outcome']}: {run['error']}[/red]")
        return
    _step(
        console,
        9,
        f"archived into the control instance: {run['new_events']} new events "
        f"with their delivery logs ({run['events']} read)",
        f"{api}/archives",
    )
    _farewell(where, ids[0], console)


def _design(design: dict[str, Any], control: httpx.Client, api: str, console: Console) -> str:
    """Steps 1 to 4: event type, blocks and template, seed, preview; returns the template."""
    event_type, template = design["event_type"]["name"], design["template"]["name"]
    kept = _create(control, "/event-types", design["event_type"], "event type")
    _step(console, 1, f"event type [bold]{event_type}[/bold]{kept}", f"{api}/event-types")

    for block in design["blocks"]:
        _create(control, "/blocks", block, f"block {block['name']}")
    kept = _create(control, "/templates", design["template"], "template")
    _step(
        console,
        2,
        f"template [bold]{template}[/bold]{kept}; the same event type by SMS and by iOS push: "
        + ", ".join(t["name"] for t in design["channel_templates"]),
        f"{api}/templates/{template}",
    )

    seed = _seed(control, template, design["seed"])
    _step(
        console,
        3,
        f"seed {seed['id']} '{seed['label']}' <{seed['address']}>",
        f"{api}/templates/{template}/seeds",
    )
    preview = _ok("preview", control.post(f"/templates/{template}/preview?seed={seed['id']}"))
    _step(
        console,
        4,
        f"preview for the seed: subject '{preview['subject']}'",
        f"curl -u demo:demo -X POST '{api}/templates/{template}/preview?seed={seed['id']}'",
    )
    return str(template)


def _channel_templates(design: dict[str, Any], control: httpx.Client) -> list[str]:
    """The templates of the other channels (created with step 2); their names."""
    for template in design["channel_templates"]:
        _create(control, "/templates", template, f"template {template['name']}")
    return [str(t["name"]) for t in design["channel_templates"]]


def _publish(
    control: httpx.Client, templates: list[str], where: Embedded, console: Console
) -> None:
    """Steps 5 and 6: the execution instance registered, tested, initialized; the templates
    published to it."""
    api = f"{where.control_url}/api/v1"
    instance_id = _register(control, where.exec_url)
    _step(
        console,
        5,
        f"execution instance '{INSTANCE}' registered, connection tested, id {instance_id}",
        f"{api}/instances/{INSTANCE}",
    )
    states = [_ok("publish", control.post(f"/templates/{t}/publish")) for t in templates]
    state = states[0]
    places = ", ".join(f"{i['instance']}: {i['state']} v{i['version']}" for i in state["instances"])
    _step(
        console,
        6,
        f"published v{state['version']} ({places}), and {len(states) - 1} more templates",
        f"{api}/templates/{templates[0]}/publication",
    )


def _show_sent(execution: httpx.Client, ids: list[int], where: Embedded, console: Console) -> None:
    """Step 8: the pushed events once sent, with where to read each caught message."""
    events = _wait_until_final(execution, ids)
    caught = httpx.get(f"{where.control_url}/catcher/api/messages", timeout=10).json()
    table = Table("event", "channel", "to", "status", "read it at", title="step 8 - messages sent")
    for stored in events:
        channel = CHANNELS.get(stored["wished_channel"], "email")
        if channel == "email":
            message = next((m for m in caught if stored["email"] in m.get("to", "")), None)
            address = stored["email"]
            read_at = f"{where.control_url}/catcher/messages/{message['id']}" if message else "-"
        else:
            address = stored["mobile_phone"] or f"{stored['registration_token'][:12]}…"
            read_at = f"{where.control_url}/catcher/#mobile"
        table.add_row(str(stored["id"]), channel, address, stored["status"], read_at)
    console.print(table)


def _farewell(where: Embedded, event_id: int, console: Console) -> None:
    console.print(
        "Look further (operator demo / password demo):\n"
        f"  control console:    {where.control_url}/  (design, publication, archives, reports)\n"
        f"  execution console:  {where.exec_url}/  (workflows, events, quarantine)\n"
        f"  caught messages:    {where.control_url}/catcher/  (mail, SMS, push)\n"
        f"  control API docs:   {where.control_url}/docs\n"
        f"  execution API docs: {where.exec_url}/docs     "
        f"SOAP WSDL: {where.exec_url}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent\n"
        f"  one event:          curl -u demo:demo {where.exec_url}/api/v1/events/{event_id}\n"
        f"  search:             curl -u demo:demo '{where.exec_url}/api/v1/events?status=sent'\n"
        f"  workflows:          curl -u demo:demo {where.exec_url}/api/v1/admin/workflows\n"
        "Press Ctrl+C to stop.",
        soft_wrap=True,
    )


def _step(console: Console, number: int, what: str, where: str) -> None:
    console.print(f"[green]step {number}[/green] {what}\n         see: {where}", soft_wrap=True)


def _ok(step: str, answer: httpx.Response) -> Any:
    if answer.status_code not in (200, 201):
        raise StepFailedError.answered(step, answer)
    return answer.json()


def _create(control: httpx.Client, path: str, body: dict[str, Any], what: str) -> str:
    """Create an object; one kept from an earlier run stays as it is."""
    answer = control.post(path, json=body)
    if answer.status_code == 409:
        return " (kept from an earlier run)"
    _ok(what, answer)
    return " created"


def _seed(control: httpx.Client, template: str, seed: dict[str, Any]) -> dict[str, Any]:
    seeds = _ok("seed", control.get(f"/templates/{template}/seeds"))
    earlier = next((s for s in seeds if s["label"] == seed["label"]), None)
    if earlier is not None:
        return cast(dict[str, Any], earlier)
    return cast(
        dict[str, Any], _ok("seed", control.post(f"/templates/{template}/seeds", json=seed))
    )


def _register(control: httpx.Client, exec_url: str) -> str:
    """Register the execution instance (or point an earlier registration at it), test and
    initialize the connection, create its archiving workflow; returns its instance id."""
    account = {
        "name": INSTANCE,
        "label": "Embedded execution instance",
        "url": exec_url,
        "login": DEMO_LOGIN,
        "password": DEMO_PASSWORD,
    }
    answer = control.post("/instances", json=account)
    if answer.status_code == 409:
        _ok("instance", control.patch(f"/instances/{INSTANCE}", json={"url": exec_url}))
    else:
        _ok("instance", answer)
    report = _ok("test connection", control.post(f"/instances/{INSTANCE}/test"))
    if not report["ok"]:
        raise StepFailedError(f"test connection: {report['failure']}")
    initialized = _ok("initialize", control.post(f"/instances/{INSTANCE}/initialize"))
    # Create the archiving workflow (it exists already on a second run)
    _ok("archiving workflow", control.post(f"/archives/{INSTANCE}/workflow"))
    return str(initialized["instance_id"])


def _push(
    execution: httpx.Client,
    event_type: str,
    recipient: str,
    name: str,
    order: str,
    total: str,
    articles: str,
) -> int:
    answer = execution.post(
        "/nl/jsp/soaprouter.jsp",
        content=SOAP_PUSH.format(
            login=DEMO_LOGIN,
            password=DEMO_PASSWORD,
            event_type=event_type,
            recipient=recipient,
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
    if answer.status_code != 200:
        raise StepFailedError.answered("push", answer)
    return int(answer.text.split('xsi:type="xsd:long">')[1].split("<")[0])


def _wait_until_final(execution: httpx.Client, ids: list[int]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SEND_SECONDS
    while True:
        events = [_ok("event", execution.get(f"/api/v1/events/{i}")) for i in ids]
        if (
            all(e["status"] not in ("pending", "pending_delivery") for e in events)
            or time.monotonic() > deadline
        ):
            return events
        time.sleep(0.1)


def _problem_text(answer: httpx.Response) -> str:
    try:
        problem = answer.json()
    except ValueError:
        return answer.text[:200]
    if not isinstance(problem, dict):
        return str(problem)[:200]
    return " - ".join(str(problem[k]) for k in ("title", "detail") if problem.get(k))
