"""The relay of the end-to-end bench: Postfix's ``smtp-sink`` and what it accepted.

:class:`Sink` runs ``smtp-sink`` on a loopback port and samples its running
message counter (the throughput phases); :class:`DumpTail` follows its dump
file to learn when each token's message was accepted (the latency phases).
:func:`ensure_relay` finds the binary, installing postfix if needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from array import array
from bisect import bisect_right
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers

SETUP_RELAY = ib.BENCH_DIR / "setup-relay.sh"
console = ib.console

#: the publication's subject is "Order {{ ctx.order.id }} confirmed, …": the token is the order id
SUBJECT_TOKEN = re.compile(rb"\nSubject: Order ([A-Za-z0-9]+) confirmed")
COUNTER = re.compile(rb"mesg=(\d+)")


def ensure_relay() -> str:
    """The path of smtp-sink, installing postfix first if needed (bench/setup-relay.sh)."""
    found = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None
    )
    if found:
        return found
    console.print("installing postfix for smtp-sink (bench/setup-relay.sh)")
    subprocess.run(["sh", str(SETUP_RELAY)], check=True)
    return shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """``smtp-sink -c`` on a loopback port; its running message counter is sampled with timestamps.

    With ``dump`` it also appends every message to a file (``-D``), which
    :class:`DumpTail` reads to learn when each message was accepted: smtp-sink
    writes the message before it answers ``250`` to the final dot.
    """

    def __init__(self, binary: str, port: int, workdir: Path, dump: bool = False) -> None:
        self.port = port
        # smtp-sink writes as nobody: the dump lives in a world-writable directory of its own
        # (on tmpfs when there is one, so the relay never waits on a disk)
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self.dump_path = (
            Path(tempfile.mkdtemp(prefix="msgcenter-e2e-sink-", dir=shm)) / "dump" if dump else None
        )
        command = [binary, "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to run as root
        if self.dump_path is not None:
            self.dump_path.parent.chmod(0o777)
            command += ["-D", str(self.dump_path)]
        command += [f"127.0.0.1:{port}", "1024"]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.times = array("d")
        self.counts = array("q")
        self.count = 0
        self.text = bytearray()  # anything that is not a counter (errors)
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="sink-counter").start()
        wait_port(port, self.proc)

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            now = time.monotonic()
            found = COUNTER.findall(chunk)
            if found:
                with self._changed:
                    self.count = int(found[-1])
                    self.times.append(now)
                    self.counts.append(self.count)
                    self._changed.notify_all()
            rest = COUNTER.sub(b"", chunk).replace(b"sess=", b"").strip()
            if rest and len(self.text) < 4000 and not re.fullmatch(rb"[\d\squit=\r]*", rest):
                self.text += rest + b"\n"

    def count_at(self, moment: float) -> int:
        """Messages accepted at ``moment`` (monotonic clock)."""
        i = bisect_right(self.times, moment)
        return self.counts[i - 1] if i else 0

    def time_of(self, count: int) -> float | None:
        """When the counter first reached ``count``."""
        from bisect import bisect_left

        i = bisect_left(self.counts, count)
        return self.times[i] if i < len(self.counts) else None

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def stop(self) -> None:
        ib.stop(self.proc, timeout=5)
        if self.dump_path is not None:
            shutil.rmtree(self.dump_path.parent, ignore_errors=True)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"smtp-sink exited with {proc.returncode}: {out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"smtp-sink not listening on {port} after {timeout} s")


class DumpTail(threading.Thread):
    """Follows smtp-sink's dump file and notes when each token's message shows up in it.

    It sleeps in ``inotify`` until the file changes (no polling), so its clock
    reading is within a scheduling delay of smtp-sink's write.
    """

    IN_MODIFY, IN_CREATE = 0x2, 0x100

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="dump-tail")
        self.path = path
        self.seen: dict[bytes, float] = {}
        self.duplicates = 0
        self.messages = 0
        self._stopping = threading.Event()
        self._offset = 0
        self._rest = b""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK)
        if (
            self._fd < 0
            or libc.inotify_add_watch(
                self._fd, str(path.parent).encode(), self.IN_MODIFY | self.IN_CREATE
            )
            < 0
        ):
            raise OSError(ctypes.get_errno(), "inotify")

    def run(self) -> None:
        file = None
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._fd, 65536)
            now = time.monotonic()
            if file is None:
                try:
                    file = open(self.path, "rb")  # noqa: SIM115 - kept open while tailing
                except FileNotFoundError:
                    continue
            data = file.read()
            if data:
                self._scan(data, now)
        if file is not None:
            data = file.read()
            if data:
                self._scan(data, time.monotonic())
            file.close()
        os.close(self._fd)

    def _scan(self, data: bytes, now: float) -> None:
        data = self._rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest = data
            return
        # the rest keeps the line's end, so that a header that starts the next read is still
        # found after its "\n" (a Subject at the start of a read was missed before)
        whole, self._rest = data[: cut + 1], data[cut:]
        self.messages += whole.count(b"\nX-Client-Addr: ") + whole.startswith(b"X-Client-Addr: ")
        for found in SUBJECT_TOKEN.findall(whole):
            if found in self.seen:
                self.duplicates += 1
            else:
                self.seen[found] = now

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)
