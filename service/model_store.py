"""Holds the model being served, and replaces it safely.

A new model is loaded, verified and smoke-tested off to the side; only then is it swapped in,
with one reference assignment. A request that already took the old model finishes with it. If
anything about the new file is wrong, the old model keeps serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service import artifact, metrics
from service.artifact import ArtifactError
from service.scoring import Model

log = logging.getLogger("vigil.model")


@dataclass(frozen=True)
class ReloadOutcome:
    result: Literal["reloaded", "unchanged", "refused"]
    model_version: str | None
    """The version serving after the attempt."""
    previous_version: str | None
    reason: str | None = None


def _build(path: Path) -> Model:
    """Load and check an artifact; every failure becomes an ArtifactError."""
    try:
        return Model(artifact.load(path), source=path)
    except ArtifactError:
        raise
    except Exception as exc:  # e.g. a pickle of another library version
        raise ArtifactError(path, f"failed its checks: {type(exc).__name__}: {exc}") from None


class ModelStore:
    def __init__(self) -> None:
        self._model: Model | None = None
        self._error: str | None = "no model loaded yet"
        self._lock = threading.Lock()  # one load at a time; serving never waits on it

    @property
    def model(self) -> Model | None:
        return self._model

    @property
    def not_ready_reason(self) -> str | None:
        return None if self._model is not None else self._error

    def load(self, path: str | Path) -> Model:
        """Load ``path`` at start. On failure the store stays empty (not ready) and it raises."""
        path = Path(path)
        with self._lock:
            try:
                model = _build(path)
            except ArtifactError as exc:
                log.error("model load refused: %s", exc)
                if self._model is None:
                    self._error = exc.public
                    metrics.set_not_ready()
                raise
            self._install(model)
            return model

    def reload(self, path: str | Path) -> ReloadOutcome:
        """Replace the serving model with ``path`` if it passes every check; never raises."""
        path = Path(path)
        with self._lock:
            current = self._model
            previous = current.version if current else None
            try:
                model = _build(path)  # every check, every time: the file may have changed
                if current is not None and model.feature_names != current.feature_names:
                    raise ArtifactError(
                        path,
                        f"takes features ({', '.join(model.feature_names)}) but the serving model"
                        f" takes ({', '.join(current.feature_names)}); clients would break",
                    )
            except ArtifactError as exc:
                log.error("reload refused, still serving %s: %s", previous, exc)
                metrics.record_reload("refused")
                if current is None:
                    self._error = exc.public
                return ReloadOutcome("refused", previous, previous, exc.public)
            if current is not None and model.artifact.sha256 == current.artifact.sha256:
                metrics.record_reload("unchanged")
                return ReloadOutcome("unchanged", previous, previous)
            self._install(model)
            metrics.record_reload("reloaded")
            return ReloadOutcome("reloaded", model.version, previous)

    def _install(self, model: Model) -> None:
        self._model = model
        self._error = None
        metrics.set_model(
            model.version, model.loaded_at, float(model.metadata["training_anomaly_ratio"])
        )
        log.info(
            "serving model %s from %s (%d features: %s)",
            model.version,
            model.source,
            model.n_features,
            ", ".join(model.feature_names),
        )
