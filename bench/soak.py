"""Soak: a steady mixed load with relay outages, and whether anything grows, is lost or is doubled.

Issue 13: 30 minutes at 300 events/s of SOAP and REST pushes, real-time and
batch, with the relay failing every few minutes; every minute, the RSS, open
file descriptors and connections of each process and the queue depth. It
passes when the figures are flat after the warm-up (under 10 % growth), and
when every acknowledged event was sent, and received by the relay, exactly
once.

It starts its own relay (an aiosmtpd server in a forked child that can refuse
with 451 or go down on command) and ``msgcenter exec serve`` on a fresh
database with the ``order_confirmation`` publication (both queues), drives an
open-loop load over lean keep-alive connections (``loadgen.KeepAlivePool``),
injects the outages, samples, drains, checks, and writes
``bench/results/soak-<store>-<YYYYMMDD-HHMM>.json``; see ``bench/README.md``.
It is a bench, not a test: it takes as long as it is told.

    python bench/soak.py                                     # the issue's 30 minutes
    python bench/soak.py --duration 240 --rate 100 --outage-every 90 --outage-seconds 20 \\
        --sample-every 20 --warmup 60                        # a four-minute check of the bench

Duplicates: the only documented way a message is sent twice is a crash
between the relay's acceptance and the outcome's write (docs/architecture.md,
"Exactly once, and the duplicate window"). The soak crashes nothing, and its
relay never drops a connection in the middle of a transaction (a session
caught by an outage is refused at its next MAIL), so no duplicate is allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import intake as ib  # the intake bench: database, process and CPU helpers
import loadgen
import sqlalchemy as sa
from e2e_cpu import Booster
from e2e_report import REPO, code_version, database_summary, log_problems
from rich.table import Table

from msgcenter.store.tables import delivery_log, event

RESULTS_DIR = ib.RESULTS_DIR
PUBLICATION = REPO / "tests" / "fixtures" / "order_confirmation.toml"
PG_DATABASE = "msgcenter_soak"
#: the sampler's database connection, left out of the connections counted
SAMPLER = "soak-sampler"
console = ib.console

#: flatness: growth allowed from the first sample after the warm-up to the last
GROWTH_LIMIT = 0.10

# Event statuses (msgcenter.events.model.EventStatus) and delivery-log statuses
# (msgcenter.deliveries.DeliveryStatus) the checks read.
PENDING, PENDING_DELIVERY, SENT = 0, 1, 2
EVENT_STATUS = {
    0: "pending",
    1: "pending_delivery",
    2: "sent",
    3: "ignored",
    4: "delivery_failed",
    5: "not_taken_into_account",
    6: "expired",
}
LOG_PENDING, LOG_SENDING = 0, 4

# --- the events ---------------------------------------------------------------------------

#: each event carries a unique token as its external id and order id; the publication
#: puts the order id in the subject, where the relay reads it back
TOKEN_PREFIX = "SK"
SUBJECT_TOKEN = re.compile(rb"\nSubject: Order SK(\d+) confirmed")
MESSAGE_ID = re.compile(rb"\nMessage-ID: <dl-(\d+)")
PLID = re.compile(rb"<urn:plId[^>]*>(\d+)</urn:plId>")


def token(seq: int) -> str:
    return f"{TOKEN_PREFIX}{seq:09d}"


@dataclass(frozen=True)
class Kind:
    """One kind of request of the mix: its API, queue, events per request and share of the events."""

    name: str
    api: str  # "soap" or "rest"
    queue: str  # "rt" or "batch"
    size: int
    share: float


#: 70 % real-time, 30 % batch events; 30 % of the events come one per request. (With 60 %
#: one per request, ~190 requests/s at 300 events/s, this Python load generator took a whole
#: core of the two and became the bottleneck: its own lag showed as intake latency.)
MIX = (
    Kind("soap-rt", "soap", "rt", 1, 0.10),
    Kind("rest-rt", "rest", "rt", 1, 0.10),
    Kind("soap-rt-list10", "soap", "rt", 10, 0.25),
    Kind("rest-rt-list10", "rest", "rt", 10, 0.25),
    Kind("soap-batch", "soap", "batch", 1, 0.05),
    Kind("rest-batch", "rest", "batch", 1, 0.05),
    Kind("soap-batch-list50", "soap", "batch", 50, 0.10),
    Kind("rest-batch-list50", "rest", "batch", 50, 0.10),
)

SOAP_ENVELOPE = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:urn="urn:nms:{service}"><soapenv:Body>{call}</soapenv:Body></soapenv:Envelope>'
)
#: SOAP callers put login/password in the session token (allowed from loopback); REST ones use Basic
SOAP_SESSION = f"<urn:sessiontoken>{ib.LOGIN}/{ib.PASSWORD}</urn:sessiontoken>"
REST_AUTH = "Basic " + base64.b64encode(f"{ib.LOGIN}:{ib.PASSWORD}".encode()).decode()


def soap_event(element: str, seq: int) -> str:
    tok = token(seq)
    return (
        f'<{element} type="order_confirmation" email="soak{seq % 1000}@example.com"'
        f' emailFormat="2" externalId="{tok}"><ctx><client firstname="Ann" lastname="Lee"/>'
        f'<order id="{tok}" total="42.50"><article sku="A1" qty="1"/><article sku="B2" qty="2"/>'
        f"</order></ctx></{element}>"
    )


def rest_event(seq: int) -> dict:
    tok = token(seq)
    return {
        "type": "order_confirmation",
        "email": f"soak{seq % 1000}@example.com",
        "external_id": tok,
        "ctx": {
            "client": {"firstname": "Ann", "lastname": "Lee"},
            "order": {
                "id": tok,
                "total": "42.50",
                "article": [{"sku": "A1", "qty": 1}, {"sku": "B2", "qty": 2}],
            },
        },
    }


def request_for(kind: Kind, first: int) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of a request carrying the events ``first`` … ``first + size - 1``."""
    seqs = range(first, first + kind.size)
    if kind.api == "rest":
        doc: Any = rest_event(first) if kind.size == 1 else [rest_event(s) for s in seqs]
        headers = {
            "Authorization": REST_AUTH,
            "Content-Type": "application/json",
            "Idempotency-Key": f"soak-{first}",
        }
        return f"/api/v1/events/{kind.queue}", headers, json.dumps(doc).encode()
    service, element = (
        ("rtEvent", "rtEvent") if kind.queue == "rt" else ("batchEvent", "batchEvent")
    )
    if kind.size == 1:
        action = "PushEvent"
        call = f"<urn:PushEvent>{SOAP_SESSION}<urn:domEvent>{soap_event(element, first)}</urn:domEvent></urn:PushEvent>"
    else:
        action = "PushEvents"
        events = "".join(soap_event(element, s) for s in seqs)
        call = (
            f"<urn:PushEvents>{SOAP_SESSION}<urn:domEventCollection><Events>{events}"
            "</Events></urn:domEventCollection></urn:PushEvents>"
        )
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"nms:{service}#{action}"',
    }
    body = SOAP_ENVELOPE.format(service=service, call=call).encode()
    return "/nl/jsp/soaprouter.jsp", headers, body


