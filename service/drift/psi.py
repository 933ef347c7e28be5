"""The population stability index: the one formula, shared by the offline command and, in
PromQL, by the recording rules in monitor/prometheus/rules/vigil-drift.yml.

    PSI = sum over bins of (a - e) * ln(a / e)

where ``a`` is the share of the current rows in a bin and ``e`` the training (reference) share,
each floored at ``EPSILON`` first (a bin with no rows would make ln(a / e) infinite). The
floored shares are not renormalised: the recording rule does exactly the same (``clamp_min``),
so both give the same number on the same counts. With every share at or above the floor, each
term is >= 0, so PSI >= 0 and is 0 only when the shares match.

An empty current bin whose reference share is 10% adds (1e-4 - 0.1) * ln(1e-4 / 0.1) ~ 0.69,
above the drift threshold on its own: a whole decile of the training data no longer seen is
drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EPSILON = 1e-4
"""Floor of every share before the logarithm (the recording rule's clamp_min)."""

DRIFT_THRESHOLD = 0.2
"""PSI above this is drift (the usual reading: < 0.1 stable, 0.1-0.2 a moderate shift,
> 0.2 a significant one); the offline command flags it and VigilFeatureDrift alerts on it."""


def shares(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts per bin as shares of their total (all zero when the total is 0)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def psi(actual: Sequence[float] | np.ndarray, expected: Sequence[float] | np.ndarray) -> float:
    """PSI of the current shares ``actual`` against the reference shares ``expected``."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    if a.shape != e.shape or a.ndim != 1:
        raise ValueError(f"actual has {a.shape} bins, expected {e.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi_of_counts(counts: Sequence[float] | np.ndarray, expected: Sequence[float]) -> float:
    """PSI of bin counts (the current rows) against the reference shares; NaN with no rows."""
    if float(np.sum(counts)) <= 0:
        return math.nan
    return psi(shares(counts), expected)
