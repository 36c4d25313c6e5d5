"""``msgcenter push FILE`` against a real execution instance on loopback, on both stores.

The command runs in-process (``CliRunner``); every test counts the ``event`` rows
afterwards: each line of the file is stored once, whatever the refusals, reruns
and interruptions in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from msgcenter.cli import app as cli_app
from msgcenter.store.database import Database
from msgcenter.store.tables import event
from msgcenter.web.exec_app import create_exec_app
from tests.conftest import (
    RunningServer,
    ThreadedServer,
    add_operator,
    free_port,
    start_exec_server,
)

LOGIN, PASSWORD = "shop", "s3cret"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@pytest.fixture
def server(db: Database) -> Iterator[RunningServer]:
    add_operator(db, LOGIN, PASSWORD, rights="mc_push")
    threaded, running = start_exec_server(db)
    with threaded:
        yield running


def push(url: str, file: Path, *options: str, password: str = PASSWORD) -> Result:
    args = ["push", str(file), "--url", url, "--user", LOGIN, "--password", password, *options]
    return CliRunner().invoke(cli_app, args)


def jsonl(tmp_path: Path, events: list[object], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "".join((e if isinstance(e, str) else orjson.dumps(e).decode()) + "\n" for e in events)
    )
    return path


def order(number: int, **fields: object) -> dict[str, object]:
    return {
        "type": "order_confirmation",
        "email": f"client{number}@example.com",
        "external_id": f"order-{number}",
        "ctx": {"order": {"id": number}},
        **fields,
    }


def rows(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(event).order_by(event.c.id)).mappings())


def external_ids(db: Database) -> list[str]:
    """Every stored event's external id, sorted; a duplicate shows twice."""
    return sorted(r["external_id"] for r in rows(db))


def count(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(event)).scalar_one()


def ids_file(path: Path) -> list[list[str]]:
    header, *lines = path.read_text().splitlines()
    assert header == "line\tid\trefusal"
    return [line.split("\t") for line in lines]


def expected(numbers: range) -> list[str]:
    return sorted(f"order-{n}" for n in numbers)


# -- pushing -------------------------------------------------------------------------------


def test_a_json_lines_file_is_stored_in_batches_with_every_id(server, db, tmp_path):
    file = jsonl(tmp_path, [order(n) for n in range(1, 24)])
    result = push(server.url, file, "--batch-size", "5", "--ids", str(tmp_path / "ids.tsv"))
    assert result.exit_code == 0, result.output
    assert "23 events read, 23 stored, 0 already stored (replays), 0 refused" in result.output
    stored = rows(db)
    assert external_ids(db) == expected(range(1, 24))
    assert {r["queue"] for r in stored} == {"rt"}
    by_order = {r["external_id"]: r for r in stored}
    assert orjson.loads(by_order["order-1"]["ctx"]) == {"order": {"id": 1}}
    # the file lists every line's id, in line order (batches were answered in any order)
    assert ids_file(tmp_path / "ids.tsv") == [
        [str(n), str(by_order[f"order-{n}"]["id"]), ""] for n in range(1, 24)
    ]
    first, last = min(r["id"] for r in stored), max(r["id"] for r in stored)
    assert f"ids {first} … {last}" in result.output
    # every list had its key, each event KEY:N#i
    keys = [r["idempotency_key"] for r in stored]
    assert len(set(keys)) == 23 and all(k.startswith("push-") for k in keys)


def test_a_bearer_token_and_the_batch_queue(server, db, tmp_path):
    token = httpx.post(
        f"{server.url}/api/v1/sessions", json={"login": LOGIN, "password": PASSWORD}
    ).json()["token"]
    file = jsonl(tmp_path, [order(n) for n in range(1, 4)])
    result = CliRunner().invoke(
        cli_app, ["push", str(file), "--url", server.url, "--token", token, "--queue", "batch"]
    )
    assert result.exit_code == 0, result.output
    assert [r["queue"] for r in rows(db)] == ["batch"] * 3


def test_an_xml_file_in_the_soap_shape(server, db, tmp_path):
    file = tmp_path / "events.xml"
    file.write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<events xmlns:urn="urn:nms:rtEvent">
  <!-- exported from the old system -->
  <rtEvent type="order_confirmation" email="ann@example.com" emailFormat="2" externalId="x-1">
    <ctx><client firstname="Ann"/><article sku="A"/><article sku="B"/></ctx>
  </rtEvent>
  <urn:rtEvent type="order_confirmation" email="bob@example.com" externalId="x-2"/>
  <batchEvent type="newsletter" email="cleo@example.com" externalId="x-3">
    <mobileApp uuid="app-1"/>
  </batchEvent>
