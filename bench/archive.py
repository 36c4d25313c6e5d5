"""Archiving benchmark: events/s (with their delivery logs) from one execution instance into the
control instance, by the database and the web methods, on PostgreSQL (SPEC §4, §6).

It writes ``--events`` final events with their delivery logs straight into a
fresh execution database, starts ``msgcenter exec serve`` on it, and for each
method registers the execution instance on a fresh control database and times
``msgcenter control archive run`` from an empty archive to the end. Results go
to ``bench/results/archive-postgresql-<YYYYMMDD-HHMM>.json``; see
``bench/README.md``.

    python bench/archive.py
    python bench/archive.py --events 200000 --methods database --page-size 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from cryptography.fernet import Fernet
from rich.table import Table

REPO = ib.BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # tests.archiving: the generator of final events

from msgcenter.store.database import Database  # noqa: E402
from tests.archiving import fill_final_events  # noqa: E402

#: every database of this bench starts so (the PostgreSQL backends serving it show the name)
DATABASE_PREFIX = "msgcenter_bench_archive"
EXEC_DATABASE = f"{DATABASE_PREFIX}_exec"
INSTANCE = "bench"
#: events written per statement while filling (to show progress)
FILL_CHUNK = 100_000
console = ib.console


def fresh_pg_database(name: str, workdir: Path) -> str:
    """Drop and create ``name``, migrate it, and return its URL."""
    admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = f"{ib.PG_SERVER}/{name}"
    ib.msgcenter("db", "upgrade", "--db", url, cwd=workdir)
    return url


def fill(url: str, events: int) -> dict:
    """Write the events and their logs, then ANALYZE (as autovacuum would after a bulk load)."""
    db = Database(url)
    start = datetime.now(UTC) - timedelta(days=30)
    began = time.monotonic()
    for first in range(1, events + 1, FILL_CHUNK):
        count = min(FILL_CHUNK, events - first + 1)
        # last changes spread evenly over four weeks, so that logs fall into several ISO weeks
        offset = timedelta(days=28) * (first - 1) / events
        fill_final_events(
            db,
            count,
            first_id=first,
            start=start + offset,
            spread=timedelta(days=28) * count / events,
        )
        console.print(f"  {first + count - 1:,} events written")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
        logs = conn.exec_driver_sql("SELECT count(*) FROM delivery_log").scalar_one()
    db.dispose()
    return {"events": events, "delivery_logs": logs, "seconds": round(time.monotonic() - began, 1)}


def run_method(
    method: str,
    exec_url: str,
    exec_port: int,
    exec_pid: int,
    args: argparse.Namespace,
    workdir: Path,
) -> dict:
    """Register the execution instance on a fresh control database and archive it all once."""
    control_url = fresh_pg_database(f"{DATABASE_PREFIX}_{method}", workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env |= {
        "MSGCENTER_CONTROL__CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "MSGCENTER_CONTROL__ARCHIVE_PAGE_SIZE": str(args.page_size),
        "MSGCENTER_CONTROL__INSTANCE_TIMEOUT_SECONDS": "60",
        "MSGCENTER_DATABASE_URL": control_url,
    }
    register = [
        "control", "instance", "add", INSTANCE, "--url", f"http://127.0.0.1:{exec_port}",
        "--login", ib.LOGIN, "--password", ib.PASSWORD, "--archive-method", method,
    ]  # fmt: skip
    if method == "database":
        register += ["--database-url", exec_url]
    _cli(register, env, workdir)
    _cli(["control", "instance", "init", INSTANCE], env, workdir)

    console.print(f"[bold]{method}[/]: archiving {args.events:,} events")
    load_before = os.getloadavg()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler, machine_before, began = CpuSampler(exec_pid), machine_cpu(), time.monotonic()
    sampler.start()
    done = subprocess.run(
        [ib.MSGCENTER, "control", "archive", "run", INSTANCE],
        capture_output=True, text=True, cwd=workdir, env=env,
    )  # fmt: skip
    wall = time.monotonic() - began
    sampled, machine = sampler.stop(), machine_cpu() - machine_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"archive run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = {
        # the archive run is the only child that ended meanwhile
        "archiver": (children_after.ru_utime + children_after.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        **sampled,
    }
    cpu["other"] = machine - sum(cpu.values())

    engine = sa.create_engine(control_url)
    with engine.connect() as conn:
        archived = conn.exec_driver_sql("SELECT count(*) FROM archived_event").scalar_one()
        logs = conn.exec_driver_sql("SELECT count(*) FROM archived_delivery_log").scalar_one()
        weeks = conn.exec_driver_sql("SELECT count(*) FROM archived_delivery").scalar_one()
    engine.dispose()
    figures = {
        "seconds": round(wall, 2),
        "events_per_second": round(archived / wall),
        "delivery_logs_per_second": round(logs / wall),
        "archived_events": archived,
        "archived_delivery_logs": logs,
        "archived_deliveries": weeks,
        "complete": archived == args.events,
        "cpu_cores": {k: round(v / wall, 2) for k, v in cpu.items()},
        "cpu_us_per_event": {k: round(v / archived * 1e6, 1) for k, v in cpu.items() if archived},
        "output": done.stdout.strip().splitlines()[-2:],
        "loadavg_before": load_before,
    }
    if not figures["complete"]:
        console.print(f"[bold red]{method}: archived {archived:,} events of {args.events:,}[/]")
    if cpu["other"] / wall > ib.BUSY_ELSEWHERE:
        console.print(
            f"[yellow]{method}: {cpu['other'] / wall:.2f} cores went to other work on the machine; "
            "the figures are not reliable[/]"
        )
    return figures


class CpuSampler(threading.Thread):
    """CPU seconds of PostgreSQL (this bench's backends and the server's own processes) and of
    the execution server's process tree, sampled while the archive runs: the archive run's
    backends exit with it, taking their CPU counts along."""

    def __init__(self, exec_pid: int) -> None:
        super().__init__(daemon=True, name="cpu-sampler")
        self.exec_pid = exec_pid
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stopping = threading.Event()
        self._sample(first=True)

    def run(self) -> None:
        while not self._stopping.wait(0.2):
            self._sample()

    def stop(self) -> dict[str, float]:
        """Stop sampling; CPU seconds used since the start by ``postgres`` and ``exec_server``."""
        self._stopping.set()
        self.join()
        self._sample()
        used = {"postgres": 0.0, "exec_server": 0.0}
        for pid, (kind, cpu) in self._last.items():
            used[kind] += cpu - self._first.get(pid, 0.0)
        return used

    def _sample(self, first: bool = False) -> None:
        table = ib.process_table()
        server = ib.descendants(table, self.exec_pid)
        for pid, (_, cpu, cmdline) in table.items():
            if pid in server:
                kind = "exec_server"
            elif ib.serves_bench(cmdline, None) or (
                cmdline.startswith("postgres") and f" {DATABASE_PREFIX}_" in cmdline
            ):
                kind = "postgres"
            else:
                continue
            if first:
                self._first[pid] = cpu
            self._last[pid] = (kind, cpu)


def machine_cpu() -> float:
    """CPU seconds the whole machine used so far (Linux /proc/stat: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run([ib.MSGCENTER, *args], capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode != 0:
        sys.exit(
            f"msgcenter {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


def print_table(report: dict) -> None:
    table = Table(title=f"archiving {report['events']:,} events on PostgreSQL")
    for column in (
        "method",
        "events/s",
        "logs/s",
        "seconds",
        "complete",
        "CPU cores",
        "CPU µs/event",
    ):
        table.add_column(column)
    for method, r in report["methods"].items():
        table.add_row(
            method,
            f"{r['events_per_second']:,}",
            f"{r['delivery_logs_per_second']:,}",
            f"{r['seconds']:.1f}",
            "yes" if r["complete"] else "[red]NO[/]",
            " ".join(f"{k} {v}" for k, v in r["cpu_cores"].items()),
            " ".join(f"{k} {v}" for k, v in r["cpu_us_per_event"].items()),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=5_000, help="control.archive_page_size")
    parser.add_argument(
        "--methods", nargs="+", choices=["database", "web"], default=["database", "web"]
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="nice value (e.g. -10) for this bench's processes and PostgreSQL backends on a shared machine",
    )
    args = parser.parse_args()

    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-bench-archive-"))
    exec_url = fresh_pg_database(EXEC_DATABASE, workdir)
    ib.msgcenter(
        "operator", "add", ib.LOGIN, "--password", ib.PASSWORD, "--rights", "mc_admin",
        "--db", exec_url, cwd=workdir,
    )  # fmt: skip
    console.print(f"writing {args.events:,} final events with their delivery logs")
    report = {
        "bench": "archive",
        "store": "postgresql",
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(1),
        "page_size": args.page_size,
        "events": args.events,
        "fill": fill(exec_url, args.events),
        "methods": {},
    }
    engine = sa.create_engine(exec_url)
    report["durability"] = ib.durability(engine)
    engine.dispose()
    port = ib.free_port()
    log = workdir / "exec-server.log"
    boosters = [
        ib.Booster(args.priority, f"{DATABASE_PREFIX}_{role}") for role in ("exec", *args.methods)
    ]
    if args.priority:
        report["priority"] = args.priority
        for booster in boosters:
            booster.start()
    try:
        with ib.server(exec_url, port, 1, log, workflows=False) as proc:
            for method in args.methods:
                report["methods"][method] = run_method(
                    method, exec_url, port, proc.pid, args, workdir
                )
                report["methods"][method]["loadavg_after"] = os.getloadavg()
    finally:
        if args.priority:
            for booster in boosters:
                booster.stop()

    ib.RESULTS_DIR.mkdir(exist_ok=True)
    path = ib.RESULTS_DIR / f"archive-postgresql-{started:%Y%m%d-%H%M}.json"
    if path.exists():
        path = path.with_name(f"{path.stem}{started:%S}.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    console.print(f"written to {path.relative_to(REPO)}")
    if not all(r["complete"] for r in report["methods"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
