"""msgcenter's processes in the end-to-end bench: the layouts and the stack that runs one.

A :class:`Layout` says how many ``exec worker`` processes run beside
``exec serve``; a :class:`Stack` starts and stops them on one database;
:func:`environment` is the environment they get (settings, experiments).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers


@dataclass
class Layout:
    name: str
    #: ``exec worker`` processes; 0 runs the workflows inside the web process
    workers: int


LAYOUTS = {
    "single": Layout("single", 0),
    "split1": Layout("split1", 1),
    "split2": Layout("split2", 2),
    "split3": Layout("split3", 3),
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