# --- the relay ----------------------------------------------------------------------------

UP, REFUSE, DOWN = "up", "refuse", "down"


class _RelayHandler:
    """aiosmtpd handler of the soak relay: records every message it accepts, refuses as told.

    ``refuse``: RCPT answers 451 (a relay that is up but cannot take mail);
    ``down``: the listener is closed (new connections are refused) and a session
    that was open is told 421 at its next MAIL and closed. A transaction already
    past MAIL always ends normally, so the relay never leaves a client unsure
    whether a message was accepted (which would make a duplicate that no
    sender can avoid, RFC 5321 §4.1.1.4 and RFC 1047).
    """

    def __init__(self, out) -> None:  # type: ignore[no-untyped-def]
        self.mode = UP
        self.out = out
        self.stats: Counter = Counter()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]  # noqa: N802
        self.stats["sessions"] += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]  # noqa: N802
        if self.mode == DOWN:
            self.stats["sessions_closed"] += 1
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 soak relay going down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]  # noqa: N802
        if self.mode == REFUSE:
            self.stats["refused"] += 1
            return "451 4.3.0 soak relay refusing mail for now"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        data = envelope.original_content or b""
        found = SUBJECT_TOKEN.search(data)
        message_id = MESSAGE_ID.search(data)
        # written before the 250: a message counted here may be one the sender never learnt of
        self.out.write(
            f"{time.time():.3f}\t{int(found[1]) if found else -1}\t"
            f"{int(message_id[1]) if message_id else -1}\n"
        )
        self.stats["received"] += 1
        return "250 2.0.0 OK"


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _relay_main(port: int, path: str, conn) -> None:  # type: ignore[no-untyped-def]
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C: the parent stops the relay
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_relay_serve(port, path, conn))


async def _relay_serve(port: int, path: str, conn) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    with open(path, "w", buffering=1 << 16) as out:
        handler = _RelayHandler(out)

        def factory() -> SMTP:
            return SMTP(handler, hostname="soak-relay", decode_data=False, ident="soak relay")

        listening: list[asyncio.AbstractServer] = [
            await loop.create_server(factory, "127.0.0.1", port)
        ]

        async def apply(command: str) -> None:
            if command in (UP, REFUSE) and not listening:
                listening.append(await loop.create_server(factory, "127.0.0.1", port))
            elif command == DOWN and listening:
                listening.pop().close()  # stops listening; open sessions get 421 at MAIL
            if command in (UP, REFUSE, DOWN):
                handler.mode = command
                handler.stats[f"mode_{command}"] += 1
            elif command == "stop":
                stopping.set()
            out.flush()
            conn.send(dict(handler.stats))

        def on_command() -> None:
            loop.create_task(apply(conn.recv()))

        async def flush() -> None:
            while True:
                await asyncio.sleep(1)
                out.flush()

        loop.add_reader(conn.fileno(), on_command)
        flusher = loop.create_task(flush())
        conn.send("ready")
        await stopping.wait()
        flusher.cancel()
        for server in listening:
            server.close()


class Relay:
    """The soak relay, in a forked child: ``command(UP | REFUSE | DOWN)``, ``stats()``, ``stop()``.

    The child records every accepted message in ``path`` (time, token, delivery
    log id), one line each, written before it answers 250.
    """

    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.path = path
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._lock = threading.Lock()  # the sampler's thread and the outages share the pipe
        self.proc = context.Process(
            target=_relay_main, args=(port, str(path), child), daemon=True, name="soak-relay"
        )
        self.proc.start()
        if not self._conn.poll(10) or self._conn.recv() != "ready":
            raise RuntimeError("the soak relay did not start")
        self.mode = UP

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def command(self, command: str, timeout: float = 10) -> dict:
        with self._lock:
            self._conn.send(command)
            if not self._conn.poll(timeout):
                raise RuntimeError(f"the soak relay did not answer {command!r}")
            answer = self._conn.recv()
        if command in (UP, REFUSE, DOWN):
            self.mode = command
        return answer

    def stats(self) -> dict:
        return self.command("stats")

    def stop(self) -> dict:
        stats: dict = {}
        if self.proc.is_alive():
            with contextlib.suppress(RuntimeError, OSError, EOFError):
                stats = self.command("stop")
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        return stats


def read_received(path: Path) -> tuple[Counter, dict[int, list[tuple[float, int]]]]:
    """Messages per token at the relay, and every receipt (time, delivery log) of each token."""
    counts: Counter = Counter()
    receipts: dict[int, list[tuple[float, int]]] = {}
    with path.open() as lines:
        for line in lines:
            at, seq, dl = line.split("\t")
            s = int(seq)
            counts[s] += 1
            receipts.setdefault(s, []).append((float(at), int(dl)))
    return counts, receipts


