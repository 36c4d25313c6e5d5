"""The push channel's HTTP/2 client (msgcenter.channels.push.http2) against real servers on
loopback: hypercorn (TLS with a trustme certificate, and cleartext with prior knowledge), and
a small h2-based server of this module whose behaviour each test scripts (how many streams it
takes, its windows, a GOAWAY with a last stream id, a connection dropped mid-flight, answers
that never come)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hyperframe.frame import GoAwayFrame

from msgcenter.catcher.push import CatcherApp, PushCatcher
from msgcenter.channels.push.apns import ApnsClient
from msgcenter.channels.push.config import PushSettings
from msgcenter.channels.push.http2 import (
    ConnectFailed,
    ConnectionLost,
    Http2Client,
    RequestTimeout,
    Response,
)
from msgcenter.channels.push.outcomes import PushOutcome, PushStatus

# -- hypercorn ---------------------------------------------------------------------------


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app: answers each POST with its body, and the client's port in a header."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    port = str(scope["client"][1]).encode()
    headers = [(b"x-peer-port", port), (b"x-http-version", scope["http_version"].encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def until_listening(port: int) -> None:
    """Wait until ``port`` accepts connections (the server started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return


async def with_hypercorn(
    test: Callable[[str, ssl.SSLContext | bool], Awaitable[None]], tls: Path | None
) -> None:
    """Run ``test`` with the URL of a hypercorn server (TLS with certificates made in the
    folder ``tls``, else cleartext) and what the client must trust."""
    config = Config()
    config.accesslog = config.errorlog = None
    verify: ssl.SSLContext | bool = True
    if tls is not None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(tls / "cert.pem")
        cert.private_key_pem.write_to_path(tls / "key.pem")
        config.certfile, config.keyfile = str(tls / "cert.pem"), str(tls / "key.pem")
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    sock = bound_socket()
    port = sock.getsockname()[1]
    config.bind = [f"fd://{sock.detach()}"]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(echo, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        await until_listening(port)
        await test(f"{'https' if tls else 'http'}://127.0.0.1:{port}", verify)
    finally:
        stop.set()
        await server


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "cleartext"])
def test_many_concurrent_requests_are_streams_of_one_connection(tls: bool, tmp_path: Path) -> None:
    async def test(url: str, verify: ssl.SSLContext | bool) -> None:
        client = Http2Client(url, timeout=10, verify=verify)
        bodies = [f"notification {i}".encode() for i in range(300)]
        answers = await asyncio.gather(
            *(client.request(client.headers("POST", "/3/device/x"), body) for body in bodies)
        )
        assert [answer.body for answer in answers] == bodies
        assert {answer.status for answer in answers} == {201}
        assert {answer.headers["x-http-version"] for answer in answers} == {"2"}
        assert len({answer.headers["x-peer-port"] for answer in answers}) == 1
        await client.close()

    asyncio.run(with_hypercorn(test, tmp_path if tls else None))


def test_a_server_without_h2_by_alpn_is_refused() -> None:
    async def test() -> None:
        ca = trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        server_context.set_alpn_protocols(["http/1.1"])
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
        client = Http2Client(f"https://127.0.0.1:{port}", timeout=5, verify=verify)
        with pytest.raises(ConnectFailed, match="ALPN h2"):
            await client.request(client.headers("GET", "/"))
        server.close()

    asyncio.run(test())


