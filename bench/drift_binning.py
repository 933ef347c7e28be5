"""What counting one row into its drift bins costs on the single-row path, in-process.

    .venv/bin/python -m bench.drift_binning [--features 2]

Times, per row: finding each feature's bin and the score's with ``bisect`` on plain lists
(``ModelBins.row``/``score``, what serving uses) against numpy's ``searchsorted``, then
incrementing one pre-resolved prometheus_client counter child per feature and for the score
(what the serving side adds to each scored row). Median of several repeats, on one core.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from service.drift.binning import SCORE, ModelBins
from service.drift.reference import build


def per_call_us(fn, number: int = 20_000, repeat: int = 7) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", type=int, default=2)
    args = p.parse_args()
    d = args.features
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, d))
    names = [f"f{j}" for j in range(d)]
    bins = ModelBins(build(X, names, rng.uniform(size=5000)))
    row, score = X[0].tolist(), 0.42
    edges = [np.asarray(e) for e in bins.feature_edges]
    score_edges = np.asarray(bins.score_edges)
    xs = X[0]

    counter = Counter(
        "vigil_feature_bin",
        "rows per drift bin",
        ["model", "version", "feature", "bin"],
        registry=CollectorRegistry(),
    )
    children = [
        [counter.labels("m", "1", name, str(b)) for b in range(n)]
        for name, n in zip([*names, SCORE], [*bins.n_bins, bins.score_n_bins], strict=True)
    ]

    def bisect_row() -> None:
        bins.row(row)
        bins.score(score)

    def numpy_row() -> None:
        [int(np.searchsorted(e, v)) for e, v in zip(edges, xs, strict=True)]
        int(np.searchsorted(score_edges, score))

    def bisect_and_count() -> None:
        for c, b in zip(children, [*bins.row(row), bins.score(score)], strict=True):
            c[b].inc()

    batch = rng.normal(size=(10_000, d))
    print(f"one row, {d} features and the score (median of 7 x 20,000 calls):")
    print(f"  bins with bisect on lists       {per_call_us(bisect_row):6.2f} µs")
    print(f"  bins with numpy searchsorted    {per_call_us(numpy_row):6.2f} µs")
    print(f"  bisect + {d + 1} counter increments  {per_call_us(bisect_and_count):6.2f} µs")
    t = per_call_us(lambda: bins.batch_counts(batch), number=20)
    print(f"10,000-row batch: counts per bin with numpy {t:,.0f} µs ({t / 10_000:.3f} µs/row)")


if __name__ == "__main__":
    main()
