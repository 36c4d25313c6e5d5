"""The phases of the end-to-end bench: latency, sustained, batch and profile.

Each phase starts its own relay, drives the stack of a :class:`Run` with its
pusher, and returns the phase's figures as a dict for the JSON report.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
from e2e_cpu import cores, cpu_snapshot
from e2e_load import Pushed, Pusher, token
from e2e_relay import DumpTail, Sink
from e2e_report import percentiles
from e2e_stack import Stack

console = ib.console


@dataclass
class Run:
    """What the phases of one layout share: the relay binary and port, the stack, the pusher."""

    relay: str
    smtp_port: int
    workdir: Path
    stack: Stack
    pusher: Pusher
    deadline: float


def run_phases(ctx: Run, args: argparse.Namespace, phases: dict) -> None:
    """Run the chosen phases in their order, each under its key in ``phases``; none starts past the deadline."""
    deadline = ctx.deadline
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
        _wait_seen(tail, tag, acked)
    finally:
        tail.stop()
        sink.stop()
    e2e, push_ms, missing = _latencies(pushed, tail, tag, acked, pushed.started + warmup)
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


def _wait_seen(tail: DumpTail, tag: str, acked: list[int]) -> None:
    """Wait (30 s at most) until the relay has the last 50 acknowledged messages and as many
    messages in all as were acknowledged."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        last_seen = all(token(tag, i).encode() in tail.seen for i in acked[-50:])
        if last_seen and len(tail.seen) >= len(acked):
            break
        time.sleep(0.1)
    time.sleep(0.2)


def _latencies(
    pushed: Pushed, tail: DumpTail, tag: str, acked: list[int], measured_from: float
) -> tuple[list[float], list[float], int]:
    """Per event scheduled after the warm-up: acknowledged -> relay accepted, and scheduled ->
    acknowledged (seconds); and how many the relay never accepted."""
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
    return e2e, push_ms, missing


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
            step, acked_here = _ramp_step(ctx, args, sink, rate, f"S{len(steps)}x", acked_total)
            acked_total += acked_here
            steps.append(step)
            if step["kept_up"]:
                best = step
            else:
                failed = rate if failed is None else min(failed, rate)
                # start the next step from an empty queue
                sink.wait_for(acked_total, args.drain_timeout)
            following = _next_rate(args, rate, best, failed)
            if following is None:
                break
            rate = following
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


def _ramp_step(
    ctx: Run, args: argparse.Namespace, sink: Sink, rate: float, tag: str, acked_total: int
) -> tuple[dict, int]:
    """One step of the ramp at ``rate``: its figures, and how many pushes were acknowledged.

    ``acked_total`` is what the earlier steps had acknowledged, for the queue at the relay.
    """
    before, wall = cpu_snapshot(ctx.stack, sink), time.monotonic()
    base_count = sink.count
    pushed: Pushed = ctx.pusher.open_loop(
        ctx.stack.port, "rt", tag, rate, args.ramp_step_seconds
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
    kept_up = delivered >= 0.95 * rate and backlog_end <= max(0.5 * rate, 50) and not pushed.errors
    step["kept_up"] = kept_up
    console.print(
        f"  ramp {rate:g}/s: acked {step['acked_per_s']}/s delivered {step['delivered_per_s']}/s "
        f"backlog {backlog_start}->{backlog_end} {'ok' if kept_up else 'BEHIND'} "
        f"cores {step['cpu_cores']}"
    )
    return step, acked_here


def _next_rate(
    args: argparse.Namespace, rate: float, best: dict | None, failed: float | None
) -> float | None:
    """The rate of the ramp's next step, or None when the ramp is over."""
    if failed is None:
        return rate + args.ramp_increment  # still climbing
    # bisect between the best rate kept up with (or nothing) and the lowest failure
    low = best["rate_offered"] if best else 0
    if best is None and failed / 2 < args.ramp_min:
        return None
    if best is not None and failed - low <= max(0.1 * low, 50):
        return None
    return (low + failed) / 2


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
    # CPU per message sent, per part (--layouts split1 split2 split3 compares worker counts)
    result["cpu_ms_per_message"] = {
        part: round(result["cpu_cores"][part] * wall * 1000 / delivered, 3) if delivered else None
        for part in ("server", "workers", "postgres", "sink")
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
            spy = _spy(pyspy, pid, raw, args.profile_seconds, gil=args.profile_gil)
            spies.append((name, raw, spy))
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


def _spy(pyspy: Path, pid: int, raw: Path, seconds: int, *, gil: bool) -> subprocess.Popen:
    """``py-spy record`` on ``pid`` for ``seconds``, its collapsed stacks written to ``raw``;
    with ``gil``, only the samples of threads holding the GIL."""
    return subprocess.Popen(
        [
            str(pyspy),
            "record",
            "-d",
            str(seconds),
            "-r",
            "100",
            "-p",
            str(pid),
            "--format",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


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
