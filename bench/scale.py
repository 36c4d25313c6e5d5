"""Two execution instances behind HAProxy, archived by one control instance (issue 11).

The model product's way past one database: several execution instances, each
with its own PostgreSQL database, behind a load balancer health-checked on
``/readyz``, all registered on (and archived by) one control instance that
publishes to every one of them. On this machine it starts:

- one database per execution instance (``msgcenter_scale_a``, ``_b``) and one for
  the control instance (``msgcenter_scale_control``) on 127.0.0.1:5432, fresh;
- Postfix's ``smtp-sink`` dumping every message (the token of each event is in
  its subject), followed by :class:`e2e_relay.DumpTail`;
- two ``msgcenter exec serve`` (workflows inside, one web process each);
- Debian's HAProxy in front of them (round robin, ``option httpchk GET /readyz``);
- ``msgcenter control serve``, on which it designs a template, registers,
  tests and initializes both instances, and publishes the template to both.

Then it pushes ``--events`` events through HAProxy (REST lists of ``--batch``
events over ``--connections`` connections, each event with a unique token as
its external id and order id), stops instance ``b`` with SIGTERM once half of
them are acknowledged, lets the rest go to ``a``, starts ``b`` again to send
what it still held, waits for every event to be final, runs the archive of both
instances on the control instance, and checks:

- intake spread over both instances (events per instance database);
- every acknowledged event stored in exactly one instance, ``sent``, and its
  token at the sink once (lost = 0, duplicates = 0);
- the control instance's archive holds every event, under two distinct
  instance ids.

It prints a JSON summary (events and CPU per instance, per-instance PostgreSQL
CPU, lost, duplicates) and writes it to ``bench/results/scale-<YYYYMMDD-HHMM>.json``.
Throughput cannot grow on 2 cores: the figures to read are the checks and the
CPU per instance. See ``bench/README.md`` and ``docs/scaling.md``.

    .venv/bin/python bench/scale.py --priority -10
    .venv/bin/python bench/scale.py --events 5000 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from cryptography.fernet import Fernet
from e2e_cpu import Booster
from e2e_relay import DumpTail, Sink, ensure_relay
from e2e_report import REPO, code_version, log_problems

INSTANCES = {"a": "msgcenter_scale_a", "b": "msgcenter_scale_b"}
CONTROL_DATABASE = "msgcenter_scale_control"
AUTH = (ib.LOGIN, ib.PASSWORD)  # added with mc_push,mc_admin to every database
console = ib.console

#: the design published to both instances; the subject carries the token (e2e_relay.SUBJECT_TOKEN)
EVENT_TYPE = {"name": "order_confirmation", "label": "Order confirmed"}
TEMPLATE = {
    "name": "order_confirmation_email",
    "label": "Order confirmation (email)",
    "event_type": "order_confirmation",
    "channel": "email",
    "content": {
        "sender": "Shop <shop@example.com>",
        "subject": "Order {{ ctx.order.id }} confirmed, {{ ctx.client.firstname }}",
        "html": "<p>Hello {{ ctx.client.firstname }}, order {{ ctx.order.id }} is confirmed.</p>",
        "text": "Hello {{ ctx.client.firstname }}, order {{ ctx.order.id }} is confirmed.",
    },
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50, help="events per REST request")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--stop-at",
        type=float,
        default=0.5,
        help="share of the events acknowledged when instance b is stopped (0: never)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=120,
        help="seconds instance b gets to stop after SIGTERM before SIGKILL (a crash)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="niceness for the bench's processes and the PostgreSQL backends of its databases",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases at the end")
    return parser.parse_args()


# -- the processes --------------------------------------------------------------------------


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=log.parent,
        )


def clean_environment(**settings: str) -> dict[str, str]:
    """The caller's environment without its ``MSGCENTER_*`` variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    env.update({f"MSGCENTER_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class ExecInstance:
    """One execution instance: ``msgcenter exec serve`` on its own database and port."""

    name: str
    url: str
    workdir: Path
    smtp_port: int
    port: int = field(default_factory=ib.free_port)
    proc: subprocess.Popen | None = None
    lives: int = 0

    def start(self) -> None:
        env = clean_environment(
            instance_name=f"scale-{self.name}",
            secret_key=f"bench-scale-secret-key-{self.name}-0123456789abcdef",
            smtp__host="127.0.0.1",
            smtp__port=str(self.smtp_port),
            smtp__helo_name=f"{self.name}.bench.example.com",
        )
        command = [ib.MSGCENTER, "exec", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        log = self.workdir / f"exec-{self.name}.log"
        self.proc = spawn([*command, "--db", self.url], env, log)
        ib.wait_healthy(self.proc, self.port, log)
        self.lives += 1

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM to the server's process group (a clean stop), SIGKILL after ``timeout``
        seconds; its exit code (-9: it had to be killed)."""
        if self.proc is None:
            return None
        ib.stop(self.proc, timeout=timeout)
        return self.proc.returncode

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Haproxy:
    """Debian's HAProxy: round robin over the instances, health-checked on ``/readyz``."""

    def __init__(self, instances: list[ExecInstance], workdir: Path) -> None:
        self.port = ib.free_port()
        self.stats_port = ib.free_port()
        servers = "\n".join(f"    server {i.name} 127.0.0.1:{i.port} check" for i in instances)
        config = workdir / "haproxy.cfg"
        config.write_text(
            f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # a request refused by a server that went away is sent to another one, and so is one
    # that a stopping server closed its idle keep-alive connection on (empty response);
    # the request is buffered whole, so that it can be sent again
    retries 3
    option redispatch
    retry-on conn-failure empty-response
    option http-buffer-request

frontend intake
    bind 127.0.0.1:{self.port}
    default_backend executions

backend executions
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}

listen stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /stats
"""
        )
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            sys.exit("haproxy is not installed: apt-get install haproxy")
        self.version = subprocess.run(
            [binary, "-v"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        self.proc = spawn(
            [binary, "-f", str(config), "-db"], dict(os.environ), workdir / "haproxy.log"
        )

    def servers(self) -> dict[str, dict[str, str]]:
        """Each server's line of HAProxy's CSV statistics (status, sessions, …)."""
        answer = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5)
        lines = answer.text.lstrip("# ").splitlines()
        names = lines[0].split(",")
        rows = [dict(zip(names, line.split(","), strict=False)) for line in lines[1:]]
        return {
            r["svname"]: r
            for r in rows
            if r.get("pxname") == "executions" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_status(self, name: str, status: str, timeout: float = 60) -> float:
        """Wait until HAProxy's health check says ``status`` (UP, DOWN) for ``name``; the wait."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.servers()[name]["status"].startswith(status):
                    return time.monotonic() - started
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"HAProxy did not see {name} {status} within {timeout} s")

    def stop(self) -> None:
        ib.stop(self.proc, timeout=5)


