"""The allocator settings each process applies, and the console's form times."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from msgcenter.allocator import tune_allocator
from msgcenter.errors import InvalidInputError
from msgcenter.web.params import form_moment

#: checks a password (Argon2: 19 MiB of working memory) four times in a thread, as the
#: authenticator does, and prints the process's RSS growth in MiB from before the first
RSS_AFTER_PASSWORD_CHECKS = """
import json, sys, threading
from msgcenter.allocator import tune_allocator
from msgcenter.auth.passwords import hash_password, verify_password

applied = sorted(tune_allocator()) if sys.argv[1] == "tuned" else []
stored = hash_password("secret")

def rss_mib():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

before = rss_mib()
for _ in range(4):
    checking = threading.Thread(target=verify_password, args=(stored, "secret"))
    checking.start()
    checking.join()
print(json.dumps({"applied": applied, "growth": rss_mib() - before}))
"""


def rss_growth(mode: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RSS_AFTER_PASSWORD_CHECKS, mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_password_checks_give_their_memory_back():
    """glibc's defaults kept the 19 MiB of a password check from the second check on; with
    the process's settings each check's block is returned when freed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    untuned, tuned = rss_growth("untuned", env), rss_growth("tuned", env)
    assert untuned["growth"] > 15, untuned  # the trap is real on this glibc
    assert tuned["applied"] == ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]
    assert tuned["growth"] < 5, tuned


def test_the_operators_settings_win(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert tune_allocator() == {"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"}
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert tune_allocator() == set()  # glibc read the operator's numbers itself


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
