"""Mirror pages (SPEC §3.7): a tracked email's message, shown again in a browser as it was sent.

The message is rendered again from what it was made of — its publication (never changed
once stored) and its event's fields and ctx — so nothing more is stored per message; once
the cleanup workflow purged the event (``processing.event_retention_days``), its page is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgcenter.render import RenderProblem, TemplateSyntaxProblem, load_ctx
from msgcenter.sending.contents import ContentCache
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
        self._contents = ContentCache(db)

    def page(self, delivery_log_id: int) -> MirrorPage | None:
        """The message of ``delivery_log_id`` rendered again, or None when it is no longer here
        (or never left)."""
        with self._db.read() as conn:
            sent = tracking_store.sent_message(conn, delivery_log_id)
        if sent is None:
            return None
        try:
            _publication, compiled = self._contents.load(sent.publication_id)
            rendered = compiled.render(
                sent.event,
                load_ctx(sent.ctx, sent.ctx_format),
                mirror_url=self._links.mirror_url(delivery_log_id),
            )
        except (LookupError, TemplateSyntaxProblem, RenderProblem):
            return None
        return MirrorPage(rendered.subject, rendered.html, rendered.text)
