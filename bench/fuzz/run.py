"""Coverage-guided fuzzing of msgcenter's hostile-input surfaces with atheris (libFuzzer).

    .venv/bin/python bench/fuzz/run.py soap --seconds 600         # a long session
    .venv/bin/python bench/fuzz/run.py ctx --runs 2000 --seed 1   # a short, repeatable pass
    .venv/bin/python bench/fuzz/run.py tracking --replay crash-…  # run inputs, no fuzzing

The committed seeds (``corpus/<target>/``) are read, never written: what the
fuzzer learns goes to ``--work`` (default ``work/<target>/``, not committed), and
a crashing input to ``--artifacts`` (default ``crashes/<target>/``). Exits 0 when
the budget is spent without a finding; libFuzzer's non-zero status otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="soap, ctx or tracking (targets.TARGETS)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds", type=int, help="stop after this long (libFuzzer -max_total_time)"
    )
    budget.add_argument("--runs", type=int, help="stop after this many inputs (libFuzzer -runs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0: libFuzzer picks one)")
    parser.add_argument("--corpus", type=Path, help="seed corpus (default: corpus/<target>)")
    parser.add_argument("--work", type=Path, help="where new inputs go (default: work/<target>)")
    parser.add_argument("--artifacts", type=Path, help="crashes (default: crashes/<target>)")
    parser.add_argument("--max-len", type=int, default=4096, help="longest input (bytes)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fuzzing processes")
    parser.add_argument("--replay", type=Path, nargs="+", help="run these inputs, no fuzzing")
    args, extra = parser.parse_known_args(argv)

    sys.path.insert(0, str(HERE))
    if args.replay:
        import targets

        if args.target not in targets.TARGETS:
            parser.error(f"unknown target {args.target!r}; known: {', '.join(targets.TARGETS)}")
        files = [f for p in args.replay for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
        print(f"{args.target}: {targets.replay(args.target, files)} inputs ran clean")
        return 0

    import atheris

    # msgcenter's modules are instrumented (coverage feedback); libraries are not
    with atheris.instrument_imports(include=["msgcenter"]):
        import targets

    if args.target not in targets.TARGETS:
        parser.error(f"unknown target {args.target!r}; known: {', '.join(targets.TARGETS)}")
    corpus = args.corpus or HERE / "corpus" / args.target
    work = args.work or HERE / "work" / args.target
    artifacts = args.artifacts or HERE / "crashes" / args.target
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    options = [
        f"-artifact_prefix={artifacts}/",
        f"-max_len={args.max_len}",
        f"-seed={args.seed}",
        "-print_final_stats=1",
    ]
    if args.runs is not None:
        options.append(f"-runs={args.runs}")
    if args.seconds is not None:
        options.append(f"-max_total_time={args.seconds}")
    if args.jobs > 1:
        options += [f"-jobs={args.jobs}", f"-workers={args.jobs}"]
    # libFuzzer writes new inputs into its first directory and only reads the others
    atheris.Setup(
        [sys.argv[0], *options, *extra, str(work), str(corpus)], targets.TARGETS[args.target]
    )
    atheris.Fuzz()  # exits the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
