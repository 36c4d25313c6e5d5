"""``msgcenter control serve`` as a real process: it serves the design API on its migrated
database, is ready, and stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from tests.acceptance.servers import ServerProcess, msgcenter_cli
from tests.conftest import add_operator
from tests.control import CONTROL_ADMIN, KEY

pytestmark = pytest.mark.slow


def test_control_serve_answers_its_api_and_stops_on_sigterm(db, tmp_path):
    add_operator(db, *CONTROL_ADMIN, rights="mc_admin")
    server = ServerProcess(
        db.url, tmp_path / "control.log", role="control",
        env={"MSGCENTER_CONTROL__CREDENTIALS_KEY": KEY},
    ).start()  # fmt: skip
    try:
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
        created = httpx.post(
            f"{server.url}/api/v1/event-types",
            json={"name": "order_confirmation", "label": "Order confirmed"},
            auth=CONTROL_ADMIN,
        )
        assert created.status_code == 201, created.text
        assert "order_confirmation" in msgcenter_cli(
            "control", "event-type", "list", "--db", db.url
        )
        assert httpx.get(f"{server.url}/api/v1/event-types").status_code == 401
    finally:
        server.stop()
    # uvicorn shuts the app down, then re-raises the signal so that the exit says why
    assert server.process is not None and server.process.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in (tmp_path / "control.log").read_text()


@pytest.mark.parametrize("role", ["exec", "control"])
def test_serve_on_a_database_never_upgraded_says_so_in_one_line(role, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "msgcenter", role, "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("MSGCENTER_")},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert re.fullmatch(
        f"error: the database schema is not current: database {re.escape(str(tmp_path))}"
        r"/msgcenter\.db is at revision none, the code expects \d+: run `msgcenter db upgrade`",
        line,
    ), line
