"""Training: fit an IsolationForest and describe it. Shared by the CLI and the notebook."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import __version__
from service.data.dataset import DataError, load_csv
from service.detectors.compiled_forest import CompiledForest
from service.models import artifact
from service.models.artifact import ModelArtifact

MIN_TRAINING_ROWS = 10


@dataclass(frozen=True)
class TrainingParams:
    """The IsolationForest parameters a user may set (scikit-learn's names and meanings)."""

    n_estimators: int = 100
    max_samples: int | float | str = "auto"
    contamination: float | str = 0.02
    max_features: int | float = 1.0
    bootstrap: bool = False
    random_state: int | None = 42

    def validate(self) -> None:
        if self.n_estimators < 1:
            raise ValueError("n_estimators must be at least 1")
        c = self.contamination
        if c != "auto" and not (isinstance(c, float | int) and 0 < c <= 0.5):
            raise ValueError(f"contamination must be 'auto' or in (0, 0.5], got {c!r}")
        m = self.max_samples
        if isinstance(m, str) and m != "auto":
            raise ValueError(f"max_samples must be 'auto', an int or a float, got {m!r}")
        if isinstance(m, float) and not 0 < m <= 1:
            raise ValueError(f"max_samples as a fraction must be in (0, 1], got {m}")
        if isinstance(m, int) and m < 1:
            raise ValueError(f"max_samples must be at least 1, got {m}")


def _score_summary(anomaly_scores: np.ndarray) -> dict[str, float]:
    q = np.quantile(anomaly_scores, [0.01, 0.05, 0.5, 0.95, 0.99])
    return {
        "min": float(anomaly_scores.min()),
        "max": float(anomaly_scores.max()),
        "mean": float(anomaly_scores.mean()),
        "std": float(anomaly_scores.std()),
        "p01": float(q[0]),
        "p05": float(q[1]),
        "p50": float(q[2]),
        "p95": float(q[3]),
        "p99": float(q[4]),
    }


def train(
    X: np.ndarray, feature_names: list[str], params: TrainingParams | None = None
) -> ModelArtifact:
    """Fit an IsolationForest on ``X`` and return it with its metadata."""
    # Imported here: a CLI run refused for its data need not wait for scikit-learn to load.
    import sklearn
    from sklearn.ensemble import IsolationForest

    params = params or TrainingParams()
    params.validate()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise DataError(f"X has shape {X.shape}, expected (rows, {len(feature_names)})")
    if X.shape[0] < MIN_TRAINING_ROWS:
        raise DataError(f"{X.shape[0]} training rows; at least {MIN_TRAINING_ROWS} are needed")
    if not np.isfinite(X).all():
        raise DataError("training data has NaN or infinite values")
    est = IsolationForest(**asdict(params), n_jobs=1)
    est.fit(X)
    raw = est.score_samples(X)
    forest = CompiledForest.from_estimator(est)
    if not np.array_equal(forest.score_samples(X), raw):
        raise RuntimeError("the compiled forest disagrees with scikit-learn on the training data")
    probe = _probe_rows(X)
    flagged = (raw - est.offset_) < 0
    est_bytes = artifact.serialize(est)
    metadata: dict[str, Any] = {
        "version": artifact.content_hash(est_bytes)[:12],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "feature_names": list(feature_names),
        "n_features": len(feature_names),
        "n_training_rows": int(X.shape[0]),
        "params": {k: v for k, v in est.get_params().items() if k not in ("n_jobs", "verbose")},
        "max_samples_effective": int(est.max_samples_),
        "offset": float(est.offset_),
        "threshold": float(-est.offset_),
        "training_anomaly_ratio": float(flagged.mean()),
        "training_scores": _score_summary(-raw),
        # Rows and scikit-learn's scores for them: a loaded model must reproduce them exactly.
        "probe": {"rows": probe.tolist(), "score_samples": est.score_samples(probe).tolist()},
        "sklearn_version": sklearn.__version__,
        "vigil_version": __version__,
    }
    return ModelArtifact(metadata, forest, est_bytes, estimator=est)


def _probe_rows(X: np.ndarray) -> np.ndarray:
    """Typical, extreme and far-out rows of the training data."""
    mean, std = X.mean(axis=0), X.std(axis=0)
    return np.vstack([mean, X.min(axis=0), X.max(axis=0), mean + 10 * std + 1, X[0]])


def save_replacing(model: ModelArtifact, out: str | Path) -> None:
    """Save the artifact and its manifest at ``out`` so that a failure changes nothing there.

    Both files are written into a new folder beside ``out`` first, so a full disk or any
    other write error leaves the artifact and manifest already at ``out`` as they were (not a
    new artifact beside an old manifest), and removes what it wrote. Then the two are renamed
    into place, which needs no space.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        artifact.save(model, staging / out.name)
        os.replace(staging / out.name, out)
        os.replace(artifact.manifest_path(staging / out.name), artifact.manifest_path(out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_from_csv(
    data: str | Path,
    out: str | Path,
    params: TrainingParams | None = None,
    *,
    exclude: tuple[str, ...] = (),
    max_line_bytes: int | None = None,
) -> ModelArtifact:
    """Read a CSV, train, and save the artifact at ``out`` (see :func:`save_replacing`)."""
    ds = load_csv(data, exclude=exclude, min_rows=MIN_TRAINING_ROWS, max_line_bytes=max_line_bytes)
    model = train(ds.X, ds.feature_names, params)
    model.metadata["training_data"] = Path(data).name
    save_replacing(model, out)
    return model