</events>
"""
    )
    result = push(server.url, file, "--ids", str(tmp_path / "ids.tsv"))
    assert result.exit_code == 0, result.output
    assert "3 events read, 3 stored" in result.output
    # the rt and the batch events go in requests of their own, sent side by side: ids follow
    # no file order across queues
    ann, bob, cleo = sorted(rows(db), key=lambda row: row["external_id"])
    assert (ann["queue"], ann["email_format"], ann["external_id"]) == ("rt", 2, "x-1")
    assert ann["ctx_format"] == "json"
    assert orjson.loads(ann["ctx"]) == {
        "client": {"@firstname": "Ann"},
        "article": [{"@sku": "A"}, {"@sku": "B"}],
    }
    assert (bob["queue"], bob["ctx"]) == ("rt", "{}")
    assert (cleo["queue"], cleo["mobile_app_uuid"]) == ("batch", "app-1")
    assert [line for line, _id, _refusal in ids_file(tmp_path / "ids.tsv")] == ["4", "7", "8"]


def test_bad_lines_are_refused_by_number_and_the_others_stored(server, db, tmp_path):
    lines: list[object] = [order(n) for n in range(1, 13)]
    lines[1] = "{not json"  # line 2: never sent
    lines[3] = order(4, email="not-an-address")  # line 4: refused by the server mid-batch
    lines[5] = order(6, type="")  # line 6: the first of its batch
    lines[8] = "[1, 2]"  # line 9
    lines[11] = order(12, email_format=7)  # line 12: the last event
    file = jsonl(tmp_path, lines)
    result = push(server.url, file, "--batch-size", "4", "--ids", str(tmp_path / "ids.tsv"))
    assert result.exit_code == 1, result.output
    assert "7 stored, 0 already stored (replays), 5 refused" in result.output
    assert external_ids(db) == sorted(f"order-{n}" for n in (1, 3, 5, 7, 8, 10, 11))
    output = result.output
    assert "line 2: not valid JSON" in output
    assert "line 4: invalid 'email'" in output
    assert "line 6: invalid 'type'" in output
    assert "line 9: not a JSON object but a JSON array" in output
    assert "line 12: invalid 'email_format'" in output
    outcomes = ids_file(tmp_path / "ids.tsv")
    assert [line for line, _, _ in outcomes] == [str(n) for n in range(1, 13)]
    refused = {line: refusal for line, event_id, refusal in outcomes if not event_id}
    assert sorted(refused, key=int) == ["2", "4", "6", "9", "12"]
    assert not refused["4"].startswith("event ")  # the position in the list is not the line's

    # run again: the same lists, the same keys: nothing more is stored
    again = push(server.url, file, "--batch-size", "4")
    assert "0 stored, 7 already stored (replays), 5 refused" in again.output
    assert count(db) == 7


def test_an_xml_refusal_names_the_attribute_as_written(server, db, tmp_path):
    file = tmp_path / "events.xml"
    file.write_text(
        '<events>\n<rtEvent type="t" email="a@example.com"/>\n'
        '<rtEvent type="t" email="b@example.com" emailFormat="9"/>\n</events>\n'
    )
    result = push(server.url, file)
    assert result.exit_code == 1
    assert "line 3: invalid 'emailFormat'" in result.output
    assert count(db) == 1


# -- resuming ------------------------------------------------------------------------------


def test_a_second_run_with_the_same_key_stores_nothing_twice(server, db, tmp_path):
    file = jsonl(tmp_path, [order(n) for n in range(1, 11)])
    first = push(server.url, file, "--batch-size", "3", "--key", "import-2024-06")
    assert first.exit_code == 0, first.output
    before = rows(db)
    second = push(server.url, file, "--batch-size", "3", "--key", "import-2024-06")
    assert second.exit_code == 0, second.output
    assert "0 stored, 10 already stored (replays), 0 refused" in second.output
    assert rows(db) == before
    assert f"ids {before[0]['id']} … {before[-1]['id']}" in second.output
    # another key is another push
    third = push(server.url, file, "--batch-size", "3", "--key", "import-2024-07")
    assert "10 stored" in third.output and count(db) == 20


def test_a_push_limited_by_max_events_is_finished_by_a_full_run(server, db, tmp_path):
    file = jsonl(tmp_path, [order(n) for n in range(1, 26)])
    first = push(server.url, file, "--batch-size", "10", "--max-events", "15")
    assert first.exit_code == 0, first.output
    assert "stopped after --max-events 15" in first.output
    assert external_ids(db) == expected(range(1, 16))
    full = push(server.url, file, "--batch-size", "10")
    assert full.exit_code == 0, full.output
    assert "10 already stored (replays)" in full.output  # the first batch, whole
    assert external_ids(db) == expected(range(1, 26))


class StopAfter:
    """An execution instance that goes away once it has answered ``pushes`` pushes: it stops
    listening, and a push that reaches it meanwhile is never answered (its connection is cut
    when the server's grace period ends)."""

    def __init__(self, app: Any, pushes: int) -> None:
        self.app = app
        self.left = pushes
        self.threaded = ThreadedServer(self)
        self.threaded.server.config.timeout_graceful_shutdown = 0.2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/events/"):
            await self.app(scope, receive, send)
            return
        if self.left == 0:
            await asyncio.Event().wait()
        await self.app(scope, receive, send)
        self.left -= 1
        if self.left == 0:
            self.threaded.server.should_exit = True


def test_a_push_stopped_by_the_instance_going_away_is_resumed(db, tmp_path):
    add_operator(db, LOGIN, PASSWORD, rights="mc_push")
    _, running = start_exec_server(db)
    stopping = StopAfter(create_exec_app(running.settings, db), pushes=3)
    file = jsonl(tmp_path, [order(n) for n in range(1, 41)])
    with stopping.threaded as url:
        cut = push(url, file, "--batch-size", "4", "--concurrency", "1", "--retry-for", "0.5")
    assert cut.exit_code == 1, cut.output
    assert "12 stored" in cut.output
    assert "error: stopped: cannot connect to" in cut.output
    assert "run the same command again to resume" in cut.output
    assert count(db) == 12

    restarted, _ = start_exec_server(db)
    with restarted as url:
        resumed = push(url, file, "--batch-size", "4", "--concurrency", "3")
    assert resumed.exit_code == 0, resumed.output
    assert "28 stored, 12 already stored (replays)" in resumed.output
    assert external_ids(db) == expected(range(1, 41))


class LoseAnswer:
    """Stores push number ``which`` but answers it 503, as if the answer were lost."""

    def __init__(self, app: Any, which: int) -> None:
        self.app = app
        self.which = which
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/events/"):
            await self.app(scope, receive, send)
            return
        self.seen += 1
        if self.seen != self.which:
            await self.app(scope, receive, send)
            return

        async def swallow(message: MutableMapping[str, Any]) -> None:
            pass

        await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_a_push_whose_answer_was_lost_is_retried_as_a_replay(db, tmp_path):
    add_operator(db, LOGIN, PASSWORD, rights="mc_push")
    _, running = start_exec_server(db)
    with ThreadedServer(LoseAnswer(create_exec_app(running.settings, db), which=2)) as url:
        result = push(url, jsonl(tmp_path, [order(n) for n in range(1, 10)]), "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "6 stored, 3 already stored (replays)" in result.output
    assert external_ids(db) == expected(range(1, 10))


# -- failing -------------------------------------------------------------------------------


def test_a_wrong_password_is_one_line(server, db, tmp_path):
    file = jsonl(tmp_path, [order(n) for n in range(1, 30)])
    result = push(server.url, file, "--batch-size", "2", password="wrong")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: authentication failed: ")
    assert count(db) == 0


def test_an_operator_without_the_push_right_is_one_line(server, db, tmp_path):
    add_operator(db, "reader", "pw", rights="")
    file = jsonl(tmp_path, [order(1)])
    result = CliRunner().invoke(
        cli_app, ["push", str(file), "--url", server.url, "-u", "reader", "--password", "pw"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: permission denied: "), result.output
    assert result.output.count("\n") == 1


def test_nothing_listening_stops_after_the_retries(tmp_path):
    result = push(
        f"http://127.0.0.1:{free_port()}", jsonl(tmp_path, [order(1)]), "--retry-for", "0.3"
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot connect to http://127.0.0.1:"), result.output
    assert "(retried for 0.3 s)" in result.output


def test_a_server_that_is_not_msgcenter_stops_the_push(tmp_path):
    with ThreadedServer(FastAPI()) as url:
        result = push(url, jsonl(tmp_path, [order(1)]))
    assert result.exit_code == 1
    assert "has no event intake (404 on /api/v1/events/rt)" in result.output


def test_a_file_without_events_says_so(server, db, tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_text("<events><other/></events>")
    result = push(server.url, empty)
    assert result.exit_code == 0, result.output
    assert "no <rtEvent> or <batchEvent> element in" in result.output


def test_a_bad_key_is_refused_before_anything_is_sent(server, db, tmp_path):
    result = push(server.url, jsonl(tmp_path, [order(1)]), "--key", "with space")
    assert result.exit_code == 1 and "--key must be" in result.output
    assert count(db) == 0
