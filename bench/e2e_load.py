"""The load of the end-to-end bench: single-event and batch REST pushes.

An open loop at a fixed rate (each request carrying a unique token, see
:func:`token`) or a counted closed loop, over a pool of keep-alive
connections (:class:`_Pool`), run by :class:`Pusher` in a forked child
process; each run returns a :class:`Pushed` with its timings.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import json
import multiprocessing
import re
import resource
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import intake as ib  # the intake bench: database, process and CPU helpers
import loadgen

#: a fixed-width placeholder for the token that makes each single-event push unique
PLACEHOLDER = "@@TOKEN@@@@@"
TOKEN_WIDTH = len(PLACEHOLDER)
MAX_CONNECTIONS = 512


def token(tag: str, i: int) -> str:
    return f"{tag}{i:0{TOKEN_WIDTH - len(tag)}d}"


def rest_target(port: int, queue: str, batch: int, order_id: str) -> loadgen.Target:
    event = json.loads(json.dumps(ib.REST_EVENT))
    event["ctx"]["order"]["id"] = order_id
    doc = event if batch == 1 else [event] * batch
    basic = base64.b64encode(f"{ib.LOGIN}:{ib.PASSWORD}".encode()).decode()
    return loadgen.Target(
        host="127.0.0.1",
        port=port,
        method="POST",
        path=f"/api/v1/events/{queue}",
        headers=(("Authorization", f"Basic {basic}"), ("Content-Type", "application/json")),
        body=json.dumps(doc, separators=(",", ":")).encode(),
        status=201,
        expect="rest",
        events=batch,
    )


class _Client(asyncio.Protocol):
    """One keep-alive connection; one request at a time; calls back with the answer."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        pool.clients.add(self)
        self.buffer = bytearray()
        self.head = 0
        self.length = 0
        self.status = 0
        self.index = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.ready(self)

    def send(self, index: int, request: bytes) -> None:
        self.index = index
        self.buffer.clear()
        self.head = 0
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            self.length = int(match.group(1)) if match else 0
            self.head = end + 4
        if len(self.buffer) < self.head + self.length:
            return
        now = time.monotonic()
        index, self.index = self.index, -1
        body = bytes(self.buffer[self.head : self.head + self.length])
        self.pool.answered(self, index, self.status, body, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class _Pool:
    """Keep-alive connections to the server; requests wait in a backlog when all are busy."""

    def __init__(self, target: loadgen.Target, n: int, total: int) -> None:
        self.target = target
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Client] = []
        self.clients: set[_Client] = set()
        self.backlog: list[tuple[int, bytes]] = []
        self.opened = 0
        self.opening = 0
        self.sent = array("d", bytes(8 * total))
        self.acked = array("d", [float("nan")]) * total
        self.answers = 0
        self.acked_events = 0
        self.errors: Counter = Counter()
        self.samples: dict[str, str] = {}
        self.done = asyncio.Event()
        self.total = total
        self.next_request = None  # closed loop: a callable giving (index, request) or None
        for _ in range(n):
            self._open()

    def _open(self) -> None:
        if self.opened + self.opening >= MAX_CONNECTIONS:
            return
        self.opening += 1

        async def connect() -> None:
            try:
                await self.loop.create_connection(
                    lambda: _Client(self), self.target.host, self.target.port
                )
                self.opened += 1
            except OSError as exc:
                self.fail(f"connect: {exc.strerror or exc}", b"")
                await asyncio.sleep(0.1)
            finally:
                self.opening -= 1

        self.loop.create_task(connect())

    def submit(self, index: int, request: bytes) -> None:
        if self.idle:
            client = self.idle.pop()
            self.sent[index] = time.monotonic()
            client.send(index, request)
        else:
            self.backlog.append((index, request))
            if not self.opening:
                self._open()

    def ready(self, client: _Client) -> None:
        if self.backlog:
            index, request = self.backlog.pop(0)
            self.sent[index] = time.monotonic()
            client.send(index, request)
            return
        if self.next_request is not None:
            following = self.next_request()
            if following is not None:
                index, request = following
                self.sent[index] = time.monotonic()
                client.send(index, request)
                return
        self.idle.append(client)

    def answered(self, client: _Client, index: int, status: int, body: bytes, now: float) -> None:
        acked, failure = self.target.acknowledged(status, body)
        if failure:
            self.fail(failure, body)
        else:
            self.acked[index] = now
            self.acked_events += acked
        self.answers += 1
        if self.answers >= self.total:
            self.done.set()
        self.ready(client)

    def fail(self, reason: str, body: bytes) -> None:
        self.errors[reason] += 1
        self.samples.setdefault(reason, body[:300].decode("utf-8", "replace"))

    def close(self) -> None:
        self.done.set()
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.close()

    def lost(self, client: _Client) -> None:
        self.clients.discard(client)
        if client in self.idle:
            self.idle.remove(client)
        self.opened -= 1
        if client.index >= 0:
            self.fail("connection lost mid-request", b"")
            self.answers += 1
            if self.answers >= self.total:
                self.done.set()
        if not self.done.is_set():
            self._open()


