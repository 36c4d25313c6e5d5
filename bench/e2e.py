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

The parts are modules beside this one: ``e2e_relay`` (smtp-sink and its
dump), ``e2e_load`` (the pushes), ``e2e_stack`` (msgcenter's processes),
``e2e_cpu`` (CPU accounting and ``--priority``), ``e2e_phases`` (the phases)
and ``e2e_report`` (figures, summaries and the results table).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from e2e_cpu import Booster, wait_quiet
from e2e_load import Pusher
from e2e_phases import Run, run_phases
from e2e_relay import ensure_relay
from e2e_report import REPO, code_version, database_summary, log_problems, print_table
from e2e_stack import LAYOUTS, Layout, Stack, environment

PUBLICATION = REPO / "tests" / "fixtures" / "order_confirmation.toml"
PG_DATABASE = "msgcenter_bench_e2e"
console = ib.console


def parse_args() -> argparse.Namespace:
    """The options; their order is that of ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument(
        "--channel",
        choices=["email", "sms", "push"],
        default="email",
        help="sms and push run e2e_channels.py, with its own phases and options"
        " (see --channel sms --help)",
    )
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=["single", "split1"])
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=["latency", "sustained", "batch", "profile"],
        default=["latency", "sustained", "batch"],
    )
    _phase_options(parser)
    _process_options(parser)
    _machine_options(parser)
    return parser.parse_args()


def _phase_options(parser: argparse.ArgumentParser) -> None:
    """How long and how hard each phase pushes."""
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


def _process_options(parser: argparse.ArgumentParser) -> None:
    """The settings and experiments passed to msgcenter's processes."""
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


def _machine_options(parser: argparse.ArgumentParser) -> None:
    """Sharing the machine with other work, and the time budget of the run."""
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


def run_layout(
    args: argparse.Namespace, layout: Layout, relay: str, pusher: Pusher, deadline: float
) -> dict:
    """Run the phases on ``layout`` against a fresh database; the layout's part of the report."""
    workdir = Path(tempfile.mkdtemp(prefix=f"msgcenter-e2e-{layout.name}-"))
    ib.PG_DATABASE = PG_DATABASE  # fresh_database() reads it at call time
    url = ib.fresh_database(args.store, workdir)
    ib.msgcenter("exec", "publication", "load", str(PUBLICATION), "--db", url, cwd=workdir)
    smtp_port = ib.free_port()
    env = environment(args, smtp_port, workdir)
    stack = Stack(url, workdir, layout, env)
    ctx = Run(relay, smtp_port, workdir, stack, pusher, deadline)
    report = layout_report(layout, env, workdir, url)
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
        run_phases(ctx, args, report["phases"])
    finally:
        stack.stop()
        if booster is not None:
            booster.stop()
    report["database"] = database_summary(url)
    report["server_logs"] = stack.logs
    problems = log_problems(stack.logs)
    if problems:
        report["log_problems"] = problems
    if args.store == "sqlite":
        for f in workdir.glob("bench.db*"):
            f.unlink()
    return report


def layout_report(layout: Layout, env: dict[str, str], workdir: Path, url: str) -> dict:
    """The start of a layout's report: its settings and the database's durability."""
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
    return report


def main() -> None:
    """Run the chosen layouts one after the other within the budget; write and print the report."""
    channel = argparse.ArgumentParser(add_help=False)
    channel.add_argument("--channel", default="email")
    if channel.parse_known_args()[0].channel != "email":
        import e2e_channels  # SMS and push: their own phases and simulators

        e2e_channels.main(sys.argv[1:])
        return
    args = parse_args()
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
    path = ib.write_results(f"e2e-{report['store']}", report, started)
    print_table(report)
    console.print(f"written to {path.relative_to(REPO)} in {report['elapsed_s']} s")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
