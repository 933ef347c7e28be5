"""A loaded model that scores feature matrices. Transport-free: no FastAPI here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.artifact import ArtifactError, ModelArtifact
from service.fastforest import CompiledForest
from service.validation import FeatureParser

# Up to this many rows the compiled forest beats scikit-learn's fixed per-call overhead
# (measured by bench/bench_fastforest.py: sklearn only wins from about 4,000-6,000 rows).
FAST_PATH_MAX_ROWS = 2000


@dataclass(frozen=True)
class Scores:
    anomaly_score: np.ndarray
    """s(x) = -score_samples(x), in (0, 1]; higher is more anomalous."""
    is_anomaly: np.ndarray
    """Exactly ``predict(x) == -1``."""


class Model:
    """An artifact ready to serve: its metadata, a feature parser, and a scoring path."""

    def __init__(self, art: ModelArtifact, source: Path | None = None) -> None:
        self.source = source
        self.artifact = art
        self.estimator = art.estimator
        self.metadata = art.metadata
        self.version = art.version
        self.feature_names: tuple[str, ...] = tuple(art.metadata["feature_names"])
        self.n_features = len(self.feature_names)
        self.offset = float(self.estimator.offset_)
        self.parser = FeatureParser(self.feature_names)
        self.loaded_at = time.time()
        try:
            self._fast = CompiledForest.from_estimator(self.estimator)
        except ValueError as exc:
            raise ArtifactError(source or "model", f"cannot compile the forest: {exc}") from None
        self._smoke_check()

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``score_samples``, bit for bit; the compiled forest for small inputs."""
        if X.shape[0] <= FAST_PATH_MAX_ROWS:
            return self._fast.score_samples(X)
        return self.estimator.score_samples(X)

    def score(self, X: np.ndarray) -> Scores:
        raw = self.score_samples(X)
        # sklearn's predict: decision_function = score_samples - offset_; anomaly where < 0.
        return Scores(anomaly_score=-raw, is_anomaly=(raw - self.offset) < 0)

    def _smoke_check(self) -> None:
        """Score a few probe rows both ways before this model may serve."""
        stats = self.metadata.get("training_scores", {})
        probe = np.zeros((3, self.n_features))
        probe[1] += 1.0
        probe[2] -= 1e6
        expected = self.estimator.score_samples(probe)
        got = self.score_samples(probe)
        if not (np.all(np.isfinite(got)) and np.all((got < 0) & (got >= -1))):
            raise ArtifactError(self.source or "model", "scores out of range on probe rows")
        if not np.array_equal(got, expected):
            raise ArtifactError(self.source or "model", "fast path disagrees with scikit-learn")
        if stats and not (0 < stats.get("min", 0.5) <= stats.get("max", 0.5) <= 1):
            raise ArtifactError(self.source or "model", "inconsistent training score stats")