def test_a_refused_connection_is_a_connect_failure() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def test() -> None:
        client = Http2Client(f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(ConnectFailed):
            await client.request(client.headers("GET", "/"))

    asyncio.run(test())


# -- a scripted h2 server ----------------------------------------------------------------


@dataclass
class Script:
    """What the scripted server does, and what it saw (shared by its connections)."""

    #: SETTINGS_MAX_CONCURRENT_STREAMS it announces
    max_streams: int = 100
    #: SETTINGS_INITIAL_WINDOW_SIZE it announces (and its connection window stays at 65,535)
    initial_window: int = 65535
    #: on the first connection, answers are held until this many requests are open, then
    #: all given (0: at once)
    batch: int = 0
    #: on the first connection, GOAWAY after this many requests, with that request's stream
    #: as the last one; those above it are not processed, those up to it answered afterwards
    goaway_after: int = 0
    #: on the first connection, close it when this many requests arrived, answering none
    drop_after: int = 0
    #: never answer
    hold: bool = False
    #: the x-id of each request processed, in order (all connections)
    processed: list[str] = field(default_factory=list)
    connections: int = 0
    #: the most streams open at once on one connection
    peak: int = 0
    bodies: dict[str, bytes] = field(default_factory=dict)


class ScriptedServer(asyncio.Protocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        script.connections += 1
        self.first = script.connections == 1
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.transport: asyncio.Transport | None = None
        self.open: dict[int, str] = {}  # stream -> x-id
        self.bodies: dict[int, bytes] = {}
        self.held: list[int] = []
        self.received = 0
        self.last_stream: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.script.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.script.initial_window,
            },
        )
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.on_request(event)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
            elif isinstance(event, h2.events.StreamEnded):
                self.on_complete(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.open.pop(event.stream_id, None)
        self.flush()

    def on_request(self, event: h2.events.RequestReceived) -> None:
        headers = dict(event.headers or [])
        self.open[event.stream_id] = headers.get(b"x-id", b"").decode()
        self.script.peak = max(self.script.peak, len(self.open))
        self.received += 1
        if self.first and self.received == self.script.drop_after:
            assert self.transport is not None
            self.transport.close()

    def on_complete(self, stream_id: int) -> None:
        if self.last_stream is not None and stream_id > self.last_stream:
            return  # after GOAWAY: not processed
        x_id = self.open[stream_id]
        self.script.processed.append(x_id)
        self.script.bodies[x_id] = self.bodies.pop(stream_id, b"")
        if self.script.hold or not self.transport or self.transport.is_closing():
            return
        self.held.append(stream_id)
        if self.first and self.received == self.script.goaway_after:
            # GOAWAY written by hand: h2 would refuse to answer the streams below it after
            # its own close_connection(), which RFC 9113 §6.8 allows
            self.last_stream = stream_id
            self.transport.write(self.h2.data_to_send())
            self.transport.write(GoAwayFrame(0, last_stream_id=stream_id).serialize())
            self.answer_held()
            return
        if not self.first or len(self.held) >= self.script.batch:
            self.answer_held()

    def answer_held(self) -> None:
        for stream_id in self.held:
            x_id = self.open.pop(stream_id)
            self.h2.send_headers(stream_id, [(b":status", b"200"), (b"x-id", x_id.encode())])
            self.h2.send_data(stream_id, b"ok " + x_id.encode(), end_stream=True)
        self.held = []
        self.flush()
        if self.last_stream is not None and not self.open.keys() - self.above_last():
            assert self.transport is not None
            self.transport.close()

    def above_last(self) -> set[int]:
        return {sid for sid in self.open if self.last_stream is not None and sid > self.last_stream}

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())


