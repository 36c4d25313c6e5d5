"""The design service of a control instance (SPEC §4): event types, templates, blocks, seeds,
their freezing into publications, preview and proofs.

The REST API, the CLI and the console all go through it, so all three accept
and refuse the same designs with the same reasons: a template names a declared,
non-retired event type and compiles (syntax, blocks, sandbox) with its part and
line; a seed reads like an event an execution instance would accept. Checks
run outside the database transaction when they can: a template is compiled and
tried on its seeds after they are read, not while rows are locked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import Connection

from msgcenter.control.design.checks import (
    check_block,
    check_content,
    check_seed_address,
    check_seed_ctx,
    seed_event,
)
from msgcenter.control.design.proofs import deliver_proof
from msgcenter.designs import (
    Block,
    BlockIn,
    EventType,
    EventTypeIn,
    Proof,
    Seed,
    SeedIn,
    Template,
    TemplateContent,
    TemplateCopy,
    TemplateIn,
    TemplatePatch,
)
from msgcenter.errors import ConflictError, InvalidInputError, NotFoundError
from msgcenter.events.model import Channel
from msgcenter.publications import (
    Publication,
    PublicationSpec,
    PublishedContent,
    compile_publication,
    message_parts,
    spec_problem,
)
from msgcenter.render import Ctx, RenderedMessage, TemplateSyntaxProblem, compile_content, load_ctx
from msgcenter.settings import Settings
from msgcenter.store import control_design as store
from msgcenter.store.database import Database


@dataclass(frozen=True, slots=True)
class Preview:
    """A rendered template: the frozen draft, the seed it was rendered for, and the message."""

    spec: PublicationSpec
    seed: Seed
    ctx: Ctx
    message: RenderedMessage


@dataclass(frozen=True, slots=True)
class _Draft:
    """What freezing a template reads from the store, in one transaction."""

    template: Template
    blocks: dict[str, str]
    seeds: list[Seed]


class DesignService:
    """Design objects of one control instance, checked before they are stored."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._max_ctx_bytes = settings.intake.max_event_bytes

    # -- event types ------------------------------------------------------------------

    def list_event_types(self) -> list[EventType]:
        """Every event type, by name."""
        with self._db.read() as conn:
            return store.list_event_types(conn)

    def get_event_type(self, name: str) -> EventType:
        """The event type ``name``, retired or not."""
        with self._db.read() as conn:
            return store.get_event_type(conn, name)

    def add_event_type(self, new: EventTypeIn) -> EventType:
        """Declare an event type; :class:`ConflictError` if it exists."""
        with self._db.write() as conn:
            return store.add_event_type(conn, new.name, new.label, _now())

    def relabel_event_type(self, name: str, label: str) -> EventType:
        """Give an event type a new label (its name stays: events carry it)."""
        with self._db.write() as conn:
            return store.relabel_event_type(conn, name, label, _now())

    def retire_event_type(self, name: str) -> EventType:
        """Retire an event type; :class:`ConflictError` while a template of that type is published."""
        with self._db.write() as conn:
            published = store.published_templates_of_type(conn, name)
            if published:
                raise ConflictError(
                    f"event type '{name}' has published templates",
                    detail=f"unpublish {', '.join(published)} before retiring '{name}'",
                )
            return store.retire_event_type(conn, name, _now())

    # -- templates --------------------------------------------------------------------

    def list_templates(self) -> list[Template]:
        """Every template, by name."""
        with self._db.read() as conn:
            return store.list_templates(conn)

    def get_template(self, name: str) -> Template:
        """The template ``name``."""
        with self._db.read() as conn:
            return store.get_template(conn, name)

    def templates_of(self, folder: str | None) -> list[Template]:
        """The templates an operator of ``folder`` sees: that folder's (None: every one)."""
        return [t for t in self.list_templates() if folder is None or t.folder == folder]

    def template_of(self, name: str, folder: str | None) -> Template:
        """The template ``name`` for an operator of ``folder``; one of another folder is
        :class:`NotFoundError`, as if it did not exist."""
        found = self.get_template(name)
        if folder is not None and found.folder != folder:
            raise NotFoundError(f"no template '{name}'")
        return found

    def create_template(self, new: TemplateIn) -> Template:
        """Create a template whose content compiles and whose event type is usable."""
        with self._db.write() as conn:
            _usable_event_type(conn, new.event_type)
            _check(conn, new.content, new.event_type, new.channel, new.folder, template_id=None)
            return store.add_template(
                conn,
                new.name,
                new.label,
                new.event_type,
                new.channel,
                new.folder,
                new.content,
                _now(),
            )

    def edit_template(self, name: str, patch: TemplatePatch) -> Template:
        """Apply ``patch``; a published template keeps its (type, channel, folder)."""
        with self._db.write() as conn:
            current = store.get_template(conn, name)
            event_type = patch.event_type or current.event_type
            channel = patch.channel if patch.channel is not None else current.channel
            folder = patch.folder if "folder" in patch.model_fields_set else current.folder
            if current.published and (event_type, channel, folder) != (
                current.event_type,
                current.channel,
                current.folder,
            ):
                raise ConflictError(
                    f"template '{name}' is published",
                    detail="its event type, channel and folder cannot change while it is "
                    "published; unpublish it first",
                )
            if event_type != current.event_type:
                _usable_event_type(conn, event_type)
            content = current.content
            if patch.content is not None:
                content = PublishedContent.model_validate(
                    {
                        **current.content.model_dump(),
                        **patch.content.model_dump(exclude_unset=True),
                    }
                )
            _check(conn, content, event_type, channel, folder, template_id=current.id)
            return store.update_template(
                conn,
                current,
                label=patch.label or current.label,
                event_type_name=event_type,
                channel=channel,
                folder=folder,
                content=content,
                now=_now(),
            )

    def copy_template(self, name: str, copy: TemplateCopy) -> Template:
        """A new, unpublished template with the content of ``name`` (and its seeds, on the
        same channel)."""
        with self._db.write() as conn:
            source = store.get_template(conn, name)
            event_type = copy.event_type or source.event_type
            _usable_event_type(conn, event_type)
            channel = copy.channel if copy.channel is not None else source.channel
            now = _now()
            created = store.add_template(
                conn,
                copy.name,
                copy.label or source.label,
                event_type,
                channel,
                copy.folder if "folder" in copy.model_fields_set else source.folder,
                source.content,
                now,
            )
            if channel == source.channel:  # seed addresses belong to a channel
                for original in store.list_seeds(conn, source.id):
                    store.add_seed(conn, replace(original, id=None, template_id=created.id), now)
            return created

    def delete_template(self, name: str) -> None:
        """Delete an unpublished template with its seeds, proofs and publication history."""
        with self._db.write() as conn:
            found = store.get_template(conn, name)
            if found.published:
                raise ConflictError(
                    f"template '{name}' is published",
                    detail=f"template '{name}' is published (version "
                    f"{found.published_version}); unpublish it first",
                )
            store.delete_template(conn, found.id)

    # -- blocks -----------------------------------------------------------------------

    def list_blocks(self) -> list[Block]:
        """Every block, by name."""
        with self._db.read() as conn:
            return store.list_blocks(conn)

    def get_block(self, name: str) -> Block:
        """The block ``name``."""
        with self._db.read() as conn:
            return store.get_block(conn, name)

    def create_block(self, new: BlockIn) -> Block:
        """Create a block that compiles (its own includes resolved)."""
        with self._db.write() as conn:
            blocks = store.block_sources(conn)
            if new.name in blocks:
                raise ConflictError(f"block '{new.name}' already exists")
            check_block(new.name, {**blocks, new.name: new.content})
            return store.add_block(conn, new.name, new.content, _now())

    def edit_block(self, name: str, content: str) -> Block:
        """Replace a block's source; the templates that include it take it at their next
        publication."""
        with self._db.write() as conn:
            store.get_block(conn, name)
            check_block(name, {**store.block_sources(conn), name: content})
            return store.update_block(conn, name, content, _now())

    def set_block(self, new: BlockIn) -> tuple[Block, bool]:
        """Replace block ``new.name``, or create it; returns the block and whether it is new."""
        try:
            return self.edit_block(new.name, new.content), False
        except NotFoundError:
            return self.create_block(new), True

    def delete_block(self, name: str) -> None:
        """Delete a block that no template includes (:class:`ConflictError` naming them)."""
        with self._db.write() as conn:
            store.get_block(conn, name)
            users = _templates_using(conn, name)
            if users:
                raise ConflictError(
                    f"block '{name}' is in use", detail=f"included by template {', '.join(users)}"
                )
            store.delete_block(conn, name)

    # -- seeds ------------------------------------------------------------------------

    def list_seeds(self, template_name: str) -> list[Seed]:
        """The template's seeds, oldest first."""
        with self._db.read() as conn:
            return store.list_seeds(conn, store.get_template(conn, template_name).id)

    def get_seed(self, template_name: str, seed_id: int) -> Seed:
        """Seed ``seed_id`` of the template."""
        with self._db.read() as conn:
            return store.get_seed(conn, store.get_template(conn, template_name).id, seed_id)

    def add_seed(self, template_name: str, new: SeedIn) -> Seed:
        """Add a seed to a template."""
        with self._db.write() as conn:
            found = store.get_template(conn, template_name)
            return store.add_seed(conn, self.checked_seed(found, new), _now())

    def edit_seed(self, template_name: str, seed_id: int, new: SeedIn) -> Seed:
        """Replace a seed of a template."""
        with self._db.write() as conn:
            found = store.get_template(conn, template_name)
            store.get_seed(conn, found.id, seed_id)
            return store.update_seed(conn, self.checked_seed(found, new, seed_id=seed_id), _now())

    def delete_seed(self, template_name: str, seed_id: int) -> None:
        """Delete a seed of a template (its proofs stay listed)."""
        with self._db.write() as conn:
            store.delete_seed(conn, store.get_template(conn, template_name).id, seed_id)

    def checked_seed(self, template: Template, new: SeedIn, *, seed_id: int | None = None) -> Seed:
        """``new`` as a seed of ``template``, checked as an execution instance checks an event."""
        address, external_id = check_seed_address(template.channel, new.address, new.external_id)
        ctx = check_seed_ctx(new.ctx, new.ctx_format, max_bytes=self._max_ctx_bytes)
        return Seed(seed_id, template.id, new.label, address, external_id, ctx, new.ctx_format)

    # -- publication, preview, proofs -------------------------------------------------

    def freeze(self, template_name: str, version: int | None = None) -> PublicationSpec:
        """Template ``template_name`` frozen as publication ``version`` (default: its next
        version), with every block it uses.

        The content is checked as at save (compiled, tried on an empty ctx and on the
        template's seeds), so a block changed since, or a sandbox violation, is refused here
        with its part and line. Raises :class:`NotFoundError` (no such template),
        :class:`InvalidInputError` (its event type is undeclared or retired) or
        :class:`~msgcenter.render.TemplateSyntaxProblem`.
        """
        with self._db.read() as conn:
            draft = _draft(conn, template_name)
        return _frozen(draft, version)

    def check_draft(self, template_name: str, content: TemplateContent) -> None:
        """Check ``content`` as saving it into ``template_name`` would (compiled, tried on an
        empty ctx and on the template's seeds), without saving it; raises
        :class:`~msgcenter.render.TemplateSyntaxProblem` with the part and line."""
        with self._db.read() as conn:
            draft = _draft(conn, template_name)
        found = draft.template
        check_content(
            content,
            draft.blocks,
            seed_event(found.event_type, found.channel, found.folder),
            [load_ctx(s.ctx, s.ctx_format) for s in draft.seeds],
        )

    def preview(
        self,
        template_name: str,
        seed: int | SeedIn,
        *,
        content: TemplateContent | None = None,
    ) -> Preview:
        """Render ``template_name`` (or, with ``content``, that content in its place, unsaved)
        for a stored seed (its id) or an inline one, exactly as an execution instance will: the
        template frozen as its next publication, compiled with
        :func:`~msgcenter.publications.compile_publication`.

        Raises :class:`~msgcenter.render.TemplateSyntaxProblem` when the template does not
        compile and :class:`~msgcenter.render.RenderProblem` when it cannot be rendered for
        this seed.
        """
        with self._db.read() as conn:
            draft = _draft(conn, template_name)
            if content is not None:
                # as saved: a design's content has no blocks of its own (they are objects)
                saved = PublishedContent.model_validate(content.model_dump())
                draft = replace(draft, template=replace(draft.template, content=saved))
            found = draft.template
            if isinstance(seed, int):
                chosen = store.get_seed(conn, found.id, seed)
            else:
                chosen = self.checked_seed(found, seed)
        spec = _frozen(draft, None)
        ctx = load_ctx(chosen.ctx, chosen.ctx_format)
        event = seed_event(
            spec.event_type, spec.channel, spec.folder, chosen.address, chosen.external_id
        )
        message = compile_publication(Publication.draft(spec)).render(event, ctx)
        return Preview(spec, chosen, ctx, message)

    async def send_proof(self, template_name: str, seed_id: int, sent_by: str) -> Proof:
        """Render ``template_name`` for seed ``seed_id``, mail it to the seed, record the proof.

        A template that cannot be rendered raises (nothing is sent nor recorded); a message
        the relay refuses or that cannot be built is recorded as failed.
        """
        shown = await asyncio.to_thread(self.preview, template_name, seed_id)
        if shown.spec.channel is not Channel.EMAIL:
            raise InvalidInputError(
                "proofs are sent by email",
                detail=f"template '{template_name}' is a {shown.spec.channel.label} template; "
                "preview it instead",
            )
        status, reason = await deliver_proof(
            shown.spec.content, shown.seed.address, shown.message, shown.ctx, self._settings
        )
        return await asyncio.to_thread(
            self._record_proof, template_name, seed_id, shown, status, reason, sent_by
        )

    def list_proofs(self, template_name: str) -> list[Proof]:
        """The template's proofs, newest first."""
        with self._db.read() as conn:
            return store.list_proofs(conn, store.get_template(conn, template_name).id)

    def _record_proof(
        self, template_name: str, seed_id: int, shown: Preview, status: str, reason: str, by: str
    ) -> Proof:
        with self._db.write() as conn:
            found = store.get_template(conn, template_name)
            return store.add_proof(
                conn,
                found.id,
                seed_id,
                shown.seed.address,
                shown.message.subject,
                status,
                reason,
                by,
                _now(),
            )


