"""Intake benchmark: events/s and latency of SOAP and REST pushes (SPEC 3.2, 6).

For one store it creates a fresh database, adds an operator, starts
``msgcenter exec serve`` on a free loopback port, drives each scenario with
``loadgen`` and checks that the ``event`` table grew by at least the number of
events whose ids were acknowledged. Results go to
``bench/results/intake-<store>-<YYYYMMDD-HHMM>.json``.

    python bench/intake.py --store postgresql --duration 20 --workers 2
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import loadgen
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def write_results(name: str, report: dict, started: datetime) -> Path:
    """Write ``report`` as ``bench/results/<name>-<YYYYMMDD-HHMM>.json`` (a second run in the
    same minute gets the seconds too, so that both are kept); its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{started:%Y%m%d-%H%M}.json"
    if path.exists():
        path = path.with_name(f"{path.stem}{started:%S}.json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


MSGCENTER = str(Path(sys.executable).with_name("msgcenter"))
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_DATABASE = "msgcenter_bench"
LOGIN, PASSWORD = "bench", "benchpw"
#: cores used outside the server, PostgreSQL and the load generator above which a run is suspect
BUSY_ELSEWHERE = 0.25

SOAP_EVENT = (
    '<rtEvent type="order_confirmation" email="ann@example.com" wishedChannel="0"'
    ' emailFormat="2" externalId="42"><ctx><client firstname="Ann" lastname="Lee"/>'
    '<order id="123" total="42.50"><article sku="A1" qty="1"/><article sku="B2" qty="2"/>'
    "</order></ctx></rtEvent>"
)
SOAP_ENVELOPE = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:urn="urn:nms:rtEvent"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>'
)
SOAP_TOKEN = f"<urn:sessiontoken>{LOGIN}/{PASSWORD}</urn:sessiontoken>"
REST_EVENT = {
    "type": "order_confirmation",
    "email": "ann@example.com",
    "external_id": "42",
    "ctx": {
        "client": {"firstname": "Ann", "lastname": "Lee"},
        "order": {
            "id": "123",
            "total": "42.50",
            "article": [{"sku": "A1", "qty": 1}, {"sku": "B2", "qty": 2}],
        },
    },
}

# Wide enough for the results table when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 130)


def soap_target(port: int, batch: int) -> loadgen.Target:
    """``PushEvent`` (batch 1) or ``PushEvents`` with ``batch`` events."""
    if batch == 1:
        action = "PushEvent"
        call = (
            f"<urn:PushEvent>{SOAP_TOKEN}<urn:domEvent>{SOAP_EVENT}</urn:domEvent></urn:PushEvent>"
        )
    else:
        action = "PushEvents"
        call = (
            f"<urn:PushEvents>{SOAP_TOKEN}<urn:domEventCollection><Events>"
            f"{SOAP_EVENT * batch}</Events></urn:domEventCollection></urn:PushEvents>"
        )
    return loadgen.Target(
        host="127.0.0.1",
        port=port,
        method="POST",
        path="/nl/jsp/soaprouter.jsp",
        headers=(
            ("SOAPAction", f'"nms:rtEvent#{action}"'),
            ("Content-Type", "text/xml; charset=utf-8"),
        ),
        body=SOAP_ENVELOPE.format(call).encode(),
        status=200,
        expect="soap",
        events=batch,
    )


def rest_target(port: int, batch: int, events: list[dict] | None = None) -> loadgen.Target:
    """One JSON event (batch 1) or a JSON list of ``batch`` events (``events``, or the sample
    event repeated)."""
    events = events or [REST_EVENT] * batch
    doc = events[0] if batch == 1 else events
    basic = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    return loadgen.Target(
        host="127.0.0.1",
        port=port,
        method="POST",
        path="/api/v1/events/rt",
        headers=(("Authorization", f"Basic {basic}"), ("Content-Type", "application/json")),
        body=json.dumps(doc, separators=(",", ":")).encode(),
        status=201,
        expect="rest",
        events=batch,
    )


