"""The reference sketch of a model's training data, stored in the artifact's metadata.

For each feature and for the score: bin edges at the training deciles, the training share of
each bin, and summary statistics; plus a sample of the training rows (and their scores) for
the offline KS and Wasserstein distances. Everything is plain lists, floats and ints, so the
sketch goes into the JSON manifest unchanged.

Why 10 bins (deciles): PSI on counts has a sampling bias of about (bins - 1) / rows even when
nothing drifted (it is close to a chi-square statistic divided by the rows). With 10 bins and
the 500-row floor of the hourly recording rule that is ~0.02, well under the 0.1 "stable" mark;
20 bins would double it and need twice the rows per window. Ten bins is also what the usual
0.1 / 0.2 PSI thresholds were calibrated on.

Ties and constant columns: the edges are training values (the "lower" quantile), deduplicated
so they are strictly increasing, and an edge at the column's maximum is dropped, so every bin
holds training rows: tied deciles merge into one bin. A feature that takes few values has fewer
bins; a constant one has a single bin, whose PSI is always 0 (its KS and Wasserstein distances
still see a change offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from service.drift.binning import SCORE, counts

FORMAT = 1
N_BINS = 10
SAMPLE_ROWS = 10_000
"""The reference sample holds every training row up to this many, a seeded sample above."""
SAMPLE_SEED = 0
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def bin_edges(values: np.ndarray, n_bins: int = N_BINS) -> list[float]:
    """Interior edges at the training quantiles: strictly increasing, every bin non-empty."""
    if values.size == 0:
        raise ValueError("no values to take quantiles of")
    probs = np.arange(1, n_bins) / n_bins
    edges = np.unique(np.quantile(values, probs, method="lower"))
    return [float(e) for e in edges[edges < values.max()]]


def summary(values: np.ndarray) -> dict[str, Any]:
    q = np.quantile(values, QUANTILES)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"{p:g}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
    }


def sketch(name: str, values: np.ndarray) -> dict[str, Any]:
    """One column's bins, training shares and statistics."""
    edges = bin_edges(values)
    c = counts(edges, values)
    return {
        "name": name,
        "edges": edges,
        "shares": [float(v) for v in c / c.sum()],
        "stats": summary(values),
    }


def sample_indices(n_rows: int, size: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Every row up to ``size``; above, ``size`` rows drawn without replacement, in order."""
    if n_rows <= size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=size, replace=False))


def build(
    X: np.ndarray, feature_names: Sequence[str], scores: np.ndarray | Sequence[float]
) -> dict[str, Any]:
    """The reference sketch of training rows ``X`` (n x d) and their scores.

    ``scores`` are the scores serving will bin for each row (the detector's anomaly score,
    higher is more anomalous); the bins are quantiles, so any increasing transform of the
    score (a percentile) falls in the same bins if its edges are transformed alike.
    """
    X = np.asarray(X, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    names = list(feature_names)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != len(names):
        raise ValueError(f"X has shape {X.shape}, expected (rows >= 1, {len(names)} features)")
    if scores.shape != (X.shape[0],):
        raise ValueError(f"{scores.shape[0]} scores for {X.shape[0]} rows")
    if not (np.isfinite(X).all() and np.isfinite(scores).all()):
        raise ValueError("the rows and scores must be finite")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate feature names in {names}")
    if SCORE in names:
        raise ValueError(f"a feature may not be named {SCORE!r}: the score's bins use that name")
    idx = sample_indices(X.shape[0])
    return {
        "format": FORMAT,
        "n_rows": int(X.shape[0]),
        "features": [sketch(name, X[:, j]) for j, name in enumerate(names)],
        "score": sketch(SCORE, scores),
        "sample": {
            "seed": SAMPLE_SEED,
            "rows": X[idx].tolist(),
            "scores": scores[idx].tolist(),
        },
    }


def validate(reference: Any, feature_names: Sequence[str]) -> None:
    """Raise ValueError unless ``reference`` is a sketch for exactly these features."""
    if not isinstance(reference, dict) or reference.get("format") != FORMAT:
        raise ValueError(f"not a drift reference of format {FORMAT}")
    names = [f.get("name") for f in reference.get("features", [])]
    if names != list(feature_names):
        raise ValueError(f"the reference is for features {names}, not {list(feature_names)}")
    for col in [*reference["features"], reference.get("score") or {}]:
        edges, shares = col.get("edges"), col.get("shares")
        if not isinstance(edges, list) or not isinstance(shares, list):
            raise ValueError(f"{col.get('name')!r}: edges and shares must be lists")
        if len(shares) != len(edges) + 1 or any(b <= a for a, b in pairwise(edges)):
            raise ValueError(
                f"{col.get('name')!r}: needs strictly increasing edges and one share more"
            )
