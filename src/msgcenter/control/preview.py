"""Preview: a template rendered for a seed by the execution instance's own code (SPEC §4).

The template is frozen as its next publication would be (blocks included),
turned into a :class:`~msgcenter.publications.Publication` and compiled with
:func:`~msgcenter.sending.dispatcher.compile_publication`; the seed's ctx goes
through :func:`~msgcenter.render.load_ctx`. That is the sending path of an
execution instance, step for step, so the preview is what will be sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgcenter.control.design_checks import seed_event
from msgcenter.control.design_service import checked_seed
from msgcenter.designs import Seed, SeedIn
from msgcenter.publications import Publication, PublicationSpec, compile_publication
from msgcenter.render import Ctx, RenderedMessage, load_ctx
from msgcenter.store import control_design as store
from msgcenter.store.database import Database


@dataclass(frozen=True, slots=True)
class Preview:
    """A rendered template: the frozen draft, the seed it was rendered for, and the message."""

    spec: PublicationSpec
    seed: Seed
    ctx: Ctx
    message: RenderedMessage


def render_preview(
    db: Database, template_name: str, seed: int | SeedIn, *, max_ctx_bytes: int
) -> Preview:
    """Render ``template_name`` for a stored seed (its id) or an inline one.

    Raises :class:`~msgcenter.render.TemplateSyntaxProblem` when the template
    does not compile and :class:`~msgcenter.render.RenderProblem` when it cannot
    be rendered for this seed.
    """
    with db.read() as conn:
        found = store.get_template(conn, template_name)
        if isinstance(seed, int):
            chosen = store.get_seed(conn, found.id, seed)
        else:
            chosen = checked_seed(found, seed, max_ctx_bytes=max_ctx_bytes)
        spec = store.frozen_spec(conn, template_name, found.published_version + 1)
    ctx = load_ctx(chosen.ctx, chosen.ctx_format)
    event = seed_event(
        spec.event_type, spec.channel, spec.folder, chosen.address, chosen.external_id
    )
    return Preview(
        spec, chosen, ctx, compile_publication(Publication.draft(spec)).render(event, ctx)
    )
