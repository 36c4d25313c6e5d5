"""A lean HTTP/1.1 load generator for the msgcenter benchmarks.

It keeps N keep-alive connections busy, each posting one prepared request
over and over, and records the latency of every answer. Each answer is
checked: the expected status code, and the number of event ids the body
carries (SOAP ``plId`` elements, REST ``"id"``/``"ids"``). The client is a
bare asyncio Protocol (on uvloop when importable) that parses only what it
needs (status line, Content-Length, Connection), so it costs the shared CPU
far less than a general HTTP client would.

Used as a library by ``intake.py`` and as a command for ad-hoc runs::

    python bench/loadgen.py http://127.0.0.1:8000/api/v1/events/rt \\
        -H 'Content-Type: application/json' -H 'Authorization: Basic …' \\
        --data-file event.json --status 201 --expect rest
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import resource
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # the bench still runs, only with more client CPU
    uvloop = None

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")
_PLID = re.compile(rb"<(?:[\w.-]+:)?plId\b[^>]*>\s*(\d+)\s*</")
_SAMPLE_BYTES = 300


@dataclass(frozen=True)
class Target:
    """One prepared request and what a good answer to it looks like.

    ``expect`` is ``"soap"`` (count ``plId`` elements), ``"rest"`` (count
    ``"id"``/``"ids"``) or ``"none"`` (status only); ``events`` is how many
    event ids a good answer carries.
    """

    host: str
    port: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int = 200
    expect: str = "none"
    events: int = 1

    def wire(self) -> bytes:
        """The request as sent on the wire, keep-alive, with Content-Length."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def acknowledged(self, status: int, body: bytes) -> tuple[int, str | None]:
        """Count the event ids in an answer; the second item names a failure."""
        if status != self.status:
            return 0, f"status {status}"
        if self.expect == "none":
            return self.events, None
        ids = _soap_ids(body) if self.expect == "soap" else _rest_ids(body)
        if ids != self.events:
            return 0, f"{ids}/{self.events} ids"
        return ids, None


def _soap_ids(body: bytes) -> int:
    return sum(1 for value in _PLID.findall(body) if int(value) > 0)


def _rest_ids(body: bytes) -> int:
    try:
        doc = json.loads(body)
    except ValueError:
        return 0
    if not isinstance(doc, dict):
        return 0
    if "ids" in doc and isinstance(doc["ids"], list):
        return sum(1 for i in doc["ids"] if i)
    return 1 if doc.get("id") else 0


