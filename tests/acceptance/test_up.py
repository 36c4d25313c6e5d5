"""The README's first command: `msgcenter up --demo` walks a message from design to archive on the
embedded default (a control and an execution instance, SQLite, catchers of mail, SMS and push)."""

from __future__ import annotations

import contextlib
import html
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from msgcenter.deliveries import DeliveryStatus
from tests.conftest import free_port, wait_for

DELIVERED = int(DeliveryStatus.DELIVERED)

pytestmark = pytest.mark.slow

DEMO = ("demo", "demo")


def test_up_demo_walks_design_publication_sending_and_archiving(tmp_path):
    web, control, smtp, smpp, push = (free_port() for _ in range(5))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgcenter",
            "up",
            "--demo",
            "--port",
            str(web),
            "--control-port",
            str(control),
            "--smtp-port",
            str(smtp),
            "--smpp-port",
            str(smpp),
            "--push-port",
            str(push),
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
        for step in range(1, 8):
            assert f"step {step} " in printed, printed
        assert "subject 'Order 0001 confirmed, Dana'" in printed  # the seed's preview
        assert "published v1 (exec: published v1)" in printed
        assert len(re.findall(r"email\s*\S\s*\w+@example\.com\s*\S\s*sent\b", printed)) == 3
        assert re.search(r"sms\s*\S\s*\+33612345678\s*\S\s*sent\b", printed), printed
        assert re.search(r"ios push\s*\S\s*6a1f3c0d9e8b\S*\s*\S\s*sent\b", printed), printed
        assert "5 new events with their delivery logs" in printed, printed
        base, console = f"http://127.0.0.1:{web}", f"http://127.0.0.1:{control}"
        caught = httpx.get(f"{console}/catcher/api/messages").json()
        assert sorted(m["to"] for m in caught) == [
            "ann@example.com",
            "bob@example.com",
            "cleo@example.com",
        ]
        cleo = next(m for m in caught if m["to"] == "cleo@example.com")
        detail = httpx.get(f"{console}/catcher/api/messages/{cleo['id']}").json()
        assert detail["subject"] == "Order 1003 confirmed, Cléo"
        assert "Pencils &amp; eraser" in detail["html"]
        # the demo template is tracked: its link goes through the execution instance
        link = re.search(rf'href="(http://127\.0\.0\.1:{web}/t/c/[^"]+)"', detail["html"])
        assert link, detail["html"]
        followed = httpx.get(html.unescape(link[1]))
        assert followed.status_code == 302
        assert followed.headers["location"] == "https://shop.example/orders/1003"
        # ... and it shows its mirror page
        mirror = re.search(rf'href="(http://127\.0\.0\.1:{web}/m/[^"]+)"', detail["html"])
        assert mirror, detail["html"]
        page = httpx.get(html.unescape(mirror[1]))
        assert page.status_code == 200 and "Thank you, Cléo!" in page.text
        rerun = httpx.post(
            f"{console}/api/v1/archives/exec/run", params={"wait": 60}, auth=DEMO
        ).json()
        assert (rerun["outcome"], rerun["tracking_logs"]) == ("complete", 1), rerun
        landing = httpx.get(f"{console}/", follow_redirects=True)
        assert landing.url.path == "/console/login" and "msgcenter control" in landing.text
        assert f"control console:    {console}/" in printed
        # one of each channel: the SMS at the SMSC simulator (its receipt came back), the push
        # notification at the local APNs endpoint
        (sms,) = httpx.get(f"{console}/catcher/api/sms").json()
        assert (sms["to"], sms["from"]) == ("+33612345678", "DemoShop")
        assert sms["text"] == "Order 1004 confirmed, Dan: €5.00. Thank you!"
        (notification,) = httpx.get(f"{console}/catcher/api/push").json()
        assert (notification["channel"], notification["title"]) == ("ios", "Order 1005 confirmed")
        assert notification["data"] == {"order": "1005"}
        page = httpx.get(f"{console}/catcher/")
        assert page.status_code == 200 and "Order 1003 confirmed" in page.text
        assert "Order 1004 confirmed, Dan" in page.text and "Thank you, Eve!" in page.text
        events = httpx.get(f"{base}/api/v1/events?status=sent", auth=DEMO).json()["items"]
        assert len(events) == 5
        wait_for(
            lambda: sms_status(tmp_path / "msgcenter-data" / "exec.db") == DELIVERED,
            message="the SMS delivery receipt to turn its message delivered",
        )
        publication = httpx.get(
            f"{console}/api/v1/templates/order_confirmation_email/publication", auth=DEMO
        ).json()
        assert [(i["instance"], i["state"]) for i in publication["instances"]] == [
            ("exec", "published")
        ]
        (archive,) = httpx.get(f"{console}/api/v1/archives", auth=DEMO).json()
        assert (archive["instance"], archive["archived_events"], archive["last_error"]) == (
            "exec",
            5,
            None,
        )
        data = tmp_path / "msgcenter-data"
        assert (data / "exec.db").is_file() and (data / "control.db").is_file()
        for secret in ("control.key", "exec.secret"):
            assert (data / secret).stat().st_mode & 0o077 == 0
        assert "secret_key is empty" not in printed
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


OPTIONS = ["--port", "--control-port", "--smtp-port", "--smpp-port", "--push-port"]


def sms_status(database: Path) -> int:
    """The status of the SMS's delivery log (read beside the running instance)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (status,) = conn.execute("SELECT status FROM delivery_log WHERE channel = 1").fetchone()
        return int(status)


@pytest.mark.parametrize("option", OPTIONS)
def test_a_taken_port_is_named_with_the_option_that_moves_it(tmp_path, option):
    ports = {name: free_port() for name in OPTIONS}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[option]))
        taken.listen()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "msgcenter",
                "up",
                *(a for p in ports.items() for a in (p[0], str(p[1]))),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{ports[option]}")
    assert done.stderr.rstrip().endswith(f"choose another port with {option}")
