"""Calibration from training scores: the anomaly threshold and a score's percentile.

The threshold is the library's (PyOD's ``threshold_ = percentile(decision_scores_,
100 * (1 - contamination))``; the IsolationForest's ``-offset_``) and a row is an anomaly when
its score is strictly above it, as in PyOD's ``predict``. The percentile of a score among the
training scores is what the metrics record, so one set of histogram buckets fits every kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PERCENTILE_GRID", "Calibration"]

# Training-score quantiles are stored at these percentiles (0, 0.1, ..., 100).
PERCENTILE_GRID = np.linspace(0.0, 100.0, 1001)


class Calibration:
    def __init__(self, threshold: float, quantiles: np.ndarray) -> None:
        quantiles = np.asarray(quantiles, dtype=np.float64)
        if quantiles.shape != PERCENTILE_GRID.shape or np.any(np.diff(quantiles) < 0):
            raise ValueError("calibration quantiles must be 1001 nondecreasing numbers")
        self.threshold = float(threshold)
        self.quantiles = quantiles
        self.quantiles.flags.writeable = False

    @classmethod
    def from_training(cls, scores: np.ndarray, threshold: float) -> Calibration:
        return cls(threshold, np.percentile(np.asarray(scores, dtype=np.float64), PERCENTILE_GRID))

    def is_anomaly(self, scores: np.ndarray) -> np.ndarray:
        """PyOD's ``predict``: ``score > threshold_``."""
        return scores > self.threshold

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Percentile (0..100) of each score among the training scores, interpolated on the
        stored quantiles; 0 below the lowest training score, 100 above the highest."""
        q = self.quantiles
        below = np.searchsorted(q, scores, side="left")  # number of quantiles < score
        upto = np.searchsorted(q, scores, side="right")  # number of quantiles <= score
        # Inside a run of equal quantiles take the run's middle; otherwise interpolate.
        lo = np.clip(upto - 1, 0, q.size - 1)
        hi = np.clip(upto, 0, q.size - 1)
        span = q[hi] - q[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(span > 0, (scores - q[lo]) / span, 0.0)
        interp = PERCENTILE_GRID[lo] + frac * (PERCENTILE_GRID[hi] - PERCENTILE_GRID[lo])
        ties = upto > below
        tied = (PERCENTILE_GRID[np.clip(below, 0, q.size - 1)] + PERCENTILE_GRID[lo]) / 2
        out = np.where(ties, tied, interp)
        out = np.where(upto == 0, 0.0, out)
        return np.where(below >= q.size, 100.0, out)

    def to_state(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "quantiles": np.array(self.quantiles)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Calibration:
        return cls(state["threshold"], state["quantiles"])
