"""End to end for SMS and push: from an acknowledged push to the simulator's acceptance.

``e2e.py --channel sms|push`` hands over to :func:`main` here. For one store and one or more
process layouts (those of ``e2e_stack``) it creates a fresh database, loads a publication for
the channel (SMS: channel 1; push: 41 ios and/or 42 android), starts msgcenter against a
simulator and measures:

1. ``batch``: ``--batch-events`` events pushed in 100-event REST requests; the time from the
   first push until the simulator has accepted them all (messages/s);
2. ``sustained``: an open loop of single-event REST pushes at each ``--rates`` for
   ``--sustained-seconds``; p50/p95/p99 from intake acknowledgement to the simulator's
   acceptance, and the rate accepted.

Each event carries a unique token as its order id, which the rendered text (SMS) or the
title (push) repeats: the no-loss check is that every acknowledged token reaches the
simulator exactly once, and that every event ends ``sent`` in the database.

The simulator (``catcher/smsc.py``'s SMSC, or ``catcher/push.py``'s APNs+FCM catcher) runs in
a child process of the bench (:class:`Simulator`), so that its CPU is counted apart from
msgcenter's and the load generation does not starve it.

    python bench/e2e.py --channel sms --store postgresql --priority -10
    python bench/e2e.py --channel push --store sqlite --layouts single --batch-events 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import re
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import intake as ib  # the intake bench: database, process and CPU helpers
import loadgen
import sqlalchemy as sa
from e2e_cpu import Booster, cores, cpu_snapshot, wait_quiet
from e2e_load import (
    PLACEHOLDER,
    Pushed,
    Pusher,
    _die_with_parent,
    _in_child,
    drive_closed_loop,
    token,
)
from e2e_report import REPO, code_version, database_summary, log_problems, percentiles
from e2e_stack import LAYOUTS, Layout, Stack, environment
from rich.table import Table

console = ib.console
PG_DATABASE = "msgcenter_bench_e2e"
#: the SMS text and the push title repeat the order id, the event's token
SMS_TEXT = "Order {{ ctx.order.id }} confirmed"
TOKEN_IN_TEXT = re.compile(r"Order (\S+)")
BATCH = 100
PHONE = "+33612345678"
DEVICE = "a" * 64


# -- the options --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    from e2e import _machine_options, _process_options  # the options shared with email

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", choices=["sms", "push"], required=True)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=["single", "split1"])
    parser.add_argument(
        "--phases", nargs="+", choices=["batch", "sustained"], default=["batch", "sustained"]
    )
    parser.add_argument(
        "--platforms",
        nargs="+",
        choices=["ios", "android"],
        default=["ios"],
        help="push: the platforms the events alternate between (one HTTP/2 connection each)",
    )
    parser.add_argument(
        "--push-goaway",
        type=int,
        default=0,
        help="push: the catcher ends its HTTP/2 connection after this many requests (0: never)",
    )
    parser.add_argument("--batch-events", type=int, default=20_000)
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=120)
    parser.add_argument("--rates", nargs="+", type=float, default=[1000])
    parser.add_argument("--sustained-seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds of each rate")
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="profile msgcenter's processes with cProfile (their main thread; about 2x slower)",
    )
    parser.add_argument("--sms-binds", type=int, default=1)
    parser.add_argument("--sms-window", type=int, default=10)
    _process_options(parser)
    _machine_options(parser)
    return parser.parse_args(argv)


# -- the simulator, in a child process ----------------------------------------------------


def _record(seen: dict[str, list[float]], text: str, at: float) -> None:
    match = TOKEN_IN_TEXT.match(text)
    seen.setdefault(match.group(1) if match else text, []).append(at)


def _sms_child(conn, ready) -> None:  # type: ignore[no-untyped-def]
    from msgcenter.catcher.smsc import SmscSimulator
    from msgcenter.channels.sms.encoding import decode

    seen: dict[str, list[float]] = {}

    class Recording(SmscSimulator):
        """Keeps the acceptance time (monotonic, the pusher's clock) of each token, and all
        of them (the page's simulator keeps the last 500)."""

        def _keep(self, message, message_id: str) -> None:  # type: ignore[no-untyped-def]
            now = time.monotonic()
            part = decode(message.message, message.data_coding, udhi=message.udhi)
            _record(seen, part.text, now)

    simulator = Recording()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="smsc", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(simulator.start(), loop).result(10)
    ready.send({"port": simulator.port})

    def snapshot() -> dict[str, list[float]]:
        async def copy() -> dict[str, list[float]]:
            return {k: list(v) for k, v in seen.items()}

        return asyncio.run_coroutine_threadsafe(copy(), loop).result(10)

    _serve_commands(conn, lambda: len(seen), snapshot, seen.clear)
    asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result(10)


def _push_child(conn, ready, apps: int, goaway: int) -> None:  # type: ignore[no-untyped-def]
    from msgcenter.catcher.push import CatcherApp, PushCatcher

    # APNs and FCM keep a connection open for hours, so the bench's catcher does too, unless
    # --push-goaway asks it to end each one (GOAWAY) after that many requests
    catcher = PushCatcher(
        [CatcherApp.generate(f"bench-app{i}", f"Bench {i}") for i in range(apps)],
        max_notifications=10_000_000,
        goaway_after=goaway,
    )
    catcher.start()
    ready.send({"push": catcher.push_settings()})

    def snapshot() -> dict[str, list[float]]:
        # the catcher's received times are wall clock; the pusher's are monotonic
        offset = time.time() - time.monotonic()
        seen: dict[str, list[float]] = {}
        for caught in catcher.notifications:
            _record(seen, caught.title, caught.received.timestamp() - offset)
        return seen

    def unique() -> int:
        return len({caught.title for caught in catcher.notifications})

    _serve_commands(conn, unique, snapshot, catcher.clear)
    catcher.stop()


def _serve_commands(conn, count, snapshot, reset) -> None:  # type: ignore[no-untyped-def]
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        if command == "count":
            conn.send(count())
        elif command == "snapshot":
            conn.send(snapshot())
        elif command == "reset":
            reset()
            conn.send(None)
        else:
            conn.send(None)
            return


class Simulator:
    """The SMSC simulator or the push catcher in a forked child process, asked over a pipe."""

    def __init__(self, channel: str, apps: int = 1, goaway: int = 0) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        ready_r, ready_w = context.Pipe(duplex=False)
        target, extra = (_sms_child, ()) if channel == "sms" else (_push_child, (apps, goaway))
        self.proc = context.Process(
            target=_child_main, args=(target, child, ready_w, *extra), daemon=True
        )
        self.proc.start()
        if not ready_r.poll(60):
            self.proc.kill()
            raise RuntimeError(f"the {channel} simulator did not start")
        self.info: dict = ready_r.recv()
        self._lock = threading.Lock()

    def _ask(self, command: str):  # type: ignore[no-untyped-def]
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    @property
    def count(self) -> int:
        """Distinct messages (tokens) accepted since the last reset."""
        return self._ask("count")

    def snapshot(self) -> dict[str, list[float]]:
        """Token -> acceptance times (monotonic), since the last reset."""
        return self._ask("snapshot")

    def reset(self) -> None:
        self._ask("reset")

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= n:
                return True
            time.sleep(0.05)
        return self.count >= n

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._ask("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def _child_main(target, conn, ready, *args) -> None:  # type: ignore[no-untyped-def]
    _die_with_parent()
    target(conn, ready, *args)


# -- the load -----------------------------------------------------------------------------


def channel_event(channel: str, platform: str, order_id: str) -> dict:
    event: dict = {
        "type": "order_confirmation",
        "external_id": "42",
        "ctx": {"client": {"firstname": "Ann"}, "order": {"id": order_id}},
    }
    if channel == "sms":
        event.update(wished_channel="sms", mobile_phone=PHONE)
    else:
        event.update(wished_channel=platform, registration_token=DEVICE)
    return event


def channel_target(port: int, channel: str, platforms: list[str], batch: int) -> loadgen.Target:
    """REST ``rt`` pushes of ``batch`` events, each with the token placeholder as order id
    (the events alternate between ``platforms``)."""
    events = [
        channel_event(channel, platforms[i % len(platforms)], PLACEHOLDER) for i in range(batch)
    ]
    return ib.rest_target(port, batch, events)


async def _unique_batches(
    target: loadgen.Target, tag: str, requests: int, connections: int, timeout: float
) -> Pushed:
    """A closed loop of ``requests`` batch requests, event ``n`` of them with ``token(tag, n)``."""
    parts = target.wire().split(PLACEHOLDER.encode())
    per = len(parts) - 1
    deadline = time.monotonic() + timeout
    issued = 0

    def following() -> tuple[int, bytes] | None:
        nonlocal issued
        if issued >= requests or time.monotonic() > deadline:
            return None
        index, issued = issued, issued + 1
        out = [parts[0]]
        for j in range(per):
            out += [token(tag, index * per + j).encode(), parts[j + 1]]
        return index, b"".join(out)

    return await drive_closed_loop(
        target, tag, requests, connections, deadline, following, lambda: issued
    )


def _batches_in_child(*args) -> Pushed:  # type: ignore[no-untyped-def]
    if loadgen.uvloop is not None:
        loadgen.uvloop.install()
    return asyncio.run(_unique_batches(*args))


class ChannelPusher(Pusher):
    """e2e's pusher (a forked child) with the channel's events."""

    def open_loop_target(self, target: loadgen.Target, tag: str, rate: float, duration: float):  # type: ignore[no-untyped-def]
        return self._pool.submit(_in_child, "open", target, tag, rate, duration)

    def unique_batches(
        self, target: loadgen.Target, tag: str, requests: int, connections: int, timeout: float
    ):  # type: ignore[no-untyped-def]
        return self._pool.submit(_batches_in_child, target, tag, requests, connections, timeout)


# -- the phases ---------------------------------------------------------------------------


def _check(seen: dict[str, list[float]], tokens: list[str]) -> dict:
    """The no-loss check of a phase's acknowledged tokens against what the simulator took."""
    wanted = set(tokens)
    return {
        "acked": len(tokens),
        "accepted": sum(len(seen[t]) for t in wanted if t in seen),
        "missing": sum(1 for t in wanted if t not in seen),
        "duplicated": sum(len(seen[t]) - 1 for t in wanted if len(seen.get(t, ())) > 1),
        "unexpected": sum(1 for t in seen if t not in wanted),
    }


def _cpu_per_message(used: dict, wall: float, messages: int) -> dict:
    if not messages:
        return {}
    per = {
        part: used[part] * wall * 1000 / messages
        for part in ("server", "workers", "postgres", "sink")
    }
    return {
        "msgcenter": round(per["server"] + per["workers"], 3),
        "server": round(per["server"], 3),
        "workers": round(per["workers"], 3),
        "postgres": round(per["postgres"], 3),
        "simulator": round(per["sink"], 3),
    }


def phase_batch(ctx: SimpleNamespace, args: argparse.Namespace) -> dict:
    """``--batch-events`` in 100-event requests; first push -> the simulator has them all."""
    sim: Simulator = ctx.sim
    sim.reset()
    requests = max(1, args.batch_events // BATCH)
    target = channel_target(ctx.stack.port, args.channel, args.platforms, BATCH)
    before, t0 = cpu_snapshot(ctx.stack, sim), time.monotonic()
    pushed: Pushed = ctx.pusher.unique_batches(
        target, "B", requests, args.batch_connections, args.batch_timeout
    ).result()
    intake_done = max((t for t in pushed.acked if t == t), default=t0)
    drained = sim.wait_for(
        pushed.acked_events, max(1.0, args.batch_timeout - (time.monotonic() - t0))
    )
    after, wall = cpu_snapshot(ctx.stack, sim), time.monotonic() - t0
    seen = sim.snapshot()
    tokens = [
        token("B", i * BATCH + j)
        for i in range(requests)
        if pushed.acked[i] == pushed.acked[i]
        for j in range(BATCH)
    ]
    check = _check(seen, tokens)
    times = sorted(t for ts in seen.values() for t in ts)
    last = times[-1] if times else None
    total_s = (last - pushed.started) if (last and drained) else None
    used = cores(before, after, wall)
    result = {
        "events": requests * BATCH,
        "acked_events": pushed.acked_events,
        "errors": pushed.errors,
        "error_samples": pushed.samples,
        "connections": args.batch_connections,
        "intake_s": round(intake_done - pushed.started, 2),
        "intake_events_per_s": round(pushed.acked_events / max(intake_done - pushed.started, 1e-9)),
        "all_accepted": drained,
        "total_s": round(total_s, 2) if total_s else None,
        "messages_per_s": round((check["acked"] - check["missing"]) / total_s, 1)
        if total_s
        else None,
        "no_loss": check,
        "cpu_cores": used,
        "cpu_ms_per_message": _cpu_per_message(used, wall, len(times)),
    }
    console.print(
        f"  batch {result['events']:,}: intake {result['intake_s']} s, all accepted {drained} "
        f"after {result['total_s']} s -> {result['messages_per_s']} msg/s; {check}; "
        f"cores {used}; CPU ms/msg {result['cpu_ms_per_message']}"
    )
    return result


def phase_sustained(ctx: SimpleNamespace, args: argparse.Namespace, rate: float) -> dict:
    """Single-event pushes at ``rate`` (open loop); acknowledged -> accepted per event."""
    sim: Simulator = ctx.sim
    sim.reset()
    tag = f"S{int(rate)}x"
    target = channel_target(ctx.stack.port, args.channel, args.platforms, 1)
    duration = args.warmup + args.sustained_seconds
    before, t0 = cpu_snapshot(ctx.stack, sim), time.monotonic()
    pushed: Pushed = ctx.pusher.open_loop_target(target, tag, rate, duration).result()
    acked = [i for i in range(pushed.total) if pushed.acked[i] == pushed.acked[i]]
    drained = sim.wait_for(len(acked), args.drain_timeout)
    # CPU up to the drain: all the work these messages took, even when msgcenter fell behind
    after, wall = cpu_snapshot(ctx.stack, sim), time.monotonic() - t0
    seen = sim.snapshot()
    check = _check(seen, [token(tag, i) for i in acked])
    w0, w1 = pushed.started + args.warmup, pushed.started + duration
    e2e, intake = [], []
    for i in acked:
        if pushed.scheduled[i] < w0:
            continue
        intake.append(pushed.acked[i] - pushed.scheduled[i])
        times = seen.get(token(tag, i))
        if times:
            e2e.append(times[0] - pushed.acked[i])
    in_window = sum(1 for ts in seen.values() for t in ts if w0 <= t < w1)
    used = cores(before, after, wall)
    accepted_in_run = sum(1 for ts in seen.values() for t in ts if t < t0 + wall)
    result = {
        "rate_offered": rate,
        "measured_s": args.sustained_seconds,
        "warmup_s": args.warmup,
        "acked": len(acked),
        "failed_requests": pushed.total - len(acked),
        "errors": pushed.errors,
        "accepted_per_s": round(in_window / (w1 - w0), 1),
        "kept_up": drained and in_window >= 0.95 * rate * (w1 - w0),
        "e2e": percentiles(e2e),
        "intake": percentiles(intake),
        "no_loss": check,
        "cpu_cores": used,
        "cpu_ms_per_message": _cpu_per_message(used, wall, accepted_in_run),
    }
    e = result["e2e"]
    console.print(
        f"  sustained @{rate:g}/s: accepted {result['accepted_per_s']}/s, e2e p50 {e['p50_ms']} "
        f"p95 {e['p95_ms']} p99 {e['p99_ms']} max {e['max_ms']} ms; {check}; cores {used}; "
        f"CPU ms/msg {result['cpu_ms_per_message']}"
    )
    return result


# -- a layout -----------------------------------------------------------------------------


def publications(args: argparse.Namespace, workdir: Path) -> list[Path]:
    """The TOML publications of the channel, written in ``workdir``."""
    if args.channel == "sms":
        specs = [("order_sms", 1, f'sms = "{SMS_TEXT}"')]
    else:
        body = 'push_title = "Order {{ ctx.order.id }}"\npush_body = "Thanks {{ ctx.client.firstname }}, it is on its way"'
        specs = [(f"order_push_{p}", {"ios": 41, "android": 42}[p], body) for p in args.platforms]
    paths = []
    for name, channel, content in specs:
        path = workdir / f"{name}.toml"
        path.write_text(
            f'template = "{name}"\nevent_type = "order_confirmation"\nchannel = {channel}\n'
            f"version = 1\n\n[content]\n{content}\n"
        )
        paths.append(path)
    return paths


def channel_environment(args: argparse.Namespace, sim: Simulator, workdir: Path) -> dict[str, str]:
    env = environment(args, ib.free_port(), workdir)  # nothing listens on the SMTP port
    if args.channel == "sms":
        env.update(
            {
                "MSGCENTER_SMS__HOST": "127.0.0.1",
                "MSGCENTER_SMS__PORT": str(sim.info["port"]),
                "MSGCENTER_SMS__SYSTEM_ID": "bench",
                "MSGCENTER_SMS__PASSWORD": "bench",
                "MSGCENTER_SMS__BINDS": str(args.sms_binds),
                "MSGCENTER_SMS__WINDOW": str(args.sms_window),
                "MSGCENTER_SMS__DEFAULT_SENDER": "Shop",
            }
        )
    else:
        env["MSGCENTER_PUSH"] = json.dumps(sim.info["push"])
    if args.cprofile:
        _profiling(env, workdir)
    for item in args.set or []:  # --set wins over the channel's settings too
        name, _, value = item.partition("=")
        env[name] = value
    return env


def _profiling(env: dict[str, str], workdir: Path) -> None:
    """A sitecustomize that runs cProfile in every msgcenter process, dumped when it exits."""
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    custom = site / "sitecustomize.py"
    lines = custom.read_text().splitlines() if custom.exists() else []  # e2e's experiments
    lines += [
        "import atexit, cProfile, os, signal, sys",
        "if any(a.endswith('/msgcenter') for a in sys.orig_argv[:2]):",
        "    _profile = cProfile.Profile()",
        "    _profile.enable()",
        # uvicorn raises the SIGTERM it caught again once it has stopped: exit, running atexit
        "    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))",
        "    atexit.register(lambda: (_profile.disable(),"
        f" _profile.dump_stats({str(workdir)!r} + f'/cprofile.{{os.getpid()}}')))",
    ]
    custom.write_text("\n".join(lines) + "\n")
    env["PYTHONPATH"] = str(site)


def profile_summary(workdir: Path, top: int = 25) -> dict:
    """The functions with the most own time and the most cumulative time, per process."""
    import pstats

    found = {}
    for path in sorted(workdir.glob("cprofile.*")):
        stats = pstats.Stats(str(path))
        total = stats.total_tt or 1e-9  # type: ignore[attr-defined]
        rows = stats.stats  # type: ignore[attr-defined]

        def name(key: tuple) -> str:
            where, line, function = key
            return f"{function} ({where.rsplit('site-packages/', 1)[-1].rsplit('/src/', 1)[-1]}:{line})"

        own = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
        cumulative = sorted(rows.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
        found[path.name] = {
            "total_s": round(total, 2),
            "own_pct": [(name(k), round(100 * v[2] / total, 1)) for k, v in own],
            "cumulative_pct": [(name(k), round(100 * v[3] / total, 1)) for k, v in cumulative],
        }
    return found


def settle_events(url: str, expected: int, timeout: float = 60) -> dict:
    """Wait until ``expected`` events are in the database and none is still pending; the
    event and delivery-log statuses (2 = sent; logs 1 = sent, delivered after an SMS receipt)."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = dict(
                    conn.exec_driver_sql("SELECT status, count(*) FROM event GROUP BY status").all()
                )
            pending = sum(n for s, n in rows.items() if s in (0, 1))
            if (sum(rows.values()) >= expected and not pending) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    summary = database_summary(url)
    summary["events"] = sum(rows.values())
    summary["events_expected"] = expected
    summary["all_sent"] = rows.get(2, 0) == expected == sum(rows.values())
    return summary


def settle_receipts(url: str, expected: int, timeout: float = 60) -> dict:
    """SMS: wait until every message's delivery receipt has turned its log delivered (status 6);
    how many were, and how long it took after the events were all sent."""
    engine = sa.create_engine(url)
    started = time.monotonic()
    try:
        while True:
            with engine.connect() as conn:
                delivered = conn.exec_driver_sql(
                    "SELECT count(*) FROM delivery_log WHERE status = 6"
                ).scalar_one()
            if delivered >= expected or time.monotonic() - started > timeout:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    console.print(f"  receipts applied: {delivered:,} of {expected:,}")
    return {
        "delivered": delivered,
        "expected": expected,
        "seconds_after_sent": round(time.monotonic() - started, 1),
    }


def run_layout(
    args: argparse.Namespace, layout: Layout, sim: Simulator, pusher: ChannelPusher, deadline: float
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"msgcenter-e2e-{args.channel}-{layout.name}-"))
    ib.PG_DATABASE = PG_DATABASE  # fresh_database() reads it at call time
    url = ib.fresh_database(args.store, workdir)
    for path in publications(args, workdir):
        ib.msgcenter("exec", "publication", "load", str(path), "--db", url, cwd=workdir)
    env = channel_environment(args, sim, workdir)
    stack = Stack(url, workdir, layout, env)
    ctx = SimpleNamespace(stack=stack, sim=sim, pusher=pusher)
    report: dict = {
        "layout": layout.name,
        "workers": layout.workers,
        "settings": {
            k: v
            for k, v in env.items()
            if k.startswith("MSGCENTER_") and "SECRET" not in k and k != "MSGCENTER_PUSH"
        },
        "workdir": str(workdir),
        "phases": {},
    }
    engine = sa.create_engine(url)
    report["durability"] = ib.durability(engine)
    engine.dispose()
    console.print(f"[bold]{args.channel} / {args.store} / {layout.name}[/], logs in {workdir}")
    booster = None
    if args.priority:
        booster = Booster(args.priority, PG_DATABASE if args.store == "postgresql" else "-")
        booster.start()
        report["priority"] = args.priority
    acked = 0
    try:
        report["busy_elsewhere_before"] = wait_quiet(args.quiet_cores, args.wait_quiet)
        stack.start()
        console.print(
            f"  serve pid {stack.serve.pid}, workers {[w.pid for w in stack.workers]}, simulator pid {sim.proc.pid}"
        )
        _warm_up(ctx, args)
        acked += 20
        if "batch" in args.phases:
            report["phases"]["batch"] = phase_batch(ctx, args)
            acked += report["phases"]["batch"]["acked_events"]
        for rate in args.rates if "sustained" in args.phases else []:
            if time.monotonic() > deadline:
                console.print(f"  [yellow]sustained @{rate:g}/s skipped: time budget[/]")
                continue
            result = phase_sustained(ctx, args, rate)
            report["phases"][f"sustained_{rate:g}"] = result
            acked += result["acked"]
        report["database"] = settle_events(url, acked)
        if args.channel == "sms":
            report["database"]["receipts"] = settle_receipts(url, acked)
    finally:
        stack.stop()
        if booster is not None:
            booster.stop()
    if args.cprofile:
        report["cprofile"] = profile_summary(workdir)
    report["server_logs"] = stack.logs
    problems = log_problems(stack.logs)
    if problems:
        report["log_problems"] = problems
    if args.store == "sqlite":
        for f in workdir.glob("bench.db*"):
            f.unlink()
    return report


def _warm_up(ctx: SimpleNamespace, args: argparse.Namespace) -> None:
    """A few events first (binds or connections, compiled templates), not measured."""
    ctx.sim.reset()
    target = channel_target(ctx.stack.port, args.channel, args.platforms, 1)
    ctx.pusher.open_loop_target(target, "W", 20, 1).result()
    ctx.sim.wait_for(20, 30)


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    started = datetime.now()
    # fork the simulator and the pusher before any thread of this process exists
    sim = Simulator(args.channel, apps=1, goaway=args.push_goaway)
    pusher = ChannelPusher()
    if args.wait_quiet:
        wait_quiet(args.quiet_cores, args.wait_quiet)
    deadline = time.monotonic() + args.budget
    report = {
        "bench": f"e2e-{args.channel}",
        "channel": args.channel,
        "store": args.store,
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(None),
        "code": code_version(),
        "simulator": "catcher/smsc.py SmscSimulator (child process)"
        if args.channel == "sms"
        else "catcher/push.py PushCatcher, plain HTTP/2 (child process)",
        "args": dict(vars(args)),
        "layouts": [],
    }
    try:
        for name in args.layouts:
            if time.monotonic() > deadline:
                console.print(f"[yellow]layout {name} skipped: time budget[/]")
                continue
            report["layouts"].append(run_layout(args, LAYOUTS[name], sim, pusher, deadline))
    finally:
        pusher.close()
        sim.stop()
    report["elapsed_s"] = round((datetime.now() - started).total_seconds(), 1)
    path = ib.write_results(f"e2e-{report['channel']}-{report['store']}", report, started)
    print_table(report)
    console.print(f"written to {path.relative_to(REPO)} in {report['elapsed_s']} s")


def print_table(report: dict) -> None:
    table = Table(title=f"end to end, {report['channel']} on {report['store']}")
    for column in ("layout", "measure", "figure", "detail"):
        table.add_column(column, justify="left")
    for layout in report["layouts"]:
        for name, r in layout["phases"].items():
            cpu = r.get("cpu_ms_per_message") or {}
            c = r["cpu_cores"]
            loss = r["no_loss"]
            detail = (
                f"CPU ms/msg msgcenter {cpu.get('msgcenter')} (srv {cpu.get('server')}, wrk {cpu.get('workers')}),"
                f" pg {cpu.get('postgres')}, simulator {cpu.get('simulator')}; cores srv/wrk/pg/sim/load/other "
                f"{c['server']}/{c['workers']}/{c['postgres']}/{c['sink']}/{c['loadgen']}/{c['other']}; "
                f"missing {loss['missing']}, dup {loss['duplicated']}"
            )
            if name == "batch":
                figure = f"{r['messages_per_s']} msg/s" if r["all_accepted"] else "NOT all accepted"
                table.add_row(
                    layout["layout"],
                    f"batch {r['events']:,}",
                    figure,
                    f"{r['total_s']} s; " + detail,
                )
            else:
                e = r["e2e"]
                table.add_row(
                    layout["layout"],
                    f"sustained @{r['rate_offered']:g}/s",
                    f"{r['accepted_per_s']}/s, p50 {e['p50_ms']} / p95 {e['p95_ms']} / p99 {e['p99_ms']} ms",
                    detail,
                )
        db = layout.get("database", {})
        table.add_row(
            layout["layout"],
            "database",
            "all sent" if db.get("all_sent") else "NOT all sent",
            f"events {db.get('event_status')}, logs {db.get('delivery_log_status')}",
        )
    console.print(table)
