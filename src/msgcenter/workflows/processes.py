"""Several worker processes on one host, run by one command (``msgcenter exec worker --procs N``).

A worker renders, builds and sends in one Python interpreter, so it uses at most about
one core (its GIL); a host with more cores sends more with more processes. They are
independent workers on the same database, as if started one by one (claims with
``FOR UPDATE SKIP LOCKED``, each its own claim owner); this module only starts them
together, passes SIGTERM and SIGINT on to each, and stops them all when one fails, so
that a service manager sees one unit that is either whole or down.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

#: seconds a worker process has to stop after the others' SIGTERM before it is killed
STOP_TIMEOUT_SECONDS = 60.0


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The command line of one worker process: ``msgcenter exec worker`` with ``arguments``."""
    return [sys.executable, "-m", "msgcenter", "exec", "worker", *arguments]


def run_worker_processes(count: int, arguments: Sequence[str]) -> int:
    """Run ``count`` worker processes (``msgcenter exec worker`` with ``arguments``, the
    environment inherited) until they end, and return the exit code for the command.

    SIGTERM and SIGINT are passed on to every process, which stops cleanly; the code is
    then 0 if all did. A process that ends on its own (a crash, a lost database at start)
    makes the others stop, and its code (1 if it was 0; 128 + the signal if one ended it)
    is returned.
    """
    exits: queue.Queue[subprocess.Popen[bytes]] = queue.Queue()
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def watch(child: subprocess.Popen[bytes]) -> None:
        child.wait()
        exits.put(child)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(count):
            child = subprocess.Popen(worker_command(arguments))
            children.append(child)
            threading.Thread(
                target=watch, args=(child,), name=f"wait-{child.pid}", daemon=True
            ).start()
        log.info(
            "worker processes started",
            action="worker.processes.started",
            pids=[c.pid for c in children],
        )
        code = 0
        for _ in children:
            ended = exits.get()
            if stopping.is_set() or code:
                code = code or _exit_code(ended.returncode)
                continue
            code = _exit_code(ended.returncode) or 1
            log.error(
                "a worker process ended",
                action="worker.process.ended",
                pid=ended.pid,
                returncode=ended.returncode,
                detail="the other worker processes are stopped",
            )
            _stop(children)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop(children)


def _exit_code(returncode: int) -> int:
    """A process's exit code as a shell gives it: 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the processes still running; SIGKILL to those not gone in time."""
    running = [c for c in children if c.poll() is None]
    for child in running:
        child.terminate()
    for child in running:
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error(
                "a worker process did not stop in time: killed",
                action="worker.process.killed",
                pid=child.pid,
                timeout=STOP_TIMEOUT_SECONDS,
            )
            child.kill()
            child.wait()