@dataclass
class Result:
    """What one run measured; ``merge`` adds the results of other processes."""

    duration: float
    connections: int
    requests: int = 0
    events: int = 0
    acknowledged: int = 0
    latencies: array = field(default_factory=lambda: array("d"))
    errors: Counter = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    client_cpu: float = 0.0

    def merge(self, other: Result) -> None:
        self.connections += other.connections
        self.requests += other.requests
        self.events += other.events
        self.acknowledged += other.acknowledged
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        for reason, sample in other.samples.items():
            self.samples.setdefault(reason, sample)
        self.client_cpu += other.client_cpu

    def percentile_ms(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def summary(self) -> dict:
        """Rates and latency figures, JSON-ready."""
        p50, p99 = self.percentile_ms(50), self.percentile_ms(99)
        return {
            "requests_per_s": round(self.requests / self.duration, 1),
            "events_per_s": round(self.events / self.duration, 1),
            "p50_ms": None if p50 is None else round(p50, 2),
            "p99_ms": None if p99 is None else round(p99, 2),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "error_samples": self.samples,
            "acknowledged": self.acknowledged,
            "measured_requests": self.requests,
            "duration_s": self.duration,
            "connections": self.connections,
            "client_cpu_s": round(self.client_cpu, 2),
        }


class _Run:
    """State shared by the connections of one process."""

    def __init__(self, target: Target, connections: int, duration: float) -> None:
        self.target = target
        self.request = target.wire()
        self.connections = connections
        self.result = Result(duration=duration, connections=connections)
        self.measuring = False
        self.stopping = False
        self.in_flight = 0
        self.drained = asyncio.Event()

    def record(self, status: int, body: bytes, latency: float) -> None:
        acked, failure = self.target.acknowledged(status, body)
        self.result.acknowledged += acked
        if failure:
            self.fail(failure, body)
        elif self.measuring:
            self.result.requests += 1
            self.result.events += acked
            self.result.latencies.append(latency)

    def fail(self, reason: str, body: bytes = b"") -> None:
        self.result.errors[reason] += 1
        if reason not in self.result.samples:
            self.result.samples[reason] = body[:_SAMPLE_BYTES].decode("utf-8", "replace")

    def open(self) -> None:
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                await loop.create_connection(
                    lambda: _Connection(self), self.target.host, self.target.port
                )
                return
            except OSError as exc:
                self.fail(f"connect: {exc.strerror or exc}")
                await asyncio.sleep(0.1)

    def settle(self) -> None:
        if self.stopping and self.in_flight == 0:
            self.drained.set()


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the prepared request in a loop."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.started = 0.0
        self.head = 0
        self.length = 0
        self.status = 0
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.run.stopping:
            self.transport.close()
            return
        self.buffer.clear()
        self.head = 0
        self.busy = True
        self.run.in_flight += 1
        self.started = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head and not self._parse_head():
            return
        end = self.head + self.length
        if len(self.buffer) < end:
            return
        latency = time.perf_counter() - self.started
        self._done()
        if len(self.buffer) > end:
            self.run.fail("bytes after the body")
            self.transport.close()
            return
        self.run.record(self.status, bytes(self.buffer[self.head : end]), latency)
        if self.close_after:
            self.transport.close()
        else:
            self._send()

    def _parse_head(self) -> bool:
        """Read status and framing once the header block is in; False to wait."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        self.status = int(head[9:12])
        self.close_after = b"\r\nconnection: close" in head
        match = _CONTENT_LENGTH.search(head)
        if match is None:
            # Chunked or close-delimited answers are not expected from the
            # intake endpoints; treat them as a protocol failure.
            self.run.fail("no Content-Length", bytes(self.buffer[:end]))
            self._done()
            self.transport.close()
            return False
        self.length = int(match.group(1))
        self.head = end + 4
        return True

    def _done(self) -> None:
        if self.busy:
            self.busy = False
            self.run.in_flight -= 1
            self.run.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self._done()
            self.run.fail("connection lost mid-request")
        if not self.run.stopping:
            self.run.open()


async def _drive(target: Target, connections: int, duration: float, warmup: float) -> Result:
    run = _Run(target, connections, duration)
    for _ in range(connections):
        run.open()
    await asyncio.sleep(warmup)
    run.measuring = True
    await asyncio.sleep(duration)
    run.measuring = False
    run.stopping = True
    run.settle()
    try:
        # Let answers in flight land: their ids count for the stored check.
        await asyncio.wait_for(run.drained.wait(), timeout=30)
    except TimeoutError:
        run.result.errors["no answer within 30 s after the run"] += run.in_flight
    return run.result


def _run_process(target: Target, connections: int, duration: float, warmup: float) -> Result:
    if uvloop is not None:
        uvloop.install()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(_drive(target, connections, duration, warmup))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return result


def run(
    target: Target,
    connections: int = 32,
    duration: float = 20.0,
    warmup: float = 3.0,
    procs: int = 1,
) -> Result:
    """Load ``target`` for ``duration`` seconds after ``warmup``; spread the
    connections over ``procs`` processes when one cannot saturate the server."""
    if procs <= 1:
        return _run_process(target, connections, duration, warmup)
    shares = [connections // procs + (i < connections % procs) for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.starmap(_run_process, [(target, n, duration, warmup) for n in shares if n])
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total


class HttpError(Exception):
    """A request that got no complete answer (connection refused, lost, or malformed)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class KeepAlivePool:
    """Up to ``size`` keep-alive HTTP/1.1 connections to one server, for callers that send
    requests of their own when they choose (an open loop), each on an idle connection.

    The same lean framing as the closed loop above (status line and Content-Length only, on
    asyncio streams): with httpx the soak's load took 0.7 of a core at 245 requests/s and
    fell behind; with this, 0.07.
    """

    #: a connection idle this long is not reused: the server may be closing it (uvicorn
    #: closes keep-alive connections idle for 5 s), and a request sent as it closes is lost
    IDLE_SECONDS = 2.0

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._free = asyncio.Semaphore(size)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST ``body`` to ``path``; the answer, or ``HttpError`` when none came whole."""
        async with self._free:
            reader, writer = await self._connection()
            request = Target(self.host, self.port, "POST", path, tuple(headers.items()), body)
            try:
                writer.write(request.wire())
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                length = _CONTENT_LENGTH.search(head)
                if length is None:
                    raise HttpError("an answer without Content-Length")
                answer = Answer(int(head[9:12]), await reader.readexactly(int(length.group(1))))
            except HttpError:
                writer.close()
                raise
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                writer.close()
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            if b"\r\nconnection: close" in head:
                writer.close()
            else:
                self._idle.append((reader, writer, time.monotonic()))
            return answer

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The most recently used idle connection still fresh, else a new one."""
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.IDLE_SECONDS and not reader.at_eof():
                return reader, writer
            writer.close()
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError(f"connect: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        """Close the idle connections."""
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://host:port/path")
    parser.add_argument("-X", "--method", default="POST")
    parser.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value', repeatable"
    )
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--data", default="", help="request body")
    body.add_argument("--data-file", help="file holding the request body")
    parser.add_argument("--status", type=int, default=200, help="expected status code")
    parser.add_argument(
        "--expect", choices=["soap", "rest", "none"], default="none", help="how to count ids"
    )
    parser.add_argument("--events", type=int, default=1, help="event ids expected per answer")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args(argv)

    url = urlsplit(args.url)
    if args.data_file:
        with open(args.data_file, "rb") as f:
            payload = f.read()
    else:
        payload = args.data.encode()
    headers = tuple(tuple(part.strip() for part in h.split(":", 1)) for h in args.header)
    target = Target(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        method=args.method,
        path=url.path + (f"?{url.query}" if url.query else ""),
        headers=headers,  # type: ignore[arg-type]
        body=payload,
        status=args.status,
        expect=args.expect,
        events=args.events,
    )
    result = run(target, args.connections, args.duration, args.warmup, args.procs)
    json.dump(result.summary(), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
