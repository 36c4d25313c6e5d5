"""Folders (brands) on the control instance (SPEC §3.9): an operator of a folder sees and
changes only that folder's templates and execution instances, as if the others did not exist;
what every folder shares (event types, blocks) only an operator without a folder changes."""

from __future__ import annotations

from msgcenter.errors import NotFoundError, PermissionDeniedError
from msgcenter.operators import Operator


def sees(operator: Operator, folder: str | None) -> bool:
    """Whether ``operator`` sees an object of ``folder`` (an operator without one sees all)."""
    return operator.folder is None or operator.folder == folder


def check_sees(operator: Operator, folder: str | None, what: str, name: str) -> None:
    """:class:`NotFoundError` when ``operator`` does not see the ``what`` ``name`` of ``folder``."""
    if not sees(operator, folder):
        raise NotFoundError(f"no {what} '{name}'")


def check_changes_shared(operator: Operator, what: str) -> None:
    """:class:`PermissionDeniedError` when ``operator`` belongs to a folder: ``what`` (event
    types, blocks) is shared by every folder."""
    if operator.folder is not None:
        raise PermissionDeniedError(
            f"operator '{operator.login}' of folder '{operator.folder}' cannot change {what}, "
            "which every folder shares"
        )


def check_own_folder(operator: Operator, folder: str | None) -> None:
    """:class:`PermissionDeniedError` when an operator of a folder would put an object in
    another folder (or in none)."""
    if not sees(operator, folder):
        raise PermissionDeniedError(
            f"operator '{operator.login}' of folder '{operator.folder}' works in that folder "
            f"only, not in {f'folder {folder!r}' if folder else 'no folder'}"
        )
