"""Technical accounts over the API of both instances (``mc_admin``): create one (its client id
and secret are shown once), rotate its secret, revoke it, list them with their last use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from msgcenter.auth.admin import ClientCredentials, OperatorAdmin
from msgcenter.designs import FOLDER
from msgcenter.operators import LOGIN, Operator, OperatorKind, Right
from msgcenter.web.access import require
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state

Operators = Annotated[OperatorAdmin, Depends(from_state("operators"))]
router = APIRouter(
    prefix="/api/v1/admin/technical-accounts",
    tags=["technical accounts"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


class TechnicalAccountIn(BaseModel):
    """A new technical account."""

    model_config = ConfigDict(extra="forbid")

    login: str = Field(pattern=f"^{LOGIN.pattern}$", description="its name among the operators")
    rights: list[Right] = Field(description="mc_push, mc_admin")
    folder: str | None = Field(None, pattern=FOLDER)
    trusted_ips: list[str] = Field(
        default_factory=list, description="CIDR masks it may connect from (none: any)"
    )


class CredentialsOut(BaseModel):
    """A technical account's client id, and a secret shown this once."""

    login: str
    client_id: str
    client_secret: str


class TechnicalAccountOut(BaseModel):
    """A technical account; its secrets are never shown again."""

    login: str
    client_id: str
    rights: list[str]
    folder: str | None
    trusted_ips: list[str]
    last_used: datetime | None
    revoked: datetime | None


@router.get("", response_model=list[TechnicalAccountOut], summary="Technical accounts")
def list_accounts(operators: Operators) -> Any:
    return [_out(o) for o in operators.list() if o.kind is OperatorKind.TECHNICAL]


@router.post(
    "",
    status_code=201,
    response_model=CredentialsOut,
    summary="Create a technical account; its client secret is shown this once",
    responses=documented(409),
)
def add_account(new: TechnicalAccountIn, operators: Operators) -> Any:
    return _credentials(
        operators.add_technical(
            new.login, ",".join(new.rights), trusted=new.trusted_ips, folder=new.folder
        )
    )


@router.post(
    "/{login}/rotate-secret",
    response_model=CredentialsOut,
    summary="A new client secret; the previous one works until the next rotation",
    responses=documented(404, 409),
)
def rotate_secret(login: str, operators: Operators) -> Any:
    return _credentials(operators.rotate_secret(login))


@router.post(
    "/{login}/revoke",
    status_code=204,
    summary="Revoke a technical account",
    responses=documented(404, 409),
)
def revoke(login: str, operators: Operators) -> None:
    operators.revoke(login)


def _credentials(found: ClientCredentials) -> CredentialsOut:
    return CredentialsOut(
        login=found.login, client_id=found.client_id, client_secret=found.client_secret
    )


def _out(found: Operator) -> TechnicalAccountOut:
    assert found.client_id is not None
    return TechnicalAccountOut(
        login=found.login,
        client_id=found.client_id,
        rights=sorted(found.rights),
        folder=found.folder,
        trusted_ips=[str(n) for n in found.trusted_networks],
        last_used=found.last_used,
        revoked=found.revoked,
    )
