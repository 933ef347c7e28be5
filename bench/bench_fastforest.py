"""Benchmark: sklearn ``IsolationForest.score_samples`` vs the compiled forest.

Prints µs per call for several batch sizes (2 features) for 100 and 1000 trees, and the row
count from which sklearn is faster (the crossover), refined by bisection between grid points.
Timings are best-of-N wall clock on one thread; run on an idle machine for stable figures.

    python bench/bench_fastforest.py [--trees 100 1000] [--rows 1 10 100 1000 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.detectors.compiled_forest import CompiledForest  # noqa: E402

N_FEATURES = 2


def time_call(fn, X: np.ndarray, budget_s: float = 0.25, min_reps: int = 3) -> float:
    """Best-of-N seconds per call of ``fn(X)``, N >= min_reps, about ``budget_s`` in total."""
    fn(X)  # warm-up
    best = float("inf")
    reps = 0
    spent = 0.0
    while reps < min_reps or spent < budget_s:
        # batch tiny calls so that timer resolution does not matter
        t0 = time.perf_counter()
        fn(X)
        one = time.perf_counter() - t0
        inner = max(1, int(1e-3 / max(one, 1e-9)))
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(X)
        elapsed = time.perf_counter() - t0
        best = min(best, elapsed / inner)
        spent += elapsed + one
        reps += 1
        if reps >= 200:
            break
    return best


def measure(est: IsolationForest, cf: CompiledForest, rows: int, rng: np.random.Generator):
    X = rng.normal(size=(rows, N_FEATURES)) * 2.0
    expected = est.score_samples(X)
    got = cf.score_samples(X)
    if not np.array_equal(got, expected):  # sanity: the benchmark is only valid if exact
        raise AssertionError(f"CompiledForest differs from sklearn at {rows} rows")
    return time_call(est.score_samples, X), time_call(cf.score_samples, X)


def crossover(est, cf, grid: dict[int, tuple[float, float]], rng) -> int | None:
    """Smallest row count at which sklearn is faster, or None if it never is on the grid."""
    rows = sorted(grid)
    slower = [r for r in rows if grid[r][0] < grid[r][1]]
    if not slower:
        return None
    hi = slower[0]
    faster = [r for r in rows if r < hi]
    if not faster:
        return hi
    lo = faster[-1]  # compiled faster at lo, sklearn faster at hi
    while hi - lo > max(1, lo // 20):
        mid = math.isqrt(lo * hi)
        mid = min(max(mid, lo + 1), hi - 1)
        sk, fast = measure(est, cf, mid, rng)
        if sk < fast:
            hi = mid
        else:
            lo = mid
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X_train = rng.normal(size=(args.train_rows, N_FEATURES))
    print(
        f"python {platform.python_version()}  numpy {np.__version__}  "
        f"scikit-learn {sklearn.__version__}  cpus {os.cpu_count()}  "
        f"n_features {N_FEATURES}  max_samples auto"
    )
    t_start = time.perf_counter()
    for n_trees in args.trees:
        est = IsolationForest(n_estimators=n_trees, random_state=args.seed, n_jobs=1)
        est.fit(X_train)
        t0 = time.perf_counter()
        cf = CompiledForest.from_estimator(est)
        compile_ms = (time.perf_counter() - t0) * 1e3

        print(f"\n{n_trees} trees (compile {compile_ms:.0f} ms)")
        print(f"{'rows':>7} {'sklearn µs/call':>16} {'compiled µs/call':>17} {'speed-up':>9}")
        grid = {}
        for rows in args.rows:
            sk, fast = measure(est, cf, rows, rng)
            grid[rows] = (sk, fast)
            print(f"{rows:>7} {sk * 1e6:>16.1f} {fast * 1e6:>17.1f} {sk / fast:>8.1f}x")
        cross = crossover(est, cf, grid, rng)
        if cross is None:
            print(f"crossover: none up to {max(args.rows)} rows (compiled always faster)")
        else:
            print(f"crossover: sklearn is faster from ~{cross} rows")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
