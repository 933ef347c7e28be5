"""A loaded model that scores feature matrices. Transport-free: no FastAPI here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.core.features import FeatureParser
from service.models.artifact import ArtifactError, ModelArtifact

# Up to this many rows (the default VIGIL_MAX_BATCH_ROWS) the compiled forest serves.
# In-process scikit-learn wins from about 4,000 rows (bench/bench_fastforest.py), but end to end
# over HTTP a 10,000-row request is as fast on the compiled forest (make bench), and a worker
# that never imports scikit-learn stays near 80 MB instead of 170 MB. Larger batches (a raised
# VIGIL_MAX_BATCH_ROWS) go to scikit-learn.
FAST_PATH_MAX_ROWS = 10_000


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
        self.metadata = art.metadata
        self.version = art.version
        self.feature_names: tuple[str, ...] = tuple(art.metadata["feature_names"])
        self.n_features = len(self.feature_names)
        self.offset = float(art.metadata["offset"])
        self.parser = FeatureParser(self.feature_names)
        self.loaded_at = time.time()
        self._forest = art.forest
        self._smoke_check()

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``score_samples``, bit for bit; the compiled forest for small inputs."""
        if X.shape[0] <= FAST_PATH_MAX_ROWS:
            return self._forest.score_samples(X)
        return self.artifact.estimator().score_samples(X)

    def score(self, X: np.ndarray) -> Scores:
        raw = self.score_samples(X)
        # sklearn's predict: decision_function = score_samples - offset_; anomaly where < 0.
        return Scores(anomaly_score=-raw, is_anomaly=(raw - self.offset) < 0)

    def _smoke_check(self) -> None:
        """The compiled forest must give, bit for bit, the scores scikit-learn gave at training."""
        where = self.source or "model"
        if self._forest.offset != self.offset:
            raise ArtifactError(where, "the forest's offset differs from the metadata's")
        probe = self.metadata.get("probe") or {}
        try:
            rows = np.asarray(probe["rows"], dtype=np.float64)
            expected = np.asarray(probe["score_samples"], dtype=np.float64)
            got = self._forest.score_samples(rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(where, f"probe rows unusable: {exc}") from None
        if not np.array_equal(got, expected):
            raise ArtifactError(where, "the model does not reproduce its training-time scores")
