"""The report of the end-to-end bench: figures, summaries and the results table.

Latency percentiles, what the database holds at the end of a layout, the
code version measured, and the table printed at the end of a run.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import intake as ib  # the intake bench: database, process and CPU helpers
import sqlalchemy as sa
from rich.table import Table

REPO = ib.BENCH_DIR.parent
console = ib.console


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "min_ms": None}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "p50_ms": at(50),
        "p95_ms": at(95),
        "p99_ms": at(99),
        "max_ms": round(ordered[-1] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


def database_summary(url: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            events = dict(
                conn.exec_driver_sql("SELECT status, count(*) FROM event GROUP BY status").all()
            )
            logs = dict(
                conn.exec_driver_sql(
                    "SELECT status, count(*) FROM delivery_log GROUP BY status"
                ).all()
            )
            reasons = conn.exec_driver_sql(
                "SELECT failure_reason, count(*) FROM delivery_log"
                " WHERE failure_reason IS NOT NULL GROUP BY failure_reason"
                " ORDER BY count(*) DESC LIMIT 5"
            ).all()
    finally:
        engine.dispose()
    return {
        "failure_reasons": {str(k): v for k, v in reasons},
        "event_status": {str(k): v for k, v in events.items()},
        "delivery_log_status": {str(k): v for k, v in logs.items()},
    }


def print_table(report: dict) -> None:
    table = Table(title=f"end to end on {report['store']}")
    for column in ("layout", "measure", "figure", "detail"):
        table.add_column(column, justify="left")
    for layout in report["layouts"]:
        phases = layout["phases"]
        for name, r in phases.items():
            if name.startswith("latency_"):
                e = r["e2e"]
                table.add_row(
                    layout["layout"],
                    f"e2e latency @{r['rate_offered']:g}/s",
                    f"p50 {e['p50_ms']} / p95 {e['p95_ms']} / p99 {e['p99_ms']} ms",
                    f"max {e['max_ms']} ms, intake p99 {r['intake']['p99_ms']} ms, n={r['events_measured']}, "
                    f"missing {r['missing_at_relay']}, cores srv/wrk/pg/sink {r['cpu_cores']['server']}/"
                    f"{r['cpu_cores']['workers']}/{r['cpu_cores']['postgres']}/{r['cpu_cores']['sink']}",
                )
            elif name == "sustained":
                table.add_row(
                    layout["layout"],
                    "sustained e2e",
                    f"{r['sustained_delivered_per_s']} msg/s",
                    f"kept up at {r['sustained_rate']}/s offered; best delivered {r['max_delivered_per_s']}/s",
                )
            elif name == "batch":
                table.add_row(
                    layout["layout"],
                    f"{r['events']:,} batch events",
                    f"{r['total_s']} s total"
                    if r["all_sent"]
                    else f"NOT all sent ({r['delivered']:,})",
                    f"intake {r['intake_s']} s ({r['intake_events_per_s']:,.0f}/s), drain +{r['drain_after_intake_s']} s, "
                    f"{r['delivered_per_s']} msg/s" + _cpu_per_message(r.get("cpu_ms_per_message")),
                )
            elif name == "profile":
                table.add_row(
                    layout["layout"],
                    f"profile @{r.get('rate_offered')}/s",
                    f"{r.get('delivered_per_s')} msg/s",
                    "see JSON",
                )
    console.print(table)


def _cpu_per_message(cpu: dict | None) -> str:
    """CPU ms per message sent: msgcenter's processes (web and workers) and PostgreSQL."""
    if not cpu or cpu.get("server") is None:
        return ""
    return (
        f", CPU {cpu['server'] + cpu['workers']:.2f} ms/msg msgcenter"
        f" + {cpu['postgres']:.2f} PostgreSQL"
    )


def code_version() -> dict:
    """The commit measured, and whether the work tree differed from it (uncommitted changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_uncommitted": bool(changed)}


def log_problems(logs: list[str]) -> dict[str, list[str]]:
    """The first lines at warning level or above (or of a traceback) in each process's log."""
    found: dict[str, list[str]] = {}
    for log in logs:
        text = Path(log).read_text(errors="replace")
        problems = [
            line
            for line in text.splitlines()
            if re.search(r"\[(error|warning|critical)|Traceback", line, re.I)
        ]
        if problems:
            found[Path(log).name] = problems[:5]
    return found
