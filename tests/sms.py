"""An SMSC for the SMS tests: smpp34's SMPP 3.4 server (Rust, a test dependency) on loopback,
scripted from the test: what it answers to each submit_sm, when it holds answers back, and the
delivery receipts it sends.

smpp34's server cannot drop a session (``Server.stop`` stops accepting, its sessions live on and
answer ESME_RSYSERR / ESME_RTHROTTLED by themselves), so clients reach it through a small TCP
relay that :meth:`Smsc.drop` cuts: the client sees the SMSC close the connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import smpp34

from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.encoding import decode
from msgcenter.store.database import Database
from tests.conftest import (
    FAST_PROCESSING,
    RunningServer,
    add_operator,
    free_port,
    start_exec_server,
)
from tests.processing import ADMIN


@dataclass
class Submit:
    """One submit_sm the SMSC received."""

    session_id: str
    source: str
    source_ton: int
    source_npi: int
    destination: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    #: the answer: "m<n>" when accepted, else None
    message_id: str | None = None
    status: int = 0

    @property
    def text(self) -> str:
        return decode(self.short_message, self.data_coding, udhi=self.udhi).text

    @property
    def udhi(self) -> bool:
        return bool(self.esm_class & pdu.ESM_UDHI)

    @property
    def udh(self) -> bytes:
        return self.short_message[: self.short_message[0] + 1] if self.udhi else b""


class Smsc:
    """smpp34's server in a thread of its own, with an event loop that answers its events."""

    def __init__(self) -> None:
        #: where clients connect: the relay in front of smpp34's server
        self.port = free_port()
        self._smsc_port = free_port()
        self._relayed: set[asyncio.StreamWriter] = set()
        self._relay: asyncio.Server | None = None
        self.submits: list[Submit] = []
        #: statuses to answer the next submits with (then ESME_ROK)
        self.replies: deque[int] = deque()
        #: answer each accepted submit with a receipt of this state (None: no receipt)
        self.auto_receipt: str | None = None
        #: hold the answers back (they are never sent: a drop makes them lost)
        self.hold = False
        self.binds = 0
        self._held: list[Any] = []
        self._sessions: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None
        self._pump: asyncio.Task[None] | None = None
        self._count = 0

    def start(self) -> Smsc:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def drop(self) -> None:
        """Cut every client connection, unanswered submits unanswered; answer the next ones."""
        self.hold = False
        self._call(self._cut())
        self._held.clear()

    def receipt(
        self, message_id: str, state: str, error: str = "000", *, session: str | None = None
    ) -> None:
        """Send a delivery receipt (text and TLVs) to the ESME's first bind (or ``session``)."""
        self._call(self._receipt(message_id, state, error, session))

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._server = smpp34.Server(host="127.0.0.1", port=self._smsc_port, system_id="SMPP34")
        await self._server.start()
        self._pump = asyncio.create_task(self._serve(self._server))
        self._relay = await asyncio.start_server(self._relay_one, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        await self._cut()
        if self._relay is not None:
            self._relay.close()
        if self._pump is not None:
            self._pump.cancel()
        await self._server.stop()
        self._sessions.clear()

    async def _cut(self) -> None:
        for writer in list(self._relayed):
            writer.transport.abort()
        self._relayed.clear()

    async def _relay_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._smsc_port)
        self._relayed.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()
                up_writer.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _serve(self, server: Any) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self.binds += 1
                self._sessions[event.session_id] = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._submitted(event)

    def _submitted(self, event: Any) -> None:
        submit = Submit(
            event.session_id,
            event.source_addr,
            event.source_addr_ton,
            event.source_addr_npi,
            event.destination_addr,
            event.dest_addr_ton,
            event.dest_addr_npi,
            event.esm_class,
            event.data_coding,
            event.registered_delivery,
            bytes(event.short_message),
        )
        self.submits.append(submit)
        if self.hold:
            self._held.append(event)
            return
        status = self.replies.popleft() if self.replies else 0
        if status:
            submit.status = status
            event.reject(status)
            return
        self._count += 1
        submit.message_id = f"m{self._count}"
        event.accept(message_id=submit.message_id)
        if self.auto_receipt is not None:
            asyncio.get_running_loop().create_task(
                self._receipt(submit.message_id, self.auto_receipt, "000", event.session_id)
            )

    async def _receipt(self, message_id: str, state: str, error: str, session: str | None) -> None:
        esme = self._sessions[session] if session else next(iter(self._sessions.values()))
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if state == 'DELIVRD' else '000'} "
            f"submit date:2601011200 done date:2601011201 stat:{state} err:{error} text:"
        )
        await esme.deliver_sm(
            "33612345678",
            text.encode(),
            source_addr="33612345678",
            esm_class=0x04,
            tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00")],
        )


@contextmanager
def sms_server(db: Database, smsc_port: int, smtp_port: int = 9, **sms: Any):  # type: ignore[no-untyped-def]
    """An execution instance with its workflows running, sending SMS to 127.0.0.1:``smsc_port``."""
    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(
        db,
        processing=FAST_PROCESSING,
        smtp={"host": "127.0.0.1", "port": smtp_port, "timeout_seconds": 5},
        sms={
            "host": "127.0.0.1",
            "port": smsc_port,
            "system_id": "msgcenter",
            "password": "secret",
            "timeout_seconds": 5,
            "reconnect_min_seconds": 0.1,
            "reconnect_max_seconds": 1,
            "throttle_backoff_seconds": 0.1,
            "receipt_flush_ms": 50,
            "default_sender": "Shop",
            **sms,
        },
    )
    with threaded:
        yield running


def sms_publication(text: str, **changes: Any) -> dict[str, Any]:
    """An SMS publication of the order_confirmation type."""
    content = {"sms": text, **changes.pop("content", {})}
    return {
        "template": "order_sms",
        "event_type": "order_confirmation",
        "channel": 1,
        "version": 1,
        "content": content,
        **changes,
    }


def sms_event(phone: str = "+33612345678", **fields: Any) -> dict[str, Any]:
    """A real-time event routed to SMS."""
    return {
        "type": "order_confirmation",
        "wished_channel": "sms",
        "mobile_phone": phone,
        "ctx": {"client": {"firstname": "Ann"}, "order": {"id": "A-1"}},
        **fields,
    }


__all__ = ["RunningServer", "Smsc", "Submit", "sms_event", "sms_publication", "sms_server"]
