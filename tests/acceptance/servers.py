"""Start the real ``msgcenter`` CLI as a server process, for acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.conftest import free_port


class ServerProcess:
    """``msgcenter exec serve`` (or ``control serve`` with ``role``) in a child process on a free
    loopback port; ``env`` adds variables to the inherited ones."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *extra_args: str,
        role: str = "exec",
        env: dict[str, str] | None = None,
    ) -> None:
        self.role = role
        self.env = env or {}
        self.database_url = database_url
        self.log_path = log_path
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        """Start the server and wait until /healthz answers."""
        env = {**os.environ, "MSGCENTER_LOGGING__FORMAT": "json", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "msgcenter",
                    self.role,
                    "serve",
                    "--db",
                    self.database_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def msgcenter_cli(*args: str) -> str:
    """Run one ``msgcenter`` command to completion; returns its output, fails with it on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "msgcenter", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"msgcenter {' '.join(args)} exited with {done.returncode}: {done.stdout}{done.stderr}"
        )
    return done.stdout


class WorkerProcess:
    """``msgcenter exec worker`` in a child process; ``env`` adds ``MSGCENTER_*`` settings to the
    inherited ones, ``arguments`` options to the command."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        arguments: Sequence[str] = (),
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.env = env or {}
        self.arguments = list(arguments)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> WorkerProcess:
        """Start the worker and (unless ``wait`` is false) wait until it logs that its workflows run."""
        env = {**os.environ, "MSGCENTER_LOGGING__FORMAT": "json", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "msgcenter", "exec", "worker"),
                    *("--db", self.database_url, *self.arguments),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait_for_log("worker.started")
        return self

    def logged(self, action: str) -> int:
        """How many log lines with this ``action`` the worker wrote (its log is JSON)."""
        return self.log_path.read_text(errors="replace").count(f'"action": "{action}"')

    def wait_for_log(self, action: str, timeout: float = 60.0) -> None:
        """Wait until the worker logged ``action``; raise if it exits or takes longer."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.logged(action):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker did not log {action} within {timeout} s: {self.log_path.read_text()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing in flight is recorded."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