SCENARIOS: dict[str, Callable[[int], loadgen.Target]] = {
    "soap-single": lambda port: soap_target(port, 1),
    "soap-batch100": lambda port: soap_target(port, 100),
    "rest-single": lambda port: rest_target(port, 1),
    "rest-batch100": lambda port: rest_target(port, 100),
}


def fresh_database(store: str, workdir: Path) -> str:
    """Create an empty, migrated database and return its URL."""
    if store == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
        admin.dispose()
        url = f"{PG_SERVER}/{PG_DATABASE}"
    # Run in the work directory so that no ./msgcenter.toml is picked up.
    msgcenter("db", "upgrade", "--db", url, cwd=workdir)
    msgcenter(
        "operator",
        "add",
        LOGIN,
        "--password",
        PASSWORD,
        "--rights",
        "mc_push,mc_admin",
        "--db",
        url,
        cwd=workdir,
    )
    return url


def msgcenter(*args: str, cwd: Path) -> None:
    """Run one ``msgcenter`` command, failing loudly with its output."""
    done = subprocess.run([MSGCENTER, *args], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        sys.exit(
            f"msgcenter {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(
    url: str, port: int, workers: int | None, log: Path, *, workflows: bool = True
) -> Iterator[subprocess.Popen]:
    """Run ``msgcenter exec serve`` until the block ends, whatever happens in it.

    The server sees no ``MSGCENTER_*`` variable of the caller's, so that runs
    compare; ``workflows=False`` keeps the processing workflows out of it.
    """
    command = [MSGCENTER, "exec", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", url]
    if workers:
        command += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env["MSGCENTER_PROCESSING__WORKFLOWS_IN_WEB_PROCESS"] = "true" if workflows else "false"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log.parent,
            env=env,
        )
    try:
        wait_healthy(proc, port, log)
        yield proc
    finally:
        stop(proc)


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the server's process group, then SIGKILL it after ``timeout``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def count_events(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM event")).scalar_one()


def durability(engine: sa.Engine) -> dict[str, str]:
    """The database settings that decide whether an acknowledged id survives a crash."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # synchronous is per connection and set by the server; journal_mode persists.
            return {"journal_mode": conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()}
        return {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("synchronous_commit", "fsync", "server_version")
        }


def process_table() -> dict[int, tuple[int, float, str]]:
    """pid → (parent pid, CPU seconds used so far, command line) of every process (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        table[int(entry.name)] = (int(stat[1]), (int(stat[11]) + int(stat[12])) / tick, cmdline)
    return table


def descendants(table: dict[int, tuple[int, float, str]], root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def serves_bench(cmdline: str, database: str | None) -> bool:
    """Whether a process is PostgreSQL working for the bench: a backend connected to
    ``database`` or one of the server's own processes (WAL writer, checkpointer…)."""
    if not cmdline.startswith("postgres") and "/bin/postgres " not in cmdline:
        return False
    # Backends show their client as host(port); the server's own processes do not.
    return "(" not in cmdline or (database is not None and f" {database} " in cmdline)


def cpu_seconds(server_pid: int, database: str | None) -> dict[str, float]:
    """CPU seconds used so far by the server's process tree, by PostgreSQL for the
    bench (see ``serves_bench``), and by the whole machine."""
    table = process_table()
    server = sum(table[pid][1] for pid in descendants(table, server_pid) if pid in table)
    postgres = sum(cpu for _, cpu, cmdline in table.values() if serves_bench(cmdline, database))
    # First line of /proc/stat: user nice system idle iowait irq softirq (steal…)
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return {"server": server, "postgres": postgres, "machine": machine}


def web_memory(server_pid: int) -> list[dict]:
    """RSS and peak RSS (``VmHWM``) in MB of each web process in the server's tree: the
    server itself, or with ``--workers`` the ``exec serve`` processes it runs (it then only
    watches them, and is left out)."""
    table = process_table()
    tree = descendants(table, server_pid)
    serving = [pid for pid in tree if pid in table and "exec serve" in table[pid][2]]
    parents = {table[pid][0] for pid in serving}
    memory = []
    for pid in sorted(pid for pid in serving if pid not in parents):
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:  # the process ended meanwhile
            continue
        kib = {
            line.split(":")[0]: int(line.split()[1])
            for line in status
            if line[:5] in ("VmRSS", "VmHWM")
        }
        memory.append(
            {
                "pid": pid,
                "rss_mb": round(kib["VmRSS"] / 1024, 1),
                "peak_mb": round(kib["VmHWM"] / 1024, 1),
            }
        )
    return memory


class Booster(threading.Thread):
    """Keeps everything the bench measures at a raised scheduling priority.

    On a machine shared with other work this approximates a dedicated one:
    this process and its children (server, load generator) and the PostgreSQL
    backends serving the bench database get the CPU first. Linux keeps a nice value per
    thread, so every thread is set, and new ones are caught within half a
    second.
    """

    def __init__(self, niceness: int, database: str | None) -> None:
        super().__init__(daemon=True, name="booster")
        self.niceness = niceness
        self.database = database
        self.boosted: set[int] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        while True:
            table = process_table()
            mine = descendants(table, os.getpid())
            for pid, (_, _, cmdline) in table.items():
                # Not PostgreSQL's own processes: the postmaster would hand its
                # priority to every backend it forks, the bench's or not, for good.
                backend = self.database is not None and f" {self.database} " in cmdline
                if pid in mine or (backend and cmdline.startswith("postgres")):
                    self._boost(pid)
            if self._stopping.wait(0.5):
                return

    def _boost(self, pid: int) -> None:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return
        for tid in tids:
            if tid not in self.boosted:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, self.niceness)
                    self.boosted.add(tid)

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)


def run_scenario(
    name: str, port: int, engine: sa.Engine, proc: subprocess.Popen, args: argparse.Namespace
) -> dict:
    """Load one scenario and check what was acknowledged against what was stored.

    CPU is given in cores over the whole run (warm-up included): the server's
    process tree, the load generator, PostgreSQL, and the rest of the machine
    (the kernel, and anything else running: more than a little of it makes
    the figures unreliable).
    """
    target = SCENARIOS[name](port)
    before_rows = count_events(engine)
    database = PG_DATABASE if engine.dialect.name == "postgresql" else None
    cpu_before, wall = cpu_seconds(proc.pid, database), time.monotonic()
    result = loadgen.run(target, args.connections, args.duration, args.warmup, args.procs)
    wall = time.monotonic() - wall
    cpu = {k: (v - cpu_before[k]) / wall for k, v in cpu_seconds(proc.pid, database).items()}
    cpu["loadgen"] = result.client_cpu / wall
    cpu["other"] = cpu.pop("machine") - cpu["server"] - cpu["postgres"] - cpu["loadgen"]
    stored = count_events(engine) - before_rows
    figures = result.summary()
    figures["stored_delta"] = stored
    figures["stored_ok"] = stored >= result.acknowledged
    figures["cpu_cores"] = {k: round(v, 2) for k, v in cpu.items()}
    # CPU per event is far less sensitive to a busy machine than events/s.
    figures["server_cpu_us_per_event"] = (
        round(cpu["server"] * wall / result.acknowledged * 1e6) if result.acknowledged else None
    )
    figures["web_memory"] = web_memory(proc.pid)
    if not figures["stored_ok"]:
        console.print(
            f"[bold red]MISMATCH in {name}: {result.acknowledged} event ids acknowledged "
            f"but the event table grew by only {stored}[/]"
        )
    if cpu["other"] > BUSY_ELSEWHERE:
        console.print(
            f"[yellow]{name}: {cpu['other']:.2f} cores went to other work on the machine; "
            "the figures are not reliable[/]"
        )
    return figures


def machine_info(workers: int | None) -> dict:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "server_workers": workers or "default",
        "loadavg_before": os.getloadavg(),
        "loadgen_uvloop": loadgen.uvloop is not None,
    }