# --- the load -----------------------------------------------------------------------------


@dataclass
class KindStats:
    requests: int = 0
    events_acked: int = 0
    errors: Counter = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    latencies: array = field(default_factory=lambda: array("d"))


class Load:
    """An open loop of the mix at ``rate`` events/s: each request leaves when it is due, whatever
    the answers to the earlier ones; the event id acknowledged for each token is kept."""

    #: requests in flight beyond which a due request is not sent (counted as an error)
    MAX_IN_FLIGHT = 2000

    def __init__(self, port: int, rate: float, connections: int) -> None:
        self.rate = rate
        self.client = loadgen.KeepAlivePool("127.0.0.1", port, connections)
        self.acked = array("q")  # event id per token number (0: not acknowledged)
        self.next_seq = 1
        self.in_flight = 0
        self.kinds = {kind.name: KindStats() for kind in MIX}
        self.interval: array = array("d")  # latencies since the last sample
        self.tasks: set[asyncio.Task] = set()

    @property
    def acked_events(self) -> int:
        return sum(k.events_acked for k in self.kinds.values())

    @property
    def errors(self) -> int:
        return sum(sum(k.errors.values()) for k in self.kinds.values())

    def take_interval(self) -> dict:
        """Intake latency since the last call: requests, p50, p99 and max (ms, from when due)."""
        values, self.interval = sorted(self.interval), array("d")
        if not values:
            return {"requests": 0}

        def at(p: float) -> float:
            return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1)

        return {"requests": len(values), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}

    async def run(self, started: float, duration: float) -> None:
        await asyncio.gather(*(self._kind(kind, started, duration) for kind in MIX))
        if self.tasks:
            await asyncio.wait(self.tasks)

    async def _kind(self, kind: Kind, started: float, duration: float) -> None:
        per_second = self.rate * kind.share / kind.size
        if per_second <= 0:
            return
        # kinds are spread over the first interval so that they do not all leave at once
        offset = (MIX.index(kind) / len(MIX)) / per_second
        i = 0
        while True:
            due = started + offset + i / per_second
            if due - started >= duration:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            first, self.next_seq = self.next_seq, self.next_seq + kind.size
            stats = self.kinds[kind.name]
            stats.requests += 1
            if self.in_flight >= self.MAX_IN_FLIGHT:
                stats.errors["not sent: too many requests in flight"] += 1
                continue
            task = asyncio.create_task(self._send(kind, first, due, stats))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, kind: Kind, first: int, due: float, stats: KindStats) -> None:
        path, headers, body = request_for(kind, first)
        self.in_flight += 1
        try:
            answer = await asyncio.wait_for(self.client.post(path, headers, body), 60.0)
        except (loadgen.HttpError, TimeoutError) as exc:
            kind_name = type(exc).__name__
            stats.errors[kind_name] += 1
            stats.samples.setdefault(kind_name, f"{kind_name}: {exc}"[:120])
            return
        finally:
            self.in_flight -= 1
        latency = time.monotonic() - due
        expected = 200 if kind.api == "soap" else 201
        ids: list[int] = []
        if answer.status == expected:
            if kind.api == "soap":
                ids = [int(i) for i in PLID.findall(answer.body)]
            else:
                doc = json.loads(answer.body)
                ids = [doc["id"]] if "id" in doc else list(doc.get("ids", []))
        if answer.status != expected or len(ids) != kind.size:
            reason = f"HTTP {answer.status}, {len(ids)} ids"
            stats.errors[reason] += 1
            stats.samples.setdefault(reason, answer.body[:300].decode("utf-8", "replace"))
            return
        if len(self.acked) < first + kind.size:
            self.acked.extend([0] * max(first + kind.size - len(self.acked), 100_000))
        for offset, event_id in enumerate(ids):
            self.acked[first + offset] = event_id
        stats.events_acked += kind.size
        stats.latencies.append(latency)
        self.interval.append(latency)

    def summary(self) -> dict:
        out = {}
        for name, k in self.kinds.items():
            values = sorted(k.latencies)

            def at(p: float, values: list[float] = values) -> float | None:
                return (
                    round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1)
                    if values
                    else None
                )

            out[name] = {
                "requests": k.requests,
                "events_acked": k.events_acked,
                "errors": dict(k.errors),
                "error_samples": k.samples,
                "p50_ms": at(0.5),
                "p99_ms": at(0.99),
                "max_ms": at(1.0),
            }
        return out


# --- the processes ------------------------------------------------------------------------


