"""Serving-side binning: which reference bin a value falls in.

A feature's bins are given by its interior edges e_0 < e_1 < ... < e_{k-1} (strictly
increasing): bin 0 is (-inf, e_0], bin i is (e_{i-1}, e_i], bin k is (e_{k-1}, +inf). Bins are
right-closed, as Prometheus' ``le`` buckets are: a value equal to an edge falls in the bin
below it. That is ``bisect_left(edges, value)`` for one value and
``np.searchsorted(edges, values, side="left")`` for many, which agree on every input
(tests/drift/test_binning.py). NaN is never served (the API refuses it), so it is not handled.

For one row, ``bisect`` on plain lists is several times faster than numpy, whose per-call
overhead dominates a 10-element search (bench/drift_binning.py measures both).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np

SCORE = "__score__"
"""The ``feature`` label value of the score's bins (a feature may not have this name)."""


def bin_of(edges: Sequence[float], value: float) -> int:
    """The bin of one value: the number of edges strictly below it."""
    return bisect_left(edges, value)


def bins_of(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bins of many values (the vectorised ``bin_of``)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")


def counts(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows per bin (``len(edges) + 1`` bins) of ``values``."""
    return np.bincount(bins_of(edges, values), minlength=len(edges) + 1)


class ModelBins:
    """The bins of one model's features and score, built from its reference sketch.

    ``row`` and ``score`` are for the single-row path (plain lists and ``bisect``);
    ``batch_counts`` and ``score_counts`` count a batch with numpy, so a serving process
    increments each bin's counter once per batch, not once per row.
    """

    def __init__(self, reference: dict[str, Any]) -> None:
        self.feature_names: list[str] = [f["name"] for f in reference["features"]]
        self.feature_edges: list[list[float]] = [
            [float(e) for e in f["edges"]] for f in reference["features"]
        ]
        self.score_edges: list[float] = [float(e) for e in reference["score"]["edges"]]
        self.n_bins: list[int] = [len(e) + 1 for e in self.feature_edges]
        self.score_n_bins: int = len(self.score_edges) + 1

    def row(self, x: Sequence[float]) -> list[int]:
        """The bin of each feature of one row (in feature order)."""
        return [bisect_left(e, v) for e, v in zip(self.feature_edges, x, strict=True)]

    def score(self, s: float) -> int:
        return bisect_left(self.score_edges, s)

    def batch_counts(self, X: np.ndarray) -> list[np.ndarray]:
        """Per feature, the rows of ``X`` (n x d) in each of its bins."""
        return [counts(e, X[:, j]) for j, e in enumerate(self.feature_edges)]

    def score_counts(self, scores: np.ndarray) -> np.ndarray:
        return counts(self.score_edges, scores)
