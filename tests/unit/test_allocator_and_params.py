"""The malloc arena cap each process sets, and the console's form times."""

from datetime import UTC, datetime

import pytest

from msgcenter.allocator import limit_arenas
from msgcenter.errors import InvalidInputError
from msgcenter.web.params import form_moment


def test_arenas_are_capped_unless_the_operator_chose(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_arenas() is True  # glibc's mallopt accepted the cap
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False  # glibc read the operator's number itself


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T10:30", datetime(2026, 3, 1, 10, 30, tzinfo=UTC)),
        ("2026-03-01T10:30:00+02:00", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_form_times_are_read_in_utc(text, expected):
    assert form_moment(text, "from") == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("yesterday", "'yesterday' is not a date and time"),
        ("9999-12-31T23:30:00-01:00", "outside years 1 to 9999"),
    ],
)
def test_a_form_time_no_utc_time_can_hold_names_its_field(text, reason):
    with pytest.raises(InvalidInputError) as refused:
        form_moment(text, "to")
    assert refused.value.detail.startswith("to: ")
    assert reason in refused.value.detail
