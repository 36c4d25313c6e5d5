"""Schema fuzzing of both instances' APIs: requests generated from each app's own OpenAPI
document (schemathesis, on Hypothesis) are sent to a real server on loopback, on SQLite and
on PostgreSQL, and every answer must be no server error (5xx), carry a documented status code
and content type, and match the documented schema of its body.

Each operation is one test, on a fresh database seeded with a template and its event type,
block and seed, an execution instance registered with the control instance (where nothing
listens), a publication, an event and a technical account on the execution instance: path
parameters are the generated values or, as often as not, the names of these (so routes get
past their 404s). The examples are bounded (``MAX_EXAMPLES`` per operation, plus the
documents' own examples) and derandomized, so a run is the same every time. The checks are
``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance`` and
``response_schema_conformance``; the data-acceptance checks (does the server accept every
valid request, refuse every invalid one) are left out: valid-looking names still refer to
nothing, and the stores' own limits are stricter than JSON Schema can say. A 502 is
accepted where an operation documents it: the control instance's answer when the execution
instance it calls cannot be reached (the seeded one, or one registered at a made-up URL).
The servers have a ``secret_key`` (without one, ``/oauth2/token`` answers 500
``server_error`` by design: it cannot sign tokens) and no failed-logon throttle.

Left out, and why:

- ``GET /readyz`` and ``GET /metrics`` (both instances), from ``web/monitoring.py``: the
  execution instance's probe answers 503 by design while its workflows do not run (they are
  off here), which ``not_a_server_error`` cannot tell from a failure, and neither route
  documents that 503 or the ``text/plain`` exposition format yet; their behaviour is covered
  by the monitoring tests.

Nothing else is left out: logging out (``DELETE /sessions/current``) needs a bearer token,
which the fuzzer, authenticating with HTTP Basic, does not have; stopping workflows, archive
runs, publications and connection tests run against the seeded instance, where nothing
listens, and end at once; each test has its own database, so what one operation changes
cannot disturb another.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from argon2 import PasswordHasher
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from msgcenter.auth import passwords
from msgcenter.control.app import create_control_app
from msgcenter.settings import Settings
from msgcenter.store import control_design
from msgcenter.store.database import Database
from msgcenter.web.exec_app import create_exec_app
from tests.conftest import ThreadedServer, add_operator
from tests.control import KEY, nothing_listening, order_template
from tests.processing import order_publication

#: generated examples per operation (on each store), beside the documents' own examples
MAX_EXAMPLES = 20
LOGIN, PASSWORD = "fuzzer", "Fuzz-Pa55word"


def not_a_server_error_of_ours(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except for a documented 502: the control instance's answer
    when an execution instance it calls cannot be reached (the seeded one, where nothing
    listens, or one the fuzzer registered at a made-up URL) is not a failure of its own."""
    if response.status_code == 502 and "502" in case.operation.responses.status_codes:
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    not_a_server_error_of_ours,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: what the seeded objects are called, by the name of the path parameters naming them
SEEDED: dict[str, list[Any]] = {
    "name": ["order_mail", "order_confirmation", "footer", "exec1"],
    "template": ["order_mail"],
    "instance": ["exec1"],
    "login": ["robot"],
    "event_id": [1],
    "seed_id": [1],
}
#: the fuzzer fails logons on purpose (/oauth2/token, /sessions) from the address it then
#: works from: the throttle must not answer its next operations 429
UNTHROTTLED = {"failed_login_limit": 1_000_000, "failed_address_limit": 1_000_000}
SECRET_KEY = "fuzz-secret-key-0123456789abcdef0123456789"


def _document(factory: Callable[[Settings, Database], FastAPI]) -> dict[str, Any]:
    """An app's OpenAPI document, as it serves it (the database is never opened)."""
    database = Database(f"sqlite:///{Path(tempfile.gettempdir()) / 'msgcenter-unopened.db'}")
    document = factory(Settings(database_url=database.url), database).openapi()
    database.dispose()
    return json.loads(json.dumps(document))


def _schema(factory: Callable[[Settings, Database], FastAPI]) -> Any:
    schema = schemathesis.openapi.from_dict(_document(factory), config=schemathesis.Config())
    # generated requests and the documents' examples; no coverage phase (its boundary
    # values multiply the requests per operation), no stateful phase (no links declared)
    schema.config.phases.update(phases=["examples", "fuzzing"])

    @schema.hook
    def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """The generated path parameters, or with seeded names in place of some of them."""
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries(
            {
                name: st.sampled_from([value, *SEEDED.get(name, [])])
                for name, value in path_parameters.items()
            }
        )

    return schema.exclude(path_regex="^/(readyz|metrics)$")


exec_schema = _schema(create_exec_app)
control_schema = _schema(create_control_app)

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    # generation is filtered (valid path parameters) and the server slower than Hypothesis
    # expects of a function; neither makes the examples less useful
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """The server hashes the secrets of the accounts the fuzzer creates: at the lowest cost."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        yield


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """HTTP Basic as an operator with every right."""
    with requests.Session() as http:
        http.auth = (LOGIN, PASSWORD)
        yield http


def _created(answer: requests.Response) -> None:
    assert answer.status_code in (200, 201), answer.text


@pytest.fixture
def exec_url(db: Database, session: requests.Session) -> Iterator[str]:
    """An execution instance (workflows off) on a fresh database, seeded."""
    add_operator(db, LOGIN, PASSWORD)
    settings = Settings(
        database_url=db.url,
        secret_key=SECRET_KEY,
        processing={"workflows_in_web_process": False},
        security=UNTHROTTLED,
    )
    with ThreadedServer(create_exec_app(settings, db)) as url:
        api = f"{url}/api/v1"
        _created(session.put(f"{api}/admin/publications", json=order_publication()))
        event = {"type": "order_confirmation", "email": "ann@example.com", "ctx": {"n": 1}}
        _created(session.post(f"{api}/events/rt", json=event))
        robot = {"login": "robot", "rights": ["mc_push"]}
        _created(session.post(f"{api}/admin/technical-accounts", json=robot))
        yield url


@pytest.fixture
def control_url(db: Database, session: requests.Session) -> Iterator[str]:
    """A control instance on a fresh database, seeded."""
    add_operator(db, LOGIN, PASSWORD, rights="mc_admin")
    order_template(db)
    with db.write() as conn:
        control_design.add_block(conn, "unused", "<p>unused</p>", datetime.now(UTC))
    settings = Settings(
        database_url=db.url,
        secret_key=SECRET_KEY,
        security=UNTHROTTLED,
        control={"credentials_key": KEY, "instance_timeout_seconds": 1},
    )
    with ThreadedServer(create_control_app(settings, db)) as url:
        api = f"{url}/api/v1"
        seed = {"address": "ann@example.com", "ctx": {"client": {"firstname": "Ann"}}}
        _created(session.post(f"{api}/templates/order_mail/seeds", json=seed))
        instance = {
            "name": "exec1",
            "label": "Execution 1",
            "url": nothing_listening(),
            "login": "mc",
            "password": "Exec-Pa55word",
        }
        _created(session.post(f"{api}/instances", json=instance))
        robot = {"login": "robot", "rights": ["mc_admin"]}
        _created(session.post(f"{api}/admin/technical-accounts", json=robot))
        yield url


@exec_schema.parametrize()
@FUZZ
def test_execution_instance(case: Any, exec_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=exec_url, session=session, checks=CHECKS, timeout=30)


@control_schema.parametrize()
@FUZZ
def test_control_instance(case: Any, control_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=control_url, session=session, checks=CHECKS, timeout=30)
