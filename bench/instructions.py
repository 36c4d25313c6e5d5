"""Instructions per event on the intake's hot path, counted by valgrind's callgrind.

On a shared or virtual machine, wall-clock and CPU-time figures of the same code vary by
a quarter to a half from run to run, which hides any change worth less than that. The
number of instructions the CPU executes does not vary: this bench counts them, so that a
lever worth 5 % can be measured and kept or dropped.

For each scenario it runs this script twice under ``valgrind --tool=callgrind``: both runs
start the execution instance's ASGI app in the process (its lifespan, a fresh database),
send ``--warmup`` requests, and one of them then sends ``--requests`` more. The difference
of the two totals, divided by the events of those requests, is the cost of one event,
startup and first-call costs excluded. Requests go straight to the ASGI app (no socket,
no HTTP parser: uvicorn's share is not counted) and through the whole application:
middleware, routing, authentication (cached after the first request), parsing,
validation, the group committer and the database driver. ``--concurrency`` requests
(32, as intake.py's connections) are in flight together, so that the group committer
shares a transaction among them as it does under load.

Instructions are not time: a cache miss or a system call costs more than its count, and
the database server's own work (PostgreSQL's process) is not counted. The figures compare
versions of msgcenter's code with each other; ``intake.py`` gives the rates.

    .venv/bin/python bench/instructions.py                      # every scenario, SQLite
    .venv/bin/python bench/instructions.py --store postgresql --scenarios rest-single
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import intake  # noqa: E402 - the bench's own request bodies

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = {
    "rest-single": ("rest", 1),
    "rest-batch100": ("rest", 100),
    "soap-single": ("soap", 1),
    "soap-batch100": ("soap", 100),
}
AUTHORIZATION = "Basic YmVuY2g6YmVuY2hwdw=="  # bench:benchpw, as intake.py's operator


def request_of(api: str, batch: int) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """The path, headers and body intake.py's load generator sends for this scenario."""
    target = intake.soap_target(0, batch) if api == "soap" else intake.rest_target(0, batch)
    headers = [(name.lower().encode(), value.encode()) for name, value in target.headers]
    if api == "rest":
        headers.append((b"authorization", AUTHORIZATION.encode()))
    headers.append((b"content-length", str(len(target.body)).encode()))
    return target.path, headers, target.body


# -- the measured process (run under valgrind) --------------------------------------------


def measured(args: argparse.Namespace) -> None:
    """Start the app on ``args.url``, send the warm-up and ``args.count`` requests, stop."""
    from msgcenter.settings import Settings
    from msgcenter.store.database import Database
    from msgcenter.web.exec_app import create_exec_app

    api, batch = SCENARIOS[args.scenario]
    path, headers, body = request_of(api, batch)
    db = Database(args.url)
    settings = Settings(
        database_url=args.url,
        processing={"workflows_in_web_process": False},  # type: ignore[arg-type]
    )
    app = create_exec_app(settings, db)
    expected = 201 if api == "rest" else 200

    async def run() -> None:
        async with app.router.lifespan_context(app):
            for count in (args.warmup, args.count):
                for start in range(0, count, args.concurrency):
                    rounds = min(args.concurrency, count - start)
                    statuses = await asyncio.gather(
                        *(call(app, path, headers, body) for _ in range(rounds))
                    )
                    if set(statuses) != {expected}:
                        raise SystemExit(f"the app answered {statuses}, not {expected}")

    asyncio.run(run())
    db.dispose()


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One request straight to the ASGI app; its status code."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the answer is made
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


# -- the driver ---------------------------------------------------------------------------


def instructions(args: argparse.Namespace, scenario: str, url: str, count: int) -> int:
    """Instructions counted by callgrind for one measured process."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--measured",
        "--scenario",
        scenario,
        "--url",
        url,
        "--warmup",
        str(args.warmup),
        "--count",
        str(count),
        "--concurrency",
        str(args.concurrency),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MSGCENTER_LOGGING__LEVEL": "warning"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{scenario}: the measured run failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def fresh_database(store: str, workdir: Path) -> str:
    """A migrated database with intake.py's operator (a new SQLite file, or PostgreSQL's
    bench database made again)."""
    run = workdir / f"run-{time.monotonic_ns()}"
    run.mkdir()
    return intake.fresh_database(store, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--requests", type=int, default=0, help="measured requests (default: 2,000 events' worth)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="requests before the measured ones")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="requests in flight together, as intake.py's connections (1: each is its own transaction)",
    )
    parser.add_argument("--measured", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measured:
        measured(args)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="msgcenter-instructions-") as work:
        for scenario in args.scenarios:
            batch = SCENARIOS[scenario][1]
            count = args.requests or max(20, 2000 // batch)
            started = time.monotonic()
            base = instructions(args, scenario, fresh_database(args.store, Path(work)), 0)
            total = instructions(args, scenario, fresh_database(args.store, Path(work)), count)
            per_event = (total - base) / (count * batch)
            results[scenario] = {
                "instructions_per_event": round(per_event),
                "requests": count,
                "events_per_request": batch,
                "seconds": round(time.monotonic() - started, 1),
            }
            print(f"{scenario:14} {per_event:12,.0f} instructions per event ({count} requests)")
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True)
    record = {
        "bench": "instructions",
        "store": args.store,
        "commit": code.stdout.strip(),
        "src_changed": bool(dirty.stdout.strip()),
        "warmup_requests": args.warmup,
        "concurrency": args.concurrency,
        "python": sys.version.split()[0],
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    out = RESULTS / f"instructions-{args.store}-{stamp}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
