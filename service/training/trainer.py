"""Training: fit a detector kind and describe it. Shared by the CLI, the notebook and jobs."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import numpy as np

from service import __version__
from service.data.dataset import DataError, load_csv
from service.detectors import detector
from service.detectors.detector import MIN_TRAINING_ROWS
from service.drift import reference as drift_reference
from service.models import artifact
from service.models.artifact import ModelArtifact

DEFAULT_SEED = 42


@dataclass(frozen=True)
class TrainingParams:
    """The IsolationForest parameters a user may set (scikit-learn's names and meanings): the
    iforest kind's parameters and defaults, and the training CLI's flags."""

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


def _score_summary(quantiles: np.ndarray) -> dict[str, float]:
    """The training scores' spread, from the calibration's quantiles (0, 0.1, ..., 100 %)."""
    q = np.asarray(quantiles, dtype=np.float64)
    at = {"min": 0, "p01": 10, "p05": 50, "p50": 500, "p95": 950, "p99": 990, "max": 1000}
    return {name: float(q[i]) for name, i in at.items()}


Params = TrainingParams | Mapping[str, Any] | Iterable[str] | None


def _resolve(kind: str, params: Params, seed: int | None) -> tuple[dict[str, Any], int]:
    """The kind's full parameters and the seed, from any of the ways callers give them."""
    if isinstance(params, TrainingParams):
        if kind != "iforest":
            raise ValueError(f"TrainingParams are the iforest's parameters, not {kind}'s")
        params.validate()
        given = {k: v for k, v in asdict(params).items() if k != "random_state"}
        seed = params.random_state if seed is None else seed
        params = given
    resolved = detector.resolve_params(kind, params or {})
    return resolved, DEFAULT_SEED if seed is None else int(seed)


def train(
    X: np.ndarray,
    feature_names: list[str],
    params: Params = None,
    *,
    kind: str = "iforest",
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ModelArtifact:
    """Fit detector ``kind`` on ``X`` and return it with its metadata.

    ``params`` are the kind's parameters (``{"n_neighbors": 10}`` or ``["n_neighbors=10"]``;
    :class:`TrainingParams` for the iforest), validated with errors that name the kind and the
    parameter. The model version is the hash of the fitted state: the same data, parameters
    and seed give the same version.
    """
    resolved, seed = _resolve(kind, params, seed)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise DataError(f"X has shape {X.shape}, expected (rows, {len(feature_names)})")
    if X.shape[0] < MIN_TRAINING_ROWS:
        raise DataError(f"{X.shape[0]} training rows; at least {MIN_TRAINING_ROWS} are needed")
    if not np.isfinite(X).all():
        raise DataError("training data has NaN or infinite values")
    state = detector.fit(kind, X, resolved, seed=seed, progress=progress)
    fit_seconds = state.pop("fit_seconds", None)  # not part of the fit: the version must not vary
    fitted = detector.load(state)
    reference = drift_reference.build(X, feature_names, fitted.score(X))
    probe = _probe_rows(X)
    state_bytes = artifact.serialize(state)
    metadata: dict[str, Any] = {
        "version": artifact.content_hash(state_bytes)[:12],
        "kind": kind,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "feature_names": list(feature_names),
        "n_features": len(feature_names),
        "n_training_rows": int(X.shape[0]),
        "params": _jsonable(resolved),
        "seed": seed,
        "threshold": fitted.threshold,
        "training_anomaly_ratio": float(state["training_anomaly_ratio"]),
        "training_scores": _score_summary(state["calibration"]["quantiles"]),
        "fit_seconds": fit_seconds,
        # Rows and their scores at training: a loaded model must reproduce them exactly.
        "probe": {"rows": probe.tolist(), "scores": fitted.score(probe).tolist()},
        "info": _jsonable(state.get("info", {})),
        # Bins of each feature and of the score at the training deciles, and a sample of the
        # training rows: what serving counts drift against (service.drift).
        "drift_reference": reference,
        "library_versions": _library_versions(kind),
        "vigil_version": __version__,
    }
    return ModelArtifact(metadata, state_bytes, state=state)


def _jsonable(value: Any) -> Any:
    """Parameters and info as JSON values (numpy scalars and tuples become plain ones)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _library_versions(kind: str) -> dict[str, str]:
    """The versions of the libraries the kind mirrors, for the record."""
    names = ["numpy", "scikit-learn"] + ([] if kind in ("iforest", "autoencoder") else ["pyod"])
    return {name: installed_version(name) for name in names}


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
    out: str | Path | None,
    params: Params = None,
    *,
    kind: str = "iforest",
    seed: int | None = None,
    exclude: tuple[str, ...] = (),
    max_line_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ModelArtifact:
    """Read a CSV, train, and save the artifact at ``out`` (see :func:`save_replacing`);
    with ``out`` None, only train (the caller registers it)."""
    ds = load_csv(data, exclude=exclude, min_rows=MIN_TRAINING_ROWS, max_line_bytes=max_line_bytes)
    model = train(ds.X, ds.feature_names, params, kind=kind, seed=seed, progress=progress)
    model.metadata["training_data"] = Path(data).name
    if out is not None:
        save_replacing(model, out)
    return model