def print_table(store: str, report: dict) -> None:
    workflows = "with" if report["workflows_in_server"] else "without"
    workers = report["machine"]["server_workers"]
    table = Table(
        title=f"intake on {store}, {workers} workers, {workflows} workflows in the server"
    )
    columns = (
        "scenario",
        "events/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "acked",
        "stored",
        "srv µs/event",
        "cores srv/pg/gen/other",
        "web MB (peak)",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, r in report["scenarios"].items():
        cores = r["cpu_cores"]
        table.add_row(
            name,
            f"{r['events_per_s']:,.0f}",
            f"{r['requests_per_s']:,.0f}",
            f"{r['p50_ms']}",
            f"{r['p99_ms']}",
            f"[red]{r['errors']}[/]" if r["errors"] else "0",
            f"{r['acknowledged']:,}",
            f"{r['stored_delta']:,}" if r["stored_ok"] else f"[bold red]{r['stored_delta']:,}[/]",
            f"{r['server_cpu_us_per_event']}",
            "/".join(str(cores[k]) for k in ("server", "postgres", "loadgen", "other")),
            " ".join(f"{m['rss_mb']:.0f} ({m['peak_mb']:.0f})" for m in r["web_memory"]),
        )
    console.print(table)
    console.print(f"durability: {report['durability']}")
    for name, r in report["scenarios"].items():
        for reason, count in r["error_kinds"].items():
            sample = r["error_samples"].get(reason, "")[:200]
            console.print(f"[red]{name}: {count} x {reason}[/] {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds per scenario"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument(
        "--workers", type=int, help="server worker processes (server default if unset)"
    )
    parser.add_argument(
        "--intake-only",
        action="store_true",
        help="keep the processing workflows out of the server (by default they run in it)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="nice value (e.g. -10) for the server, PostgreSQL and the load generator,"
        " for a machine shared with other work; 0 leaves priorities alone",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    args = parser.parse_args()

    started = datetime.now()
    # The directory outlives the run so that the server log can be read after it.
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-bench-"))
    log = workdir / "server.log"
    try:
        url = fresh_database(args.store, workdir)
        engine = sa.create_engine(url)
        port = free_port()
        report = {
            "bench": "intake",
            "store": args.store,
            "started": started.isoformat(timespec="seconds"),
            "machine": machine_info(args.workers),
            "durability": durability(engine),
            "workflows_in_server": not args.intake_only,
            "priority": args.priority,
            "server_log": str(log),
            "scenarios": {},
        }
        with server(url, port, args.workers, log, workflows=not args.intake_only) as proc:
            console.print(f"server pid {proc.pid} on port {port}, log {log}")
            database = PG_DATABASE if args.store == "postgresql" else None
            booster = Booster(args.priority, database) if args.priority else None
            if booster:
                booster.start()
            for name in args.scenarios:
                console.print(
                    f"[bold]{name}[/]: {args.warmup:g} s warm-up, {args.duration:g} s measured"
                )
                report["scenarios"][name] = run_scenario(name, port, engine, proc, args)
            if booster:
                booster.stop()
        engine.dispose()
    finally:
        for db_file in workdir.glob("bench.db*"):
            db_file.unlink()

    path = write_results(f"intake-{args.store}", report, started)
    print_table(args.store, report)
    console.print(f"written to {path.relative_to(BENCH_DIR.parent)}")
    scenarios = report["scenarios"].values()
    if any(not r["stored_ok"] or r["errors"] for r in scenarios):
        sys.exit(1)


if __name__ == "__main__":
    main()
