"""Push events read from a file to an execution instance's REST intake, in batches, resumably.

**Batches.** Events go to ``POST /api/v1/events/{queue}`` as JSON lists of up to
``batch_size`` events (and ``max_batch_bytes``), ``concurrency`` lists in flight.
A batch is cut only by those limits and by a change of queue, so the batches of
a file are the same on every run with the same ``batch_size``, and a run that
stopped early (``max_events``, an interruption) pushed a prefix of them.

**Keys: nothing is stored twice.** Every list is sent with ``Idempotency-Key:
RUN:N``, where ``RUN`` names the run (by default the file's SHA-256) and ``N`` is
the ordinal of the list's first event among the file's events; the server keys
element *i* ``RUN:N<US>i`` and answers a push whose every key it knows with the first
ids (200). A list is always a run of consecutive events, so ``RUN:N<US>i`` names the
event ``N + i`` whichever run sent it: a run that resumes one that stopped (same
file, key and batch size) gets the stored events' ids back and stores the others.

What this cannot cover, since the server keys a list, not each event: a file
changed between the runs (an event fixed or added shifts the keys of the events
after it; the default key, a hash of the content, changes with it, so a changed
file is a new push; under the same ``--key``, an event that differs from the one
stored under its key is refused by the server, 422, never silently dropped), or another
batch size (other lists). And a list the
earlier run cut short (``max_events``) comes back whole: its new events are
stored, and the server answers it 201, so the summary counts its earlier events
as stored rather than as replays.

**Refusals.** The server takes a list whole or refuses it naming the first bad
event (422 with its ``position``). That event is reported with the server's
explanation; the events before it are sent again under the same key (their keys
unchanged), and those after it as a list of their own, keyed by its first event.
A line that is not an event at all is refused before sending.

**Failures.** A refused connection, a timeout, or a 5xx answer is retried with
backoff (the same key: a push that was stored but whose answer was lost is
answered as a replay) for ``retry_for`` seconds, then the run stops.
Wrong credentials (401), a missing right (403), a throttled login (429), a batch
too large for the server (413) or an answer that is not msgcenter's stop it at
once: every further push would fail the same way. A run that stopped is
resumed by running it again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from msgcenter import __version__
from msgcenter.errors import MsgcenterError
from msgcenter.events.model import Queue
from msgcenter.filepush.source import Item

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_BATCH_SIZE = 500
DEFAULT_CONCURRENCY = 4
#: well under the server's default intake.max_request_bytes (10 MiB)
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
#: the longest run key: with ``:N<US>i`` appended it stays within the server's 200-character
#: Idempotency-Key header and its 255-character column
MAX_RUN_KEY = 120
#: refusals kept for the summary (every one goes to the ids file)
MAX_REFUSALS_KEPT = 1000
_FIRST_BACKOFF, _MAX_BACKOFF = 0.2, 5.0


class PushStoppedError(MsgcenterError):
    """The push cannot go on (the instance refuses the credentials, or stays unreachable)."""

    code = "push-stopped"


@dataclass(frozen=True, slots=True)
class PushOptions:
    """Where and how to push."""

    url: str = DEFAULT_URL
    #: the run's key: every list's Idempotency-Key starts with it
    run_key: str = ""
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    concurrency: int = DEFAULT_CONCURRENCY
    #: how long a batch is retried while the instance is unreachable or unavailable
    retry_for: float = 60.0
    #: seconds to wait for one answer
    timeout: float = 60.0
    #: read no more than this many events (None: all)
    max_events: int | None = None
    #: REST field name -> the name the file uses, for refusal messages (XML: emailFormat)
    field_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one line: its event's id, or why it was refused."""

    line: int
    id: int | None = None
    replay: bool = False
    refusal: str | None = None


@dataclass(slots=True)
class PushReport:
    """What a push did so far (filled in as batches are answered)."""

    #: events read from the file (lines refused before sending excluded)
    read: int = 0
    stored: int = 0
    replays: int = 0
    refused: int = 0
    #: the first refusals, in line order
    refusals: list[Outcome] = field(default_factory=list)
    first_id: int | None = None
    last_id: int | None = None
    #: the reading stopped at ``max_events``
    limited: bool = False
    #: why the push stopped before its end, if it did
    stopped: str | None = None

    @property
    def acknowledged(self) -> int:
        """Events the instance holds for this run (stored now or before)."""
        return self.stored + self.replays

    def add(self, outcome: Outcome) -> None:
        """Count an answered line."""
        if outcome.refusal is not None:
            self.refused += 1
            return
        if outcome.replay:
            self.replays += 1
        else:
            self.stored += 1
        if outcome.id is not None:
            self.first_id = outcome.id if self.first_id is None else min(self.first_id, outcome.id)
            self.last_id = outcome.id if self.last_id is None else max(self.last_id, outcome.id)


