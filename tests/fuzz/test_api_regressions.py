"""What the schema fuzzing (test_api_schema.py) found, each pinned down over real HTTP on both
stores: values a column cannot hold, which reached the driver and failed as server errors,
and FastAPI's own refusals, which were not problem+json."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from msgcenter.store.database import Database
from tests.conftest import RunningServer, add_operator, start_exec_server
from tests.control import CONTROL_ADMIN, control_server, order_template
from tests.processing import order_publication

PROBLEM = "application/problem+json"
#: beyond a signed 64-bit integer: no row id column holds it
HUGE = 2**70
ADMIN = ("mc", "Exec-Pa55word")


@pytest.fixture
def execution(db: Database) -> Iterator[RunningServer]:
    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(db)
    with threaded:
        yield running


@pytest.fixture
def control(db: Database) -> Iterator[RunningServer]:
    order_template(db)
    with control_server(db) as running:
        yield running


def _problem(answer: httpx.Response, status: int) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status
    return body


def test_an_archived_event_id_beyond_64_bits_is_a_bad_request(control):
    answer = httpx.get(
        f"{control.url}/api/v1/archive/events/exec1/{HUGE}", auth=CONTROL_ADMIN, timeout=10
    )
    assert _problem(answer, 400)["field"] == "path.event_id"


#: seeds have INTEGER ids, 32 bits on PostgreSQL: 2**31 failed there as a server error
SEED_IDS = [2**31, HUGE]


@pytest.mark.parametrize("seed", SEED_IDS)
def test_a_preview_seed_beyond_32_bits_is_a_bad_request(control, seed):
    answer = httpx.post(
        f"{control.url}/api/v1/templates/order_mail/preview",
        params={"seed": seed},
        auth=CONTROL_ADMIN,
        timeout=10,
    )
    assert _problem(answer, 400)["field"] == "query.seed"


@pytest.mark.parametrize("seed", SEED_IDS)
def test_a_proof_seed_beyond_32_bits_is_refused(control, seed):
    answer = httpx.post(
        f"{control.url}/api/v1/templates/order_mail/proofs",
        json={"seed": seed},
        auth=CONTROL_ADMIN,
        timeout=10,
    )
    assert _problem(answer, 422)["field"] == "/seed"


def test_a_seed_id_beyond_32_bits_in_a_path_is_a_bad_request(control):
    answer = httpx.get(
        f"{control.url}/api/v1/templates/order_mail/seeds/{2**31}", auth=CONTROL_ADMIN, timeout=10
    )
    assert _problem(answer, 400)["field"] == "path.seed_id"


@pytest.mark.parametrize("version", [2**31, HUGE])
def test_a_publication_version_beyond_32_bits_is_refused(execution, version):
    """PostgreSQL's INTEGER column holds 32 bits: 2**31 failed there as a server error."""
    answer = httpx.put(
        f"{execution.url}/api/v1/admin/publications",
        json=order_publication(version=version),
        auth=ADMIN,
        timeout=10,
    )
    assert _problem(answer, 422)["field"] == "/version"


def test_a_nul_in_a_searched_address_is_no_server_error(execution):
    """PostgreSQL cannot hold a NUL in text: psycopg refused it, the API answered 500; SQLite
    took it. Both stores now refuse it before the route, naming the parameter."""
    answer = httpx.get(
        f"{execution.url}/api/v1/admin/quarantine",
        params={"address": "ann\x00@example.com"},
        auth=ADMIN,
        timeout=10,
    )
    assert _problem(answer, 400)["field"] == "query.address"


def test_a_nul_in_an_event_type_name_is_no_server_error(control):
    answer = httpx.patch(
        f"{control.url}/api/v1/event-types/order%00confirmation",
        json={"label": "Order"},
        auth=CONTROL_ADMIN,
        timeout=10,
    )
    assert _problem(answer, 400)["field"] == "path"


def test_a_nul_in_a_json_body_is_refused_naming_it_on_both_stores(control):
    answer = httpx.post(
        f"{control.url}/api/v1/event-types",
        json={"name": "order", "label": "Or\x00der"},
        auth=CONTROL_ADMIN,
        timeout=10,
    )
    found = _problem(answer, 422)
    assert found["field"] == "/label"
    assert "NUL" in found["detail"]
    listed = httpx.get(f"{control.url}/api/v1/event-types", auth=CONTROL_ADMIN, timeout=10)
    assert "order" not in [t["name"] for t in listed.json()]


def test_a_body_that_is_not_text_gets_a_problem(control):
    """FastAPI refuses a body it cannot decode with its own {"detail": ...} JSON."""
    answer = httpx.post(
        f"{control.url}/api/v1/event-types",
        content=b'{"name": "\x9c"}',
        headers={"Content-Type": "application/json"},
        auth=CONTROL_ADMIN,
        timeout=10,
    )
    assert _problem(answer, 400)["detail"] == "There was an error parsing the body"


def test_unknown_api_paths_and_methods_get_problems_and_others_do_not(control):
    unknown = httpx.get(f"{control.url}/api/v1/no-such-thing", auth=CONTROL_ADMIN, timeout=10)
    _problem(unknown, 404)
    not_allowed = httpx.delete(f"{control.url}/api/v1/blocks", auth=CONTROL_ADMIN, timeout=10)
    _problem(not_allowed, 405)
    assert "GET" in not_allowed.headers["allow"]
    outside = httpx.get(f"{control.url}/no-such-page", timeout=10)
    assert outside.status_code == 404
    assert outside.headers["content-type"] != PROBLEM