def environment(relay_port: int, log_level: str, settings: list[str] | None) -> dict[str, str]:
    """The server's environment: none of the caller's MSGCENTER_* variables, the product's defaults
    but for the relay's address and what ``--set`` gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env.update(
        {
            "MSGCENTER_SMTP__HOST": "127.0.0.1",
            "MSGCENTER_SMTP__PORT": str(relay_port),
            "MSGCENTER_SMTP__HELO_NAME": "soak.example.com",
            "MSGCENTER_SECRET_KEY": "soak-secret-key-0123456789abcdef0123",
            "MSGCENTER_LOGGING__LEVEL": log_level,
        }
    )
    for item in settings or []:
        name, _, value = item.partition("=")
        env[name] = value
    return env


class Servers:
    """``msgcenter exec serve`` (``workers`` web processes) and ``exec_workers`` ``exec worker``
    processes on one database; with exec workers, the workflows run in them and not in serve."""

    def __init__(
        self, url: str, port: int, workers: int | None, exec_workers: int, env: dict[str, str]
    ) -> None:
        self.url = url
        self.port = port
        self.workers = workers
        self.exec_workers = exec_workers
        self.env = dict(env)
        if exec_workers:
            self.env["MSGCENTER_PROCESSING__WORKFLOWS_IN_WEB_PROCESS"] = "false"
        self.serve: subprocess.Popen | None = None
        self.worker_procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, workdir: Path) -> None:
        """Start them all; return once serve is healthy and every workflow runner has started."""
        command = [ib.MSGCENTER, "exec", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--db", self.url]
        if self.workers:
            command += ["--workers", str(self.workers)]
        self.serve = self._spawn(command, workdir / "serve.log")
        ib.wait_healthy(self.serve, self.port, self.logs[0])
        for i in range(self.exec_workers):
            command = [ib.MSGCENTER, "exec", "worker", "--db", self.url]
            self.worker_procs.append(self._spawn(command, workdir / f"worker{i + 1}.log"))
        # the processes that run the workflows, and how many runners each starts
        runners = [(p, 1) for p in self.logs[1:]] or [(self.logs[0], self.workers or 1)]
        deadline = time.monotonic() + 60
        while any(
            log.read_text(errors="replace").count("worker started") < n for log, n in runners
        ):
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workflows did not start within 60 s")
            time.sleep(0.25)

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen:
        self.logs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                cwd=log.parent,
            )

    @property
    def procs(self) -> list[subprocess.Popen]:
        return [p for p in (self.serve, *self.worker_procs) if p is not None]

    def roots(self) -> dict[str, int]:
        """label → pid of each process started (serve, worker1, …)."""
        found = {"serve": self.serve.pid} if self.serve is not None else {}
        for i, proc in enumerate(self.worker_procs, 1):
            found[f"worker{i}"] = proc.pid
        return found

    def stop(self) -> None:
        for proc in [*self.worker_procs, self.serve]:
            if proc is not None:
                ib.stop(proc)


# --- sampling -----------------------------------------------------------------------------


def tcp_sockets() -> dict[int, tuple[int, int]]:
    """Established TCP sockets of the machine: inode → (local port, remote port)."""
    found = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as table:
            next(table)
            for line in table:
                cols = line.split()
                if cols[3] != "01":  # ESTABLISHED
                    continue
                local = int(cols[1].rsplit(":", 1)[1], 16)
                remote = int(cols[2].rsplit(":", 1)[1], 16)
                found[int(cols[9])] = (local, remote)
    return found


def process_figures(
    pid: int, sockets: dict[int, tuple[int, int]], ports: dict[str, int]
) -> dict | None:
    """RSS, open fds, threads, CPU seconds and TCP connections (by peer) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kib(name: str) -> float:
        return int(fields.get(name, "0 kB").split()[0]) / 1024

    conns: Counter = Counter()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                ends = sockets.get(int(target[8:-1]))
                if ends is not None:
                    # the database by its remote port; the relay and the server from either end
                    if ends[1] == ports["db"]:
                        conns["db"] += 1
                    elif ports["smtp"] in ends:
                        conns["smtp"] += 1
                    elif ports["http"] in ends:
                        conns["http"] += 1
                    else:
                        conns["other"] += 1
    return {
        "pid": pid,
        "rss_mb": round(kib("VmRSS"), 1),
        "rss_anon_mb": round(kib("RssAnon"), 1),
        "fds": len(fds),
        "threads": int(fields.get("Threads", "0")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
        "conns": {role: conns.get(role, 0) for role in (*ports, "other")},
    }


class Sampler:
    """One sample: each process's figures, PostgreSQL's connections, the queues, the load so far."""

    def __init__(
        self,
        url: str,
        servers: Servers,
        relay: Relay,
        load: Load,
        ports: dict[str, int],
        rate: float,
    ) -> None:
        self.postgres = url.startswith("postgresql")
        connect_args = {"application_name": SAMPLER} if self.postgres else {}
        self.engine = sa.create_engine(url, pool_size=1, connect_args=connect_args)
        self.database = url.rsplit("/", 1)[-1]
        self.servers = servers
        self.relay = relay
        self.load = load
        self.ports = ports
        self.rate = rate
        self.previous: dict | None = None

    def processes(self) -> dict[str, int]:
        """label → pid: msgcenter's processes (and serve's web workers: serve/1, …), the relay,
        this process (the load)."""
        table = ib.process_table()
        found = {}
        for label, root in self.servers.roots().items():
            found[label] = root
            for i, pid in enumerate(sorted(ib.descendants(table, root) - {root}), 1):
                found[f"{label}/{i}"] = pid
        found["relay"] = self.relay.pid
        found["soak"] = os.getpid()
        return found

    def backends(self) -> list[int]:
        """PostgreSQL backends serving the soak database (their command line names it)."""
        return [
            pid
            for pid, (_, _, cmdline) in ib.process_table().items()
            if cmdline.startswith("postgres") and f" {self.database} " in cmdline
        ]

    def take(self, t: float, phase: str) -> dict:
        sockets = tcp_sockets()
        processes = {}
        for label, pid in self.processes().items():
            figures = process_figures(pid, sockets, self.ports)
            if figures is not None:
                processes[label] = figures
        sample: dict[str, Any] = {
            "t": round(t, 1),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "phase": phase,
            "relay_mode": self.relay.mode,
            "processes": processes,
        }
        with self.engine.connect() as conn:
            sample["queue"] = self.queue(conn)
            if self.postgres:
                sample["postgres"] = self.pg(conn)
        relay = self.relay.stats()
        sample["relay"] = {k: relay.get(k, 0) for k in ("received", "refused", "sessions_closed")}
        sample["intake"] = {
            "acked_events": self.load.acked_events,
            "errors": self.load.errors,
            "in_flight": self.load.in_flight,
            **self.load.take_interval(),
        }
        if self.previous is not None:
            wall = sample["t"] - self.previous["t"]
            if wall > 0:
                sample["cores"] = {
                    label: round(
                        (p["cpu_s"] - self.previous["processes"][label]["cpu_s"]) / wall, 2
                    )
                    for label, p in processes.items()
                    if label in self.previous["processes"]
                    and self.previous["processes"][label]["pid"] == p["pid"]
                }
                sample["relay"]["per_s"] = round(
                    (sample["relay"]["received"] - self.previous["relay"]["received"]) / wall, 1
                )
        self.previous = sample
        return sample

    def queue(self, conn: sa.Connection) -> dict:
        """Events not final by queue; delivery logs being sent, due, and waiting for a retry;
        ``backlog``: the work due now (pending events, logs being sent or due)."""
        events = conn.execute(
            sa.select(event.c.queue, event.c.status, sa.func.count())
            .where(event.c.status.in_([PENDING, PENDING_DELIVERY]))
            .group_by(event.c.queue, event.c.status)
        ).all()
        now = datetime.now(UTC)
        logs = conn.execute(
            sa.select(
                delivery_log.c.status, (delivery_log.c.due <= now).label("is_due"), sa.func.count()
            )
            .where(delivery_log.c.status.in_([LOG_PENDING, LOG_SENDING]))
            # by the output column: a repeated expression would be two different parameters
            .group_by(delivery_log.c.status, sa.literal_column("is_due"))
        ).all()
        out: dict[str, Any] = {q: {"pending": 0, "pending_delivery": 0} for q in ("rt", "batch")}
        for queue, status, count in events:
            out.setdefault(queue, {"pending": 0, "pending_delivery": 0})
            out[queue][EVENT_STATUS[status]] = count
        sending = sum(n for status, _, n in logs if status == LOG_SENDING)
        due = sum(n for status, is_due, n in logs if status == LOG_PENDING and is_due)
        waiting = sum(n for status, is_due, n in logs if status == LOG_PENDING and not is_due)
        out.update({"logs_sending": sending, "logs_due": due, "logs_waiting_retry": waiting})
        out["backlog"] = sum(out[q]["pending"] for q in ("rt", "batch")) + sending + due
        return out

    def pg(self, conn: sa.Connection) -> dict:
        states = conn.execute(
            sa.text(
                "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity"
                " WHERE datname = :db AND application_name <> :me GROUP BY 1"
            ),
            {"db": self.database, "me": SAMPLER},
        ).all()
        anon = 0.0
        backends = self.backends()
        for pid in backends:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) / 1024
        return {
            # the sampler's own backend is left out of both counts
            "connections": sum(n for _, n in states),
            "by_state": dict(states),
            "backends_rss_anon_mb": round(anon, 1),
            "backends": len(backends),  # the sampler's included
        }


