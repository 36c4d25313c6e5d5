"""CPU accounting and priority in the end-to-end bench (Linux ``/proc``).

Who used how many cores over a phase (:func:`cpu_snapshot`, :func:`cores`),
how busy the rest of the machine is (:func:`busy_elsewhere`,
:func:`wait_quiet`), and ``--priority`` (:class:`Booster`).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
from e2e_relay import Sink
from e2e_stack import Stack

console = ib.console


def _descendants(table: dict[int, tuple[int, float, str]], roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def cpu_snapshot(stack: Stack, sink: Sink | None) -> dict:
    """CPU seconds per process, each with the part of the machine it belongs to.

    Deltas are taken per process, so a process that ends between two
    snapshots (another session's database backend, say) cannot make a figure
    negative; the CPU it used in the interval shows under ``other``.
    """
    table = ib.process_table()
    roles: dict[int, str] = {}
    for pid in _descendants(table, [stack.serve.pid]):
        roles[pid] = "server"
    for pid in _descendants(table, [w.pid for w in stack.workers]):
        roles[pid] = "workers"
    if sink is not None:
        roles[sink.proc.pid] = "sink"
    for pid in _descendants(table, [os.getpid()]):
        roles.setdefault(pid, "loadgen")
    database = stack.url.rsplit("/", 1)[-1]
    for pid, (_, _, cmdline) in table.items():
        if pid in roles or not cmdline.startswith("postgres"):
            continue
        if f" {database} " in cmdline:
            roles[pid] = "postgres"
        elif not re.search(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]", cmdline):
            roles[pid] = "postgres"  # the instance's own processes (WAL writer, checkpointer…)
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return {
        "machine": machine,
        "procs": {pid: (roles.get(pid, "other"), cpu) for pid, (_, cpu, _) in table.items()},
    }


def cores(before: dict, after: dict, wall: float) -> dict:
    """Cores used over ``wall`` seconds by each part: msgcenter's web process tree (``server``),
    its ``workers``, ``postgres`` (this database's backends and the instance's own processes),
    the relay (``sink``), this bench with its pusher (``loadgen``), and everything else."""
    used = dict.fromkeys(("server", "workers", "postgres", "sink", "loadgen"), 0.0)
    for pid, (role, cpu) in after["procs"].items():
        if role != "other":
            used[role] += cpu - before["procs"].get(pid, (role, 0.0))[1]
    result = {k: v / wall for k, v in used.items()}
    machine = (after["machine"] - before["machine"]) / wall
    result["other"] = machine - sum(result.values())
    result["machine"] = machine
    return {k: round(v, 2) for k, v in result.items()}


class Booster(threading.Thread):
    """Raises the scheduling priority (``--priority``) of everything this bench measures.

    On a machine shared with other work, this approximates the dedicated
    2-core machine of the targets. Linux shares the CPU between sessions
    (autogroups) before processes, so the niceness goes to the autogroup of
    each process this bench started (msgcenter's, the relay's, its own) and,
    within PostgreSQL's autogroup, to the backends serving the bench database
    (PostgreSQL's own group is left alone: other work shares it). New
    processes (database connections opened later) are caught within half a
    second.
    """

    def __init__(self, niceness: int, database: str) -> None:
        super().__init__(daemon=True, name="booster")
        self.niceness = niceness
        self.database = database
        self.boosted: set[int] = set()
        self.groups: set[str] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.boost()
            if self._stopping.wait(0.5):
                return

    def boost(self) -> None:
        table = ib.process_table()
        mine = _descendants(table, [os.getpid()])
        for pid, (_, _, cmdline) in table.items():
            backend = cmdline.startswith("postgres") and f" {self.database} " in cmdline
            if pid not in mine and not backend:
                continue
            # Linux keeps a nice value per thread: set each one (new threads are caught later)
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in threads:
                if tid not in self.boosted:
                    with contextlib.suppress(OSError):
                        os.setpriority(os.PRIO_PROCESS, tid, self.niceness)
                        self.boosted.add(tid)
            if pid in mine:
                with contextlib.suppress(OSError, IndexError):
                    group = Path(f"/proc/{pid}/autogroup")
                    name = group.read_text().split()[0]
                    if name not in self.groups:
                        group.write_text(str(self.niceness))
                        self.groups.add(name)

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)


def busy_elsewhere(seconds: float = 2.0) -> float:
    """Cores used by processes that are not this bench's (and not PostgreSQL's idle self) over ``seconds``."""
    mine = _descendants(ib.process_table(), [os.getpid()])

    def snapshot() -> tuple[float, float]:
        table = ib.process_table()
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        return machine, sum(cpu for pid, (_, cpu, _) in table.items() if pid in mine)

    m0, b0 = snapshot()
    time.sleep(seconds)
    m1, b1 = snapshot()
    return round(((m1 - m0) - (b1 - b0)) / seconds, 2)


def wait_quiet(limit: float, patience: float) -> float:
    """Wait up to ``patience`` seconds for the rest of the machine to use less than ``limit`` cores."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_elsewhere()
        if busy <= limit or time.monotonic() > deadline:
            if busy > limit:
                console.print(
                    f"[yellow]the machine is busy elsewhere ({busy} cores): figures will be low[/]"
                )
            return busy
        console.print(f"  waiting for a quiet machine ({busy} cores busy elsewhere)")
        time.sleep(5)
