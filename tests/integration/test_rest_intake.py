"""REST intake over real HTTP on both stores: push, read back, idempotency, search, bad input.

SPEC §3.1 (fields), §3.2 (REST, intake rules), §3.3 (statuses), §3.9 (folders).
Every test checks the ``event`` table afterwards, not only the HTTP answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from msgcenter.auth import passwords
from msgcenter.store.tables import event
from tests.conftest import add_operator, start_exec_server
from tests.processing import order_publication, publish

LOGIN, PASSWORD = "mc", "secret"
PROBLEM_JSON = "application/problem+json"
#: ``field`` absent from a problem
NO_FIELD = object()


# -- helpers -----------------------------------------------------------------------------


def new_event(**fields: object) -> dict[str, object]:
    """A valid email event with ``fields`` replaced or added."""
    return {"type": "order_confirmation", "email": "ann@example.com", "ctx": {"order": 1}, **fields}


def event_rows(db) -> list:
    """Every stored event row, by id."""
    with db.read() as conn:
        return conn.execute(select(event).order_by(event.c.id)).mappings().all()


def push(api: httpx.Client, body: object, queue: str = "rt", **kwargs: object) -> httpx.Response:
    return api.post(f"/api/v1/events/{queue}", json=body, **kwargs)


def push_ok(api: httpx.Client, events: list[dict], queue: str = "rt") -> list[int]:
    """Push a list that must be accepted; its ids."""
    response = push(api, events, queue)
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def assert_problem(
    response: httpx.Response, status: int, detail: str, field: object = NO_FIELD
) -> dict:
    """An RFC 9457 problem with ``status``, a detail containing ``detail`` and ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:msgcenter:problem:")
    assert problem["title"]
    assert detail in problem["detail"], problem["detail"]
    if field is NO_FIELD:
        assert "field" not in problem, problem
    else:
        assert problem.get("field") == field, problem
    return problem