def _now() -> datetime:
    return datetime.now(UTC)


def _usable_event_type(conn: Connection, name: str) -> EventType:
    """The event type a template names: declared and not retired, else :class:`InvalidInputError`."""
    try:
        found = store.get_event_type(conn, name)
    except NotFoundError:
        raise InvalidInputError(
            f"unknown event type '{name}'", detail=f"event type '{name}' is not declared"
        ) from None
    if found.retired:
        raise InvalidInputError(
            f"event type '{name}' is retired",
            detail=f"event type '{name}' is retired; templates cannot use it",
        )
    return found


def _check(
    conn: Connection,
    content: PublishedContent,
    event_type: str,
    channel: Channel,
    folder: str | None,
    *,
    template_id: int | None,
) -> None:
    seeds = store.list_seeds(conn, template_id) if template_id is not None else []
    check_content(
        content,
        store.block_sources(conn),
        seed_event(event_type, channel, folder),
        [load_ctx(s.ctx, s.ctx_format) for s in seeds],
    )


def _templates_using(conn: Connection, block_name: str) -> list[str]:
    """The templates that include ``block_name``, directly or through another block."""
    blocks = store.block_sources(conn)
    users = []
    for candidate in store.list_templates(conn):
        try:
            compiled = compile_content(message_parts(candidate.content), blocks)
        except TemplateSyntaxProblem:
            continue  # one that does not compile is refused at publication anyway
        if block_name in compiled.blocks_used:
            users.append(candidate.name)
    return users


def _draft(conn: Connection, template_name: str) -> _Draft:
    found = store.get_template(conn, template_name)
    _usable_event_type(conn, found.event_type)
    return _Draft(found, store.block_sources(conn), store.list_seeds(conn, found.id))


def _frozen(draft: _Draft, version: int | None) -> PublicationSpec:
    """The publication ``draft`` becomes, checked on an empty ctx and on its seeds."""
    found = draft.template
    samples = [load_ctx(s.ctx, s.ctx_format) for s in draft.seeds]
    compiled = check_content(
        found.content,
        draft.blocks,
        seed_event(found.event_type, found.channel, found.folder),
        samples,
    )
    used = {name: draft.blocks[name] for name in sorted(compiled.blocks_used)}
    try:
        return PublicationSpec(
            template=found.name,
            event_type=found.event_type,
            channel=found.channel,
            folder=found.folder,
            version=version if version is not None else found.published_version + 1,
            content=found.content.model_copy(update={"blocks": used}),
        )
    except ValidationError as exc:  # a rule across fields, such as the fallback channel's
        raise InvalidInputError(
            f"template '{found.name}' cannot be published", detail=spec_problem(exc)
        ) from None