class CpuSampler(threading.Thread):
    """CPU seconds per part (each instance's process tree, the PostgreSQL backends of each
    database, the control instance, HAProxy, the sink), sampled every half second so that
    processes that end in between (a stopped instance, closed backends) are counted."""

    def __init__(self, parts: dict[str, Any]) -> None:
        super().__init__(daemon=True, name="cpu-sampler")
        #: part -> a function of the process table returning the part's pids
        self.parts = parts
        self.baseline: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start_measuring(self) -> None:
        table = ib.process_table()
        with self._lock:
            self.baseline = {pid: cpu for pid, (_, cpu, _) in table.items()}
            self.last = {}
        self.sample()
        self.start()

    def rebase(self, find: Any) -> None:
        """Count the processes ``find`` returns from now on (a restarted instance's start-up
        is not the work measured)."""
        table = ib.process_table()
        with self._lock:
            for pid in find(table):
                if pid in table:
                    self.baseline[pid] = table[pid][1]

    def sample(self) -> None:
        table = ib.process_table()
        seen: dict[int, tuple[str, float]] = {}
        for part, find in self.parts.items():
            for pid in find(table):
                if pid in table:
                    seen[pid] = (part, table[pid][1])
        with self._lock:
            self.last.update(seen)

    def run(self) -> None:
        while not self._stopping.wait(0.5):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self.join(2)
        self.sample()
        used: Counter[str] = Counter()
        with self._lock:
            for pid, (part, cpu) in self.last.items():
                used[part] += cpu - self.baseline.get(pid, 0.0)
        return {part: round(used[part], 2) for part in self.parts}


def tree(proc_of: Any) -> Any:
    """The pids of the process tree of whatever process ``proc_of()`` returns now."""

    def find(table: dict) -> set[int]:
        proc = proc_of()
        return ib.descendants(table, proc.pid) if proc is not None else set()

    return find


