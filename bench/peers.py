"""msgcenter against a peer, in the same run on the same machine: django-post_office (issue 11).

Both peers get the same message (the tests' order confirmation: a subject, an
HTML and a text part rendered from a template with the recipient's order) for
the same ``--messages`` recipients, on PostgreSQL at 127.0.0.1:5432, and send
to the same Postfix ``smtp-sink`` on a loopback port:

1. **django-post_office**, in a virtual environment of its own
   (``bench/.peers/post_office``, made and filled from PyPI on the first run:
   Django, django-post_office, psycopg), in a minimal Django project generated
   in a temporary directory, on a fresh database ``peers_post_office``, with
   post_office's default settings (recorded in the JSON) but for its SMTP
   backend, which points at the sink. The messages are enqueued with
   ``post_office.mail.send_many`` (Django's ``bulk_create``) in chunks of
   ``--batch``, from an ``EmailTemplate`` rendered at enqueue time with each
   recipient's context (timed: the enqueue rate); then ``manage.py
   send_queued_mail --processes 2`` (both cores) sends them all (timed until
   the sink has accepted them all). post_office sends in a separate step (cron,
   Celery or uWSGI in production): its end-to-end time is the enqueue plus the
   sending, started at once here (its best case).
2. **msgcenter**: a fresh database (``msgcenter_bench_peers``), the same
   message as a publication (``tests/fixtures/order_confirmation.toml``),
   ``exec serve`` plus two ``exec worker`` processes (``--layout split2``: two
   sending processes, as post_office's two; ``split1`` one, ``single`` runs the
   workflows in the web process) with the
   product's defaults, and the messages pushed as events in REST lists of
   ``--batch`` over ``--connections`` connections (timed until every event is
   acknowledged: the enqueue rate), end to end until the sink has accepted
   them all (intake and sending overlap).

It prints both rates and msgcenter's ratio to post_office, and writes
``bench/results/peers-<YYYYMMDD-HHMM>.json`` with both peers' versions and
settings and the CPU each used (its processes and its database's backends).
Target (issue 11): msgcenter at least twice post_office's messages/s end to end.

    .venv/bin/python bench/peers.py --messages 5000 --priority -10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from e2e_cpu import Booster
from e2e_relay import Sink, ensure_relay
from e2e_report import REPO, code_version, database_summary
from e2e_stack import LAYOUTS, Stack
from scale import CpuSampler, backends, tree

PEERS_DIR = ib.BENCH_DIR / ".peers"
POST_OFFICE_VENV = PEERS_DIR / "post_office"
POST_OFFICE_PACKAGES = ["django", "django-post-office", "psycopg[binary]"]
POST_OFFICE_DATABASE = "peers_post_office"
MSGCENTER_DATABASE = "msgcenter_bench_peers"
PUBLICATION = REPO / "tests" / "fixtures" / "order_confirmation.toml"
#: the processes of send_queued_mail: one per core of the reference machine
POST_OFFICE_PROCESSES = 2
console = ib.console

#: the fixture's publication in Django's template language (post_office renders with Django's)
DJANGO_TEMPLATE = {
    "name": "order_confirmation",
    "subject": "Order {{ order.id }} confirmed, {{ client.firstname }}",
    "html_content": (
        "<html><body><p>Hello {{ client.firstname }},</p>\n"
        "<p>Your order {{ order.id }} is confirmed.</p>\n"
        "<ul>{% for a in order.article %}<li>{{ a.sku }} x {{ a.qty }}</li>{% endfor %}</ul>\n"
        "<p>Shop Ltd, {{ email }}</p></body></html>"
    ),
    "content": (
        "Hello {{ client.firstname }},\nYour order {{ order.id }} is confirmed.\n"
        "{% for a in order.article %}- {{ a.sku }} x {{ a.qty }}\n{% endfor %}"
    ),
}

SETTINGS = """\
SECRET_KEY = "bench-peers-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "post_office"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "{database}",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": 5432,
    }}
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
# mail.send_mail() would queue through post_office; post_office itself sends by SMTP to the sink
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {smtp_port}
# post_office's defaults, but for the backend it sends with
POST_OFFICE = {{"BACKENDS": {{"default": "django.core.mail.backends.smtp.EmailBackend"}}}}
LOGGING = {{"version": 1, "disable_existing_loggers": False,
           "handlers": {{"console": {{"class": "logging.StreamHandler"}}}},
           "loggers": {{"post_office": {{"handlers": ["console"], "level": "WARNING"}}}}}}
