"""Archive pages from an execution instance are checked field by field before anything is stored."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from msgcenter.archives import (
    DELIVERY_LOG_FIELDS,
    EVENT_FIELDS,
    ArchivePageError,
    decode_event_page,
    decode_quarantine_page,
    decode_tracking_page,
)
from msgcenter.store.archive import iso_week, iso_weeks

AT = "2026-11-30T10:00:00+00:00"


def body(events: int = 2, logs: int = 1, **changes: object) -> dict:
    """A valid page of ``events`` sent events, the first ``logs`` of them with their log."""
    page = {
        "events": {f.name: [None] * events for f in EVENT_FIELDS},
        "delivery_logs": {f.name: [None] * logs for f in DELIVERY_LOG_FIELDS},
    }
    page["events"].update(
        id=list(range(1, events + 1)), queue=["rt"] * events, type=["t"] * events,
        status=[2] * events, wished_channel=[0] * events, created=[AT] * events,
        last_modified=[AT] * events,
    )  # fmt: skip
    page["delivery_logs"].update(
        id=list(range(1, logs + 1)), event_id=list(range(1, logs + 1)), template=["tpl"] * logs,
        channel=[0] * logs, address=["a@example.com"] * logs, status=[1] * logs,
        attempts=[1] * logs, created=[AT] * logs, last_modified=[AT] * logs,
    )  # fmt: skip
    for path, value in changes.items():
        part, field = path.split("__")
        page[part][field] = value
    return page


def refused(page: dict | bytes) -> str:
    with pytest.raises(ArchivePageError) as caught:
        decode_event_page(page if isinstance(page, bytes) else orjson.dumps(page))
    return caught.value.detail


def test_a_valid_page_comes_back_with_aware_timestamps():
    page = decode_event_page(orjson.dumps(body()))
    assert len(page) == 2 and page.events["last_modified"][0] == datetime(
        2026, 11, 30, 10, tzinfo=UTC
    )
    assert page.cursor() == (datetime(2026, 11, 30, 10, tzinfo=UTC), 2)
    assert page.delivery_logs["template"] == ["tpl"]


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"events__status": [2, None]}, "events row 2 (id 2): 'status' is missing"),
        ({"events__type": ["t", 7]}, "events row 2 (id 2): 'type' is 7, not str"),
        (
            {"events__wished_channel": [0, True]},
            "events row 2 (id 2): 'wished_channel' is True, not int",
        ),
        (
            {"events__created": [AT, "yesterday"]},
            "events row 2 (id 2): 'created' is 'yesterday', not a timestamp",
        ),
        (
            {"events__created": [AT, "2026-11-30T10:00:00"]},
            "events row 2 (id 2): 'created' '2026-11-30T10:00:00' has no UTC offset",
        ),
        ({"events__status": [2, 0]}, "events row 2 (id 2): status 0 is not final"),
        ({"events__id": [1, 1]}, "events row 2 (id 1): the id appears twice in the page"),
        ({"events__queue": ["rt"]}, "'events' column 'queue' has 1 values for 2 rows"),
        ({"delivery_logs__template": [None]}, "delivery_logs row 1 (id 1): 'template' is missing"),
        (
            {"delivery_logs__event_id": [9]},
            "delivery_logs row 1 (id 1): its event 9 is not in the page",
        ),
    ],
)
def test_a_page_with_a_wrong_field_is_refused_naming_the_row_and_field(changes, detail):
    assert refused(body(**changes)) == detail


def test_a_page_missing_a_column_or_a_part_or_not_json_is_refused():
    page = body()
    del page["events"]["folder"]
    assert refused(page) == "'events' has no 'folder' column"
    assert refused({"events": body()["events"]}) == "the page has no 'delivery_logs'"
    assert refused(b"[1, 2]") == "the page is not a JSON object"
    assert refused(b'{"events": ').startswith("the page is not JSON: ")


def test_quarantine_pages_are_checked_too():
    rows = {"id": [1], "address": ["a@example.com"], "channel": [0], "reason": ["550"],
            "failure_type": ["user_unknown"], "active": [1], "last_modified": [AT]}  # fmt: skip
    with pytest.raises(ArchivePageError) as caught:
        decode_quarantine_page(orjson.dumps({"quarantine": rows}))
    assert caught.value.detail == "quarantine row 1 (id 1): 'active' is 1, not bool"
    rows["active"] = [True]
    assert len(decode_quarantine_page(orjson.dumps({"quarantine": rows}))) == 1


def test_iso_weeks_follow_iso_8601_across_years():
    moments = [
        datetime(2026, 12, 28, tzinfo=UTC),
        datetime(2027, 1, 3, 23, 59, tzinfo=UTC),
        datetime(2027, 1, 4, tzinfo=UTC),
        datetime(2026, 12, 27, 23, 59, tzinfo=UTC),
    ]
    assert iso_weeks(moments) == ["2026-W53", "2026-W53", "2027-W01", "2026-W52"]
    assert [iso_week(m) for m in moments] == iso_weeks(moments)


def tracking_body(**changes: object) -> bytes:
    """A valid tracking page of two logs (an open and a click), with ``changes`` to its columns."""
    rows = {
        "id": [1, 2], "delivery_log_id": [10, 10], "event_id": [5, 5], "kind": ["open", "click"],
        "url": [None, "https://shop.example/"], "user_agent": ["UA", None], "created": [AT, AT],
    }  # fmt: skip
    rows.update(changes)
    return orjson.dumps({"tracking": rows})


def test_a_valid_tracking_page_comes_back_with_its_cursor():
    page = decode_tracking_page(tracking_body())
    assert len(page) == 2 and page.rows["kind"] == ["open", "click"]
    assert page.cursor() == (datetime(2026, 11, 30, 10, tzinfo=UTC), 2)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"kind": ["open", "bounce"]}, "tracking row 2 (id 2): kind 'bounce' is not open or click"),
        ({"event_id": [5, None]}, "tracking row 2 (id 2): 'event_id' is missing"),
        ({"created": [AT, "2026-11-30T10:00:00"]}, "has no UTC offset"),
        ({"delivery_log_id": [10]}, "column 'delivery_log_id' has 1 values for 2 rows"),
        ({"url": [None, 7]}, "'url' is 7, not str"),
        ({"id": [1, 1]}, "the id appears twice in the page"),
    ],
)
def test_a_tracking_page_with_a_bad_row_is_refused_naming_it(changes, detail):
    with pytest.raises(ArchivePageError) as caught:
        decode_tracking_page(tracking_body(**changes))
    assert detail in caught.value.detail


def test_a_body_without_tracking_part_is_refused():
    with pytest.raises(ArchivePageError, match="invalid archive page"):
        decode_tracking_page(b'{"quarantine": {}}')