def backends(database: str) -> Any:
    def find(table: dict) -> set[int]:
        return {
            pid
            for pid, (_, _, cmdline) in table.items()
            if cmdline.startswith("postgres") and f" {database} " in cmdline
        }

    return find


# -- the steps ------------------------------------------------------------------------------


def fresh(database: str, workdir: Path) -> str:
    """Drop and create ``database``, migrate it, add the bench operator; its URL."""
    ib.PG_DATABASE = database  # fresh_database() reads it at call time
    return ib.fresh_database("postgresql", workdir)


def set_up_control(control: httpx.Client, instances: list[ExecInstance]) -> dict[str, Any]:
    """Design the template, register, test and initialize both instances, publish to both."""
    for path, body in (("/event-types", EVENT_TYPE), ("/templates", TEMPLATE)):
        answer = control.post(path, json=body)
        answer.raise_for_status()
    ids = {}
    for instance in instances:
        answer = control.post(
            "/instances",
            json={
                "name": instance.name,
                "label": f"Execution {instance.name}",
                "url": instance.base,
                "login": ib.LOGIN,
                "password": ib.PASSWORD,
            },
        )
        answer.raise_for_status()
        report = control.post(f"/instances/{instance.name}/test").json()
        if not report["ok"]:
            sys.exit(f"control cannot reach instance {instance.name}: {report}")
        answer = control.post(f"/instances/{instance.name}/initialize")
        answer.raise_for_status()
        ids[instance.name] = answer.json()["instance_id"]
    answer = control.post(f"/templates/{TEMPLATE['name']}/publish")
    answer.raise_for_status()
    states = {i["instance"]: i["state"] for i in answer.json()["instances"]}
    if set(states.values()) != {"published"}:
        sys.exit(f"the publication did not reach every instance: {states}")
    return {"instance_ids": ids, "publication": states}


@dataclass
class Pushed:
    acked: list[str] = field(default_factory=list)
    #: tokens of requests that got no positive answer (the client would have to retry them)
    unacked: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def push_all(
    port: int, tokens: list[str], args: argparse.Namespace, at_half: Any
) -> tuple[Pushed, float]:
    """Push every token's event through HAProxy; call ``at_half`` (in a thread of its own)
    once ``--stop-at`` of them are acknowledged. The pushes and the elapsed time."""
    pushed = Pushed()
    requests = [tokens[i : i + args.batch] for i in range(0, len(tokens), args.batch)]
    threshold = int(len(tokens) * args.stop_at) if args.stop_at else None
    fired = threading.Event()
    stopper: list[threading.Thread] = []
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=AUTH, timeout=60)
        return local.client

    def one(batch: list[str]) -> None:
        events = [
            {
                "type": "order_confirmation",
                "email": f"{t}@example.com",
                "external_id": t,
                "ctx": {"client": {"firstname": "Ann"}, "order": {"id": t}},
            }
            for t in batch
        ]
        try:
            answer = client().post("/api/v1/events/rt", json=events)
            ok = answer.status_code == 201 and len(answer.json().get("ids", [])) == len(batch)
            error = "" if ok else f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, type(exc).__name__
        with pushed.lock:
            if ok:
                pushed.acked += batch
            else:
                pushed.unacked += batch
                pushed.errors[error] += 1
            due = threshold is not None and len(pushed.acked) >= threshold and not fired.is_set()
            if due:
                fired.set()
        if due:
            thread = threading.Thread(target=at_half, name="stop-b")
            thread.start()
            stopper.append(thread)

    started = time.monotonic()
    with ThreadPoolExecutor(args.connections) as pool:
        list(pool.map(one, requests))
    elapsed = time.monotonic() - started
    for thread in stopper:
        thread.join()
    return pushed, elapsed


def events_by_instance(urls: dict[str, str]) -> dict[str, dict[str, int]]:
    """token -> status code, per instance database."""
    found = {}
    for name, url in urls.items():
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT external_id, status FROM event")).all()
        engine.dispose()
        found[name] = {str(t): int(s) for t, s in rows}
    return found


def all_final(urls: dict[str, str]) -> bool:
    for url in urls.values():
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            pending = conn.execute(
                sa.text("SELECT count(*) FROM event WHERE status IN (0, 1)")
            ).scalar_one()
        engine.dispose()
        if pending:
            return False
    return True


