"""Idempotency (SPEC §6, docs/architecture.md "Idempotency"), by property: whatever the
mix of operators, keys, requests and commit groups, a key names one event per operator,
the first push stores it and every repeat gets its id back, marked not fresh."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgcenter.events.model import CtxFormat, EnqueueRequest, NewEvent, Queue
from msgcenter.events.validation import validate_event
from msgcenter.store import events as event_store
from msgcenter.store.tables import event

NOW = datetime(2026, 1, 1, tzinfo=UTC)

keys = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "a#0", "long-" + "k" * 190]))
requests = st.builds(
    lambda operator, queue, events: (operator, queue, events),
    st.sampled_from([1, 2]),
    # a repeat is the same request again: same queue, same fields
    st.just(Queue.RT),
    st.lists(keys, min_size=1, max_size=4),
)
#: commit groups, each a list of requests stored in one transaction
histories = st.lists(st.lists(requests, min_size=1, max_size=4), min_size=1, max_size=4)


def new_event(key: str | None) -> NewEvent:
    return validate_event(
        {"type": "order", "email": "ann@example.com"}, None, CtxFormat.JSON, idempotency_key=key
    )


#: each example pushes as operators of its own, so examples share the store without a reset
_examples = itertools.count()


@settings(
    # examples share the test's store: each one pushes as operators no other example uses
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=30,
)
@given(history=histories)
def test_a_key_names_one_event_per_operator(db, history):
    base = 10 * next(_examples)
    first: dict[tuple[int, str], int] = {}
    seen_ids: set[int] = set()
    expected_rows = 0
    for group in history:
        with db.write() as conn:
            results = event_store.enqueue(
                conn,
                [
                    EnqueueRequest(
                        queue, [new_event(k) for k in events], operator_id=base + operator
                    )
                    for operator, queue, events in group
                ],
                NOW,
            )
        for (operator, _, events), enqueued in zip(group, results, strict=True):
            assert len(enqueued.ids) == len(enqueued.fresh) == len(events)
            for key, event_id, fresh in zip(events, enqueued.ids, enqueued.fresh, strict=True):
                if key is None:
                    assert fresh and event_id not in seen_ids
                elif (operator, key) in first:
                    assert not fresh and event_id == first[(operator, key)]
                else:
                    assert fresh and event_id not in seen_ids
                    first[(operator, key)] = event_id
                seen_ids.add(event_id)
                expected_rows += fresh
    with db.read() as conn:
        stored = conn.execute(
            sqlalchemy.select(event.c.id, event.c.operator_id, event.c.idempotency_key).where(
                event.c.operator_id.in_([base + 1, base + 2])
            )
        ).all()
    assert len(stored) == expected_rows == len(seen_ids)
    assert {(op - base, key): i for i, op, key in stored if key is not None} == first
