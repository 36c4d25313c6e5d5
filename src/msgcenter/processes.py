"""Several processes of one msgcenter command, run together (``exec worker --procs N``,
``exec serve --workers N``).

A worker renders, builds and sends in one Python interpreter, and a web process parses
and stores in one, so each uses at most about one core (its GIL); a host with more
cores does more with more processes. They are independent processes of the same
command; this module only starts them together, passes SIGTERM and SIGINT on to each,
and stops them all when one fails, so that a service manager sees one unit that is
either whole or down.
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

#: seconds a process has to stop after the others' SIGTERM before it is killed
STOP_TIMEOUT_SECONDS = 60.0


def msgcenter_command(*arguments: str) -> list[str]:
    """The command line that runs ``msgcenter`` with ``arguments`` in this interpreter."""
    return [sys.executable, "-m", "msgcenter", *arguments]


def run_processes(command: Sequence[str], count: int, *, name: str) -> int:
    """Run ``count`` processes of ``command`` (the environment inherited) until they end,
    and return the exit code for the whole; ``name`` (``worker``, ``web``) starts the
    ``action`` of their log lines.

    SIGTERM and SIGINT are passed on to every process, which stops cleanly; the code is
    then 0 if all did (exiting with 0, or ended by that signal). A process that ends on
    its own (a crash, a lost database at start) makes the others stop, and its code (1 if
    it was 0; 128 + the signal if one ended it) is returned.
    """
    exits: queue.Queue[subprocess.Popen[bytes]] = queue.Queue()
    children: list[subprocess.Popen[bytes]] = []
    #: the signals passed on: a process one of them ended (uvicorn raises it again once
    #: stopped) stopped well
    passed_on: list[int] = []

    def watch(child: subprocess.Popen[bytes]) -> None:
        child.wait()
        exits.put(child)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        passed_on.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(count):
            child = subprocess.Popen(command)
            children.append(child)
            threading.Thread(
                target=watch, args=(child,), name=f"wait-{child.pid}", daemon=True
            ).start()
        log.info(
            f"{name} processes started",
            action=f"{name}.processes.started",
            pids=[c.pid for c in children],
        )
        code = 0
        for _ in children:
            ended = exits.get()
            if passed_on or code:
                if not code and -ended.returncode not in passed_on:
                    code = _exit_code(ended.returncode)
                continue
            code = _exit_code(ended.returncode) or 1
            log.error(
                f"a {name} process ended",
                action=f"{name}.process.ended",
                pid=ended.pid,
                returncode=ended.returncode,
                detail="the other processes are stopped",
            )
            _stop(children, name)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop(children, name)


def _exit_code(returncode: int) -> int:
    """A process's exit code as a shell gives it: 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(children: Sequence[subprocess.Popen[bytes]], name: str) -> None:
    """SIGTERM to the processes still running; SIGKILL to those not gone in time."""
    running = [c for c in children if c.poll() is None]
    for child in running:
        child.terminate()
    for child in running:
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error(
                f"a {name} process did not stop in time: killed",
                action=f"{name}.process.killed",
                pid=child.pid,
                timeout=STOP_TIMEOUT_SECONDS,
            )
            child.kill()
            child.wait()
