"""Routing: an event goes to the newest active publication of its type, channel, queue and folder
(SPEC §3.5), and what becomes of the events of one claim is decided here, before the store
records it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from msgcenter.events.model import Channel, EventStatus, Queue
from msgcenter.publications import Publication

RouteKey = tuple[str, int, str, str | None]
#: why a routed event's message is not attempted
QUARANTINED = "the address is in quarantine"
#: why a routed event's message is not attempted: its recipient used List-Unsubscribe
UNSUBSCRIBED = "the address unsubscribed from this template"


class RoutingTable:
    """An in-memory index of active publications, rebuilt when the publication set changes."""

    def __init__(self, publications: Iterable[Publication] = ()) -> None:
        self._routes: dict[RouteKey, Publication] = {}
        for candidate in publications:
            key = (
                candidate.event_type,
                int(candidate.channel),
                candidate.queue.value,
                candidate.folder,
            )
            current = self._routes.get(key)
            if current is None or (candidate.published_at, candidate.id) > (
                current.published_at,
                current.id,
            ):
                self._routes[key] = candidate

    def route(
        self, event_type: str, channel: Channel | int, queue: Queue, folder: str | None
    ) -> Publication | None:
        """The publication for an event, or None (the event is then not taken into account)."""
        return self._routes.get((event_type, int(channel), queue.value, folder))

    def __len__(self) -> int:
        return len(self._routes)


@dataclass(frozen=True, slots=True)
class Routed:
    """An event routed to a publication: one message to ``address``; ``held`` when the address
    is in quarantine (the message is then ignored without an attempt)."""

    event: Mapping[Any, Any]
    publication: Publication
    address: str
    held: bool = False
    #: why it is held (:data:`QUARANTINED` or :data:`UNSUBSCRIBED`)
    held_reason: str = QUARANTINED

    @property
    def reason(self) -> str:
        """The timeline step of the routing."""
        return f"routed to {self.publication.template} v{self.publication.version}"


@dataclass(frozen=True, slots=True)
class Unrouted:
    """An event that ends at once: no publication serves it, or it has no address for its channel."""

    event_id: int
    status: EventStatus
    reason: str


@dataclass(slots=True)
class Routing:
    """What becomes of the events of one claim."""

    routed: list[Routed] = field(default_factory=list)
    unrouted: list[Unrouted] = field(default_factory=list)

    def addresses(self) -> list[tuple[str, Channel]]:
        """The (address, channel) pairs to look up in the quarantine."""
        return [(r.address, r.publication.channel) for r in self.routed]

    def streams(self) -> list[tuple[str, Channel, str, str | None]]:
        """The (address, channel, template, folder) streams to look up in the opt-outs."""
        return [
            (r.address, r.publication.channel, r.publication.template, r.publication.folder)
            for r in self.routed
        ]

    def holding(
        self,
        quarantined: set[tuple[str, int]],
        unsubscribed: set[tuple[str, int, str, str]] | None = None,
    ) -> Routing:
        """The same routing with the messages to quarantined addresses held, and those of a
        template's stream its recipient left (``unsubscribed``: address, channel, template,
        folder or "")."""
        routed: list[Routed] = []
        for r in self.routed:
            address, channel = r.address.lower(), int(r.publication.channel)
            if (address, channel) in quarantined:
                r = replace(r, held=True, held_reason=QUARANTINED)
            elif unsubscribed and (
                (address, channel, r.publication.template, r.publication.folder or "")
                in unsubscribed
            ):
                r = replace(r, held=True, held_reason=UNSUBSCRIBED)
            else:
                r = replace(r, held=False)
            routed.append(r)
        return Routing(routed, self.unrouted)


def route_events(events: Iterable[Mapping[Any, Any]], queue: Queue, table: RoutingTable) -> Routing:
    """Route claimed ``events`` of ``queue``: each to its publication and address, or ended with
    ``not_taken_into_account`` (no publication) or ``ignored`` (no address for the channel)."""
    routing = Routing()
    for event in events:
        channel = Channel(event["wished_channel"])
        publication = table.route(event["type"], channel, queue, event["folder"])
        if publication is None:
            reason = f"no published template for type '{event['type']}', channel {channel.label}"
            if event["folder"]:
                reason += f", folder '{event['folder']}'"
            routing.unrouted.append(
                Unrouted(event["id"], EventStatus.NOT_TAKEN_INTO_ACCOUNT, reason)
            )
            continue
        address = address_for(event, channel)
        if not address:
            routing.unrouted.append(
                Unrouted(
                    event["id"], EventStatus.IGNORED, f"no address for the {channel.label} channel"
                )
            )
            continue
        routing.routed.append(Routed(event, publication, address))
    return routing


def address_for(event: Mapping[Any, Any], channel: Channel) -> str | None:
    """The event's address on ``channel``: email, phone number or device token."""
    field = (
        "email"
        if channel is Channel.EMAIL
        else "mobile_phone"
        if channel is Channel.SMS
        else "registration_token"
    )
    address: str | None = event[field]
    return address
