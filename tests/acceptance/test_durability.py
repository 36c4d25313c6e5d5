"""An id returned to a caller is committed: SIGKILL the server under load and count."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from msgcenter.store.tables import event
from tests.acceptance.servers import ServerProcess
from tests.conftest import add_operator, wait_for

pytestmark = pytest.mark.slow

SOAP_EVENT = (
    '<rtEvent type="order_confirmation" email="ann@example.com"><ctx><n>{n}</n></ctx></rtEvent>'
)
SOAP_ENVELOPE = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:{method}><urn:sessiontoken>mc/secret</urn:sessiontoken>'
    "<urn:{param}>{content}</urn:{param}></urn:{method}></soapenv:Body></soapenv:Envelope>"
)
PL_ID = re.compile(r"<urn:plId[^>]*>(\d+)</urn:plId>")


def _push_until_down(url: str, kind: str, received: list[int], stop: threading.Event) -> None:
    """Push events of one kind in a loop, recording every id the server returned."""
    n = 0
    with httpx.Client(base_url=url, auth=("mc", "secret"), timeout=5) as client:
        while not stop.is_set():
            n += 1
            try:
                if kind == "rest":
                    answer = client.post(
                        "/api/v1/events/rt",
                        json={"type": "t", "email": "a@example.com", "ctx": {"n": n}},
                    )
                    ids = [answer.json()["id"]] if answer.status_code == 201 else []
                elif kind == "rest-batch":
                    body = [
                        {"type": "t", "email": "a@example.com", "ctx": {"n": n, "i": i}}
                        for i in range(20)
                    ]
                    answer = client.post("/api/v1/events/batch", json=body)
                    ids = answer.json()["ids"] if answer.status_code == 201 else []
                else:
                    many = kind == "soap-batch"
                    content = (
                        "<Events>"
                        + "".join(SOAP_EVENT.format(n=n) for _ in range(20))
                        + "</Events>"
                        if many
                        else SOAP_EVENT.format(n=n)
                    )
                    answer = client.post(
                        "/nl/jsp/soaprouter.jsp",
                        content=SOAP_ENVELOPE.format(
                            method="PushEvents" if many else "PushEvent",
                            param="domEventCollection" if many else "domEvent",
                            content=content,
                        ),
                        headers={"Content-Type": "text/xml"},
                    )
                    ids = (
                        [int(i) for i in PL_ID.findall(answer.text)]
                        if answer.status_code == 200
                        else []
                    )
            except httpx.TransportError:
                time.sleep(0.01)  # the server is down; keep trying until told to stop
                continue
            received.extend(ids)


def test_sigkill_under_load_loses_no_acknowledged_event(db, tmp_path):
    add_operator(db, "mc", "secret")
    server = ServerProcess(db.url, tmp_path / "server.log").start()
    received: list[int] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_push_until_down, args=(server.url, kind, received, stop))
        for kind in ("rest", "rest", "rest-batch", "soap", "soap", "soap-batch")
    ]
    try:
        for client in clients:
            client.start()
        wait_for(
            lambda: len(received) >= 300, timeout=60, message="300 acknowledged events under load"
        )
        acknowledged_before_kill = len(received)
        server.kill()
        stop.set()
        for client in clients:
            client.join(timeout=30)
    finally:
        stop.set()
        server.stop()

    assert acknowledged_before_kill > 50, "the load did not get going; the test proves nothing"
    restarted = ServerProcess(db.url, tmp_path / "server.log").start()
    try:
        with db.read() as conn:
            stored = {row[0] for row in conn.execute(select(event.c.id))}
        missing = set(received) - stored
        assert not missing, f"{len(missing)} acknowledged ids are not in the database"
        assert len(set(received)) == len(received), "an id was returned twice"
        # The restarted server serves what was stored before the kill.
        some_id = received[len(received) // 2]
        answer = httpx.get(f"{restarted.url}/api/v1/events/{some_id}", auth=("mc", "secret"))
        assert answer.status_code == 200
    finally:
        restarted.stop()
