"""The pure parts of the reports: the time histogram and its percentiles, thresholds, periods, CSV,
and the archived-event search's cursor (SPEC §4)."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from msgcenter.archives import decode_search_cursor, encode_search_cursor
from msgcenter.errors import InvalidInputError
from msgcenter.reports import (
    BUCKET_BOUNDS,
    BUCKETS,
    EventHistoryReport,
    Granularity,
    HistoryCell,
    HistoryRow,
    Level,
    Period,
    ReportName,
    Scope,
    ServiceFigures,
    ServiceLevelReport,
    ServicePoint,
    Threshold,
    Thresholds,
    TimeFigures,
    bucket_of,
    bucket_range,
    crossed,
    percentile,
    to_csv,
)
from msgcenter.settings import Settings

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)


def test_buckets_are_log_scale_from_a_millisecond_to_a_day_and_more():
    assert BUCKETS == 42 and BUCKET_BOUNDS[0] == 0.001 and BUCKET_BOUNDS[-1] == 100_000
    ratios = {round(b / a, 9) for a, b in zip(BUCKET_BOUNDS, BUCKET_BOUNDS[1:], strict=False)}
    assert ratios == {round(10**0.2, 9)}
    # the numbering of PostgreSQL's width_bucket(x, bounds): 0 below the first bound
    assert [bucket_of(x) for x in (0, 0.0009, 0.001, 1.0, 0.999_999, 100_000, 10**9)] == [
        0, 0, 1, 16, 15, 41, 41,
    ]  # fmt: skip
    assert bucket_of(-3) == 0  # clock skew
    for bucket in range(BUCKETS):
        low, high = bucket_range(bucket)
        assert bucket_of(low) == bucket and (math.isinf(high) or bucket_of(high) == bucket + 1)


def histogram(times: list[float]) -> list[int]:
    counts = [0] * BUCKETS
    for t in times:
        counts[bucket_of(t)] += 1
    return counts


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_percentiles_fall_in_the_bucket_of_the_exact_value(q):
    rng = random.Random(7)
    times = [rng.lognormvariate(0, 1.5) for _ in range(5_000)]
    estimate = percentile(histogram(times), q)
    exact = sorted(times)[math.ceil(q * len(times)) - 1]
    low, high = bucket_range(bucket_of(exact))
    assert estimate is not None and low <= estimate <= high
    assert abs(math.log10(estimate / exact)) <= 0.2  # within a bucket's width


def test_percentile_edges():
    assert percentile([0] * BUCKETS, 0.5) is None
    only_fast = histogram([0.0002] * 10)
    assert 0 < percentile(only_fast, 0.5) < 0.001  # type: ignore[operator]
    only_slow = histogram([2e6] * 3)
    assert percentile(only_slow, 0.99) == 100_000  # the open bucket's lower bound
    one = histogram([1.2])
    assert bucket_of(percentile(one, 0.5)) == bucket_of(1.2)  # type: ignore[arg-type]


def test_time_figures_average_from_milliseconds():
    figures = TimeFigures.of(4, 10_000, histogram([1, 2, 3, 4]))
    assert figures.average_seconds == 2.5 and figures.count == 4
    assert TimeFigures.of(0, 0, [0] * BUCKETS).average_seconds is None


def test_service_figures_add_the_errors_up():
    f = ServiceFigures.of(
        {"events": 20, "sent": 15, "delivery_failed": 2, "expired": 1, "ignored": 1,
         "not_taken_into_account": 1, "sending_count": 15, "sending_ms": 4_500}
    )  # fmt: skip
    assert (f.errors, f.error_rate, f.average_sending_seconds) == (5, 0.25, 0.3)
    empty = ServiceFigures.of({})
    assert (empty.events, empty.error_rate, empty.average_sending_seconds) == (0, None, None)


def test_thresholds_per_indicator_with_overrides_per_event_type():
    table = Thresholds(
        defaults={"error_rate": Threshold(0.05, 0.2)},
        per_type={"reset": {"error_rate": Threshold(None, 0.01)}},
    )
    assert table.check("error_rate", 0.04).level is Level.OK
    assert table.check("error_rate", 0.05).level is Level.WARNING
    assert table.check("error_rate", 0.2).level is Level.ALERT
    assert table.check("error_rate", None).level is Level.OK
    assert table.check("error_rate", 0.04, "reset").level is Level.ALERT
    assert table.check("error_rate", 0.04, "order").level is Level.OK
    assert table.check("p99_total_seconds", 10**6).level is Level.OK  # not watched
    checks = [
        table.check("error_rate", 0.1),
        table.check("error_rate", 0.5, "reset"),
        table.check("error_rate", 0.0),
    ]
    assert [(c.event_type, c.level) for c in crossed(checks)] == [
        ("reset", Level.ALERT),
        (None, Level.WARNING),
    ]


def test_threshold_settings_become_thresholds_and_refuse_nonsense():
    settings = Settings(
        reports={
            "error_rate": {"warning": 0.1},
            "event_types": {"reset": {"p99_total_seconds": {"warning": 5, "alert": 9}}},
        }
    )
    table = settings.reports.thresholds()
    assert table.of("error_rate") == Threshold(0.1, None)
    assert table.of("p99_total_seconds", "reset") == Threshold(5, 9)
    assert table.of("p99_total_seconds", "order") == Threshold(600, 3_600)
    with pytest.raises(ValueError, match="alert must not be below warning"):
        Settings(reports={"error_rate": {"warning": 0.5, "alert": 0.1}})
    with pytest.raises(ValueError, match="error_rate"):
        Settings(reports={"event_types": {"reset": {"error_ratio": {"warning": 0.1}}}})


def test_periods_round_down_to_the_hour_and_cut_by_granularity():
    period = Period.of(None, NOW, Granularity.HOUR, now=NOW, default=timedelta(hours=3))
    assert period.start == datetime(2026, 12, 7, 7, tzinfo=UTC) and period.end == NOW
    assert [s.hour for s in period.starts()] == [7, 8, 9, 10]
    naive = Period.of(datetime(2026, 11, 30, 12), datetime(2026, 12, 7), Granularity.WEEK,
                      now=NOW, default=timedelta(days=1))  # fmt: skip
    assert naive.start.tzinfo is UTC
    assert [s.date().isoformat() for s in naive.starts()] == ["2026-11-30"]  # a Monday
    months = Period.of(datetime(2026, 1, 31, tzinfo=UTC), NOW, Granularity.MONTH, now=NOW,
                       default=timedelta(days=1))  # fmt: skip
    assert [s.month for s in months.starts()] == list(range(1, 13))
    with pytest.raises(InvalidInputError, match="invalid report period"):
        Period.of(NOW, NOW, Granularity.DAY, now=NOW, default=timedelta(days=1))
    with pytest.raises(InvalidInputError) as too_long:
        Period.of(NOW - timedelta(days=500), NOW, Granularity.HOUR, now=NOW, default=timedelta())
    assert "coarser granularity" in too_long.value.detail


def scope(granularity: Granularity = Granularity.HOUR) -> Scope:
    return Scope(NOW - timedelta(hours=2), NOW, granularity, None, None, None, None)


def test_csv_of_the_service_level_has_a_row_per_period_then_per_type_then_the_total():
    thresholds = Thresholds(defaults={"error_rate": Threshold(0.1, 0.5)})
    figures = ServiceFigures.of({"events": 10, "sent": 8, "expired": 2})
    report = ServiceLevelReport(
        report=ReportName.SERVICE_LEVEL,
        scope=scope(),
        totals=figures,
        checks=[thresholds.check("error_rate", figures.error_rate)],
        series=[ServicePoint(NOW - timedelta(hours=1), figures)],
        by_type=[],
        crossed=[],
    )
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0][:4] == ["period", "event_type", "events", "sent"]
    assert rows[1][:4] == ["2026-12-07T09:30:00+00:00", "", "10", "8"]
    total = dict(zip(rows[0], rows[-1], strict=True))
    assert (total["period"], total["error_rate"], total["error_rate_level"]) == (
        "total", "0.2", "warning",
    )  # fmt: skip
    assert to_csv(report).endswith("\r\n")


def test_csv_of_the_history_is_its_pivot():
    midnight = NOW.replace(hour=0, minute=0)
    starts = [midnight, midnight + timedelta(days=1)]
    report = EventHistoryReport(
        report=ReportName.EVENT_HISTORY,
        scope=scope(Granularity.DAY),
        periods=starts,
        rows=[HistoryRow("order", [HistoryCell(3, 2), HistoryCell(1, 1)], 4, 3)],
        totals=[HistoryCell(3, 2), HistoryCell(1, 1)],
        events=4,
        sent=3,
    )
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows == [
        ["event_type", "2026-12-07T00:00:00+00:00 events", "2026-12-07T00:00:00+00:00 sent",
         "2026-12-08T00:00:00+00:00 events", "2026-12-08T00:00:00+00:00 sent", "total events",
         "total sent"],
        ["order", "3", "2", "1", "1", "4", "3"],
        ["total", "3", "2", "1", "1", "4", "3"],
    ]  # fmt: skip


def test_search_cursors_are_opaque_and_checked():
    cursor = (NOW, "exec-1", 42)
    token = encode_search_cursor(cursor)
    assert "exec-1" not in token and decode_search_cursor(token) == cursor
    for bad in ("", "abc", encode_search_cursor((NOW, "x", 1))[:-3], "W10"):
        with pytest.raises(InvalidInputError, match="invalid cursor"):
            decode_search_cursor(bad)
