"""Who holds a claim: one worker process, named by its machine, the machine's boot, its pid and
its start time.

A claimed delivery log carries its owner (``delivery_log.claimed_by``,
``<worker id>|<boot id>|<pid>|<start>``). The lease lets any worker take the
claims of a process that died, but only once it lapses (``processing.
claim_lease_seconds``); a worker that starts on the same machine can tell at
once whether a claim's owner is dead: same worker id and same boot, and no
process with that pid and start time. Such claims are taken back at start, so a
server restarted after a crash resumes its messages in seconds.

On Linux the start time is the process's start in clock ticks since boot
(``/proc/<pid>/stat``), which tells a pid reused by another process apart;
elsewhere it is the wall-clock start and a live pid counts as the owner.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys" / "kernel" / "random" / "boot_id"
#: ``/proc/<pid>/stat``'s starttime, counted after the parenthesised command name (proc(5))
_STARTTIME_AFTER_COMMAND = 19


@dataclass(frozen=True, slots=True)
class ClaimOwner:
    """One worker process, as its claims name it."""

    worker_id: str
    boot: str
    pid: int
    started: int

    @property
    def token(self) -> str:
        """What ``delivery_log.claimed_by`` holds."""
        return f"{self.machine}{self.pid}|{self.started}"

    @property
    def machine(self) -> str:
        """The prefix every owner token of this machine (and boot) starts with."""
        return f"{self.worker_id}|{self.boot}|"

    @classmethod
    def parse(cls, token: str) -> ClaimOwner | None:
        """The owner a token names; None for a token of another form."""
        parts = token.split("|")
        if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
            return None
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))

    @classmethod
    def this_process(cls, worker_id: str = "") -> ClaimOwner:
        """The current process, on the machine ``worker_id`` names (empty: the host name)."""
        pid = os.getpid()
        started = _start_ticks(pid)
        return cls(
            worker_id or socket.gethostname(),
            _boot_id(),
            pid,
            started if started is not None else int(time.time()),
        )

    def is_alive(self) -> bool:
        """Whether this process still runs (asked on its own machine)."""
        if _PROC.joinpath("self").exists():
            return _start_ticks(self.pid) == self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields follow its last ")"
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[_STARTTIME_AFTER_COMMAND])
