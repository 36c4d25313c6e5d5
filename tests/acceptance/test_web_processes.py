"""``msgcenter exec serve --workers N``: N web processes, each on its own ``SO_REUSEPORT``
socket, so that the kernel spreads connections over all of them (uvicorn's shared socket
gave a burst of connections to whichever process woke first), stopped together."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest

from msgcenter.store.database import Database
from tests.acceptance.servers import ServerProcess
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

#: /proc/net/tcp states (include/net/tcp_states.h)
ESTABLISHED, LISTEN = "01", "0A"


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def _local_sockets(port: int, state: str) -> set[str]:
    """Inodes of the IPv4 TCP sockets on local ``port`` in ``state``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def _started_pids(log: Path) -> list[int]:
    for line in log.read_text(errors="replace").splitlines():
        if '"web.processes.started"' in line:
            return list(json.loads(line)["pids"])
    return []


def test_web_processes_share_the_connections_and_stop_together(db: Database, tmp_path):
    log = tmp_path / "serve.log"
    server = ServerProcess(db.url, log, "--workers", "2").start()
    try:
        pids = _started_pids(log)
        assert len(pids) == 2 and server.process is not None and server.process.pid not in pids
        wait_for(
            lambda: all(_socket_inodes(p) & _local_sockets(server.port, LISTEN) for p in pids),
            timeout=30,
            message="both web processes listening",
        )
        clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(24)]
        try:
            for client in clients:
                assert client.get("/healthz").status_code == 200  # each keeps its connection
            established = _local_sockets(server.port, ESTABLISHED)
            per_process = Counter({pid: len(_socket_inodes(pid) & established) for pid in pids})
        finally:
            for client in clients:
                client.close()
        assert per_process.total() == 24
        # SO_REUSEPORT hashes connections over the sockets: all 24 on one has odds of 2**-23
        assert min(per_process.values()) > 0, per_process

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        server.stop()