@dataclass(slots=True)
class _Batch:
    """Consecutive events of one queue, and the lines refused while it was read."""

    seq: int
    queue: Queue | None
    #: ordinal of its first event among the file's events (1-based)
    first: int
    lines: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    size: int = 2
    notes: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Answer:
    ids: list[int] | None = None
    replay: bool = False
    #: 1-based position of the refused event, with the server's explanation
    position: int = 0
    detail: str = ""


class FilePusher:
    """Pushes the items of a file (one push per instance); the module documentation says what
    it promises."""

    def __init__(
        self,
        options: PushOptions,
        *,
        auth: httpx.Auth | tuple[str, str] | None = None,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not options.run_key:
            raise ValueError("a run key is required")
        self.options = options
        self._auth = auth
        self._headers = {
            "User-Agent": f"msgcenter-push/{__version__}",
            "Content-Type": "application/json",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._transport = transport
        self._done: dict[int, list[Outcome]] = {}
        self._next = 0

    async def push(
        self,
        items: Iterable[Item],
        report: PushReport,
        *,
        on_outcomes: Callable[[Sequence[Outcome]], None] = lambda outcomes: None,
        on_retry: Callable[[str], None] = lambda reason: None,
    ) -> PushReport:
        """Push ``items``, filling ``report`` as batches are answered; ``on_outcomes`` gets every
        line's outcome in file order, ``on_retry`` each reason to wait and retry. A push that
        cannot go on ends with ``report.stopped`` set rather than an exception."""
        options = self.options
        self._done, self._next = {}, 0
        batches: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=options.concurrency)
        async with httpx.AsyncClient(
            base_url=options.url,
            auth=self._auth,
            headers=self._headers,
            timeout=options.timeout,
            transport=self._transport,
            limits=httpx.Limits(max_connections=options.concurrency),
        ) as client:

            async def worker() -> None:
                while (batch := await batches.get()) is not None:
                    outcomes = await self._send(client, batch, on_retry)
                    self._complete(batch, outcomes, report, on_outcomes)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(options.concurrency):
                        group.create_task(worker())
                    for batch in self._batches(items, report):
                        await batches.put(batch)
                    for _ in range(options.concurrency):
                        await batches.put(None)
            except* PushStoppedError as stopped:
                first = stopped.exceptions[0]
                report.stopped = first.detail if isinstance(first, PushStoppedError) else str(first)
            finally:
                # what was answered, even behind a batch that never was
                for seq in sorted(self._done):
                    self._emit(self._done.pop(seq), report, on_outcomes)
        return report

    def _batches(self, items: Iterable[Item], report: PushReport) -> Iterator[_Batch]:
        options = self.options
        seq = 0
        current: _Batch | None = None
        pending: list[Outcome] = []
        for item in items:
            if item.body is None:
                (current.notes if current is not None else pending).append(
                    Outcome(item.line, refusal=item.refusal or "refused")
                )
                if item.last:
                    break
                continue
            if options.max_events is not None and report.read >= options.max_events:
                report.limited = True
                break
            report.read += 1
            if current is not None and (
                current.queue is not item.queue
                or len(current.bodies) >= options.batch_size
                or current.size + len(item.body) + 1 > options.max_batch_bytes
            ):
                yield current
                current = None
            if current is None:
                current = _Batch(seq, item.queue, report.read, notes=pending)
                seq, pending = seq + 1, []
            current.lines.append(item.line)
            current.bodies.append(item.body)
            current.size += len(item.body) + 1
        if current is not None:
            yield current
        if pending:
            yield _Batch(seq, None, 0, notes=pending)

    def _complete(
        self,
        batch: _Batch,
        outcomes: list[Outcome],
        report: PushReport,
        on_outcomes: Callable[[Sequence[Outcome]], None],
    ) -> None:
        ordered = sorted([*outcomes, *batch.notes], key=lambda o: o.line)
        for outcome in ordered:
            report.add(outcome)
        self._done[batch.seq] = ordered
        while self._next in self._done:
            self._emit(self._done.pop(self._next), report, on_outcomes)
            self._next += 1

    @staticmethod
    def _emit(
        outcomes: list[Outcome],
        report: PushReport,
        on_outcomes: Callable[[Sequence[Outcome]], None],
    ) -> None:
        room = MAX_REFUSALS_KEPT - len(report.refusals)
        if room > 0:
            report.refusals.extend([o for o in outcomes if o.refusal is not None][:room])
        on_outcomes(outcomes)

    async def _send(
        self, client: httpx.AsyncClient, batch: _Batch, on_retry: Callable[[str], None]
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []

        async def send_range(start: int, end: int) -> None:
            # events start..end-1 of the batch, keyed by the first one's ordinal
            while start < end:
                assert batch.queue is not None
                key = f"{self.options.run_key}:{batch.first + start}"
                answer = await self._post(
                    client, batch.queue, batch.bodies[start:end], key, on_retry
                )
                if answer.ids is not None:
                    outcomes.extend(
                        Outcome(line, event_id, answer.replay)
                        for line, event_id in zip(batch.lines[start:end], answer.ids, strict=True)
                    )
                    return
                refused = start + answer.position - 1
                outcomes.append(Outcome(batch.lines[refused], refusal=answer.detail))
                if refused > start:
                    # refused whole: the events before the bad one go again, same keys
                    await send_range(start, refused)
                start = refused + 1

        await send_range(0, len(batch.bodies))
        return outcomes

    async def _post(
        self,
        client: httpx.AsyncClient,
        queue: Queue,
        bodies: list[bytes],
        key: str,
        on_retry: Callable[[str], None],
    ) -> _Answer:
        content = b"[" + b",".join(bodies) + b"]"
        path = f"/api/v1/events/{queue}"
        give_up: float | None = None
        backoff = _FIRST_BACKOFF
        while True:
            wait = 0.0
            try:
                response = await client.post(
                    path, content=content, headers={"Idempotency-Key": key}
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise PushStoppedError(f"invalid URL {self.options.url}: {exc}") from None
            except httpx.TransportError as exc:
                reason = self._transport_failure(exc)
            else:
                if response.status_code < 500:
                    return self._answer(response, len(bodies))
                reason = f"{self.options.url} answered {response.status_code}" + (
                    f": {_detail(response)}" if _detail(response) else ""
                )
                wait = _retry_after(response)
            now = time.monotonic()
            if give_up is None:
                give_up = now + self.options.retry_for
            if now >= give_up:
                raise PushStoppedError(f"{reason} (retried for {self.options.retry_for:g} s)")
            on_retry(reason)
            # jitter: batches in flight do not all come back at the same instant
            pause = max(wait, backoff * random.uniform(0.5, 1.0))
            await asyncio.sleep(min(pause, give_up - now))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _transport_failure(self, exc: httpx.TransportError) -> str:
        url = self.options.url
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer from {url} within {self.options.timeout:g} s"
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect to {url}: {str(exc) or type(exc).__name__}"
        return f"the connection to {url} failed: {str(exc) or type(exc).__name__}"

    def _answer(self, response: httpx.Response, count: int) -> _Answer:
        status, url = response.status_code, self.options.url
        problem = _json(response)
        detail = _detail(response)
        if status in (200, 201):
            ids = problem.get("ids") if isinstance(problem, dict) else None
            if not (
                isinstance(ids, list) and len(ids) == count and all(isinstance(i, int) for i in ids)
            ):
                raise PushStoppedError(
                    f"{url} answered {status} without the {count} ids msgcenter sends: "
                    "is it a msgcenter execution instance?"
                )
            return _Answer(ids=ids, replay=status == 200)
        position = problem.get("position") if isinstance(problem, dict) else None
        if status == 422 and isinstance(position, int) and 1 <= position <= count:
            return _Answer(position=position, detail=self._refusal(problem, position))
        if status in (401, 403):
            title = problem.get("title") if isinstance(problem, dict) else None
            raise PushStoppedError(
                f"{title or ('authentication failed' if status == 401 else 'permission denied')}"
                f": {detail or status} ({url})"
            )
        if status == 429:
            raise PushStoppedError(f"too many failed logins: {detail or status} ({url})")
        if status == 413:
            raise PushStoppedError(
                f"{url} refuses batches this large ({detail or status}): push again with a "
                "smaller --batch-size (and a new --key if events were already stored)"
            )
        if status == 404:
            raise PushStoppedError(
                f"{url} has no event intake (404 on {response.request.url.path}): "
                "is it a msgcenter execution instance?"
            )
        raise PushStoppedError(
            f"{url} refused the batch ({status}): {detail or response.reason_phrase}"
        )

    def _refusal(self, problem: dict[str, Any], position: int) -> str:
        """The server's explanation of a refused event, without its position in the list
        (the line says where it is), fields named as the file names them."""
        detail = str(problem.get("detail") or problem.get("title") or "refused")
        detail = detail.removeprefix(f"event {position}: ")
        pointer = str(problem.get("field") or "")
        field_name = pointer.rsplit("/", 1)[-1] if pointer.count("/") >= 2 else ""
        named = self.options.field_names.get(field_name)
        if named:
            detail = detail.replace(f"'{field_name}'", f"'{named}'")
        return detail


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _detail(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")
    return ""


def _retry_after(response: httpx.Response) -> float:
    """A Retry-After in seconds (RFC 9110 §10.2.3; an HTTP date is ignored), capped."""
    try:
        return min(float(response.headers.get("retry-after", "0")), _MAX_BACKOFF * 2)
    except ValueError:
        return 0.0