def msgcenter_totals(s: dict) -> dict:
    """RSS, fds and connections summed over msgcenter's processes (serve, its web workers, the
    exec workers) in one sample."""
    procs = [p for label, p in s["processes"].items() if label.startswith(("serve", "worker"))]
    conns = Counter()
    for p in procs:
        conns.update(p["conns"])
    return {
        "processes": len(procs),
        "rss_mb": round(sum(p["rss_mb"] for p in procs), 1),
        "fds": sum(p["fds"] for p in procs),
        "conns": conns,
    }


def sample_line(s: dict) -> str:
    m = msgcenter_totals(s)
    c = m["conns"]
    q = s["queue"]
    intake = s["intake"]
    return (
        f"t={s['t']:>5.0f}s {s['phase']:<7} {s['relay_mode']:<6}| msgcenter {m['rss_mb']:.1f} MB "
        f"{m['fds']} fds db/smtp/http {c['db']}/{c['smtp']}/{c['http']} "
        f"| pg {s.get('postgres', {}).get('connections', '-')} | backlog {q['backlog']} "
        f"retry {q['logs_waiting_retry']} | acked {intake['acked_events']:,} "
        f"relay {s['relay']['received']:,} | p99 {intake.get('p99_ms', '-')} ms err {intake['errors']}"
    )


# --- outages ------------------------------------------------------------------------------


def outage_plan(duration: float, every: float, seconds: float, kind: str) -> list[dict]:
    """Outages at every/2, every/2 + every, …, all ending before the load does.

    They start half a period in, so that the samples taken at whole periods
    (the first after a warm-up of a whole period, and the last) fall between them.
    """
    plan = []
    if every <= 0 or seconds <= 0:
        return plan
    start = every / 2
    while start + seconds <= duration:
        mode = kind if kind != "alternate" else (REFUSE, DOWN)[len(plan) % 2]
        plan.append({"start": start, "end": start + seconds, "mode": mode})
        start += every
    return plan


async def run_outages(relay: Relay, plan: list[dict], started: float) -> None:
    for outage in plan:
        await asyncio.sleep(max(0.0, started + outage["start"] - time.monotonic()))
        await asyncio.to_thread(relay.command, outage["mode"])
        outage["began"] = round(time.monotonic() - started, 1)
        console.print(f"  relay {outage['mode']} at t={outage['began']:.0f}s")
        await asyncio.sleep(max(0.0, started + outage["end"] - time.monotonic()))
        await asyncio.to_thread(relay.command, UP)
        outage["ended"] = round(time.monotonic() - started, 1)
        console.print(f"  relay up at t={outage['ended']:.0f}s")


