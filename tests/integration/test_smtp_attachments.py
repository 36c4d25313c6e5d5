"""Attachments fetched from URLs, from a real HTTP server on loopback (SPEC §3.7)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from msgcenter.channels import network
from msgcenter.channels.email import (
    AttachmentError,
    AttachmentSettings,
    SendStatus,
    SmtpPool,
    build_message,
    fetch_attachment,
)
from tests.conftest import free_port
from tests.integration.test_smtp_pool import SENDER, Relay

pytestmark = pytest.mark.anyio

PDF = b"%PDF-1.4 " + bytes(range(256)) * 3
ALLOWED = AttachmentSettings(allow_private_networks=True, max_bytes=1000, timeout_seconds=1)


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Files(BaseHTTPRequestHandler):
    """The routes a test needs: files, a big one, a slow one, errors and redirects."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/invoice.pdf":
            self._send(200, PDF, {"Content-Type": "application/pdf"})
        elif path == "/download":
            disposition = "attachment; filename*=UTF-8''facture%20n%C2%B01001.pdf"
            self._send(
                200,
                PDF,
                {"Content-Disposition": disposition, "Content-Type": "application/octet-stream"},
            )
        elif path == "/big":
            self._send(200, b"x" * 2000, {"Content-Type": "application/zip"})
        elif (
            path == "/big-unannounced"
        ):  # no Content-Length: the body ends when the connection does
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 100)
        elif path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):  # 10 s, far past the fetch's time limit
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/redirect":
            self._send(302, b"", {"Location": parse_qs(query)["to"][0]})
        else:
            status = int(path.strip("/")) if path.strip("/").isdigit() else 404
            self._send(status, b"no", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def handle(self) -> None:
        # the client may stop reading mid-body: that is what the limits are for
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def log_message(self, *args: object) -> None:
        pass


def serve(host: str) -> Iterator[str]:
    server = ThreadingHTTPServer((host, free_port()), Files)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://{host}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def files():
    yield from serve("127.0.0.1")


async def fetch_error(url: str, settings: AttachmentSettings = ALLOWED) -> AttachmentError:
    with pytest.raises(AttachmentError) as caught:
        await fetch_attachment(url, settings)
    return caught.value


async def test_a_file_is_fetched_when_private_networks_are_allowed(files):
    attachment = await fetch_attachment(f"{files}/invoice.pdf", ALLOWED)
    assert (attachment.filename, attachment.content_type, attachment.data) == (
        "invoice.pdf",
        "application/pdf",
        PDF,
    )


async def test_the_name_comes_from_content_disposition(files):
    attachment = await fetch_attachment(f"{files}/download", ALLOWED)
    assert attachment.filename == "facture n°1001.pdf"
    assert attachment.content_type == "application/pdf"  # guessed from the name


async def test_private_addresses_are_refused_by_default(files):
    error = await fetch_error(f"{files}/invoice.pdf", AttachmentSettings())
    assert not error.temporary
    assert "127.0.0.1, which is not a public address" in error.message
    assert "allow_private_networks" in error.message


async def test_localhost_by_name_is_refused_too(files):
    port = files.rsplit(":", 1)[1]
    error = await fetch_error(f"http://localhost:{port}/invoice.pdf", AttachmentSettings())
    assert "not a public address" in error.message


async def test_a_redirect_from_a_public_host_to_a_private_one_is_refused(files, monkeypatch):
    """127.0.0.2 stands in for a public server: the check treats it as public, nothing else."""
    real_check = network.is_public_address
    monkeypatch.setattr(
        network, "is_public_address", lambda a: str(a) == "127.0.0.2" or real_check(a)
    )
    for public in serve("127.0.0.2"):
        settings = AttachmentSettings()
        assert (await fetch_attachment(f"{public}/invoice.pdf", settings)).data == PDF
        error = await fetch_error(f"{public}/redirect?to={files}/invoice.pdf", settings)
        assert "127.0.0.1, which is not a public address" in error.message


async def test_redirects_are_followed_and_checked(files):
    assert (await fetch_attachment(f"{files}/redirect?to=/invoice.pdf", ALLOWED)).data == PDF
    error = await fetch_error(f"{files}/redirect?to=file:///etc/passwd")
    assert "scheme 'file' is not allowed" in error.message
    loop = f"{files}/redirect?to=/redirect%3Fto%3D/invoice.pdf"
    settings = AttachmentSettings(allow_private_networks=True, max_redirects=1)
    assert "more than 1 redirects" in (await fetch_error(loop, settings)).message


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.pdf", "file:///etc/passwd", "not a url", "https:///a"]
)
async def test_other_schemes_and_bad_urls_are_refused(url):
    error = await fetch_error(url)
    assert not error.temporary


async def test_an_announced_oversized_file_is_refused(files):
    error = await fetch_error(f"{files}/big")
    assert "2000 bytes announced, more than the limit of 1000" in error.message
    assert not error.temporary


async def test_reading_stops_at_the_limit(files):
    error = await fetch_error(f"{files}/big-unannounced")
    assert "larger than the limit of 1000 bytes" in error.message


async def test_a_slow_server_is_cut_off_at_the_time_limit(files):
    started = time.monotonic()
    error = await fetch_error(f"{files}/slow")
    assert time.monotonic() - started < 5  # (not the server's 10 s; margin for a busy machine)
    assert error.temporary and "not fetched within 1 s" in error.message


@pytest.mark.parametrize(
    ("status", "temporary"), [(404, False), (403, False), (503, True), (429, True)]
)
async def test_http_errors(files, status, temporary):
    error = await fetch_error(f"{files}/{status}")
    assert f"HTTP {status}" in error.message
    assert error.temporary is temporary


async def test_errors_do_not_show_query_strings(files):
    error = await fetch_error(f"{files}/404?token=very-secret")
    assert "very-secret" not in error.message


async def test_a_fetched_attachment_is_sent(files):
    attachment = await fetch_attachment(f"{files}/download", ALLOWED)
    raw = build_message(
        sender="shop@example.com",
        recipient="anne@example.org",
        subject="Votre facture",
        message_id="<dl-7@example.com>",
        text="Ci-joint votre facture.",
        attachments=[attachment],
    )
    relay = Relay().start()
    pool = SmtpPool(relay.settings())
    try:
        assert (await pool.send(SENDER, "anne@example.org", raw)).status is SendStatus.SENT
    finally:
        await pool.close()
        relay.stop()
    [part] = list(relay.received[0].message.iter_attachments())
    assert (part.get_filename(), part.get_content()) == ("facture n°1001.pdf", PDF)


def test_urls_in_errors_keep_host_and_path():
    error = AttachmentError("https://user:pw@files.example.com/a.pdf?sig=1", "refused")
    assert error.message == "attachment https://files.example.com/a.pdf: refused"
    assert urlsplit(error.url).query == "sig=1"
