"""End-to-end benchmark: from an acknowledged push to the relay's acceptance (SPEC 3.4, 3.7, 6).

For one store and one or more process layouts it creates a fresh database,
loads the ``order_confirmation`` publication, starts ``msgcenter exec serve``
(and ``msgcenter exec worker`` processes in the split layouts) against
Postfix's ``smtp-sink`` on a loopback port, and measures:

1. ``latency``: intake acknowledged -> relay accepted, p50/p95/p99, at fixed
   open-loop rates of single-event REST pushes (100 and 500 events/s);
2. ``sustained``: an open-loop ramp of single-event pushes; the highest rate
   the relay keeps accepting at (messages/s over a steady window);
3. ``batch``: 100,000 batch events pushed in 100-event REST requests as fast
   as intake takes them; the intake time and the time until the relay has
   accepted them all.

Results go to ``bench/results/e2e-<store>-<YYYYMMDD-HHMM>.json``; see
``bench/README.md``.

    python bench/e2e.py --store postgresql
    python bench/e2e.py --store sqlite --layouts single --phases latency sustained
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import json
import multiprocessing
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
import loadgen
import sqlalchemy as sa
from rich.table import Table

BENCH_DIR = ib.BENCH_DIR
REPO = BENCH_DIR.parent
RESULTS_DIR = ib.RESULTS_DIR
PUBLICATION = REPO / "tests" / "fixtures" / "order_confirmation.toml"
PG_DATABASE = "msgcenter_bench_e2e"
SETUP_RELAY = BENCH_DIR / "setup-relay.sh"
console = ib.console

#: a fixed-width placeholder for the token that makes each single-event push unique
PLACEHOLDER = "@@TOKEN@@@@@"
TOKEN_WIDTH = len(PLACEHOLDER)
#: the publication's subject is "Order {{ ctx.order.id }} confirmed, …": the token is the order id
SUBJECT_TOKEN = re.compile(rb"\nSubject: Order ([A-Za-z0-9]+) confirmed")
COUNTER = re.compile(rb"mesg=(\d+)")
MAX_CONNECTIONS = 512


def token(tag: str, i: int) -> str:
    return f"{tag}{i:0{TOKEN_WIDTH - len(tag)}d}"


# --------------------------------------------------------------------------------------
# the relay


def ensure_relay() -> str:
    """The path of smtp-sink, installing postfix first if needed (bench/setup-relay.sh)."""
    found = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None
    )
    if found:
        return found
    console.print("installing postfix for smtp-sink (bench/setup-relay.sh)")
    subprocess.run(["sh", str(SETUP_RELAY)], check=True)
    return shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """``smtp-sink -c`` on a loopback port; its running message counter is sampled with timestamps.

    With ``dump`` it also appends every message to a file (``-D``), which
    :class:`DumpTail` reads to learn when each message was accepted: smtp-sink
    writes the message before it answers ``250`` to the final dot.
    """

    def __init__(self, binary: str, port: int, workdir: Path, dump: bool = False) -> None:
        self.port = port
        # smtp-sink writes as nobody: the dump lives in a world-writable directory of its own
        # (on tmpfs when there is one, so the relay never waits on a disk)
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self.dump_path = (
            Path(tempfile.mkdtemp(prefix="msgcenter-e2e-sink-", dir=shm)) / "dump" if dump else None
        )
        command = [binary, "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to run as root
        if self.dump_path is not None:
            self.dump_path.parent.chmod(0o777)
            command += ["-D", str(self.dump_path)]
        command += [f"127.0.0.1:{port}", "1024"]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.times = array("d")
        self.counts = array("q")
        self.count = 0
        self.text = bytearray()  # anything that is not a counter (errors)
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="sink-counter").start()
        wait_port(port, self.proc)

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            now = time.monotonic()
            found = COUNTER.findall(chunk)
            if found:
                with self._changed:
                    self.count = int(found[-1])
                    self.times.append(now)
                    self.counts.append(self.count)
                    self._changed.notify_all()
            rest = COUNTER.sub(b"", chunk).replace(b"sess=", b"").strip()
            if rest and len(self.text) < 4000 and not re.fullmatch(rb"[\d\squit=\r]*", rest):
                self.text += rest + b"\n"

    def count_at(self, moment: float) -> int:
        """Messages accepted at ``moment`` (monotonic clock)."""
        i = bisect_right(self.times, moment)
        return self.counts[i - 1] if i else 0

    def time_of(self, count: int) -> float | None:
        """When the counter first reached ``count``."""
        from bisect import bisect_left

        i = bisect_left(self.counts, count)
        return self.times[i] if i < len(self.counts) else None

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def stop(self) -> None:
        ib.stop(self.proc, timeout=5)
        if self.dump_path is not None:
            shutil.rmtree(self.dump_path.parent, ignore_errors=True)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"smtp-sink exited with {proc.returncode}: {out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"smtp-sink not listening on {port} after {timeout} s")


class DumpTail(threading.Thread):
    """Follows smtp-sink's dump file and notes when each token's message shows up in it.

    It sleeps in ``inotify`` until the file changes (no polling), so its clock
    reading is within a scheduling delay of smtp-sink's write.
    """

    IN_MODIFY, IN_CREATE = 0x2, 0x100

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="dump-tail")
        self.path = path
        self.seen: dict[bytes, float] = {}
        self.duplicates = 0
        self.messages = 0
        self._stopping = threading.Event()
        self._offset = 0
        self._rest = b""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK)
        if (
            self._fd < 0
            or libc.inotify_add_watch(
                self._fd, str(path.parent).encode(), self.IN_MODIFY | self.IN_CREATE
            )
            < 0
        ):
            raise OSError(ctypes.get_errno(), "inotify")

    def run(self) -> None:
        file = None
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._fd, 65536)
            now = time.monotonic()
            if file is None:
                try:
                    file = open(self.path, "rb")  # noqa: SIM115 - kept open while tailing
                except FileNotFoundError:
                    continue
            data = file.read()
            if data:
                self._scan(data, now)
        if file is not None:
            data = file.read()
            if data:
                self._scan(data, time.monotonic())
            file.close()
        os.close(self._fd)

    def _scan(self, data: bytes, now: float) -> None:
        data = self._rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest = data
            return
        whole, self._rest = data[: cut + 1], data[cut + 1 :]
        self.messages += whole.count(b"\nX-Client-Addr: ") + whole.startswith(b"X-Client-Addr: ")
        for found in SUBJECT_TOKEN.findall(whole):
            if found in self.seen:
                self.duplicates += 1
            else:
                self.seen[found] = now

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)


# --------------------------------------------------------------------------------------
# the load: open-loop at a fixed rate, or a counted closed loop, in a child process


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

    started = time.monotonic()
    pool = _Pool(target, connections, requests)
    pool.next_request = following  # set before any connection is made
    while not pool.done.is_set():
        await asyncio.sleep(0.05)
        if time.monotonic() > deadline and pool.answers >= issued:
            pool.errors["not sent: time budget"] = requests - issued
            break
    pool.close()
    return Pushed(
        "batch",
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


# --------------------------------------------------------------------------------------
# msgcenter's processes


@dataclass
class Layout:
    name: str
    #: ``exec worker`` processes; 0 runs the workflows inside the web process
    workers: int


LAYOUTS = {
    "single": Layout("single", 0),
    "split1": Layout("split1", 1),
    "split2": Layout("split2", 2),
}


class Stack:
    """``exec serve`` (plus ``exec worker`` processes) on one database, sending to ``smtp_port``."""

    def __init__(self, url: str, workdir: Path, layout: Layout, env: dict[str, str]) -> None:
        self.url = url
        self.workdir = workdir
        self.layout = layout
        self.port = ib.free_port()
        self.env = env
        self.serve: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list[str] = []

    def start(self) -> None:
        env = dict(self.env)
        if self.layout.workers:
            env["MSGCENTER_PROCESSING__WORKFLOWS_IN_WEB_PROCESS"] = "false"
        self.serve = self._spawn(
            [
                ib.MSGCENTER,
                "exec",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                self.url,
            ],
            env,
            "serve.log",
        )
        ib.wait_healthy(self.serve, self.port, self.workdir / "serve.log")
        for i in range(self.layout.workers):
            self.workers.append(
                self._spawn(
                    [ib.MSGCENTER, "exec", "worker", "--db", self.url], env, f"worker{i}.log"
                )
            )
        self._wait_ready()

    def _spawn(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
        path = self.workdir / log
        self.logs.append(str(path))
        with path.open("wb") as out:
            return subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.workdir,
            )

    def _wait_ready(self, timeout: float = 60) -> None:
        """Wait until every process that runs the workflows has logged that its worker started."""
        logs = [self.workdir / f"worker{i}.log" for i in range(self.layout.workers)] or [
            self.workdir / "serve.log"
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in [self.serve, *self.workers]:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args[:3]} exited with {proc.returncode}; logs in {self.workdir}"
                    )
            if all("worker started" in log.read_text(errors="replace") for log in logs):
                return
            time.sleep(0.25)
        raise RuntimeError(f"workers not started after {timeout} s; logs in {self.workdir}")

    @property
    def processing_pids(self) -> list[int]:
        """The processes that run the workflows (profiled)."""
        return [w.pid for w in self.workers] or [self.serve.pid]

    def stop(self) -> None:
        for proc in [*self.workers, self.serve]:
            if proc is not None:
                ib.stop(proc)


def _process_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds used, command line) for every process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):  # ended meanwhile
            continue
        table[int(entry.name)] = (int(stat[1]), (int(stat[11]) + int(stat[12])) / tick, cmdline)
    return table


def _descendants(table: dict[int, tuple[int, float, str]], roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def cpu_snapshot(stack: Stack, sink: Sink | None) -> dict:
    """CPU seconds per process, each with the part of the machine it belongs to.

    Deltas are taken per process, so a process that ends between two
    snapshots (another session's database backend, say) cannot make a figure
    negative; the CPU it used in the interval shows under ``other``.
    """
    table = _process_table()
    roles: dict[int, str] = {}
    for pid in _descendants(table, [stack.serve.pid]):
        roles[pid] = "server"
    for pid in _descendants(table, [w.pid for w in stack.workers]):
        roles[pid] = "workers"
    if sink is not None:
        roles[sink.proc.pid] = "sink"
    for pid in _descendants(table, [os.getpid()]):
        roles.setdefault(pid, "loadgen")
    database = stack.url.rsplit("/", 1)[-1]
    for pid, (_, _, cmdline) in table.items():
        if pid in roles or not cmdline.startswith("postgres"):
            continue
        if f" {database} " in cmdline:
            roles[pid] = "postgres"
        elif not re.search(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]", cmdline):
            roles[pid] = "postgres"  # the instance's own processes (WAL writer, checkpointer…)
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return {
        "machine": machine,
        "procs": {pid: (roles.get(pid, "other"), cpu) for pid, (_, cpu, _) in table.items()},
    }


def cores(before: dict, after: dict, wall: float) -> dict:
    """Cores used over ``wall`` seconds by each part: msgcenter's web process tree (``server``),
    its ``workers``, ``postgres`` (this database's backends and the instance's own processes),
    the relay (``sink``), this bench with its pusher (``loadgen``), and everything else."""
    used = dict.fromkeys(("server", "workers", "postgres", "sink", "loadgen"), 0.0)
    for pid, (role, cpu) in after["procs"].items():
        if role != "other":
            used[role] += cpu - before["procs"].get(pid, (role, 0.0))[1]
    result = {k: v / wall for k, v in used.items()}
    machine = (after["machine"] - before["machine"]) / wall
    result["other"] = machine - sum(result.values())
    result["machine"] = machine
    return {k: round(v, 2) for k, v in result.items()}


# --------------------------------------------------------------------------------------
# the phases


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "min_ms": None}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "p50_ms": at(50),
        "p95_ms": at(95),
        "p99_ms": at(99),
        "max_ms": round(ordered[-1] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


def phase_latency(ctx: Run, rate: float, duration: float, warmup: float) -> dict:
    """Open-loop pushes at ``rate``; latency from each 201 to the relay's acceptance of its message."""
    sink = Sink(ctx.relay, ctx.smtp_port, ctx.workdir, dump=True)
    tail = DumpTail(sink.dump_path)
    tail.start()
    tag = f"L{int(rate)}x"
    try:
        before, wall = cpu_snapshot(ctx.stack, sink), time.monotonic()
        pushed: Pushed = ctx.pusher.open_loop(
            ctx.stack.port, "rt", tag, rate, warmup + duration
        ).result()
        after, wall = cpu_snapshot(ctx.stack, sink), time.monotonic() - wall
        acked = [i for i in range(pushed.total) if pushed.acked[i] == pushed.acked[i]]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(token(tag, i).encode() in tail.seen for i in acked[-50:]) and len(
                tail.seen
            ) >= len(acked):
                break
            time.sleep(0.1)
        time.sleep(0.2)
    finally:
        tail.stop()
        sink.stop()
    measured_from = pushed.started + warmup
    e2e, push_ms, missing = [], [], 0
    for i in acked:
        if pushed.scheduled[i] < measured_from:
            continue
        seen = tail.seen.get(token(tag, i).encode())
        push_ms.append(pushed.acked[i] - pushed.scheduled[i])
        if seen is None:
            missing += 1
        else:
            e2e.append(seen - pushed.acked[i])
    result = {
        "rate_offered": rate,
        "measured_s": duration,
        "warmup_s": warmup,
        "events_measured": len(push_ms),
        "acked_total": len(acked),
        "failed_requests": pushed.total - len(acked),
        "errors": pushed.errors,
        "error_samples": pushed.samples,
        "relay_seen": len(tail.seen),
        "relay_messages": tail.messages,
        "relay_duplicates": tail.duplicates,
        "missing_at_relay": missing,
        "e2e": percentiles(e2e),
        "intake": percentiles(push_ms),
        "rate_achieved": round(len(push_ms) / duration, 1),
        "connections": pushed.connections,
        "cpu_cores": cores(before, after, wall),
    }
    e = result["e2e"]
    console.print(
        f"  latency @{rate:g}/s: e2e p50 {e['p50_ms']} p95 {e['p95_ms']} p99 {e['p99_ms']} "
        f"max {e['max_ms']} ms; intake p99 {result['intake']['p99_ms']} ms; "
        f"missing {missing}, dup {tail.duplicates}; cores {result['cpu_cores']}"
    )
    return result


def phase_sustained(ctx: Run, args: argparse.Namespace) -> dict:
    """Ramp an open-loop rate of single-event pushes until the relay falls behind."""
    sink = Sink(ctx.relay, ctx.smtp_port, ctx.workdir)
    steps: list[dict] = []
    acked_total = 0
    rate = args.ramp_start
    failed: float | None = None
    best: dict | None = None
    try:
        while rate <= args.ramp_max:
            before, wall = cpu_snapshot(ctx.stack, sink), time.monotonic()
            base_count = sink.count
            pushed: Pushed = ctx.pusher.open_loop(
                ctx.stack.port, "rt", f"S{len(steps)}x", rate, args.ramp_step_seconds
            ).result()
            after, wall = cpu_snapshot(ctx.stack, sink), time.monotonic() - wall
            acked_here = sum(1 for i in range(pushed.total) if pushed.acked[i] == pushed.acked[i])
            # steady window: the last part of the step, once the rate has settled
            w0 = pushed.started + args.ramp_settle_seconds
            w1 = pushed.started + args.ramp_step_seconds
            delivered = (sink.count_at(w1) - sink.count_at(w0)) / (w1 - w0)
            acks_in_window = sum(1 for i in range(pushed.total) if w0 <= pushed.acked[i] < w1)
            backlog_start = acked_total + _acked_before(pushed, w0) - sink.count_at(w0)
            backlog_end = acked_total + _acked_before(pushed, w1) - sink.count_at(w1)
            acked_total += acked_here
            step = {
                "rate_offered": rate,
                "acked_per_s": round(acks_in_window / (w1 - w0), 1),
                "delivered_per_s": round(delivered, 1),
                "backlog_start": backlog_start,
                "backlog_end": backlog_end,
                "failed_requests": pushed.total - acked_here,
                "errors": pushed.errors,
                "connections": pushed.connections,
                "cpu_cores": cores(before, after, wall),
                "relay_count_delta": sink.count - base_count,
            }
            # kept up: the relay took (nearly) all that was offered, and what waits is
            # under half a second's worth
            kept_up = (
                delivered >= 0.95 * rate
                and backlog_end <= max(0.5 * rate, 50)
                and not pushed.errors
            )
            step["kept_up"] = kept_up
            steps.append(step)
            console.print(
                f"  ramp {rate:g}/s: acked {step['acked_per_s']}/s delivered {step['delivered_per_s']}/s "
                f"backlog {backlog_start}->{backlog_end} {'ok' if kept_up else 'BEHIND'} "
                f"cores {step['cpu_cores']}"
            )
            if kept_up:
                best = step
            if not kept_up:
                failed = rate if failed is None else min(failed, rate)
                # start the next step from an empty queue
                sink.wait_for(acked_total, args.drain_timeout)
            if failed is None:
                rate += args.ramp_increment  # still climbing
            else:
                # bisect between the best rate kept up with (or nothing) and the lowest failure
                low = best["rate_offered"] if best else 0
                if best is None and failed / 2 < args.ramp_min:
                    break
                if best is not None and failed - low <= max(0.1 * low, 50):
                    break
                rate = (low + failed) / 2
            if time.monotonic() > ctx.deadline:
                console.print("  [yellow]ramp stopped: time budget[/]")
                break
        drain_started = time.monotonic()
        drained = sink.wait_for(acked_total, args.drain_timeout)
        drain_s = time.monotonic() - drain_started
    finally:
        sink.stop()
    saturated = max(steps, key=lambda s: s["delivered_per_s"]) if steps else None
    result = {
        "steps": steps,
        "sustained_rate": best["rate_offered"] if best else None,
        "sustained_delivered_per_s": best["delivered_per_s"] if best else None,
        "max_delivered_per_s": saturated["delivered_per_s"] if saturated else None,
        "acked_total": acked_total,
        "drained": drained,
        "drain_after_ramp_s": round(drain_s, 2),
    }
    console.print(
        f"  sustained: {result['sustained_delivered_per_s']} msg/s at {result['sustained_rate']}/s offered; "
        f"max delivered {result['max_delivered_per_s']}/s; drained {drained} in {drain_s:.1f} s"
    )
    return result


def _acked_before(pushed: Pushed, moment: float) -> int:
    return sum(1 for i in range(pushed.total) if pushed.acked[i] < moment)


def phase_batch(ctx: Run, args: argparse.Namespace) -> dict:
    """Push ``--batch-events`` batch events in 100-event requests; time intake and the drain to the relay."""
    sink = Sink(ctx.relay, ctx.smtp_port, ctx.workdir)
    requests = args.batch_events // 100
    try:
        before, wall = cpu_snapshot(ctx.stack, sink), time.monotonic()
        t0 = time.monotonic()
        pushed: Pushed = ctx.pusher.closed_loop(
            ctx.stack.port, "batch", 100, requests, args.batch_connections, args.batch_timeout
        ).result()
        acked_events = pushed.acked_events
        intake_done = max((t for t in pushed.acked if t == t), default=t0)
        at_intake_end = sink.count_at(intake_done)
        drained = sink.wait_for(
            acked_events, max(1.0, args.batch_timeout - (time.monotonic() - t0))
        )
        last = sink.time_of(acked_events) if drained else None
        after, wall = cpu_snapshot(ctx.stack, sink), time.monotonic() - wall
        delivered = sink.count
    finally:
        sink.stop()
    first_accept = sink.time_of(1)
    total_s = (last - t0) if last else None
    result = {
        "events": args.batch_events,
        "acked_events": acked_events,
        "failed_requests": requests - sum(1 for t in pushed.acked if t == t),
        "errors": pushed.errors,
        "error_samples": pushed.samples,
        "connections": args.batch_connections,
        "intake_s": round(intake_done - t0, 2),
        "intake_events_per_s": round(acked_events / max(intake_done - t0, 1e-9), 1),
        "delivered_during_intake": at_intake_end,
        "first_accept_after_s": round(first_accept - t0, 2) if first_accept else None,
        "all_sent": drained,
        "delivered": delivered,
        "total_s": round(total_s, 2) if total_s else None,
        "drain_after_intake_s": round(last - intake_done, 2) if last else None,
        "delivered_per_s": round(delivered / ((last or time.monotonic()) - (first_accept or t0)), 1)
        if delivered
        else 0,
        "cpu_cores": cores(before, after, wall),
    }
    console.print(
        f"  batch {args.batch_events:,}: intake {result['intake_s']} s "
        f"({result['intake_events_per_s']:,.0f}/s), all sent {drained} after {result['total_s']} s "
        f"(drain {result['drain_after_intake_s']} s after intake), {result['delivered_per_s']}/s; "
        f"cores {result['cpu_cores']}"
    )
    return result


def phase_profile(ctx: Run, args: argparse.Namespace, rate: float) -> dict:
    """py-spy on the processing process(es) while single events come in at ``rate``."""
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        return {"skipped": "py-spy is not installed in the venv (pip install py-spy)"}
    sink = Sink(ctx.relay, ctx.smtp_port, ctx.workdir)
    out = ctx.workdir / "profile"
    out.mkdir(exist_ok=True)
    profiles = {}
    try:
        future = ctx.pusher.open_loop(ctx.stack.port, "rt", "P0x", rate, args.profile_seconds + 4)
        time.sleep(2)
        spies = []
        targets = {"processing": ctx.stack.processing_pids[0]}
        if ctx.stack.workers:
            targets["serve"] = ctx.stack.serve.pid
        for name, pid in targets.items():
            raw = out / f"{name}.txt"
            spies.append(
                (
                    name,
                    raw,
                    subprocess.Popen(
                        [
                            str(pyspy),
                            "record",
                            "-d",
                            str(args.profile_seconds),
                            "-r",
                            "100",
                            "-p",
                            str(pid),
                            "--format",
                            "raw",
                            "-o",
                            str(raw),
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
        c0, t0 = sink.count, time.monotonic()
        for name, raw, spy in spies:
            spy.wait(args.profile_seconds + 30)
            profiles[name] = (
                summarise_profile(raw)
                if raw.exists()
                else {"error": spy.stderr.read().decode(errors="replace")[-500:]}
            )
            profiles[name]["raw"] = str(raw)
        delivered = (sink.count - c0) / max(time.monotonic() - t0, 1e-9)
        pushed: Pushed = future.result()
        sink.wait_for(pushed.acked_events, args.drain_timeout)  # leave no message in flight
    finally:
        sink.stop()
    return {
        "push_errors": pushed.errors,
        "push_seconds": round(pushed.ended - pushed.started, 1),
        "rate_offered": rate,
        "seconds": args.profile_seconds,
        "delivered_per_s": round(delivered, 1),
        "profiles": profiles,
    }


def summarise_profile(path: Path, top: int = 25) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    by_thread: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        by_thread[frames[0]] += n
        own[_frame(frames[-1])] += n
        for f in {_frame(f) for f in frames[1:]}:
            inclusive[f] += n

    def share(counter: Counter) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
        "threads_pct": share(by_thread),
    }


def _frame(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    module = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in module:
            module = module.split(marker, 1)[1]
    return f"{name} ({module})"


# --------------------------------------------------------------------------------------


@dataclass
class Run:
    relay: str
    smtp_port: int
    workdir: Path
    stack: Stack
    pusher: Pusher
    deadline: float


def database_summary(url: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            events = dict(
                conn.exec_driver_sql("SELECT status, count(*) FROM event GROUP BY status").all()
            )
            logs = dict(
                conn.exec_driver_sql(
                    "SELECT status, count(*) FROM delivery_log GROUP BY status"
                ).all()
            )
            reasons = conn.exec_driver_sql(
                "SELECT failure_reason, count(*) FROM delivery_log"
                " WHERE failure_reason IS NOT NULL GROUP BY failure_reason"
                " ORDER BY count(*) DESC LIMIT 5"
            ).all()
    finally:
        engine.dispose()
    return {
        "failure_reasons": {str(k): v for k, v in reasons},
        "event_status": {str(k): v for k, v in events.items()},
        "delivery_log_status": {str(k): v for k, v in logs.items()},
    }


def environment(args: argparse.Namespace, smtp_port: int, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env.update(
        {
            "MSGCENTER_SMTP__HOST": "127.0.0.1",
            "MSGCENTER_SMTP__PORT": str(smtp_port),
            "MSGCENTER_SMTP__HELO_NAME": "bench.example.com",
            "MSGCENTER_SMTP__POOL_SIZE": str(args.pool_size),
            "MSGCENTER_PROCESSING__SEND_CONCURRENCY": str(args.send_concurrency),
            "MSGCENTER_PROCESSING__RT_CLAIM_SIZE": str(args.rt_claim),
            "MSGCENTER_PROCESSING__BATCH_CLAIM_SIZE": str(args.batch_claim),
            "MSGCENTER_SECRET_KEY": "bench-e2e-secret-key-0123456789abcdef",
            "MSGCENTER_LOGGING__LEVEL": args.log_level,
        }
    )
    if args.try_uvloop or args.try_switch_interval:
        # Experiments without touching the product: a sitecustomize module that every
        # msgcenter process imports at start (uvloop for `exec worker`, whose asyncio.run
        # otherwise uses the default loop; a shorter GIL switch interval).
        site = workdir / "site"
        site.mkdir(exist_ok=True)
        lines = ["import sys"]
        if args.try_switch_interval:
            lines.append(f"sys.setswitchinterval({args.try_switch_interval!r})")
        if args.try_uvloop:
            lines += [
                "import asyncio, uvloop",
                "asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())",
            ]
        (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
        env["PYTHONPATH"] = str(site)
    if args.poll_interval:
        env["MSGCENTER_PROCESSING__POLL_INTERVAL_SECONDS"] = str(args.poll_interval)
    for item in args.set or []:
        name, _, value = item.partition("=")
        env[name] = value
    return env


class Booster(threading.Thread):
    """Raises the scheduling priority (``--priority``) of everything this bench measures.

    On a machine shared with other work, this approximates the dedicated
    2-core machine of the targets. Linux shares the CPU between sessions
    (autogroups) before processes, so the niceness goes to the autogroup of
    each process this bench started (msgcenter's, the relay's, its own) and,
    within PostgreSQL's autogroup, to the backends serving the bench database
    (PostgreSQL's own group is left alone: other work shares it). New
    processes (database connections opened later) are caught within half a
    second.
    """

    def __init__(self, niceness: int, database: str) -> None:
        super().__init__(daemon=True, name="booster")
        self.niceness = niceness
        self.database = database
        self.boosted: set[int] = set()
        self.groups: set[str] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.boost()
            if self._stopping.wait(0.5):
                return

    def boost(self) -> None:
        table = _process_table()
        mine = _descendants(table, [os.getpid()])
        for pid, (_, _, cmdline) in table.items():
            backend = cmdline.startswith("postgres") and f" {self.database} " in cmdline
            if pid not in mine and not backend:
                continue
            # Linux keeps a nice value per thread: set each one (new threads are caught later)
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in threads:
                if tid not in self.boosted:
                    with contextlib.suppress(OSError):
                        os.setpriority(os.PRIO_PROCESS, tid, self.niceness)
                        self.boosted.add(tid)
            if pid in mine:
                with contextlib.suppress(OSError, IndexError):
                    group = Path(f"/proc/{pid}/autogroup")
                    name = group.read_text().split()[0]
                    if name not in self.groups:
                        group.write_text(str(self.niceness))
                        self.groups.add(name)

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)


def busy_elsewhere(seconds: float = 2.0) -> float:
    """Cores used by processes that are not this bench's (and not PostgreSQL's idle self) over ``seconds``."""
    mine = _descendants(_process_table(), [os.getpid()])

    def snapshot() -> tuple[float, float]:
        table = _process_table()
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        return machine, sum(cpu for pid, (_, cpu, _) in table.items() if pid in mine)

    m0, b0 = snapshot()
    time.sleep(seconds)
    m1, b1 = snapshot()
    return round(((m1 - m0) - (b1 - b0)) / seconds, 2)


def wait_quiet(limit: float, patience: float) -> float:
    """Wait up to ``patience`` seconds for the rest of the machine to use less than ``limit`` cores."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_elsewhere()
        if busy <= limit or time.monotonic() > deadline:
            if busy > limit:
                console.print(
                    f"[yellow]the machine is busy elsewhere ({busy} cores): figures will be low[/]"
                )
            return busy
        console.print(f"  waiting for a quiet machine ({busy} cores busy elsewhere)")
        time.sleep(5)


def run_layout(
    args: argparse.Namespace, layout: Layout, relay: str, pusher: Pusher, deadline: float
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"msgcenter-e2e-{layout.name}-"))
    ib.PG_DATABASE = PG_DATABASE  # fresh_database() reads it at call time
    url = ib.fresh_database(args.store, workdir)
    ib.msgcenter("exec", "publication", "load", str(PUBLICATION), "--db", url, cwd=workdir)
    smtp_port = ib.free_port()
    env = environment(args, smtp_port, workdir)
    stack = Stack(url, workdir, layout, env)
    ctx = Run(relay, smtp_port, workdir, stack, pusher, deadline)
    report: dict = {
        "layout": layout.name,
        "workers": layout.workers,
        "settings": {
            k: v for k, v in env.items() if k.startswith("MSGCENTER_") and "SECRET" not in k
        },
        "workdir": str(workdir),
        "phases": {},
    }
    engine = sa.create_engine(url)
    report["durability"] = ib.durability(engine)
    engine.dispose()
    console.print(
        f"[bold]{args.store} / {layout.name}[/] ({layout.workers or 'no'} worker processes), logs in {workdir}"
    )
    booster = None
    if args.priority:
        booster = Booster(args.priority, PG_DATABASE if args.store == "postgresql" else "-")
        booster.start()
        report["priority"] = args.priority
    try:
        report["busy_elsewhere_before"] = wait_quiet(args.quiet_cores, args.wait_quiet)
        stack.start()
        console.print(f"  serve pid {stack.serve.pid}, workers {[w.pid for w in stack.workers]}")
        phases = report["phases"]
        if "latency" in args.phases:
            # a short unmeasured warm-up (connections, compiled template) before the first rate
            phase_latency(ctx, 50, 1, 1)
            for rate in args.rates:
                phases[f"latency_{rate:g}"] = phase_latency(
                    ctx, rate, args.latency_seconds, args.warmup
                )
        if "sustained" in args.phases and time.monotonic() < deadline:
            phases["sustained"] = phase_sustained(ctx, args)
        if "profile" in args.phases and time.monotonic() < deadline:
            rate = args.profile_rate or (phases.get("sustained", {}).get("sustained_rate") or 1000)
            phases["profile"] = phase_profile(ctx, args, rate)
        if "batch" in args.phases and time.monotonic() < deadline:
            phases["batch"] = phase_batch(ctx, args)
    finally:
        stack.stop()
        if booster is not None:
            booster.stop()
    report["database"] = database_summary(url)
    report["server_logs"] = stack.logs
    for log in stack.logs:
        text = Path(log).read_text(errors="replace")
        problems = [
            line
            for line in text.splitlines()
            if re.search(r"\[(error|warning|critical)|Traceback", line, re.I)
        ]
        if problems:
            report.setdefault("log_problems", {})[Path(log).name] = problems[:5]
    if args.store == "sqlite":
        for f in workdir.glob("bench.db*"):
            f.unlink()
    return report


def print_table(report: dict) -> None:
    table = Table(title=f"end to end on {report['store']}")
    for column in ("layout", "measure", "figure", "detail"):
        table.add_column(column, justify="left")
    for layout in report["layouts"]:
        phases = layout["phases"]
        for name, r in phases.items():
            if name.startswith("latency_"):
                e = r["e2e"]
                table.add_row(
                    layout["layout"],
                    f"e2e latency @{r['rate_offered']:g}/s",
                    f"p50 {e['p50_ms']} / p95 {e['p95_ms']} / p99 {e['p99_ms']} ms",
                    f"max {e['max_ms']} ms, intake p99 {r['intake']['p99_ms']} ms, n={r['events_measured']}, "
                    f"missing {r['missing_at_relay']}, cores srv/wrk/pg/sink {r['cpu_cores']['server']}/"
                    f"{r['cpu_cores']['workers']}/{r['cpu_cores']['postgres']}/{r['cpu_cores']['sink']}",
                )
            elif name == "sustained":
                table.add_row(
                    layout["layout"],
                    "sustained e2e",
                    f"{r['sustained_delivered_per_s']} msg/s",
                    f"kept up at {r['sustained_rate']}/s offered; best delivered {r['max_delivered_per_s']}/s",
                )
            elif name == "batch":
                table.add_row(
                    layout["layout"],
                    f"{r['events']:,} batch events",
                    f"{r['total_s']} s total"
                    if r["all_sent"]
                    else f"NOT all sent ({r['delivered']:,})",
                    f"intake {r['intake_s']} s ({r['intake_events_per_s']:,.0f}/s), drain +{r['drain_after_intake_s']} s, "
                    f"{r['delivered_per_s']} msg/s",
                )
            elif name == "profile":
                table.add_row(
                    layout["layout"],
                    f"profile @{r.get('rate_offered')}/s",
                    f"{r.get('delivered_per_s')} msg/s",
                    "see JSON",
                )
    console.print(table)


def code_version() -> dict:
    """The commit measured, and whether the work tree differed from it (uncommitted changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_uncommitted": bool(changed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=["single", "split1"])
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=["latency", "sustained", "batch", "profile"],
        default=["latency", "sustained", "batch"],
    )
    parser.add_argument("--rates", nargs="+", type=float, default=[100, 500])
    parser.add_argument("--latency-seconds", type=float, default=15)
    parser.add_argument(
        "--warmup", type=float, default=2, help="unmeasured seconds at the start of each rate"
    )
    parser.add_argument("--ramp-start", type=float, default=500)
    parser.add_argument("--ramp-min", type=float, default=50)
    parser.add_argument("--ramp-increment", type=float, default=500)
    parser.add_argument("--ramp-max", type=float, default=6000)
    parser.add_argument("--ramp-step-seconds", type=float, default=8)
    parser.add_argument("--ramp-settle-seconds", type=float, default=3)
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--batch-events", type=int, default=100_000)
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument(
        "--batch-timeout", type=float, default=150, help="seconds from the first push"
    )
    parser.add_argument(
        "--profile-rate", type=float, help="events/s while profiling (default: the sustained rate)"
    )
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only threads holding the GIL (Python CPU), not those waiting on the database",
    )
    parser.add_argument("--pool-size", type=int, default=8, help="MSGCENTER_SMTP__POOL_SIZE")
    parser.add_argument(
        "--send-concurrency", type=int, default=32, help="MSGCENTER_PROCESSING__SEND_CONCURRENCY"
    )
    parser.add_argument(
        "--rt-claim", type=int, default=200, help="MSGCENTER_PROCESSING__RT_CLAIM_SIZE"
    )
    parser.add_argument(
        "--batch-claim", type=int, default=1000, help="MSGCENTER_PROCESSING__BATCH_CLAIM_SIZE"
    )
    parser.add_argument(
        "--poll-interval", type=float, help="MSGCENTER_PROCESSING__POLL_INTERVAL_SECONDS"
    )
    parser.add_argument(
        "--try-uvloop",
        action="store_true",
        help="experiment: run every msgcenter process on uvloop (via sitecustomize)",
    )
    parser.add_argument(
        "--try-switch-interval",
        type=float,
        metavar="SECONDS",
        help="experiment: sys.setswitchinterval in every msgcenter process (default 0.005)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--set", action="append", metavar="MSGCENTER_X=value", help="any other setting"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="niceness (e.g. -10, needs root) for the measured processes on a shared machine",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="seconds to wait, before each layout, for other processes to calm down",
    )
    parser.add_argument(
        "--quiet-cores", type=float, default=0.2, help="what counts as quiet (cores used elsewhere)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=570,
        help="seconds for the whole run (phases are skipped past it)",
    )
    args = parser.parse_args()

    started = datetime.now()
    relay = ensure_relay()
    pusher = Pusher()
    if args.wait_quiet:
        wait_quiet(args.quiet_cores, args.wait_quiet)
    deadline = time.monotonic() + args.budget
    report = {
        "bench": "e2e",
        "store": args.store,
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(None),
        "code": code_version(),
        "relay": f"{relay} (postfix smtp-sink), -c counters; -D dump tailed with inotify for latency",
        "args": {k: v for k, v in vars(args).items()},
        "layouts": [],
    }
    try:
        for name in args.layouts:
            if time.monotonic() > deadline:
                console.print(f"[yellow]layout {name} skipped: time budget[/]")
                continue
            report["layouts"].append(run_layout(args, LAYOUTS[name], relay, pusher, deadline))
    finally:
        pusher.close()
    report["elapsed_s"] = round((datetime.now() - started).total_seconds(), 1)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"e2e-{args.store}-{started:%Y%m%d-%H%M}.json"
    if path.exists():
        path = path.with_name(f"{path.stem}{started:%S}.json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    console.print(f"written to {path.relative_to(REPO)} in {report['elapsed_s']} s")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
