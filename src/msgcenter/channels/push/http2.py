"""A lean HTTP/2 client for the push services: one connection to one origin, each request a
stream of it (RFC 9113).

APNs and FCM take thousands of small POSTs a second on one connection. A general client
(httpx over httpcore) spends most of a notification's CPU on its own machinery, so the push
clients talk HTTP/2 through the ``h2`` state machine over an :class:`asyncio.Protocol`:

- TLS with ALPN ``h2`` (``https://``) or prior knowledge (``http://``, RFC 9113 §3.3);
- requests are multiplexed up to the server's SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2); the
  others wait for a stream to end;
- request bodies honour the connection's and the stream's flow-control windows (§5.2);
  response data is acknowledged as it comes, so the server's windows never run dry;
- GOAWAY (§6.8): the streams up to its last stream id still get their answers; those above
  it were not processed, and are sent again on a new connection, as are streams the server
  refused with REFUSED_STREAM (§8.7). A stream lost any other way (the connection dropped
  while it waited) may have been processed: it is reported, never sent again here;
- a lost or ended connection is replaced on the next request.

:class:`Http2Error` is the one error a request raises (no answer came); any HTTP answer is a
:class:`Response`, whatever its status.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame

#: our own cap on concurrent streams, whatever the server allows (APNs announces 1,000)
MAX_STREAMS = 1000
#: how often a request refused unprocessed (GOAWAY, REFUSED_STREAM) is sent again
MAX_REFUSALS = 3
#: our receive windows: large, so that answers never wait for a WINDOW_UPDATE (§6.9.2)
RECEIVE_WINDOW = 2**24

Headers = list[tuple[bytes, bytes]]


class Http2Error(Exception):
    """A request got no HTTP answer: connecting failed, the connection was lost, it timed out."""


class ConnectFailed(Http2Error):
    """The connection could not be opened (refused, TLS, no ``h2`` by ALPN, timeout)."""


class ConnectionLost(Http2Error):
    """The connection ended while the request waited; the server may have processed it."""


class RequestTimeout(Http2Error):
    """No answer within the request's timeout; the stream was cancelled."""


class StreamReset(Http2Error):
    """The server reset the request's stream with an error."""


class _Refused(Http2Error):
    """The server did not process the stream (GOAWAY above it, REFUSED_STREAM): safe to
    send again on another connection."""


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, headers (lower-case names, latin-1 values) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _H2Connection(h2.connection.H2Connection):
    """``h2``'s connection, except that a received GOAWAY leaves it open for the streams the
    server still answers: ``h2`` closes its state machine at once and then refuses their
    HEADERS and DATA, whereas RFC 9113 §6.8 lets them complete. No new stream is opened on
    it afterwards (:class:`_Connection` sees to that)."""

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        before = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == ErrorCodes.NO_ERROR:
            self.state_machine.state = before
        return frames, events


