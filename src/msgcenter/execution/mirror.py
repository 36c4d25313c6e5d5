"""Mirror pages (SPEC §3.7): a tracked email's message, shown again in a browser as it was sent.

The message is rendered again from what it was made of — its publication (never changed
once stored) and its event's fields and ctx — so nothing more is stored per message; once
the cleanup workflow purged the event (``processing.event_retention_days``), its page is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgcenter.publications import compile_publication
from msgcenter.render import CompiledContent, RenderProblem, TemplateSyntaxProblem, load_ctx
from msgcenter.store import publications as publication_store
from msgcenter.store import tracking as tracking_store
from msgcenter.store.database import Database
from msgcenter.tracking import LinkSigner


@dataclass(frozen=True, slots=True)
class MirrorPage:
    """A message as its recipient got it."""

    subject: str
    html: str
    text: str


class MirrorPages:
    """Renders the mirror pages of one execution instance's messages."""

    def __init__(self, db: Database, links: LinkSigner) -> None:
        self._db = db
        self._links = links
        self._compiled: dict[int, CompiledContent] = {}

    def page(self, delivery_log_id: int) -> MirrorPage | None:
        """The message of ``delivery_log_id`` rendered again, or None when it is no longer here
        (or never left)."""
        with self._db.read() as conn:
            sent = tracking_store.sent_message(conn, delivery_log_id)
            if sent is None:
                return None
            compiled = self._compiled.get(sent.publication_id)
            if compiled is None:
                publication = publication_store.get(conn, sent.publication_id)
                if publication is None:
                    return None
                try:
                    compiled = compile_publication(publication)
                except TemplateSyntaxProblem:
                    return None
                self._compiled[sent.publication_id] = compiled
        try:
            rendered = compiled.render(
                sent.event,
                load_ctx(sent.ctx, sent.ctx_format),
                mirror_url=self._links.mirror_url(delivery_log_id),
            )
        except RenderProblem:
            return None
        return MirrorPage(rendered.subject, rendered.html, rendered.text)