"""

MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

ENQUEUE = """\
import json, os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
import django
django.setup()
from django.conf import settings as django_settings
from post_office import mail, settings
from post_office.models import EmailTemplate

count, batch, tokens = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
template = EmailTemplate.objects.create(**json.loads(sys.argv[4]))
started = time.monotonic()
for start in range(0, count, batch):
    mail.send_many([
        {
            "recipients": [f"{tokens}{n:07d}@example.com"],
            "sender": "Shop <shop@example.com>",
            "template": template,
            "context": {
                "client": {"firstname": "Ann"},
                "order": {"id": f"{tokens}{n:07d}", "article": [{"sku": "A1", "qty": "1"}]},
                "email": f"{tokens}{n:07d}@example.com",
            },
            "headers": {"Reply-To": "care@example.com"},
            "priority": "medium",
        }
        for n in range(start, min(start + batch, count))
    ])
elapsed = time.monotonic() - started
print(json.dumps({
    "enqueue_s": elapsed,
    "settings": {
        "BATCH_SIZE": settings.get_batch_size(),
        "THREADS_PER_PROCESS": settings.get_threads_per_process(),
        "DEFAULT_PRIORITY": settings.get_default_priority(),
        "LOG_LEVEL": settings.get_log_level(),
        "SENDING_ORDER": settings.get_sending_order(),
        "MAX_RETRIES": settings.get_max_retries(),
        "BACKENDS": settings.get_available_backends(),
        "CELERY_ENABLED": settings.get_celery_enabled(),
        "EMAIL_BACKEND": django_settings.EMAIL_BACKEND,
    },
}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument(
        "--batch", type=int, default=100, help="messages per enqueue call / request"
    )
    parser.add_argument("--connections", type=int, default=4, help="msgcenter's REST connections")
    parser.add_argument(
        "--layout",
        choices=["single", "split1", "split2", "split3"],
        default="split2",
        help="msgcenter's processes: split2 sends with two exec worker processes, as "
        "post_office sends with two (--processes 2)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per peer at most")
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="niceness for the bench's processes and the PostgreSQL backends of both databases",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases at the end")
    return parser.parse_args()


def recreate(database: str) -> None:
    admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    admin.dispose()


def drop(database: str) -> None:
    admin = sa.create_engine(f"{ib.PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.dispose()


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def post_office_venv() -> Path:
    """The peer's interpreter, its virtual environment made and filled on the first run."""
    python = POST_OFFICE_VENV / "bin" / "python"
    if not python.exists():
        console.print(f"making {POST_OFFICE_VENV.relative_to(REPO)}: {POST_OFFICE_PACKAGES}")
        PEERS_DIR.mkdir(exist_ok=True)
        run([sys.executable, "-m", "venv", str(POST_OFFICE_VENV)], REPO)
        run([str(python), "-m", "pip", "install", "-q", *POST_OFFICE_PACKAGES], REPO)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m; print(json.dumps({**{p: m.version(p) for p in "
        "('Django', 'django-post-office', 'psycopg')}, 'python': sys.version.split()[0]}))"
    )
    return json.loads(run([str(python), "-c", code], REPO))


def wait_sink(sink: Sink, count: int, timeout: float) -> float | None:
    """When the sink had accepted ``count`` messages (monotonic), or None after ``timeout``."""
    return sink.time_of(count) if sink.wait_for(count, timeout) else None


def run_post_office(args: argparse.Namespace, sink: Sink, workdir: Path) -> dict[str, Any]:
    python = post_office_venv()
    project = workdir / "post_office_project"
    project.mkdir()
    (project / "settings.py").write_text(
        SETTINGS.format(database=POST_OFFICE_DATABASE, smtp_port=sink.port)
    )
    (project / "manage.py").write_text(MANAGE)
    (project / "enqueue.py").write_text(ENQUEUE)
    recreate(POST_OFFICE_DATABASE)
    env = {**os.environ, "PYTHONPATH": str(project)}
    run([str(python), "manage.py", "migrate", "-v", "0"], project, env)
    # send_queued_mail forks a pool per batch of 100: too short-lived to sample, so its CPU is
    # that of the children this process waited for (enqueue.py, send_queued_mail and its pools)
    sampler = CpuSampler({"postgres": backends(POST_OFFICE_DATABASE)})
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start_measuring()
    before = sink.count
    started = time.monotonic()
    enqueued = json.loads(
        run(
            [
                str(python),
                "enqueue.py",
                str(args.messages),
                str(args.batch),
                "po",
                json.dumps(DJANGO_TEMPLATE),
            ],
            project,
            env,
        )  # fmt: skip
    )
    sending = time.monotonic()
    lockfile = workdir / "post_office"
    command = [str(python), "manage.py", "send_queued_mail", "--processes",
               str(POST_OFFICE_PROCESSES), "--lockfile", str(lockfile)]  # fmt: skip
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=args.timeout
    )
    last = wait_sink(sink, before + args.messages, 30)
    cpu = sampler.stop()
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["post_office"] = round(
        waited.ru_utime + waited.ru_stime - children.ru_utime - children.ru_stime, 2
    )
    engine = sa.create_engine(f"{ib.PG_SERVER}/{POST_OFFICE_DATABASE}")
    with engine.connect() as conn:
        statuses = dict(
            conn.exec_driver_sql(
                "SELECT status, count(*) FROM post_office_email GROUP BY status"
            ).all()
        )
    engine.dispose()
    delivered = sink.count - before
    end_to_end = (last - started) if last else None
    return {
        "peer": "django-post_office",
        "versions": versions(python),
        "settings": enqueued["settings"] | {"send_queued_mail --processes": POST_OFFICE_PROCESSES},
        "enqueue": f"post_office.mail.send_many, {args.batch} per call, from an EmailTemplate "
        "rendered at enqueue time",
        "messages": args.messages,
        "delivered": delivered,
        "send_queued_mail_exit": done.returncode,
        "send_queued_mail_output": (done.stdout + done.stderr)[-2000:],
        "email_status": {str(k): v for k, v in statuses.items()},  # 0 sent, 1 failed, 2 queued
        "enqueue_s": round(enqueued["enqueue_s"], 2),
        "enqueue_per_s": round(args.messages / enqueued["enqueue_s"], 1),
        "send_s": round((last or time.monotonic()) - sending, 2),
        "end_to_end_s": round(end_to_end, 2) if end_to_end else None,
        "end_to_end_per_s": round(args.messages / end_to_end, 1) if end_to_end else 0,
        "cpu_s": cpu,
        "cpu_ms_per_message": {k: round(v * 1000 / max(delivered, 1), 3) for k, v in cpu.items()},
        "cpu_note": "postgres is a lower bound here: post_office's pools open backends that end "
        "between two samples",
    }


def run_msgcenter(args: argparse.Namespace, sink: Sink, workdir: Path) -> dict[str, Any]:
    ib.PG_DATABASE = MSGCENTER_DATABASE  # fresh_database() reads it at call time
    url = ib.fresh_database("postgresql", workdir)
    ib.msgcenter("exec", "publication", "load", str(PUBLICATION), "--db", url, cwd=workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")}
    settings = {
        "MSGCENTER_SMTP__HOST": "127.0.0.1",
        "MSGCENTER_SMTP__PORT": str(sink.port),
        "MSGCENTER_SMTP__HELO_NAME": "bench.example.com",
        "MSGCENTER_SECRET_KEY": "bench-peers-secret-key-0123456789abcdef",
        "MSGCENTER_LOGGING__LEVEL": "info",
    }
    stack = Stack(url, workdir, LAYOUTS[args.layout], env | settings)
    stack.start()
    try:
        sampler = CpuSampler(
            {
                "msgcenter": lambda table: set().union(
                    *(tree(lambda p=p: p)(table) for p in [stack.serve, *stack.workers])
                ),
                "postgres": backends(MSGCENTER_DATABASE),
            }
        )
        sampler.start_measuring()
        before = sink.count
        started = time.monotonic()
        acked = push(stack.port, args)
        enqueue_s = time.monotonic() - started
        last = wait_sink(sink, before + args.messages, args.timeout)
        cpu = sampler.stop()
    finally:
        stack.stop()
    delivered = sink.count - before
    end_to_end = (last - started) if last else None
    return {
        "peer": "msgcenter",
        "versions": {"msgcenter": code_version()},
        "settings": {k: v for k, v in settings.items() if "SECRET" not in k}
        | {"layout": args.layout, "everything else": "the product's defaults"},
        "enqueue": f"REST lists of {args.batch} events over {args.connections} connections",
        "messages": args.messages,
        "acknowledged": acked,
        "delivered": delivered,
        "database": database_summary(url),
        "enqueue_s": round(enqueue_s, 2),
        "enqueue_per_s": round(acked / enqueue_s, 1),
        "end_to_end_s": round(end_to_end, 2) if end_to_end else None,
        "end_to_end_per_s": round(args.messages / end_to_end, 1) if end_to_end else 0,
        "cpu_s": cpu,
        "cpu_ms_per_message": {k: round(v * 1000 / max(delivered, 1), 3) for k, v in cpu.items()},
    }


def push(port: int, args: argparse.Namespace) -> int:
    """Push ``--messages`` events in lists of ``--batch``; how many were acknowledged."""
    local = threading.local()
    acked = 0
    lock = threading.Lock()

    def one(start: int) -> None:
        nonlocal acked
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}", auth=(ib.LOGIN, ib.PASSWORD), timeout=60
            )
        events = [
            {
                "type": "order_confirmation",
                "email": f"mc{n:07d}@example.com",
                "ctx": {
                    "client": {"firstname": "Ann"},
                    "order": {"id": f"mc{n:07d}", "article": [{"sku": "A1", "qty": "1"}]},
                },
            }
            for n in range(start, min(start + args.batch, args.messages))
        ]
        answer = local.client.post("/api/v1/events/rt", json=events)
        if answer.status_code != 201:
            raise RuntimeError(f"push refused: {answer.status_code} {answer.text[:300]}")
        with lock:
            acked += len(answer.json()["ids"])

    with ThreadPoolExecutor(args.connections) as pool:
        list(pool.map(one, range(0, args.messages, args.batch)))
    return acked


def main() -> None:
    args = parse_args()
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="msgcenter-peers-"))
    console.print(f"[bold]peers: django-post_office, then msgcenter[/], work in {workdir}")
    sink = Sink(ensure_relay(), ib.free_port(), workdir)
    boosters = []
    if args.priority:
        for database in (POST_OFFICE_DATABASE, MSGCENTER_DATABASE):
            booster = Booster(args.priority, database)
            booster.start()
            boosters.append(booster)
    report: dict[str, Any] = {
        "bench": "peers",
        "started": started.isoformat(timespec="seconds"),
        "machine": ib.machine_info(None),
        "args": vars(args),
        "relay": "postfix smtp-sink -c, one for both peers",
        "workdir": str(workdir),
    }
    try:
        report["post_office"] = post_office = run_post_office(args, sink, workdir)
        console.print(
            f"  post_office: enqueue {post_office['enqueue_per_s']:,}/s, "
            f"end to end {post_office['end_to_end_per_s']:,} msg/s "
            f"({post_office['end_to_end_s']} s, {post_office['delivered']:,} delivered)"
        )
        report["msgcenter"] = msgcenter = run_msgcenter(args, sink, workdir)
        console.print(
            f"  msgcenter: enqueue {msgcenter['enqueue_per_s']:,}/s, "
            f"end to end {msgcenter['end_to_end_per_s']:,} msg/s "
            f"({msgcenter['end_to_end_s']} s, {msgcenter['delivered']:,} delivered)"
        )
    finally:
        sink.stop()
        for booster in boosters:
            booster.stop()
        if not args.keep:
            drop(POST_OFFICE_DATABASE)
            drop(MSGCENTER_DATABASE)

    def ratio(key: str) -> float | None:
        theirs = post_office[key]
        return round(msgcenter[key] / theirs, 2) if theirs else None

    report["ratio"] = {
        "end_to_end": ratio("end_to_end_per_s"),
        "enqueue": ratio("enqueue_per_s"),
        "target_end_to_end": 2.0,
    }
    report["elapsed_s"] = round((datetime.now() - started).total_seconds(), 1)
    path = ib.write_results("peers", report, started)
    print(
        json.dumps(
            {
                "messages": args.messages,
                "post_office": {
                    k: post_office[k] for k in ("enqueue_per_s", "end_to_end_per_s", "delivered")
                },
                "msgcenter": {
                    k: msgcenter[k] for k in ("enqueue_per_s", "end_to_end_per_s", "delivered")
                },
                "ratio": report["ratio"],
            },
            indent=2,
        )
    )
    console.print(f"written to {path.relative_to(REPO)}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