class _Stream:
    __slots__ = ("answer", "status", "headers", "body", "unsent")

    def __init__(self, answer: asyncio.Future[Response], body: bytes) -> None:
        self.answer = answer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.unsent = memoryview(body)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: opens streams, matches frames to them, ends them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # our headers are built well-formed once; checking them again per request costs
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._h2 = _H2Connection(config=config)
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._blocked: set[int] = set()  # streams whose body waits for a window
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._flush_due = False
        self.ready: asyncio.Future[None] = loop.create_future()
        #: no new stream may be opened (GOAWAY received, lost, or closed by us)
        self.closing = False
        self.lost = False
        self._lost_reason = "the connection closed"

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclass of asyncio.Transport, but have its methods
        self._transport = cast(asyncio.Transport, transport)
        self._h2.initiate_connection()
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            }
        )
        self._h2.increment_flow_control_window(RECEIVE_WINDOW - 65535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._abort(f"HTTP/2 protocol error: {exc}")
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                self._on_response(event)
            elif isinstance(event, h2.events.DataReceived):
                self._on_data(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._on_ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._on_reset(event)
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_blocked()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if not self.ready.done():
                    self.ready.set_result(None)
                self._send_blocked()
                self._wake()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        reason = self._lost_reason if exc is None else f"{self._lost_reason}: {exc}"
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(reason))
            self.ready.exception()  # retrieved: the connect may have given up already
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.answer.done():
                stream.answer.set_exception(ConnectionLost(reason))
        self._wake(everyone=True)

    # -- requests --------------------------------------------------------------------------

    async def request(self, headers: Headers, body: bytes) -> Response:
        """Send one request as a new stream and wait for its answer."""
        while not self.closing and len(self._streams) >= self._capacity():
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the turn it was given
                raise
        if self.closing:
            raise _Refused("the connection is closing")
        try:
            stream_id = self._h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self.close()
            raise _Refused("stream ids exhausted") from None
        self._h2.send_headers(stream_id, headers, end_stream=not body)
        stream = _Stream(self._loop.create_future(), body)
        self._streams[stream_id] = stream
        if body:
            self._send_body(stream_id, stream)
        self._schedule_flush()
        try:
            return await stream.answer
        except asyncio.CancelledError:
            if self._streams.pop(stream_id, None) is not None and not self.lost:
                self._blocked.discard(stream_id)
                self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                self._schedule_flush()
                self._wake()
            raise

    def close(self) -> None:
        """Stop opening streams; close at once when none is open, else when the last ends."""
        self.closing = True
        if not self._streams and self._transport is not None and not self.lost:
            self._lost_reason = "the connection was closed"
            self._transport.close()

    def abort(self) -> None:
        """Close now: the streams still waiting get :class:`ConnectionLost`."""
        self._abort("the client closed the connection")

    def _capacity(self) -> int:
        return min(self._h2.remote_settings.max_concurrent_streams, MAX_STREAMS)

    def _wake(self, everyone: bool = False) -> None:
        free = len(self._waiters) if everyone else self._capacity() - len(self._streams)
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """Send what the flow-control windows allow of the body (§5.2); the rest waits."""
        unsent = stream.unsent
        window = self._h2.local_flow_control_window(stream_id)
        frame = self._h2.max_outbound_frame_size
        while unsent and window > 0:
            size = min(len(unsent), window, frame)
            self._h2.send_data(stream_id, unsent[:size].tobytes(), end_stream=size == len(unsent))
            unsent = unsent[size:]
            window -= size
        stream.unsent = unsent
        if unsent:
            self._blocked.add(stream_id)
        else:
            self._blocked.discard(stream_id)

    def _send_blocked(self) -> None:
        for stream_id in list(self._blocked):
            stream = self._streams.get(stream_id)
            if stream is None:
                self._blocked.discard(stream_id)
                continue
            self._send_body(stream_id, stream)

    # -- what the server sends ------------------------------------------------------------

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or event.headers is None:
            return
        for name, value in event.headers:
            if name == b":status":
                stream.status = int(value)
            else:
                stream.headers[bytes(name).decode("latin-1")] = bytes(value).decode("latin-1")

    def _on_data(self, event: h2.events.DataReceived) -> None:
        if event.flow_controlled_length:
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self._streams.get(event.stream_id)
        if stream is not None and event.data:
            stream.body += event.data

    def _on_ended(self, stream_id: int) -> None:
        stream = self._end(stream_id)
        if stream is not None and not stream.answer.done():
            stream.answer.set_result(Response(stream.status, stream.headers, stream.body))

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._end(event.stream_id)
        if stream is None or stream.answer.done():
            return
        if event.error_code == ErrorCodes.REFUSED_STREAM:
            stream.answer.set_exception(_Refused("the server refused the stream unprocessed"))
        else:
            stream.answer.set_exception(StreamReset(f"stream reset: {event.error_code!r}"))

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """GOAWAY (§6.8): the streams above ``last_stream_id`` were not processed."""
        self.closing = True
        last = event.last_stream_id if event.last_stream_id is not None else 2**31
        self._lost_reason = f"the server ended the connection (GOAWAY {event.error_code!r})"
        for stream_id in [sid for sid in self._streams if sid > last]:
            stream = self._end(stream_id)
            if stream is not None and not stream.answer.done():
                stream.answer.set_exception(_Refused("not processed before GOAWAY"))
        if event.error_code != ErrorCodes.NO_ERROR:
            # an error ends the connection: what is still open gets no answer
            self._abort(self._lost_reason)
            return
        self._wake(everyone=True)
        self.close()

    def _end(self, stream_id: int) -> _Stream | None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._blocked.discard(stream_id)
            self._wake()
            if self.closing and not self._streams:
                self._loop.call_soon(self.close)
        return stream

    def _abort(self, reason: str) -> None:
        self._lost_reason = reason
        self.closing = True
        if self._transport is not None:
            self._transport.abort()

    # -- writing ---------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        # the streams opened in one turn of the loop go out in one write
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self.lost:
            self._transport.write(data)


class Http2Client:
    """Requests to one origin (``https://host[:port]`` or ``http://host[:port]``) over one
    HTTP/2 connection, opened on first use and replaced when lost."""

    def __init__(
        self, base_url: str, *, timeout: float, verify: ssl.SSLContext | bool = True
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"{base_url!r}: an http:// or https:// URL is expected")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.scheme = url.scheme.encode()
        self.authority = url.netloc.encode()
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            if isinstance(verify, ssl.SSLContext):
                context = verify
            else:
                context = ssl.create_default_context()
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            self._ssl = context
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False  # a connection still being opened is closed once open

    def headers(self, method: str, path: str) -> Headers:
        """The pseudo-headers of a request (RFC 9113 §8.3.1), to which its own are added."""
        return [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path.encode()),
        ]

    async def request(self, headers: Headers, body: bytes = b"") -> Response:
        """Send a request (``headers`` starting with :meth:`headers`) and return its answer;
        raises :class:`Http2Error` when none came within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(MAX_REFUSALS):
                    connection = await self._connect()
                    try:
                        return await connection.request(headers, body)
                    except _Refused:
                        continue  # not processed: sent again on a new connection
                raise ConnectionLost(f"refused unprocessed {MAX_REFUSALS} times")
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout:g} s") from None

    async def close(self) -> None:
        """Close the connection (requests still waiting get :class:`ConnectionLost`)."""
        connection, self._connection = self._connection, None
        self._closed = True
        if connection is not None and not connection.lost:
            connection.abort()

    async def _connect(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.closing:
            return connection
        if self._connecting is None:
            # one connect at a time; the other requests wait for it
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, opening: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not opening.cancelled() and opening.exception() is None:
            self._connection = opening.result()
            if self._closed:
                self._connection.close()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(
                lambda: _Connection(loop),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{self.host}:{self.port}: {exc}") from None
        if self._ssl is not None:
            ssl_object = _transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                connection.abort()
                raise ConnectFailed(f"{self.host}:{self.port} does not speak HTTP/2 (ALPN h2)")
        try:
            await connection.ready  # the server's SETTINGS: how many streams it takes
        except BaseException:
            connection.abort()
            raise
        return connection
