"""The README's first command: `msgcenter up --demo` sends and shows messages on the embedded default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port


def test_up_demo_sends_messages_to_the_catcher_and_shows_them(tmp_path):
    web, smtp = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgcenter",
            "up",
            "--demo",
            "--port",
            str(web),
            "--smtp-port",
            str(smtp),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "120"},
        text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl+C" in line:
                break
        printed = "".join(output)
        assert "Press Ctrl+C" in printed, printed
        assert printed.count(" sent ") == 3, printed
        base = f"http://127.0.0.1:{web}"
        caught = httpx.get(f"{base}/catcher/api/messages").json()
        assert sorted(m["to"] for m in caught) == [
            "ann@example.com",
            "bob@example.com",
            "cleo@example.com",
        ]
        cleo = next(m for m in caught if m["to"] == "cleo@example.com")
        detail = httpx.get(f"{base}/catcher/api/messages/{cleo['id']}").json()
        assert detail["subject"] == "Order 1003 confirmed, Cléo"
        assert "Pencils &amp; eraser" in detail["html"]
        page = httpx.get(f"{base}/catcher/")
        assert page.status_code == 200 and "Order 1003 confirmed" in page.text
        events = httpx.get(f"{base}/api/v1/events?status=sent", auth=("demo", "demo")).json()[
            "items"
        ]
        assert len(events) == 3
        assert (tmp_path / "msgcenter-data" / "exec.db").is_file()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