async def scripted(
    script: Script, test: Callable[[Http2Client], Awaitable[None]], timeout: float = 10
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedServer(script), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http2Client(f"http://127.0.0.1:{port}", timeout=timeout)
    try:
        await test(client)
    finally:
        await client.close()
        server.close()


def post(client: Http2Client, x_id: str, body: bytes = b"{}") -> Awaitable[Response]:
    return client.request([*client.headers("POST", "/send"), (b"x-id", x_id.encode())], body)


def test_the_servers_max_concurrent_streams_is_respected() -> None:
    script = Script(max_streams=5, batch=5)

    async def test(client: Http2Client) -> None:
        answers = await asyncio.gather(*(post(client, str(i)) for i in range(50)))
        assert [answer.body for answer in answers] == [f"ok {i}".encode() for i in range(50)]

    asyncio.run(scripted(script, test))
    assert script.peak == 5
    assert script.connections == 1
    assert sorted(script.processed, key=int) == [str(i) for i in range(50)]


def test_bodies_wait_for_the_flow_control_windows() -> None:
    # 40 bodies of 3,000 bytes: over the connection's 65,535 and each stream's 1,000
    script = Script(initial_window=1000)
    bodies = {str(i): bytes([65 + i % 26]) * 3000 for i in range(40)}

    async def test(client: Http2Client) -> None:
        answers = await asyncio.gather(*(post(client, x, body) for x, body in bodies.items()))
        assert {answer.status for answer in answers} == {200}

    asyncio.run(scripted(script, test))
    assert script.bodies == bodies


def test_goaway_retries_the_streams_above_its_last_and_none_below() -> None:
    script = Script(batch=10, goaway_after=10)
    ids = [str(i) for i in range(30)]

    async def test(client: Http2Client) -> None:
        answers = await asyncio.gather(*(post(client, x) for x in ids))
        assert [answer.body for answer in answers] == [f"ok {x}".encode() for x in ids]

    asyncio.run(scripted(script, test))
    # the first connection processed 10 and answered them after its GOAWAY; the other 20 were
    # sent again on a second one, and nothing was processed twice
    assert script.connections == 2
    assert sorted(script.processed, key=int) == ids
    assert len(script.processed) == len(set(script.processed))


def test_a_connection_closed_mid_flight_is_reported_then_replaced() -> None:
    script = Script(batch=1000, drop_after=5)

    async def test(client: Http2Client) -> None:
        results = await asyncio.gather(
            *(post(client, str(i)) for i in range(5)), return_exceptions=True
        )
        # they may have been processed: reported, never sent again by the client
        assert all(isinstance(result, ConnectionLost) for result in results), results
        answer = await post(client, "after")
        assert answer.body == b"ok after"

    asyncio.run(scripted(script, test))
    assert script.connections == 2
    assert script.processed.count("after") == 1
    assert all(script.processed.count(str(i)) <= 1 for i in range(5))


def test_a_request_without_answer_times_out_and_its_stream_is_cancelled() -> None:
    script = Script(hold=True, max_streams=1)

    async def test(client: Http2Client) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeout):
            await post(client, "held")
        assert 0.2 <= loop.time() - started < 5  # the server holds it forever
        # the cancelled stream frees its slot: the next request gets one (and times out too)
        with pytest.raises(RequestTimeout):
            await post(client, "second")

    asyncio.run(scripted(script, test, timeout=0.3))
    assert script.processed == ["held", "second"]
    assert script.connections == 1


# -- the push catcher's GOAWAY -----------------------------------------------------------


def test_the_catchers_goaway_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """The catcher ends each connection after 40 requests, as hypercorn's
    keep_alive_max_requests does, but answers what it took (RFC 9113 §6.8): the client sends
    every notification once, over several connections."""
    catcher = PushCatcher([CatcherApp.generate("app", topic="com.example.app")], goaway_after=40)
    catcher.start()
    try:
        settings = PushSettings.model_validate(catcher.push_settings())
        apns = settings.apps[0].apns
        assert apns is not None

        async def send_all() -> list[PushOutcome]:
            client = ApnsClient(apns, timeout=10, refresh_seconds=2400)
            try:
                return await asyncio.gather(
                    *(
                        client.send(
                            f"device-{i}", b'{"aps":{"alert":"hi"}}', priority=10, expiration=0
                        )
                        for i in range(300)
                    )
                )
            finally:
                await client.close()

        outcomes = asyncio.run(send_all())
    finally:
        catcher.stop()
    assert {outcome.status for outcome in outcomes} == {PushStatus.SENT}
    tokens = [caught.token for caught in catcher.notifications]
    assert sorted(tokens) == sorted(f"device-{i}" for i in range(300))
    # the catcher's last stream id covers all it has read when it goes away (up to the 100
    # streams it allows at once), so a connection takes somewhat more than 40
    assert len({caught.peer for caught in catcher.notifications}) >= 2
