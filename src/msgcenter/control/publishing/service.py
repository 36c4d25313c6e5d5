"""Publication to every enabled execution instance, and its background catch-up (SPEC §4).

Publishing freezes a new version (blocks included), logs it, and marks every
enabled execution instance pending; the pushes follow at once, concurrently. An
instance that fails stays pending with the precise reason and the
``publicationCatchUp`` workflow tries it again every
``control.publication_retry_seconds`` until it has the current version, so an
instance that was down, or registered later, catches up by itself.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from msgcenter.control.design.service import DesignService
from msgcenter.control.exec_client import ExecClient, ExecInstanceError, client_for
from msgcenter.errors import MsgcenterError
from msgcenter.publications import (
    PendingPush,
    Publication,
    PublicationState,
    PublishedVersion,
    check_list_unsubscribe,
    compile_publication,
)
from msgcenter.settings import Settings
from msgcenter.store import control_design
from msgcenter.store import control_publications as publication_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow

log = structlog.get_logger(__name__)


class PublishingService:
    """Publishes and unpublishes templates on the execution instances, and catches them up."""

    def __init__(self, db: Database, settings: Settings, design: DesignService) -> None:
        self._db = db
        self._settings = settings
        self._design = design

    async def publish(self, template: str, operator: str) -> PublicationState:
        """Freeze ``template`` as a new version and push it to every enabled instance.

        A template that does not compile is refused (with the part and line)
        before anything is stored or sent.
        """
        await asyncio.to_thread(self._freeze, template, operator)
        await self.catch_up(template=template)
        return await asyncio.to_thread(self.state, template)

    async def unpublish(self, template: str, operator: str) -> PublicationState:
        """Remove both flavours of ``template`` from every enabled instance."""
        await asyncio.to_thread(self._retire, template, operator)
        await self.catch_up(template=template)
        return await asyncio.to_thread(self.state, template)

    def state(self, template: str) -> PublicationState:
        """Where ``template`` stands on every instance, and its publication log."""
        with self._db.read() as conn:
            return publication_store.state(conn, template)

    def versions(self, template: str) -> list[PublishedVersion]:
        """Every published version of ``template``, newest first (for history and diffs)."""
        with self._db.read() as conn:
            return publication_store.versions(conn, template)

    async def catch_up(self, *, instance: str | None = None, template: str | None = None) -> int:
        """Push what enabled instances lack (of one instance or one template); returns what stays pending."""
        pushes = await asyncio.to_thread(self._pending, instance, template)
        by_instance = itertools.groupby(pushes, key=lambda push: push.instance.id)
        left = await asyncio.gather(*(self._catch_up(list(group)) for _, group in by_instance))
        return sum(left)

    def _freeze(self, template: str, operator: str) -> None:
        now = datetime.now(UTC)
        spec = self._design.freeze(template)
        spec = spec.model_copy(update={"published_at": spec.published_at or now})
        # Exactly what each execution instance checks when it receives the version.
        check_list_unsubscribe(spec.content)
        compile_publication(Publication.draft(spec))
        with self._db.write() as conn:
            current = control_design.get_template(conn, template)
            # the version frozen follows the one read then; a publication since is refused
            frozen_from = replace(current, published_version=spec.version - 1)
            publication_store.record_publish(conn, frozen_from, spec, operator, now)
        log.info(
            "template published",
            action="publication.published",
            template=template,
            version=spec.version,
            operator=operator,
        )

    def _retire(self, template: str, operator: str) -> None:
        with self._db.write() as conn:
            current = control_design.get_template(conn, template)
            publication_store.record_unpublish(conn, current, operator, datetime.now(UTC))
        log.info(
            "template unpublished",
            action="publication.unpublished",
            template=template,
            version=current.published_version,
            operator=operator,
        )

    def _pending(self, instance: str | None, template: str | None) -> list[PendingPush]:
        with self._db.read() as conn:
            return publication_store.pending(conn, instance=instance, template_name=template)

    async def _catch_up(self, pushes: list[PendingPush]) -> int:
        """Push one instance's pending templates in turn; returns how many stay pending."""
        instance = pushes[0].instance
        left = 0
        try:
            client = client_for(instance, self._settings)
        except MsgcenterError as exc:  # the stored password cannot be decrypted
            await asyncio.to_thread(self._failed, pushes, exc.detail)
            return len(pushes)
        async with client:
            for position, push in enumerate(pushes):
                try:
                    version = await _push(client, push)
                except MsgcenterError as exc:
                    if isinstance(exc, ExecInstanceError) and exc.failure.instance_wide:
                        # Every further call would fail alike: keep the rest for the next round.
                        await asyncio.to_thread(self._failed, pushes[position:], exc.detail)
                        return left + len(pushes) - position
                    await asyncio.to_thread(self._failed, [push], exc.detail)
                    left += 1
                    continue
                done = await asyncio.to_thread(self._done, push, version)
                left += 0 if done else 1
        return left

    def _done(self, push: PendingPush, version: int | None) -> bool:
        with self._db.write() as conn:
            done = publication_store.record_done(
                conn, push.instance.id, push.template_id, version, datetime.now(UTC)
            )
        log.info(
            "publication pushed" if version else "publication removed",
            action="publication.pushed" if version else "publication.removed",
            instance=push.instance.name,
            template=push.template,
            version=version,
            current=done,
        )
        return done

    def _failed(self, pushes: list[PendingPush], reason: str) -> None:
        instance = pushes[0].instance
        with self._db.write() as conn:
            publication_store.record_failure(
                conn, instance.id, [p.template_id for p in pushes], reason, datetime.now(UTC)
            )
        log.warning(
            "publication pending",
            action="publication.pending",
            instance=instance.name,
            templates=[p.template for p in pushes],
            reason=reason,
        )


class PublicationCatchUp(Workflow):
    """Tries again, every ``control.publication_retry_seconds``, the instances that missed a change."""

    name = "publicationCatchUp"

    def __init__(self, publisher: PublishingService, interval: float) -> None:
        super().__init__()
        self._publisher = publisher
        self._interval = interval

    async def run_once(self) -> float:
        await self._publisher.catch_up()
        return self._interval


async def _push(client: ExecClient, push: PendingPush) -> int | None:
    """Bring one template up to date on the instance; returns the version it now has (None: removed)."""
    folder = push.folder or push.instance.folder
    if push.spec is None:
        await client.unpublish(push.template, folder)
        return None
    await client.publish(push.spec.model_copy(update={"folder": folder}))
    return push.spec.version