def archived(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT instance_id, external_id FROM archived_event")).all()
    engine.dispose()
    per_instance = Counter(str(i) for i, _ in rows)
    tokens = Counter(str(t) for _, t in rows)
    return {"per_instance_id": dict(per_instance), "tokens": tokens}


# -- the run --------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-scale-"))
    console.print(f"[bold]scale: two execution instances behind HAProxy[/], logs in {workdir}")
    relay = ensure_relay()
    urls = {name: fresh(database, workdir) for name, database in INSTANCES.items()}
    control_url = fresh(CONTROL_DATABASE, workdir)
    sink = Sink(relay, ib.free_port(), workdir, dump=True)
    assert sink.dump_path is not None
    tail = DumpTail(sink.dump_path)
    tail.start()
    instances = [ExecInstance(n, urls[n], workdir, sink.port) for n in INSTANCES]
    a, b = instances
    control_port = ib.free_port()
    control_proc: subprocess.Popen | None = None
    haproxy: Haproxy | None = None
    boosters = []
    if args.priority:
        for database in [*INSTANCES.values(), CONTROL_DATABASE]:
            booster = Booster(args.priority, database)
            booster.start()
            boosters.append(booster)
    report: dict[str, Any] = {
        "bench": "scale",
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(None),
        "code": code_version(),
        "args": vars(args),
        "workdir": str(workdir),
    }
    try:
        for instance in instances:
            instance.start()
        env = clean_environment(control__credentials_key=Fernet.generate_key().decode())
        control_log = workdir / "control.log"
        control_proc = spawn(
            [ib.MSGCENTER, "control", "serve", "--host", "127.0.0.1", "--port", str(control_port),
             "--db", control_url],
            env,
            control_log,
        )  # fmt: skip
        ib.wait_healthy(control_proc, control_port, control_log)
        haproxy = Haproxy(instances, workdir)
        report["haproxy"] = haproxy.version
        for instance in instances:
            haproxy.wait_status(instance.name, "UP")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{control_port}/api/v1", auth=AUTH, timeout=120
        ) as control:
            report["control"] = set_up_control(control, instances)
            console.print(f"  registered and published: {report['control']}")

            sampler = CpuSampler(
                {
                    "exec_a": tree(lambda: a.proc),
                    "exec_b": tree(lambda: b.proc),
                    "postgres_a": backends(INSTANCES["a"]),
                    "postgres_b": backends(INSTANCES["b"]),
                    "haproxy": tree(lambda: haproxy.proc),
                    "sink": tree(lambda: sink.proc),
                }
            )
            stop_report: dict[str, Any] = {}

            def stop_b() -> None:
                at = time.monotonic()
                stop_report["exit_code"] = b.stop(timeout=args.stop_timeout)
                stop_report["stopped_after_s"] = round(time.monotonic() - at, 2)
                stop_report["haproxy_saw_down_after_s"] = round(
                    haproxy.wait_status("b", "DOWN") + time.monotonic() - at, 2
                )
                console.print(f"  instance b stopped (SIGTERM): {stop_report}")

            tokens = [f"s{started:%H%M}x{i:07d}" for i in range(args.events)]
            sampler.start_measuring()
            pushed_at = time.monotonic()
            pushed, intake_s = push_all(haproxy.port, tokens, args, stop_b)
            console.print(
                f"  pushed {len(pushed.acked):,} acknowledged in {intake_s:.1f} s "
                f"({len(pushed.acked) / intake_s:,.0f} events/s), "
                f"{len(pushed.unacked)} not acknowledged {dict(pushed.errors)}"
            )
            if args.stop_at:
                held = events_by_instance({"b": urls["b"]})["b"]
                stop_report["unsent_in_b_while_stopped"] = sum(
                    1 for s in held.values() if s in (0, 1)
                )
                b.start()  # back in service: it sends what it still held
                sampler.rebase(tree(lambda: b.proc))
                stop_report["haproxy_saw_up_after_restart_s"] = round(
                    haproxy.wait_status("b", "UP"), 2
                )
            deadline = time.monotonic() + args.drain_timeout
            while not all_final(urls) and time.monotonic() < deadline:
                time.sleep(0.5)
            drained_s = time.monotonic() - pushed_at  # b's restart included
            # the sink writes a message before answering 250: give the tail its last reads
            expected = len(pushed.acked)
            settle = time.monotonic() + 10
            while len(tail.seen) < expected and time.monotonic() < settle:
                time.sleep(0.1)
            cpu = sampler.stop()
            stats = haproxy.servers()

            archive_started = time.monotonic()
            runs = {}
            for instance in instances:
                answer = control.post(f"/archives/{instance.name}/run", params={"wait": 120})
                runs[instance.name] = answer.json()
            archive_s = time.monotonic() - archive_started
    finally:
        tail.stop()
        if haproxy is not None:
            haproxy.stop()
        for instance in instances:
            instance.stop()
        if control_proc is not None:
            ib.stop(control_proc)
        sink.stop()
        for booster in boosters:
            booster.stop()

    # -- the checks -------------------------------------------------------------------------
    stored = events_by_instance(urls)
    where = Counter(t for events in stored.values() for t in events)
    acked = set(pushed.acked)
    in_both = [t for t, n in where.items() if n > 1]
    not_stored = [t for t in acked if t not in where]
    not_sent = [t for t in acked if t in where and _status(stored, t) != 2]
    not_at_sink = [t for t in acked if t.encode() not in tail.seen]
    lost = sorted(set(not_stored) | set(not_sent) | set(not_at_sink))
    archive = archived(control_url)
    archived_tokens = archive.pop("tokens")
    archived_twice = [t for t, n in archived_tokens.items() if n > 1]
    not_archived = [t for t in where if t not in archived_tokens]
    per_instance = {
        name: {
            "events": len(events),
            "sent": sum(1 for s in events.values() if s == 2),
            "cpu_s": cpu[f"exec_{name}"],
            "cpu_ms_per_event": round(cpu[f"exec_{name}"] * 1000 / max(len(events), 1), 3),
            "postgres_cpu_s": cpu[f"postgres_{name}"],
            "haproxy_sessions": int(stats.get(name, {}).get("stot") or 0),
            "lives": next(i.lives for i in instances if i.name == name),
        }
        for name, events in stored.items()
    }
    report |= {
        "events": args.events,
        "acknowledged": len(acked),
        "not_acknowledged": len(pushed.unacked),
        "not_acknowledged_but_stored": sum(1 for t in pushed.unacked if t in where),
        "request_errors": dict(pushed.errors),
        "intake_s": round(intake_s, 2),
        "intake_events_per_s": round(len(acked) / intake_s, 1),
        "all_sent_after_s": round(drained_s, 2),
        "per_instance": per_instance,
        "stop": stop_report,
        "sink": {
            "messages": tail.messages,
            "distinct_tokens": len(tail.seen),
            "duplicates": tail.duplicates,
        },  # fmt: skip
        "lost": len(lost),
        "lost_examples": lost[:10],
        "duplicates": len(in_both) + tail.duplicates,
        "stored_in_both_instances": in_both[:10],
        "archive": {
            "runs": {
                n: {k: r.get(k) for k in ("outcome", "events", "new_events", "error")}
                for n, r in runs.items()
            },  # fmt: skip
            "seconds": round(archive_s, 2),
            "per_instance_id": archive["per_instance_id"],
            "distinct_instance_ids": len(archive["per_instance_id"]),
            "events": sum(archive["per_instance_id"].values()),
            "not_archived": len(not_archived),
            "archived_twice": len(archived_twice),
        },
        "cpu_s": cpu,
        "log_problems": log_problems([str(p) for p in workdir.glob("*.log")]),
        "elapsed_s": round((datetime.now() - started).total_seconds(), 1),
    }
    checks = {
        "intake spread over both instances": all(p["events"] > 0 for p in per_instance.values()),
        "every acknowledged event sent once": not lost and report["duplicates"] == 0,
        "the archive holds every event under two instance ids": not not_archived
        and not archived_twice
        and report["archive"]["distinct_instance_ids"] == 2,
    }
    report["checks"] = checks
    if not args.keep:
        admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for database in [*INSTANCES.values(), CONTROL_DATABASE]:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.dispose()
    path = ib.write_results("scale-postgresql", report, started)
    summary = {k: report[k] for k in ("acknowledged", "not_acknowledged", "intake_events_per_s",
               "all_sent_after_s", "per_instance", "stop", "lost", "duplicates", "checks")}  # fmt: skip
    summary["archive"] = {k: report["archive"][k] for k in ("events", "distinct_instance_ids",
                          "not_archived", "archived_twice", "seconds")}  # fmt: skip
    print(json.dumps(summary, indent=2))
    console.print(f"written to {path.relative_to(REPO)}")
    if not all(checks.values()):
        sys.exit(1)


def _status(stored: dict[str, dict[str, int]], token: str) -> int | None:
    for events in stored.values():
        if token in events:
            return events[token]
    return None


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
