"""Console and report bench: the time of every report and of the archived-event search over a
30-day period, with 1,000,000 archived events (and their delivery logs) on PostgreSQL (SPEC §4).

How the archive is filled: ``--events`` final events are written straight into
a fresh execution database (``tests/archiving.py``: ``fill_final_events``,
created evenly over the last 30 days), then varied by a few statements (five
event types, external ids, queuing and sending times spread over two decades)
and given queue-size samples (one per queue and minute). A fresh control
database archives them once with ``msgcenter control archive run`` (database
method): the archived rows, the report aggregates and the samples are exactly
those the archiving run maintains in production, and the run's own figures
are reported too. Then ``msgcenter control serve`` runs on the control
database, and each request is made ``--runs`` times after one warm-up; the
time reported is the HTTP round trip on loopback measured by the client, an
upper bound of the server's time. Results go to
``bench/results/console-postgresql-<YYYYMMDD-HHMM>.json``; the bench databases
are dropped at the end. See ``bench/README.md``.

    python bench/console.py --priority -10
    python bench/console.py --events 100000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from cryptography.fernet import Fernet
from rich.table import Table

REPO = ib.BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # tests.archiving: the generator of final events

from msgcenter.store.database import Database  # noqa: E402
from tests.archiving import fill_final_events  # noqa: E402

DATABASE_PREFIX = "msgcenter_bench_console"
EXEC_DATABASE = f"{DATABASE_PREFIX}_exec"
CONTROL_DATABASE = f"{DATABASE_PREFIX}_control"
INSTANCE = "bench"
ADMIN = ("bench-admin", "bench-admin-password")
FILL_CHUNK = 100_000
DAYS = 30
#: every request should answer within this (SPEC §6 target of the console and reports)
TARGET_MS = 200
console = ib.console

#: make the history look like a real one: five types, external ids, varied times
VARY = [
    "UPDATE event SET type = (ARRAY['order_confirmation', 'password_reset', 'shipping_notice', "
    "'invoice', 'welcome'])[1 + id % 5], external_id = CASE WHEN id % 10 = 0 THEN 'ext-' || id END",
    # queuing 0-300 ms; sending 10 ms to ~20 s, log-spread
    "UPDATE delivery_log SET created = created + (id % 101) * interval '3 ms', "
    "sent_at = CASE WHEN sent_at IS NOT NULL THEN created + (id % 101) * interval '3 ms' "
    "+ power(2000, (id % 997) / 996.0) * interval '10 ms' END",
]


def fresh(name: str, workdir: Path) -> str:
    admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = f"{ib.PG_SERVER}/{name}"
    ib.msgcenter("db", "upgrade", "--db", url, cwd=workdir)
    return url


def drop(*names: str) -> None:
    admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def fill(url: str, events: int) -> dict[str, Any]:
    """The execution database's history: events over the last 30 days, varied, with samples."""
    db = Database(url)
    now = datetime.now(UTC)
    start = now - timedelta(days=DAYS)
    began = time.monotonic()
    for first in range(1, events + 1, FILL_CHUNK):
        count = min(FILL_CHUNK, events - first + 1)
        offset = timedelta(days=DAYS - 1) * (first - 1) / events
        fill_final_events(
            db,
            count,
            first_id=first,
            start=start + offset,
            spread=timedelta(days=DAYS - 1) * count / events,
        )
        console.print(f"  {first + count - 1:,} events written")
    with db.write() as conn:
        for statement in VARY:
            conn.execute(sa.text(statement))
        conn.execute(
            sa.text(
                "INSERT INTO stats_sample (at, queue, pending_events, pending_messages, "
                "events_received, messages_sent, messages_failed) "
                "SELECT CAST(:start AS timestamptz) + g * interval '1 minute', q, "
                "(g * 37) % 500, (g * 11) % 300, g % 60, g % 55, g % 3 "
                "FROM generate_series(0, :minutes - 1) AS g, (VALUES ('rt'), ('batch')) AS v(q)"
            ),
            {"start": start, "minutes": DAYS * 24 * 60},
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        samples = conn.exec_driver_sql("SELECT count(*) FROM stats_sample").scalar_one()
    db.dispose()
    return {
        "events": events,
        "stats_samples": samples,
        "seconds": round(time.monotonic() - began, 1),
    }


def archive(exec_url: str, exec_port: int, control_url: str, workdir: Path) -> dict[str, Any]:
    """Register the execution instance on the control database and archive it all once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env |= {
        "MSGCENTER_CONTROL__CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "MSGCENTER_CONTROL__INSTANCE_TIMEOUT_SECONDS": "60",
        "MSGCENTER_DATABASE_URL": control_url,
    }
    for command in (
        ["control", "instance", "add", INSTANCE, "--url", f"http://127.0.0.1:{exec_port}",
         "--login", ib.LOGIN, "--password", ib.PASSWORD, "--archive-method", "database",
         "--database-url", exec_url],
        ["control", "instance", "init", INSTANCE],
        ["operator", "add", ADMIN[0], "--password", ADMIN[1], "--rights", "mc_admin"],
    ):  # fmt: skip
        done = subprocess.run(
            [ib.MSGCENTER, *command], capture_output=True, text=True, cwd=workdir, env=env
        )
        if done.returncode != 0:
            sys.exit(f"msgcenter {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    began = time.monotonic()
    done = subprocess.run(
        [ib.MSGCENTER, "control", "archive", "run", INSTANCE],
        capture_output=True, text=True, cwd=workdir, env=env,
    )  # fmt: skip
    wall = time.monotonic() - began
    if done.returncode != 0:
        sys.exit(f"archive run failed:\n{done.stdout}{done.stderr}")
    engine = sa.create_engine(control_url)
    # as autovacuum would after the bulk load (outside a transaction, which would roll it back)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        counts = {
            table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in (
                "archived_event",
                "archived_delivery_log",
                "archived_stats_sample",
                "report_hour",
                "report_queue_hour",
            )
        }
    engine.dispose()
    return {
        "seconds": round(wall, 1),
        "events_per_second": round(counts["archived_event"] / wall),
        "rows": counts,
        "output": done.stdout.strip().splitlines()[-1:],
    }


def requests(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, path, query) of every timed request, over the last 30 days."""
    month = {"from": (now - timedelta(days=DAYS)).isoformat(), "to": now.isoformat()}
    reports = "/api/v1/reports"
    search = "/api/v1/archive/events"
    return [
        ("service level, hourly", f"{reports}/service-level", month),
        ("service level, daily", f"{reports}/service-level", {**month, "granularity": "day"}),
        ("service level, one instance, email", f"{reports}/service-level",
         {**month, "instance": INSTANCE, "channel": "email"}),
        ("service level, one type", f"{reports}/service-level", {**month, "type": "invoice"}),
        ("service level, CSV", f"{reports}/service-level", {**month, "format": "csv"}),
        ("processing time, hourly", f"{reports}/processing-time", month),
        ("processing time, daily", f"{reports}/processing-time", {**month, "granularity": "day"}),
        ("processing time, CSV", f"{reports}/processing-time", {**month, "format": "csv"}),
        ("event history, daily", f"{reports}/event-history", {**month, "granularity": "day"}),
        ("event history, hourly", f"{reports}/event-history", {**month, "granularity": "hour"}),
        ("event history, weekly, CSV", f"{reports}/event-history",
         {**month, "granularity": "week", "format": "csv"}),
        ("search: newest 50", search, month),
        ("search: 500, one type", search, {**month, "type": "welcome", "limit": 500}),
        ("search: delivery_failed", search, {**month, "status": "delivery_failed"}),
        ("search: not_taken_into_account, one type", search,
         {**month, "status": "not_taken_into_account", "type": "invoice"}),
        ("search: expired (none)", search, {**month, "status": "expired"}),
        ("search: by address", search, {"address": "user123457@example.com"}),
        ("search: by external id", search, {"external_id": "ext-654320"}),
        ("search: one instance, one day", search,
         {"instance": INSTANCE, "from": (now - timedelta(days=3)).isoformat(),
          "to": (now - timedelta(days=2)).isoformat()}),
        ("event with its history", f"{search}/{INSTANCE}/123450", {}),
        ("metrics (indicators read each time)", "/metrics", {}),
    ]  # fmt: skip


def console_pages(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, path, query) of every timed console page, as a logged-in operator sees them."""
    month = {
        "start": (now - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M"),
        "end": now.strftime("%Y-%m-%dT%H:%M"),
    }
    return [
        ("console: dashboard", "/console/", {}),
        ("console: execution instances", "/console/instances", {}),
        ("console: one instance (archive state)", f"/console/instances/{INSTANCE}", {}),
        ("console: templates", "/console/templates", {}),
        ("console: archived events, newest", "/console/archive/events", {}),
        ("console: archived events, 30 days, one status", "/console/archive/events",
         {**month, "status": "delivery_failed"}),
        ("console: archived events, by address", "/console/archive/events",
         {"address": "user123457@example.com"}),
        ("console: an archived event", f"/console/archive/events/{INSTANCE}/123450", {}),
        ("console: service level, 30 days hourly", "/console/reports/service-level", month),
        ("console: service level, 30 days daily", "/console/reports/service-level",
         {**month, "granularity": "day"}),
        ("console: processing time, 30 days hourly", "/console/reports/processing-time", month),
        ("console: event history, 30 days daily", "/console/reports/event-history",
         {**month, "granularity": "day"}),
        ("console: service level CSV, 30 days", "/console/reports/service-level/csv", month),
    ]  # fmt: skip


def log_in(client: httpx.Client) -> None:
    """Log ``client`` in to the console as the bench's operator (its cookies keep the session)."""
    form = client.get("/console/login").text
    nonce = form.split('name="nonce" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/console/login", data={"login": ADMIN[0], "password": ADMIN[1], "nonce": nonce}
    )
    if answer.status_code != 303:
        sys.exit(f"console login: {answer.status_code} {answer.text[:500]}")


def timed(
    client: httpx.Client, requests: list[tuple[str, str, dict[str, Any]]], runs: int
) -> list[dict[str, Any]]:
    """Each request once to warm up, then ``runs`` times: the median and the slowest."""
    results = []
    for label, path, params in requests:
        answer = client.get(path, params=params)
        if answer.status_code != 200:
            sys.exit(f"{label}: {answer.status_code} {answer.text[:500]}")
        size = len(answer.content)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            answer = client.get(path, params=params)
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, answer.text
        results.append(
            {
                "request": label,
                "path": path,
                "params": params,
                "bytes": size,
                "ms_median": round(statistics.median(times), 1),
                "ms_max": round(max(times), 1),
                "within_target": max(times) < TARGET_MS,
            }
        )
        console.print(f"  {label}: {statistics.median(times):.1f} ms (max {max(times):.1f})")
    return results


def time_requests(port: int, runs: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, auth=ADMIN, timeout=120) as client:
        results = timed(client, requests(now), runs)
    with httpx.Client(base_url=base, timeout=120) as browser:
        log_in(browser)
        results += timed(browser, console_pages(now), runs)
    # the deepest page of a search costs what the first does (keyset pagination)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=ADMIN, timeout=120) as client:
        cursor, pages, began = None, 0, time.perf_counter()
        while pages < 200:
            page = client.get(
                "/api/v1/archive/events",
                params={"limit": 500, **({"cursor": cursor} if cursor else {})},
            ).json()
            pages += 1
            cursor = page["next"]
        per_page = (time.perf_counter() - began) * 1000 / pages
        results.append(
            {
                "request": "search: 200 pages of 500 in a row (per page)",
                "path": "/api/v1/archive/events",
                "params": {"limit": 500},
                "ms_median": round(per_page, 1),
                "ms_max": None,
                "within_target": per_page < TARGET_MS,
            }
        )
        console.print(f"  200 pages of 500: {per_page:.1f} ms per page")
    return results


def print_table(report: dict[str, Any]) -> None:
    table = Table(
        title=f"reports and search over {DAYS} days, {report['events']:,} archived events"
    )
    for column in ("request", "median ms", "max ms", f"< {TARGET_MS} ms", "bytes"):
        table.add_column(column)
    for r in report["requests"]:
        table.add_row(
            r["request"],
            f"{r['ms_median']:.1f}",
            "-" if r["ms_max"] is None else f"{r['ms_max']:.1f}",
            "yes" if r["within_target"] else "[red]NO[/]",
            f"{r.get('bytes', 0):,}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10, help="timed calls of each request")
    parser.add_argument(
        "--keep", action="store_true", help="keep the bench databases (drop them yourself)"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="nice value (e.g. -10) for this bench's processes and PostgreSQL backends",
    )
    args = parser.parse_args()
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-bench-console-"))
    boosters = [ib.Booster(args.priority, name) for name in (EXEC_DATABASE, CONTROL_DATABASE)]
    if args.priority:
        for booster in boosters:
            booster.start()
    try:
        exec_url = fresh(EXEC_DATABASE, workdir)
        control_url = fresh(CONTROL_DATABASE, workdir)
        ib.msgcenter(
            "operator", "add", ib.LOGIN, "--password", ib.PASSWORD, "--rights", "mc_admin",
            "--db", exec_url, cwd=workdir,
        )  # fmt: skip
        console.print(f"writing {args.events:,} final events over {DAYS} days")
        report: dict[str, Any] = {
            "bench": "console",
            "store": "postgresql",
            "started": started.isoformat(timespec="seconds"),
            "machine": ib.machine_info(1),
            "events": args.events,
            "days": DAYS,
            "runs": args.runs,
            "fill": fill(exec_url, args.events),
        }
        exec_port = ib.free_port()
        with ib.server(exec_url, exec_port, 1, workdir / "exec.log", workflows=False):
            console.print("archiving them")
            report["archive"] = archive(exec_url, exec_port, control_url, workdir)
        console.print(f"  {report['archive']}")
        port = ib.free_port()
        with control_server(control_url, port, workdir / "control.log"):
            report["requests"] = time_requests(port, args.runs)
        report["loadavg_after"] = os.getloadavg()
    finally:
        for booster in boosters if args.priority else []:
            booster.stop()
        if not args.keep:
            drop(EXEC_DATABASE, CONTROL_DATABASE)

    ib.RESULTS_DIR.mkdir(exist_ok=True)
    path = ib.RESULTS_DIR / f"console-postgresql-{started:%Y%m%d-%H%M}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    console.print(f"written to {path.relative_to(REPO)}")
    if not all(r["within_target"] for r in report["requests"]):
        sys.exit(1)


class control_server:  # noqa: N801 - a context manager named for what it runs
    """``msgcenter control serve`` on ``url`` until the block ends (its workflows idle: the one
    instance's archiving workflow is due in an hour)."""

    def __init__(self, url: str, port: int, log: Path) -> None:
        self.url, self.port, self.log = url, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
        env |= {
            "MSGCENTER_CONTROL__CREDENTIALS_KEY": Fernet.generate_key().decode(),
            # what /metrics costs when it reads the aggregates, not its cache
            "MSGCENTER_REPORTS__METRICS_CACHE_SECONDS": "0",
            "MSGCENTER_LOGGING__LEVEL": "warning",
        }
        command = [ib.MSGCENTER, "control", "serve", "--db", self.url, "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=self.log.parent, env=env,
            )  # fmt: skip
        ib.wait_healthy(self.proc, self.port, self.log)
        return self.proc

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            ib.stop(self.proc)


if __name__ == "__main__":
    main()
