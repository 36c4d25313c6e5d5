"""The servers a browser journey walks through: a control instance and an execution instance
(workflows running) with their own databases on one store, both relaying to a recording SMTP
server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx

from msgcenter.control.app import create_control_app
from msgcenter.settings import Settings
from msgcenter.store.database import Database
from tests.conftest import (
    FAST_PROCESSING,
    RunningServer,
    ThreadedServer,
    add_operator,
    start_exec_server,
)
from tests.control import CONTROL_ADMIN, EXEC_LOGIN, EXEC_PASSWORD, KEY
from tests.smtp import SmtpServer


@dataclass
class Platform:
    """Both instances of a journey and the mail they sent."""

    control: RunningServer
    execution: RunningServer
    smtp: SmtpServer

    @property
    def exec_login(self) -> tuple[str, str]:
        """The execution instance's operator (all rights), as registered on the control one."""
        return EXEC_LOGIN, EXEC_PASSWORD

    @property
    def control_login(self) -> tuple[str, str]:
        """The control instance's administrator."""
        return CONTROL_ADMIN


def smtp_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": smtp.port,
        "timeout_seconds": 5,
        "helo_name": "msgcenter.test",
    }


@contextlib.contextmanager
def running_platform(
    exec_db: Database, control_db: Database, smtp: SmtpServer, **control: Any
) -> Iterator[Platform]:
    """Both instances serving until the block ends; ``control`` overrides ``[control]``."""
    add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD)
    add_operator(control_db, *CONTROL_ADMIN, rights="mc_admin")
    threaded, execution = start_exec_server(
        exec_db, processing=dict(FAST_PROCESSING), smtp=smtp_settings(smtp)
    )
    control_settings = Settings(
        database_url=control_db.url,
        instance_name="control",
        control={"credentials_key": KEY, "instance_timeout_seconds": 5, **control},
        smtp=smtp_settings(smtp),  # proofs
    )
    with threaded, ThreadedServer(create_control_app(control_settings, control_db)) as url:
        yield Platform(RunningServer(url, control_db, control_settings), execution, smtp)


def push_soap(
    exec_url: str, login: tuple[str, str], email: str, ctx: str, *, event_type: str
) -> int:
    """Push one real-time event as an integration of the model product does; its id."""
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{escape(login[0])}/{escape(login[1])}</urn:sessiontoken>"
        f'<urn:domEvent><rtEvent type="{escape(event_type)}" email="{escape(email)}" '
        f'externalId="{escape(email)}">{ctx}</rtEvent></urn:domEvent>'
        "</urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    )
    answer = httpx.post(
        f"{exec_url}/nl/jsp/soaprouter.jsp",
        content=body,
        headers={"Content-Type": "text/xml", "SOAPAction": '"nms:rtEvent#PushEvent"'},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.text.split('xsd:long">')[1].split("<")[0])
