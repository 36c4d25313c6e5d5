"""SMPP 3.4 sessions with one SMSC account: a pool of transceiver binds, each with a window of
outstanding ``submit_sm``, a rate limit over the account, ``enquire_link`` keep-alive, and
re-binding with a backoff when a bind is lost or refused.

Written on asyncio streams rather than with aiosmpplib's ``ESME``: that one queues messages
through a broker and reports their responses to a hook, with no window (it sends all it
dequeues without waiting for responses) and no way to await one ``submit_sm``'s answer; its
codec is used for the PDUs (:mod:`msgcenter.channels.sms.pdu`).

The duplicate window: a ``submit_sm`` written on a bind that is lost before its response
arrives may or may not have been taken by the SMSC; the caller is told (``written``) and sends
it again, so at most ``binds × window`` parts can reach a phone twice per lost connection.
A ``submit_sm`` not yet written when its bind is lost goes out on the next bind, not twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Awaitable, Callable

import structlog
from aiosmpplib import SmppCommand, SmppCommandStatus

from msgcenter.channels.health import RelayHealth
from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.channels.sms.pdu import Pdu

log = structlog.get_logger(__name__)

#: sequence numbers run from 1 to 0x7FFFFFFF, then start again (SMPP 3.4 §5.1.4)
MAX_SEQUENCE = 0x7FFFFFFF
#: seconds an unbind waits for its answer when the pool closes
UNBIND_SECONDS = 1.0

#: what the pool hands an inbound deliver_sm to: the PDU, and how to acknowledge it (call
#: once the receipt is stored)
DeliverHandler = Callable[[Pdu, Callable[[], None]], Awaitable[None]]


class LinkDown(Exception):
    """A ``submit_sm`` got no answer: its bind was lost, or none could be used in time."""

    def __init__(self, reason: str, *, written: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        #: whether the PDU was written (the SMSC may have taken it: the duplicate window)
        self.written = written


class BindRefused(Exception):
    """The SMSC answered the bind with an error status."""


class RateLimiter:
    """Spaces sends ``1 / rate`` seconds apart over the account (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        at = max(self._next, now)
        self._next = at + self._interval
        if at > now:
            await asyncio.sleep(at - now)


class Bind:
    """One transceiver bind: opened by :meth:`run`, again and again until the pool closes."""

    def __init__(self, pool: BindPool, index: int) -> None:
        self._pool = pool
        self._settings = pool.settings
        self.index = index
        self.bound = asyncio.Event()
        self._window = asyncio.Semaphore(self._settings.window)
        self.in_flight = 0
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._sequence = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        #: which connection this is (an acknowledgement for an older one goes nowhere)
        self._generation = 0
        self._last_traffic = time.monotonic()

    def _next_sequence(self) -> int:
        sequence = next(self._sequence)
        if sequence >= MAX_SEQUENCE:
            self._sequence = itertools.count(1)
        return sequence

    # -- the connection's life -------------------------------------------------------------

    async def run(self) -> None:
        """Bind, serve until the bind is lost, and bind again with a growing delay."""
        settings = self._settings
        delay = settings.reconnect_min_seconds
        while True:
            try:
                reader = await self._open()
            except (OSError, TimeoutError, EOFError, BindRefused, pdu.ProtocolError) as exc:
                self._pool.health.failed(f"bind {self.index}: {_describe(exc)}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.reconnect_max_seconds)
                continue
            delay = settings.reconnect_min_seconds
            self._pool.health.succeeded()
            log.info("bound to the SMSC", action="sms.bound", bind=self.index)
            self.bound.set()
            self._pool.bound_changed()
            reason = await self._serve(reader)
            self.lost(reason)
            if self._pool.closing:
                return
            self._pool.health.failed(f"bind {self.index} lost: {reason}")
            log.warning(
                "bind to the SMSC lost", action="sms.bind_lost", bind=self.index, reason=reason
            )
            await asyncio.sleep(settings.reconnect_min_seconds)

    async def _open(self) -> asyncio.StreamReader:
        settings = self._settings
        assert settings.host is not None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(settings.host, settings.port), settings.timeout_seconds
        )
        try:
            sequence = self._next_sequence()
            writer.write(
                pdu.bind_transceiver(
                    sequence,
                    settings.system_id,
                    settings.password.get_secret_value(),
                    settings.system_type,
                )
            )
            await writer.drain()
            async with asyncio.timeout(settings.timeout_seconds):
                while True:
                    answer = await pdu.read_pdu(reader)
                    if answer.command_id == SmppCommand.BIND_TRANSCEIVER_RESP:
                        break
                    if answer.command_id == SmppCommand.ENQUIRE_LINK:
                        writer.write(pdu.enquire_link_resp(answer.sequence))
                    elif answer.command_id == SmppCommand.GENERIC_NACK:
                        raise BindRefused(f"bind refused: {pdu.status_name(answer.status)}")
            if answer.status != SmppCommandStatus.ESME_ROK:
                raise BindRefused(f"bind refused: {pdu.status_name(answer.status)}")
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        self._generation += 1
        self._last_traffic = time.monotonic()
        return reader

    async def _serve(self, reader: asyncio.StreamReader) -> str:
        """Read PDUs and keep the link alive until one of them stops; why it stopped."""
        tasks = [
            asyncio.create_task(self._read(reader), name=f"smpp-read-{self.index}"),
            asyncio.create_task(self._keep_alive(), name=f"smpp-keepalive-{self.index}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finished = done.pop()
        if finished.cancelled():
            return "cancelled"
        error = finished.exception()
        return _describe(error) if error is not None else str(finished.result())

    def lost(self, reason: str) -> None:
        """The connection is gone: its requests waiting for an answer get :class:`LinkDown`."""
        self.bound.clear()
        self._pool.bound_changed()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkDown(f"bind lost: {reason}", written=True))

    async def _read(self, reader: asyncio.StreamReader) -> str:
        while True:
            try:
                received = await pdu.read_pdu(reader)
            except asyncio.IncompleteReadError:
                return "the SMSC closed the connection"
            self._last_traffic = time.monotonic()
            command = received.command_id
            if command & pdu.RESPONSE:
                future = self._pending.pop(received.sequence, None)
                if future is not None and not future.done():
                    future.set_result(received)
            elif command == SmppCommand.DELIVER_SM:
                await self._pool.on_deliver(
                    received,
                    functools.partial(self._ack, received.sequence, self._generation),
                )
            elif command == SmppCommand.ENQUIRE_LINK:
                self._write(pdu.enquire_link_resp(received.sequence))
            elif command == SmppCommand.UNBIND:
                self._write(pdu.unbind_resp(received.sequence))
                return "the SMSC unbound"
            else:
                self._write(pdu.generic_nack(received.sequence, SmppCommandStatus.ESME_RINVCMDID))

    async def _keep_alive(self) -> str:
        interval = self._settings.enquire_link_seconds
        while True:
            idle = time.monotonic() - self._last_traffic
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self.request(pdu.enquire_link)
            except (LinkDown, TimeoutError):
                return f"no enquire_link_resp within {self._settings.timeout_seconds:g} s"

    def _write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)

    def _ack(self, sequence: int, generation: int) -> None:
        """Acknowledge a deliver_sm, if its connection is still the one open (else the SMSC
        delivers it again, and the receipt is applied at most once)."""
        if generation == self._generation and self._writer is not None:
            self._writer.write(pdu.deliver_sm_resp(sequence))

    # -- requests ----------------------------------------------------------------------------

    async def request(self, build: Callable[[int], bytes]) -> Pdu:
        """Send the request ``build(sequence)`` and wait for its response (window not taken)."""
        writer = self._writer
        if writer is None or not self.bound.is_set():
            raise LinkDown("not bound", written=False)
        sequence = self._next_sequence()
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            writer.write(build(sequence))
            await writer.drain()
        except (OSError, RuntimeError) as exc:
            self._pending.pop(sequence, None)
            raise LinkDown(f"write failed: {_describe(exc)}", written=True) from exc
        try:
            return await asyncio.wait_for(future, self._settings.timeout_seconds)
        finally:
            self._pending.pop(sequence, None)

    async def submit(self, build: Callable[[int], bytes]) -> Pdu:
        """Send a submit_sm within this bind's window; its response (or generic_nack)."""
        self.in_flight += 1
        try:
            async with self._window:
                try:
                    return await self.request(build)
                except TimeoutError as exc:
                    raise LinkDown(
                        f"no submit_sm_resp within {self._settings.timeout_seconds:g} s",
                        written=True,
                    ) from exc
        finally:
            self.in_flight -= 1

    async def unbind(self) -> None:
        """Unbind politely (the pool is closing)."""
        with contextlib.suppress(LinkDown, TimeoutError, OSError):
            async with asyncio.timeout(UNBIND_SECONDS):
                await self.request(pdu.unbind)


class BindPool:
    """The binds of one SMSC account, and the throttling and rate limit they share."""

    def __init__(self, settings: SmsSettings, health: RelayHealth, on_deliver: DeliverHandler):
        self.settings = settings
        self.health = health
        self.on_deliver = on_deliver
        self.closing = False
        self._binds = [Bind(self, i) for i in range(settings.binds)]
        self._tasks: list[asyncio.Task[None]] = []
        self._rate = RateLimiter(settings.rate_per_second)
        self._any_bound = asyncio.Event()
        #: the account sends nothing before this (monotonic), after a throttling answer
        self._paused_until = 0.0
        self._backoff = settings.throttle_backoff_seconds

    def start(self) -> None:
        """Open the binds (in the running loop); each keeps itself open until :meth:`close`."""
        if self._tasks or self.closing:
            return
        self._tasks = [
            asyncio.create_task(bind.run(), name=f"smpp-bind-{bind.index}") for bind in self._binds
        ]

    def bound_changed(self) -> None:
        if any(bind.bound.is_set() for bind in self._binds):
            self._any_bound.set()
        else:
            self._any_bound.clear()

    @property
    def bound(self) -> int:
        """How many binds are open."""
        return sum(bind.bound.is_set() for bind in self._binds)

    async def wait_bound(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a bind to be open; whether one is."""
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._any_bound.wait(), timeout)
        return self._any_bound.is_set()

    def throttled(self) -> None:
        """The SMSC asked to slow down: the whole account pauses, longer each time in a row."""
        if time.monotonic() < self._paused_until:
            return  # answers to submits sent before the pause began: one pause is enough
        self._paused_until = time.monotonic() + self._backoff
        log.info(
            "the SMSC throttles: sending paused",
            action="sms.throttled",
            pause_seconds=round(self._backoff, 3),
        )
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_seconds)

    def accepted(self) -> None:
        """A submit_sm was accepted: the next throttling starts from the shortest pause."""
        self._backoff = self.settings.throttle_backoff_seconds

    async def submit(self, build: Callable[[int], bytes], deadline: float) -> Pdu:
        """Send one submit_sm on the bind with the most room, waiting (until ``deadline``,
        monotonic) for a bind, for room in a window, and out a throttling pause; throttling
        answers are sent again after the pause. Returns the final response; raises
        :class:`LinkDown` when there is no answer."""
        self.start()
        written = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkDown(
                    "no bind to the SMSC could take the message in time", written=written
                )
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                if pause >= remaining:
                    raise LinkDown("the SMSC kept throttling", written=written)
                await asyncio.sleep(pause)
                continue
            bound = [bind for bind in self._binds if bind.bound.is_set()]
            if not bound:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._any_bound.wait(), remaining)
                continue
            await self._rate.acquire()
            bind = min(bound, key=lambda b: b.in_flight)
            try:
                answer = await bind.submit(build)
            except LinkDown as exc:
                written = written or exc.written
                if deadline - time.monotonic() <= 0:
                    raise LinkDown(exc.reason, written=written) from exc
                continue
            if answer.status in (
                SmppCommandStatus.ESME_RTHROTTLED,
                SmppCommandStatus.ESME_RMSGQFUL,
            ):
                self.throttled()
                continue
            return answer

    async def close(self) -> None:
        """Unbind and close every bind."""
        self.closing = True
        await asyncio.gather(
            *(bind.unbind() for bind in self._binds if bind.bound.is_set()),
            return_exceptions=True,
        )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for bind in self._binds:
            bind.lost("closed")
        self._tasks = []


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