def client_for(url: str, login: str = LOGIN, password: str = PASSWORD) -> httpx.Client:
    return httpx.Client(base_url=url, auth=(login, password), timeout=10)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """Real Argon2id, at its lowest cost: the default costs up to 0.5 s per hash on a busy machine,
    paid twice per test (add_operator, then the server's first verification)."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def api(exec_server) -> Iterator[httpx.Client]:
    """A client of a default execution instance, as operator ``mc`` (all rights, no folder)."""
    add_operator(exec_server.db, LOGIN, PASSWORD)
    with client_for(exec_server.url) as client:
        yield client


@pytest.fixture
def limited(db) -> Iterator[httpx.Client]:
    """A client of an instance with small intake limits."""
    add_operator(db, LOGIN, PASSWORD)
    threaded, running = start_exec_server(
        db,
        intake={"max_request_bytes": 4096, "max_event_bytes": 1024, "max_events_per_request": 3},
    )
    with threaded, client_for(running.url) as client:
        yield client


# -- push and read back ------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["rt", "batch"])
def test_push_one_event_returns_its_id(api, db, queue):
    response = push(api, new_event(), queue)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    rows = event_rows(db)
    assert len(rows) == 1
    assert response.json()["id"] == rows[0]["id"]
    assert rows[0]["id"] > 0
    assert rows[0]["queue"] == queue
    assert rows[0]["status"] == 0


@pytest.mark.parametrize("queue", ["rt", "batch"])
def test_push_a_list_returns_the_ids_in_order(api, db, queue):
    response = push(api, [new_event(external_id=f"cust-{i}") for i in range(4)], queue)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert "id" not in response.json()
    rows = {row["id"]: row for row in event_rows(db)}
    assert sorted(rows) == sorted(ids)
    assert [rows[i]["external_id"] for i in ids] == ["cust-0", "cust-1", "cust-2", "cust-3"]
    assert {row["queue"] for row in rows.values()} == {queue}


def test_a_push_warns_of_types_without_a_publication_in_force(api, exec_server, db):
    # stored all the same (the model product's contract), with a warning naming the type
    answer = push(api, [new_event(), new_event(type="password_reset")])
    assert answer.status_code == 201, answer.text
    assert answer.json()["warnings"] == [
        f"event type {name!r} has no publication in force on the rt queue: the event is "
        "stored and will end not_taken_into_account unless one is published"
        for name in ("order_confirmation", "password_reset")
    ]
    assert len(event_rows(db)) == 2
    publish(exec_server, order_publication())
    # the set of publications is re-read at most once a second: wait for it, not for a time
    deadline = time.monotonic() + 30
    while "warnings" in (body := push(api, new_event(), "rt").json()):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    # the publication has both flavours: only the other type is warned of, on either queue
    warned = push(api, [new_event(), new_event(type="password_reset")], "batch").json()
    assert warned["warnings"] == [
        "event type 'password_reset' has no publication in force on the batch queue: the event "
        "is stored and will end not_taken_into_account unless one is published"
    ]


def test_a_one_event_list_still_answers_ids(api, db):
    response = push(api, [new_event()])
    assert response.status_code == 201
    assert response.json()["ids"] == [event_rows(db)[0]["id"]]


def test_every_field_is_stored_and_read_back(api, db):
    ctx = {
        "client": {"first_name": "Zoë", "tags": ["vip", 1, 2.5, True, None]},
        "order": {"id": "A-17", "lines": [{"sku": "X", "qty": 2}]},
        "html": "<b>&amp;</b>",
    }
    sent = {
        "type": "order_confirmation",
        "email": "ann@example.com",
        "mobile_phone": "+33612345678",
        "registration_token": "device-token-1",
        "mobile_app_uuid": "app-uuid-1",
        "wished_channel": "sms",
        "email_format": 2,
        "external_id": "cust-42",
        "origin": "web-shop",
        "language": "fr",
        "country": "FR",
        "correlation_id": "corr-7",
        "scheduled": "2030-01-02T03:04:05+02:00",
        "ctx": ctx,
        "campaign": "spring",
        "priority": {"level": 3},
    }
    before = datetime.now(UTC)
    event_id = push(api, sent, "batch").json()["id"]

    read = api.get(f"/api/v1/events/{event_id}")
    assert read.status_code == 200, read.text
    got = read.json()
    scheduled = datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    expected = {
        "id": event_id,
        "queue": "batch",
        "type": "order_confirmation",
        "status": "pending",
        "status_code": 0,
        "email": "ann@example.com",
        "mobile_phone": "+33612345678",
        "registration_token": "device-token-1",
        "mobile_app_uuid": "app-uuid-1",
        "wished_channel": 1,
        "email_format": 2,
        "external_id": "cust-42",
        "origin": "web-shop",
        "language": "fr",
        "country": "FR",
        "correlation_id": "corr-7",
        "ctx": ctx,
        "ctx_format": "json",
        "extra": {"campaign": "spring", "priority": {"level": 3}},
        "folder": None,
        "error_count": 0,
        "publication_id": None,
        "delivery_id": None,
        "delivery_log_id": None,
    }
    assert {k: got[k] for k in expected} == expected
    assert datetime.fromisoformat(got["scheduled"]) == scheduled
    # a future schedule is when processing is first requested
    assert datetime.fromisoformat(got["process_requested_on"]) == scheduled
    created = datetime.fromisoformat(got["created"])
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert datetime.fromisoformat(got["last_modified"]) == created
    assert len(got["history"]) == 1
    step = got["history"][0]
    assert (step["status"], step["reason"]) == ("pending", None)
    assert datetime.fromisoformat(step["at"]) == created

    (row,) = event_rows(db)
    assert row["id"] == event_id
    assert (row["queue"], row["wished_channel"], row["email_format"]) == ("batch", 1, 2)
    assert row["scheduled"] == scheduled
    assert orjson.loads(row["ctx"]) == ctx
    assert orjson.loads(row["extra"]) == {"campaign": "spring", "priority": {"level": 3}}
    assert row["idempotency_key"] is None


def test_unscheduled_event_is_due_at_once(api):
    event_id = push(api, new_event()).json()["id"]
    got = api.get(f"/api/v1/events/{event_id}").json()
    assert got["scheduled"] is None
    assert got["process_requested_on"] == got["created"]
    assert got["extra"] == {}


def test_reading_an_unknown_event_is_404(api):
    assert_problem(api.get("/api/v1/events/999999"), 404, "no event 999999")


# -- idempotency -------------------------------------------------------------------------


def test_repeated_idempotency_key_returns_the_first_id(api, db):
    first = push(api, new_event(external_id="a"), headers={"Idempotency-Key": "order-17"})
    again = push(api, new_event(external_id="a"), headers={"Idempotency-Key": "order-17"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    rows = event_rows(db)
    assert len(rows) == 1
    assert (rows[0]["idempotency_key"], rows[0]["external_id"]) == ("order-17", "a")


def test_different_keys_and_no_key_store_new_events(api, db):
    ids = {
        push(api, new_event(), headers={"Idempotency-Key": "k1"}).json()["id"],
        push(api, new_event(), headers={"Idempotency-Key": "k2"}).json()["id"],
        push(api, new_event()).json()["id"],
        push(api, new_event()).json()["id"],
    }
    assert len(ids) == 4
    assert len(event_rows(db)) == 4


def test_same_key_from_another_operator_is_independent(api, exec_server, db):
    add_operator(db, "other", "pw2")
    mine = push(api, new_event(), headers={"Idempotency-Key": "shared"}).json()["id"]
    with client_for(exec_server.url, "other", "pw2") as other:
        theirs = push(other, new_event(), headers={"Idempotency-Key": "shared"}).json()["id"]
        assert (
            push(other, new_event(), headers={"Idempotency-Key": "shared"}).json()["id"] == theirs
        )
    assert mine != theirs
    rows = event_rows(db)
    assert [r["id"] for r in rows] == sorted([mine, theirs])
    assert len({r["operator_id"] for r in rows}) == 2


def test_list_push_with_a_key_replays_the_same_ids(api, db):
    events = [new_event(external_id=f"c{i}") for i in range(3)]
    first = push(api, events, headers={"Idempotency-Key": "batch-9"})
    again = push(api, events, headers={"Idempotency-Key": "batch-9"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len(first.json()["ids"]) == 3
    assert len(event_rows(db)) == 3


def test_too_long_idempotency_key_is_refused(api, db):
    response = push(api, new_event(), headers={"Idempotency-Key": "k" * 201})
    assert_problem(response, 400, "idempotency-key", field="header.idempotency-key")
    assert event_rows(db) == []


# -- search ------------------------------------------------------------------------------


def set_columns(db, event_id: int, **values: object) -> None:
    with db.write() as conn:
        conn.execute(update(event).where(event.c.id == event_id).values(**values))


def day(n: int) -> datetime:
    return datetime(2026, 1, n, 10, 0, tzinfo=UTC)


def search(api: httpx.Client, **params: object) -> httpx.Response:
    return api.get("/api/v1/events", params=params)


def found_ids(api: httpx.Client, **params: object) -> list[int]:
    response = search(api, **params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_search_filters(api, db, subtests):
    """Four events that differ in every criterion; each filter picks out its own."""
    a, b = push_ok(
        api,
        [
            new_event(external_id="c1"),
            new_event(type="password_reset", email="bob@example.com", external_id="c2"),
        ],
        "rt",
    )
    c, d = push_ok(
        api,
        [
            new_event(email="bob@example.com", external_id="c3"),
            new_event(type="newsletter", external_id="c1"),
        ],
        "batch",
    )
    for event_id, n in ((a, 1), (b, 2), (c, 3), (d, 4)):
        set_columns(db, event_id, created=day(n))
    set_columns(db, b, status=2)
    set_columns(db, d, status=4)

    cases = [
        ({}, [d, c, b, a]),
        ({"queue": "rt"}, [b, a]),
        ({"queue": "batch"}, [d, c]),
        ({"type": "order_confirmation"}, [c, a]),
        ({"type": "unknown_type"}, []),
        ({"status": "pending"}, [c, a]),
        ({"status": "0"}, [c, a]),
        ({"status": "sent"}, [b]),
        ({"status": "2"}, [b]),
        ({"status": "delivery_failed"}, [d]),
        ({"status": "expired"}, []),
        ({"email": "bob@example.com"}, [c, b]),
        ({"external_id": "c1"}, [d, a]),
        ({"created_from": "2026-01-02T00:00:00Z"}, [d, c, b]),
        ({"created_to": "2026-01-03T00:00:00Z"}, [b, a]),
        ({"created_to": "2026-01-03T10:00:00Z"}, [b, a]),  # the upper bound is exclusive
        ({"created_from": "2026-01-02T10:00:00Z", "created_to": "2026-01-04T00:00:00Z"}, [c, b]),
        ({"created_from": "2026-01-02T11:30:00+02:00"}, [d, c, b]),  # 09:30 UTC
        ({"created_from": "2026-01-02T00:00:00"}, [d, c, b]),  # no zone: UTC
        ({"type": "order_confirmation", "queue": "batch"}, [c]),
        ({"email": "ann@example.com", "status": "pending"}, [a]),
    ]
    for params, expected in cases:
        with subtests.test(msg=str(params)):
            assert found_ids(api, **params) == expected


def test_search_items_are_full_events(api):
    (event_id,) = push_ok(api, [new_event(ctx={"k": [1]}, campaign="x")])
    (item,) = search(api).json()["items"]
    assert item["id"] == event_id
    assert (item["status"], item["status_code"], item["queue"]) == ("pending", 0, "rt")
    assert item["ctx"] == {"k": [1]}
    assert item["extra"] == {"campaign": "x"}


def test_cursor_pagination_walks_every_event_once(api, db):
    ids = push_ok(api, [new_event(external_id=f"c{i}") for i in range(25)])
    pages, cursor = [], None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = search(api, **params).json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"
    assert [len(p) for p in pages] == [10, 10, 5]
    walked = [i for page in pages for i in page]
    assert walked == sorted(ids, reverse=True)  # newest first, no duplicate, no gap
    assert len(event_rows(db)) == 25


def test_last_full_page_has_no_next_cursor(api):
    push_ok(api, [new_event() for _ in range(20)])
    first = search(api, limit=10).json()
    assert first["next_cursor"] is not None
    second = search(api, limit=10, cursor=first["next_cursor"]).json()
    assert len(second["items"]) == 10
    assert second["next_cursor"] is None
    assert search(api, limit=20).json()["next_cursor"] is None


def test_pagination_keeps_the_filter(api):
    ids = push_ok(api, [new_event(type="a" if i % 2 else "b") for i in range(9)])
    first = search(api, type="a", limit=3).json()
    second = search(api, type="a", limit=3, cursor=first["next_cursor"]).json()
    walked = [item["id"] for item in first["items"] + second["items"]]
    assert walked == sorted(ids[1::2], reverse=True)
    assert second["next_cursor"] is None


BAD_SEARCHES = [
    ({"cursor": "not-a-cursor!"}, "pass next_cursor from a previous page unchanged"),
    ({"cursor": "YWZ0ZXI6NQ"}, "pass next_cursor"),  # "after:5"
    ({"cursor": "YmVmb3JlOng"}, "pass next_cursor"),  # "before:x"
    ({"status": "delivered"}, "known statuses: pending, pending_delivery, sent"),
    ({"status": "99"}, "known statuses"),
    ({"limit": 0}, "query.limit"),
    ({"limit": 501}, "query.limit"),
    ({"created_from": "yesterday"}, "query.created_from"),
    ({"queue": "urgent"}, "query.queue"),
]


def test_bad_search_parameters_are_400(api, subtests):
    for params, detail in BAD_SEARCHES:
        with subtests.test(msg=str(params)):
            field = detail if detail.startswith("query.") else NO_FIELD
            assert_problem(search(api, **params), 400, detail, field=field)


def test_unknown_status_names_it(api):
    problem = search(api, status="delivered").json()
    assert problem["title"] == "unknown status 'delivered'"


def test_folder_operator_sees_only_its_folder(exec_server, db):
    add_operator(db, "brand_a", "pw-a", folder="a")
    add_operator(db, "brand_b", "pw-b", folder="b")
    add_operator(db, "admin", "pw")
    with (
        client_for(exec_server.url, "brand_a", "pw-a") as brand_a,
        client_for(exec_server.url, "brand_b", "pw-b") as brand_b,
        client_for(exec_server.url, "admin", "pw") as admin,
    ):
        a_ids = push_ok(brand_a, [new_event(), new_event()])
        b_ids = push_ok(brand_b, [new_event()])
        assert {r["id"]: r["folder"] for r in event_rows(db)} == {
            a_ids[0]: "a",
            a_ids[1]: "a",
            b_ids[0]: "b",
        }
        assert found_ids(brand_a) == sorted(a_ids, reverse=True)
        assert found_ids(brand_b) == b_ids
        assert found_ids(admin) == sorted(a_ids + b_ids, reverse=True)
        assert brand_a.get(f"/api/v1/events/{a_ids[0]}").json()["folder"] == "a"
        assert_problem(brand_a.get(f"/api/v1/events/{b_ids[0]}"), 404, f"no event {b_ids[0]}")
        assert_problem(brand_b.get(f"/api/v1/events/{a_ids[1]}"), 404, "no event")
        assert admin.get(f"/api/v1/events/{b_ids[0]}").status_code == 200


# -- bad input ---------------------------------------------------------------------------


def five_with_a_bad_third() -> list[dict]:
    events = [new_event(external_id=f"c{i}") for i in range(5)]
    events[2]["email"] = "not-an-address"
    return events


BAD_BODIES = [
    # (id, raw body or JSON value, status, detail fragment, field)
    ("not-json", b'{"type": "x",\n  "ctx": }', 400, "JSON parse error at line 2, column", NO_FIELD),
    ("empty-body", b"", 400, "JSON parse error at line 1, column 1", NO_FIELD),
    ("trailing-garbage", b'{"type": "x", "ctx": {}} x', 400, "line 1, column", NO_FIELD),
    ("json-string", "an event", 400, "the body is a JSON string", NO_FIELD),
    ("json-number", 42, 400, "the body is a JSON number", NO_FIELD),
    ("json-null", None, 400, "the body is a JSON null", NO_FIELD),
    ("empty-list", [], 400, "the event list is empty", NO_FIELD),
    (
        "event-not-an-object",
        [new_event(), 5],
        422,
        "event 2: invalid event: an event must be a JSON object, not number",
        "/1",
    ),
    ("event-is-a-list", [[new_event()]], 422, "must be a JSON object, not array", "/0"),
    ("ctx-array", new_event(ctx=[1, 2]), 422, "must be a JSON object, not array", "/ctx"),
    ("ctx-string", new_event(ctx="a=1"), 422, "must be a JSON object, not string", "/ctx"),
    (
        "type-missing",
        {"email": "a@example.com", "ctx": {}},
        422,
        "invalid 'type': missing",
        "/type",
    ),
    ("type-number", new_event(type=42), 422, "'42' is not a valid event type name", "/type"),
    ("type-list", new_event(type=["a"]), 422, "must be a string, not array", "/type"),
    (
        "type-with-space",
        new_event(type="order confirmation"),
        422,
        "not a valid event type",
        "/type",
    ),
    ("email-invalid", new_event(email="ann.example.com"), 422, "is not a valid address", "/email"),
    ("email-missing", new_event(email=None), 422, "required for the email channel", "/email"),
    (
        "wished-channel-label",
        new_event(wished_channel="fax"),
        422,
        "unknown channel 'fax'",
        "/wished_channel",
    ),
    (
        "wished-channel-code",
        new_event(wished_channel=7),
        422,
        "unknown channel code 7",
        "/wished_channel",
    ),
    ("email-format-range", new_event(email_format=5), 422, "out of range", "/email_format"),
    ("email-format-boolean", new_event(email_format=True), 422, "out of range", "/email_format"),
    (
        "scheduled-unparseable",
        new_event(scheduled="next tuesday"),
        422,
        "'next tuesday' is not an ISO 8601 timestamp",
        "/scheduled",
    ),
    ("sms-without-phone", new_event(wished_channel="sms", email=None), 422, "SMS", "/mobile_phone"),
    (
        "third-of-five-bad",
        five_with_a_bad_third(),
        422,
        "event 3: invalid 'email': 'not-an-address' is not a valid address",
        "/2/email",
    ),
]


def test_bad_input_is_refused_and_nothing_stored(api, db, subtests):
    """Every case of BAD_BODIES against one server (a server per case costs ~0.5 s)."""
    for name, body, status, detail, field in BAD_BODIES:
        with subtests.test(msg=name):
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            response = api.post(
                "/api/v1/events/rt", content=content, headers={"Content-Type": "application/json"}
            )
            problem = assert_problem(response, status, detail, field)
            if field is not NO_FIELD and field[1:2].isdigit():  # an event of a list
                assert problem["position"] == int(field.split("/")[1]) + 1
            assert event_rows(db) == []


def test_unknown_queue_in_the_path_is_refused(api, db):
    response = push(api, new_event(), "urgent")
    assert_problem(response, 400, "'rt' or 'batch'", field="path.queue")
    assert event_rows(db) == []


# -- size limits -------------------------------------------------------------------------


def test_request_over_max_request_bytes(limited, db):
    body = orjson.dumps(new_event(ctx={"blob": "x" * 5000}))
    response = limited.post(
        "/api/v1/events/rt", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, f"the body is {len(body)} bytes; at most 4096 are accepted")
    assert event_rows(db) == []


def test_chunked_request_over_max_request_bytes(limited, db):
    """Without a Content-Length the limit is enforced while reading."""
    body = orjson.dumps([new_event(ctx={"blob": "x" * 900}) for _ in range(5)])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = limited.post(
        "/api/v1/events/rt", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "the body exceeds 4096 bytes")
    assert event_rows(db) == []


def test_event_over_max_event_bytes(limited, db):
    response = push(limited, new_event(ctx={"blob": "x" * 1100}))
    assert_problem(response, 422, "bytes; at most 1024 are accepted", field="")
    response = push(limited, [new_event(), new_event(ctx={"blob": "x" * 1100})])
    problem = assert_problem(response, 422, "event 2: invalid event: the event is", field="/1")
    assert problem["position"] == 2
    assert event_rows(db) == []


def test_event_size_counts_bytes_not_characters(limited, db):
    """600 "é" are 600 characters but 1200 bytes of UTF-8: over the 1024-byte limit."""
    response = push(limited, new_event(ctx={"note": "é" * 600}))
    assert_problem(response, 422, "at most 1024 are accepted", field="")
    assert event_rows(db) == []


def test_event_just_under_max_event_bytes_is_accepted(limited, db):
    response = push(limited, new_event(ctx={"blob": "x" * 800}))
    assert response.status_code == 201, response.text
    assert len(event_rows(db)) == 1


def test_more_events_than_max_events_per_request(limited, db):
    response = push(limited, [new_event() for _ in range(4)])
    assert_problem(response, 413, "4 events; at most 3 per request")
    assert event_rows(db) == []
    assert push(limited, [new_event() for _ in range(3)]).status_code == 201
    assert len(event_rows(db)) == 3