# --- the run ------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, sampler: Sampler, load: Load, plan: list[dict]) -> dict:
    """Load, outages and samples for ``--duration``, then the drain; the samples and drain figures."""
    samples: list[dict] = []
    started, started_epoch = time.monotonic(), time.time()

    async def sample(phase: str) -> None:
        taken = await asyncio.to_thread(sampler.take, time.monotonic() - started, phase)
        samples.append(taken)
        console.print(sample_line(taken), highlight=False)

    await sample("start")
    load_task = asyncio.create_task(load.run(started, args.duration))
    outage_task = asyncio.create_task(run_outages(sampler.relay, plan, started))
    k = 1
    while k * args.sample_every <= args.duration + 0.01:
        await asyncio.sleep(max(0.0, started + k * args.sample_every - time.monotonic()))
        await sample("warmup" if k * args.sample_every < args.warmup else "steady")
        k += 1
    await outage_task
    await load_task
    load_ended = time.monotonic() - started

    drain_started = time.monotonic()
    remaining = -1
    while time.monotonic() - drain_started < args.drain_timeout:
        remaining = await asyncio.to_thread(not_final, sampler.engine)
        if remaining == 0:
            break
        if int(time.monotonic() - drain_started) % 15 < 2:
            console.print(f"  draining: {remaining:,} events not final yet")
        await asyncio.sleep(2)
    drained = round(time.monotonic() - drain_started, 1)
    await sample("drained")
    await load.client.close()
    return {
        "samples": samples,
        "started_epoch": started_epoch,
        "load_ended_s": round(load_ended, 1),
        "drain_s": drained,
        "not_final_after_drain": remaining,
    }


def not_final(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(event)
            .where(event.c.status.in_([PENDING, PENDING_DELIVERY]))
        ).scalar_one()


# --- the checks ---------------------------------------------------------------------------


def flatness(samples: list[dict], warmup: float, rate: float, pool_size: int) -> list[dict]:
    """Growth of each figure from the first sample at or after the warm-up to the last one under
    load. A figure passes with at most 10 % growth, or within its slack: counts that move by
    whole connections (fds, TCP connections) may grow by a full SMTP pool, the backlog by two
    seconds of load, so that small numbers do not fail on noise. The sockets of the load's HTTP
    connections are left out of the msgcenter processes' fds and connections judged: the
    load's connection pool opens and closes them as it likes (they are shown apart)."""
    steady = [s for s in samples if s["phase"] == "steady" and s["t"] >= warmup - 0.01]
    if len(steady) < 2:
        return []
    first, last = steady[0], steady[-1]
    rows = []

    def row(name: str, get, slack: float, checked: bool = True) -> None:  # type: ignore[no-untyped-def]
        try:
            a, b = get(first), get(last)
        except KeyError:
            return
        values = []
        for s in steady:
            with contextlib.suppress(KeyError):
                values.append(get(s))
        growth = (b - a) / a if a else (0.0 if b == a else float("inf"))
        ok = b <= a * (1 + GROWTH_LIMIT) or b - a <= slack
        rows.append(
            {
                "figure": name,
                "first": a,
                "last": b,
                "max": max(values),
                "growth_pct": round(growth * 100, 1) if growth != float("inf") else None,
                "slack": slack,
                "checked": checked,
                "ok": ok if checked else None,
            }
        )

    labels = [label for label in last["processes"] if label in first["processes"]]
    for label in labels:
        product = label.startswith(("serve", "worker"))
        if first["processes"][label]["pid"] != last["processes"][label]["pid"]:
            rows.append(
                {
                    "figure": f"{label} pid",
                    "ok": False,
                    "checked": True,
                    "first": first["processes"][label]["pid"],
                    "last": last["processes"][label]["pid"],
                }
            )
            continue
        row(f"{label} rss MB", lambda s, lb=label: s["processes"][lb]["rss_mb"], 0, product)
        # the load opens and closes HTTP connections as it likes: they are left out of the
        # figures judged (and shown apart)
        row(
            f"{label} fds (no HTTP)",
            lambda s, lb=label: s["processes"][lb]["fds"] - s["processes"][lb]["conns"]["http"],
            pool_size,
            product,
        )
        row(
            f"{label} connections (no HTTP)",
            lambda s, lb=label: (
                sum(s["processes"][lb]["conns"].values()) - s["processes"][lb]["conns"]["http"]
            ),
            pool_size,
            product,
        )
        row(
            f"{label} HTTP connections",
            lambda s, lb=label: s["processes"][lb]["conns"]["http"],
            0,
            False,
        )
    if "postgres" in last:
        row("postgres connections", lambda s: s["postgres"]["connections"], 2)
        row(
            "postgres backends rss_anon MB",
            lambda s: s["postgres"]["backends_rss_anon_mb"],
            0,
            False,
        )
    row("queue backlog", lambda s: s["queue"]["backlog"], 2 * rate)
    return rows


