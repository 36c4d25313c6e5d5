"""A short, bounded, repeatable pass of every fuzz target of ``bench/fuzz/`` (issue 13).

Each target runs in its own process (atheris takes the process over and exits it)
for a fixed number of inputs from a fixed seed, starting from the committed corpus,
which it never writes to. A crash fails the test with libFuzzer's report; the input
is saved for ``bench/fuzz/run.py <target> --replay <file>``. Long sessions are run
by hand (``bench/fuzz/README.md``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris installs on Linux only (pyproject.toml)")

FUZZ = Path(__file__).resolve().parents[2] / "bench" / "fuzz"
TARGETS = ("soap", "ctx", "tracking")
RUNS = 3_000


def run(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize("target", TARGETS)
def test_the_committed_corpus_runs_clean(target):
    corpus = FUZZ / "corpus" / target
    assert len(list(corpus.iterdir())) >= 5, "a handful of seeds per target"
    done = run(target, "--replay", corpus)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("target", TARGETS)
def test_a_bounded_fuzz_pass_finds_nothing(target, tmp_path):
    done = run(
        target,
        "--runs", RUNS,
        "--seed", 1,
        "--work", tmp_path / "work",
        "--artifacts", tmp_path / "crashes",
    )  # fmt: skip
    crashes = list((tmp_path / "crashes").iterdir())
    assert done.returncode == 0 and not crashes, (
        f"{target}: {[c.name for c in crashes]}\n{done.stderr[-6000:]}"
    )
    assert f"Done {RUNS} runs" in done.stderr
