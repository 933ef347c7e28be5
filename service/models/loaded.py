"""A loaded model: a verified artifact of any detector kind, ready to score. No FastAPI here.

Built off to the side (verified, unpickled, smoke-tested) before it serves: a model that does
not reproduce, bit for bit, the scores it gave its probe rows at training is refused.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.features import FeatureParser
from service.detectors import detector as detectors
from service.detectors.calibration import PERCENTILE_GRID
from service.models.artifact import ArtifactError, ModelArtifact


@dataclass(frozen=True)
class Scores:
    anomaly_score: np.ndarray
    """The kind's raw score (higher is more anomalous); for the iforest s(x) = -score_samples."""
    is_anomaly: np.ndarray
    """``anomaly_score > threshold``: the library's own prediction."""


class Model:
    """One version of one named model, ready to serve.

    ``name`` and ``number`` place it in the registry (model ``default``, version 1 for a lone
    ``VIGIL_MODEL_PATH`` file); ``version`` is the artifact's content hash.
    """

    def __init__(
        self,
        art: ModelArtifact,
        source: Path | None = None,
        *,
        name: str = "default",
        number: int = 1,
    ) -> None:
        self.source = source
        self.artifact = art
        self.metadata = art.metadata
        self.name = name
        self.number = number
        self.version = art.version
        self.kind = art.kind
        self.feature_names: tuple[str, ...] = tuple(art.metadata["feature_names"])
        self.n_features = len(self.feature_names)
        self.parser = FeatureParser(self.feature_names)
        self.loaded_at = time.time()
        self.anomaly_hook: Callable[[str, Sequence[Any], int], None] | None = None
        self.row_batcher: Any = None  # the data plane's (service.serving.row_batcher)
        """Set by the service for models whose anomalies are sent as webhooks."""
        where = source or "model"
        try:
            self.detector = detectors.load(art.detector_state())
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(where, "its detector state is unusable", detail=str(exc)) from None
        if self.detector.n_features != self.n_features:
            raise ArtifactError(where, "the detector's feature count differs from the metadata's")
        self.threshold = self.detector.threshold
        # Whether the data plane may score this version's one-row requests together.
        self.rows_independent = self.detector.rows_independent
        # The percentile of one score by bisection on a list: a few hundred nanoseconds, where
        # the vectorised calibration costs microseconds of numpy call overhead.
        self._quantiles: list[float] = self.detector.calibration.quantiles.tolist()
        self._smoke_check()

    @property
    def label(self) -> str:
        """``name@number``, as logs and the CLI write a version."""
        return f"{self.name}@{self.number}"

    def score(self, X: np.ndarray) -> Scores:
        raw = self.detector.score(X)
        return Scores(anomaly_score=raw, is_anomaly=raw > self.threshold)

    def score_one(self, X: np.ndarray) -> tuple[bool, float]:
        """``(is_anomaly, score)`` of the one row of ``X`` as Python values."""
        score = float(self.detector.score(X)[0])
        return score > self.threshold, score

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Each score's percentile among the training scores, in [0, 1]."""
        return self.detector.percentile(scores) / 100.0

    def percentile_one(self, score: float) -> float:
        """:meth:`percentile` of one score, exactly as the vectorised one computes it."""
        q = self._quantiles
        n = len(q)
        below = bisect.bisect_left(q, score)
        upto = bisect.bisect_right(q, score)
        if upto == 0:
            return 0.0
        if below >= n:
            return 1.0
        grid = _GRID
        lo = upto - 1
        if upto > below:  # ties: the middle of the run of equal quantiles
            return (grid[below] + grid[lo]) / 2 / 100.0
        hi = min(upto, n - 1)
        span = q[hi] - q[lo]
        frac = (score - q[lo]) / span if span > 0 else 0.0
        return (grid[lo] + frac * (grid[hi] - grid[lo])) / 100.0

    def describe(self) -> dict[str, Any]:
        """What ``/model_information`` and ``/models/{name}`` answer about this version."""
        meta = self.metadata
        info = {
            "model": self.name,
            "version": self.number,
            "model_version": self.version,
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "n_features": self.n_features,
            "threshold": self.threshold,
            "params": meta["params"],
            "training_anomaly_ratio": meta["training_anomaly_ratio"],
            "training_scores": meta["training_scores"],
            "n_training_rows": meta["n_training_rows"],
            "created_at": meta["created_at"],
            "library_versions": meta.get("library_versions", {}),
            "vigil_version": meta.get("vigil_version"),
            "model_file": self.source.name if self.source else "",
            "loaded_at": self.loaded_at,
        }
        if self.kind == "iforest":  # the seed's names: offset_ and the effective max_samples
            info["offset"] = -self.threshold
            info["max_samples_effective"] = meta.get("info", {}).get("max_samples_effective")
        return info

    def _smoke_check(self) -> None:
        """The model must give, bit for bit, the scores it gave its probe rows at training."""
        where = self.source or "model"
        probe = self.metadata.get("probe") or {}
        try:
            rows = np.ascontiguousarray(probe["rows"], dtype=np.float64)
            expected = np.asarray(probe["scores"], dtype=np.float64)
            got = self.detector.score(rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(where, "probe rows unusable", detail=str(exc)) from None
        if not np.array_equal(got, expected):
            raise ArtifactError(where, "the model does not reproduce its training-time scores")


_GRID: list[float] = PERCENTILE_GRID.tolist()
