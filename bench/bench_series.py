"""Benchmark: every series detector kind on NAB's labelled series, scored NAB's way.

    python bench/bench_series.py --nab ../shared/nab [--kinds seasonal rolling] [--per-series]

Prints, per kind with its default parameters (no per-series tuning), the standard /
reward_low_FP / reward_low_FN scores on the series the folder holds, beside the published
whole-corpus numbers (58 series: not comparable, shown for scale), then each series' numbers
under the standard profile, and the detection time. Detection runs in-process for now;
``service.series.benchmark.run_corpus`` takes a ``detect_fn``, so an HTTP client for
``POST /series/detect`` can be swapped in without touching the scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.cli_series import report  # noqa: E402
from service.series.benchmark import run_corpus  # noqa: E402
from service.series.corpus import read_corpus  # noqa: E402
from service.series.table import DEFAULT_KIND, KINDS  # noqa: E402

PUBLISHED = [  # NAB's scoreboard: standard, reward_low_FP, reward_low_FN; whole corpus (58 series)
    ("ARTime", 74.9, 65.2, 80.4),
    ("Numenta HTM", 70.1, 63.1, 74.3),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("windowed Gaussian", 39.6, 20.9, 47.4),
    ("random", 16.8, 5.8, 25.9),
    ("null", 0.0, 0.0, 0.0),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nab",
        type=Path,
        default=ROOT.parent / "shared" / "nab",
        help="folder with data/ and combined_windows.json",
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument(
        "--per-series",
        action="store_true",
        help="per-series numbers for every kind, not only the default",
    )
    args = parser.parse_args(argv)

    corpus = read_corpus(args.nab / "data", args.nab / "combined_windows.json")
    points = sum(len(c.values) for c in corpus)
    print(f"NAB: {len(corpus)} series, {points:,} points, from {args.nab}")
    runs = []
    for kind in args.kinds:
        started = time.perf_counter()
        run = run_corpus(corpus, kind)
        runs.append(run)
        print(
            f"  {kind}: detected in {run.seconds:.1f} s "
            f"({run.seconds / points * 1e6:.0f} us/point), "
            f"scored in {time.perf_counter() - started - run.seconds:.1f} s",
            flush=True,
        )

    header = f"  {'detector':<44} {'standard':>8} {'low FP':>7} {'low FN':>7}"
    print(f"\nVigil, these {len(corpus)} series, default parameters:")
    print(header)
    for run in runs:
        name = run.detector + (" (default)" if run.detector == DEFAULT_KIND else "")
        s = [cs.score for cs in run.scores]
        print(f"  {name:<44} {s[0]:>8.1f} {s[1]:>7.1f} {s[2]:>7.1f}")
    print("\npublished, whole corpus, 58 series: not comparable")
    print(header)
    for name, *s in PUBLISHED:
        print(f"  {name:<44} {s[0]:>8.1f} {s[1]:>7.1f} {s[2]:>7.1f}")
    for run in runs:
        if run.detector == DEFAULT_KIND or args.per_series:
            print("\n" + report(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