@dataclass
class Pushed:
    """What one push run did (times on the shared monotonic clock)."""

    tag: str
    total: int
    scheduled: array  # when each request was due (open loop) or first sent (closed loop)
    sent: array
    acked: array  # nan when the request failed
    acked_events: int
    errors: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    client_cpu: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    connections: int = 0


async def _open_loop(target: loadgen.Target, tag: str, rate: float, duration: float) -> Pushed:
    total = int(rate * duration)
    request = target.wire()
    assert request.count(PLACEHOLDER.encode()) == 1
    pool = _Pool(target, max(4, min(64, int(rate / 100))), total)
    await asyncio.sleep(0.3)  # let the first connections open
    scheduled = array("d", bytes(8 * total))
    started = time.monotonic() + 0.01
    i = 0
    while i < total:
        now = time.monotonic()
        due = min(total, int((now - started) * rate) + 1)
        while i < due:
            scheduled[i] = started + i / rate
            pool.submit(i, request.replace(PLACEHOLDER.encode(), token(tag, i).encode()))
            i += 1
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
    try:
        await asyncio.wait_for(pool.done.wait(), 60)
    except TimeoutError:
        pool.errors["no answer within 60 s"] += total - pool.answers
    pool.close()
    return Pushed(
        tag,
        total,
        scheduled,
        pool.sent,
        pool.acked,
        pool.acked_events,
        dict(pool.errors),
        pool.samples,
        started=started,
        ended=time.monotonic(),
        connections=pool.opened,
    )


async def _closed_loop(
    target: loadgen.Target, requests: int, connections: int, timeout: float
) -> Pushed:
    request = target.wire()
    counter = iter(range(requests))
    deadline = time.monotonic() + timeout
    issued = 0

    def following() -> tuple[int, bytes] | None:
        nonlocal issued
        if time.monotonic() > deadline:
            return None
        index = next(counter, None)
        if index is None:
            return None
        issued += 1
        return index, request

    return await drive_closed_loop(
        target, "batch", requests, connections, deadline, following, lambda: issued
    )


async def drive_closed_loop(
    target: loadgen.Target,
    tag: str,
    requests: int,
    connections: int,
    deadline: float,
    following: Callable[[], tuple[int, bytes] | None],
    issued: Callable[[], int],
) -> Pushed:
    """Send ``requests`` requests over ``connections``, each new one from ``following`` (None:
    no more), until all are answered or ``deadline`` passes; ``issued`` says how many went."""
    started = time.monotonic()
    pool = _Pool(target, connections, requests)
    pool.next_request = following  # set before any connection is made
    while not pool.done.is_set():
        await asyncio.sleep(0.05)
        if time.monotonic() > deadline and pool.answers >= issued():
            pool.errors["not sent: time budget"] = requests - issued()
            break
    pool.close()
    return Pushed(
        tag,
        requests,
        array("d", pool.sent),
        pool.sent,
        pool.acked,
        pool.acked_events,
        dict(pool.errors),
        pool.samples,
        started=started,
        ended=time.monotonic(),
        connections=connections,
    )


def _in_child(kind: str, *args) -> Pushed:  # type: ignore[no-untyped-def]
    if loadgen.uvloop is not None:
        loadgen.uvloop.install()
    before = resource.getrusage(resource.RUSAGE_SELF)
    coroutine = _open_loop(*args) if kind == "open" else _closed_loop(*args)
    pushed = asyncio.run(coroutine)
    after = resource.getrusage(resource.RUSAGE_SELF)
    pushed.client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return pushed


def _die_with_parent() -> None:
    """The pusher child gets SIGTERM when the bench ends, however it ends (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Pusher:
    """Runs the load in one forked child so that it never shares the GIL with the relay readers."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent
        )
        # fork the child now, before the relay reader threads exist
        self._pool.submit(time.sleep, 0).result()

    def open_loop(self, port: int, queue: str, tag: str, rate: float, duration: float):  # type: ignore[no-untyped-def]
        target = rest_target(port, queue, 1, PLACEHOLDER)
        return self._pool.submit(_in_child, "open", target, tag, rate, duration)

    def closed_loop(  # type: ignore[no-untyped-def]
        self, port: int, queue: str, batch: int, requests: int, connections: int, timeout: float
    ):
        target = rest_target(port, queue, batch, "B1")
        return self._pool.submit(_in_child, "closed", target, requests, connections, timeout)

    def close(self) -> None:
        """Stop the child at once, even in the middle of a push."""
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