def check_delivery(
    engine: sa.Engine, load: Load, received: Counter, receipts: dict, started_epoch: float
) -> dict:
    """Every acknowledged event sent, and received by the relay, once (receipt times of the
    duplicates in seconds from the start of the load, with their delivery log ids)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(event.c.id, event.c.status, event.c.external_id)).all()
        stored: dict[int, tuple[int, int]] = {}
        for event_id, status, external_id in rows:
            if external_id and external_id.startswith(TOKEN_PREFIX):
                stored[int(external_id[len(TOKEN_PREFIX) :])] = (event_id, status)
        reasons = conn.execute(
            sa.select(delivery_log.c.failure_reason, sa.func.count())
            .where(delivery_log.c.failure_reason.is_not(None))
            .group_by(delivery_log.c.failure_reason)
            .order_by(sa.func.count().desc())
            .limit(5)
        ).all()
    acked = {seq: event_id for seq, event_id in enumerate(load.acked) if event_id}
    lost: dict[str, list[int]] = {
        "not_stored": [],
        "other_id_stored": [],
        "not_final": [],
        "final_not_sent": [],
        "sent_not_at_relay": [],
    }
    by_status: Counter = Counter()
    for seq, event_id in acked.items():
        found = stored.get(seq)
        if found is None:
            lost["not_stored"].append(seq)
            continue
        stored_id, status = found
        by_status[EVENT_STATUS.get(status, str(status))] += 1
        if stored_id != event_id:
            lost["other_id_stored"].append(seq)
        elif status in (PENDING, PENDING_DELIVERY):
            lost["not_final"].append(seq)
        elif status != SENT:
            lost["final_not_sent"].append(seq)
        elif not received.get(seq):
            lost["sent_not_at_relay"].append(seq)
    duplicates = {seq: n for seq, n in received.items() if n > 1}
    unacked_stored = [seq for seq in stored if seq not in acked]
    return {
        "acknowledged": len(acked),
        "acknowledged_by_status": dict(by_status),
        "lost": sum(len(v) for v in lost.values()),
        "lost_by_kind": {k: len(v) for k, v in lost.items()},
        "lost_samples": {k: [token(s) for s in v[:10]] for k, v in lost.items() if v},
        "relay_messages": sum(received.values()),
        "relay_unknown_token": received.get(-1, 0),
        "stored_not_acknowledged": len(unacked_stored),
        "stored_not_acknowledged_at_relay": sum(1 for s in unacked_stored if received.get(s)),
        "duplicates": len(duplicates),
        "duplicate_messages": sum(n - 1 for n in duplicates.values()),
        "duplicate_samples": [
            {
                "token": token(seq),
                "event_id": acked.get(seq),
                "receipts": [
                    (round(at - started_epoch, 1), dl) for at, dl in receipts.get(seq, [])
                ],
            }
            for seq in list(duplicates)[:10]
        ],
        "failure_reasons": {str(k): v for k, v in reasons},
    }


# --- the report ---------------------------------------------------------------------------


def print_report(report: dict) -> None:
    samples = report["samples"]
    table = Table(
        title=f"soak on {report['store']}: samples (msgcenter: its processes summed; cores: "
        "msgcenter/relay/soak)"
    )
    for column in (
        "t s",
        "phase",
        "relay",
        "RSS MB",
        "fds",
        "db/smtp/http",
        "pg",
        "backlog",
        "retry",
        "msg/s",
        "acked",
        "p99 ms",
        "err",
        "cores",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for s in samples:
        m = msgcenter_totals(s)
        c = m["conns"]
        cores = s.get("cores", {})
        mine = sum(v for k, v in cores.items() if k.startswith(("serve", "worker")))
        table.add_row(
            f"{s['t']:.0f}",
            s["phase"],
            s["relay_mode"],
            f"{m['rss_mb']:.1f}",
            str(m["fds"]),
            f"{c['db']}/{c['smtp']}/{c['http']}",
            str(s.get("postgres", {}).get("connections", "-")),
            f"{s['queue']['backlog']:,}",
            f"{s['queue']['logs_waiting_retry']:,}",
            str(s["relay"].get("per_s", "-")),
            f"{s['intake']['acked_events']:,}",
            str(s["intake"].get("p99_ms", "-")),
            str(s["intake"]["errors"]),
            f"{mine:.2f}/{cores.get('relay', '-')}/{cores.get('soak', '-')}" if cores else "",
        )
    console.print(table)

    flat = Table(
        title=f"flat after the warm-up ({report['args']['warmup']:g} s)? at most {GROWTH_LIMIT:.0%} growth, or within the slack"
    )
    for column in ("figure", "first", "last", "max", "growth %", "slack", "verdict"):
        flat.add_column(column, justify="left" if column == "figure" else "right")
    for r in report["flatness"]:
        verdict = (
            "info" if not r["checked"] else ("[green]flat[/]" if r["ok"] else "[bold red]GROWS[/]")
        )
        flat.add_row(
            r["figure"],
            str(r.get("first")),
            str(r.get("last")),
            str(r.get("max", "")),
            str(r.get("growth_pct", "")),
            str(r.get("slack", "")),
            verdict,
        )
    console.print(flat)

    d = report["delivery"]
    checks = Table(title="delivery")
    checks.add_column("check")
    checks.add_column("figure", justify="right")
    checks.add_column("verdict")
    for name, figure, ok in report["checks"]:
        checks.add_row(name, figure, "[green]ok[/]" if ok else "[bold red]FAIL[/]")
    console.print(checks)
    console.print(
        f"acknowledged {d['acknowledged']:,} events {d['acknowledged_by_status']}; relay got "
        f"{d['relay_messages']:,} messages; stored but not acknowledged "
        f"{d['stored_not_acknowledged']} ({d['stored_not_acknowledged_at_relay']} at the relay); "
        f"drain {report['drain_s']} s"
    )
    for name, k in report["intake"].items():
        for reason, count in k["errors"].items():
            console.print(
                f"[red]{name}: {count} x {reason}[/] {k['error_samples'].get(reason, '')[:200]}"
            )
    if d["lost_samples"]:
        console.print(f"[red]lost, by kind: {d['lost_by_kind']}; e.g. {d['lost_samples']}[/]")
    if d["duplicate_samples"]:
        console.print(f"[red]duplicates, e.g. {d['duplicate_samples'][:3]}[/]")
    if d["failure_reasons"]:
        console.print(f"failure reasons seen (retried or final): {d['failure_reasons']}")
    if report.get("log_warnings_by_action"):
        console.print(
            f"server log, warnings and errors by action: {report['log_warnings_by_action']}"
        )


def verdicts(report: dict) -> list[tuple[str, str, bool]]:
    d = report["delivery"]
    acked = d["acknowledged"]
    errors = sum(sum(k["errors"].values()) for k in report["intake"].values())
    requests = sum(k["requests"] for k in report["intake"].values())
    growing = [r["figure"] for r in report["flatness"] if r["checked"] and not r["ok"]]
    return [
        ("every request acknowledged", f"{errors} of {requests:,} failed", errors == 0),
        (
            "every acknowledged event final after the drain",
            f"{d['lost_by_kind']['not_final']:,} not final",
            d["lost_by_kind"]["not_final"] == 0,
        ),
        (
            "nothing lost (acknowledged → sent → at the relay)",
            f"{d['lost']:,} of {acked:,}",
            d["lost"] == 0,
        ),
        (
            "nothing duplicated (no crash: none allowed)",
            f"{d['duplicates']:,} events, {d['duplicate_messages']:,} extra messages",
            d["duplicates"] == 0,
        ),
        (
            "flat after the warm-up",
            ", ".join(growing) or f"{sum(1 for r in report['flatness'] if r['checked'])} figures",
            bool(report["flatness"]) and not growing,
        ),
    ]


def warnings_by_action(logs: list[Path]) -> dict[str, int]:
    """Lines at warning level or above in msgcenter's logs, counted by their ``action`` key
    (the relay's outages log some; anything else deserves a look)."""
    counts: Counter = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if re.search(r"\[(warning|error|critical)", line):
                found = re.search(r"action=(\S+)", line)
                counts[found[1] if found else "(no action)"] += 1
    return dict(counts.most_common())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--duration", type=float, default=1800, help="seconds of load")
    parser.add_argument("--rate", type=float, default=300, help="events/s offered (open loop)")
    parser.add_argument(
        "--outage-every", type=float, default=300, help="seconds between relay outages (0: none)"
    )
    parser.add_argument("--outage-seconds", type=float, default=30, help="length of an outage")
    parser.add_argument(
        "--outage-kind",
        choices=["alternate", REFUSE, DOWN],
        default="alternate",
        help="refuse: RCPT answers 451; down: the relay stops listening; alternate: one then the other",
    )
    parser.add_argument("--sample-every", type=float, default=60, help="seconds between samples")
    parser.add_argument(
        "--warmup",
        type=float,
        default=300,
        help="seconds before the first sample growth is measured from",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600,
        help="seconds to wait after the load for every event to be final (retries wait "
        "processing.retry_base_seconds, 60 s by default)",
    )
    parser.add_argument(
        "--workers", type=int, help="web worker processes of exec serve (server default if unset)"
    )
    parser.add_argument(
        "--exec-workers",
        type=int,
        default=0,
        help="msgcenter exec worker processes running the workflows (0: they run in exec serve)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections of the load"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="niceness (e.g. -10) for the soak's processes and the PostgreSQL backends of its database",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=value",
        help="a variable in msgcenter's environment: any MSGCENTER_* setting, MALLOC_ARENA_MAX…",
    )
    args = parser.parse_args()
    if args.sample_every <= 0 or args.duration <= 0 or args.rate <= 0:
        parser.error("--duration, --rate and --sample-every must be positive")
    return args


def main() -> None:
    args = parse_args()
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-soak-"))
    relay_port, http_port = ib.free_port(), ib.free_port()
    # forked first, before any thread or event loop exists in this process
    relay = Relay(relay_port, workdir / "relay.tsv")
    servers = None
    booster = None
    try:
        ib.PG_DATABASE = PG_DATABASE  # fresh_database() reads it at call time
        url = ib.fresh_database(args.store, workdir)
        ib.msgcenter("exec", "publication", "load", str(PUBLICATION), "--db", url, cwd=workdir)
        env = environment(relay_port, args.log_level, args.set)
        pool_size = int(env.get("MSGCENTER_SMTP__POOL_SIZE", "8"))
        servers = Servers(url, http_port, args.workers, args.exec_workers, env)
        servers.start(workdir)
        if args.priority:
            booster = Booster(args.priority, PG_DATABASE if args.store == "postgresql" else "-")
            booster.start()
        plan = outage_plan(args.duration, args.outage_every, args.outage_seconds, args.outage_kind)
        console.print(
            f"[bold]soak on {args.store}[/]: {args.duration:g} s at {args.rate:g} events/s, "
            f"{len(plan)} relay outages of {args.outage_seconds:g} s, a sample every "
            f"{args.sample_every:g} s, warm-up {args.warmup:g} s; msgcenter {servers.roots()} "
            f"port {http_port}, relay pid {relay.pid} port {relay_port}; work directory {workdir}"
        )
        load = Load(http_port, args.rate, args.connections)
        ports = {"db": 5432, "smtp": relay_port, "http": http_port}
        sampler = Sampler(url, servers, relay, load, ports, args.rate)
        engine = sa.create_engine(url)
        durability = ib.durability(engine)
        if loadgen.uvloop is not None:
            loadgen.uvloop.install()
        run = asyncio.run(soak(args, sampler, load, plan))
        servers.stop()
        relay_stats = relay.stop()
        received, receipts = read_received(relay.path)
        delivery = check_delivery(sampler.engine, load, received, receipts, run["started_epoch"])
        summary = database_summary(url)
        sampler.engine.dispose()
        engine.dispose()
    finally:
        if booster is not None:
            booster.stop()
        if servers is not None:
            servers.stop()
        relay.stop()

    report: dict[str, Any] = {
        "bench": "soak",
        "store": args.store,
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(args.workers),
        "code": code_version(),
        "args": vars(args),
        "mix": [vars(kind) for kind in MIX],
        "durability": durability,
        "settings": {
            k: v for k, v in servers.env.items() if k.startswith("MSGCENTER_") and "SECRET" not in k
        },
        "workdir": str(workdir),
        "server_logs": {log.name: log.stat().st_size for log in servers.logs},
        "outages": plan,
        **run,
        "relay_stats": relay_stats,
        "intake": load.summary(),
        "delivery": delivery,
        "database": summary,
    }
    report["flatness"] = flatness(run["samples"], args.warmup, args.rate, pool_size)
    problems = log_problems([str(log) for log in servers.logs])
    if problems:
        report["log_problems"] = problems
        report["log_warnings_by_action"] = warnings_by_action(servers.logs)
    report["checks"] = verdicts(report)
    report["passed"] = all(ok for _, _, ok in report["checks"])
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"soak-{args.store}-{started:%Y%m%d-%H%M}.json"
    if path.exists():
        path = path.with_name(f"{path.stem}{started:%S}.json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    console.print(
        f"{'[green]passed[/]' if report['passed'] else '[bold red]FAILED[/]'}; "
        f"written to {path.relative_to(REPO)}"
    )
    if not report["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
