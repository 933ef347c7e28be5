"""Holds the model being served. Swapping is one reference assignment, so a request that
took the model keeps scoring with it while a new one is put in place."""

from __future__ import annotations

import logging
from pathlib import Path

from service import artifact, metrics
from service.artifact import ArtifactError
from service.scoring import Model

log = logging.getLogger("vigil.model")


class ModelStore:
    def __init__(self) -> None:
        self._model: Model | None = None
        self._error: str | None = "no model loaded yet"

    @property
    def model(self) -> Model | None:
        return self._model

    @property
    def not_ready_reason(self) -> str | None:
        return None if self._model is not None else self._error

    def load(self, path: str | Path) -> Model:
        """Load, verify and smoke-test ``path``, then swap it in.

        On any failure the model being served (if any) stays in place, and the error is raised.
        """
        path = Path(path)
        try:
            model = Model(artifact.load(path), source=path)
        except Exception as exc:
            if not isinstance(exc, ArtifactError):
                exc = ArtifactError(path, f"failed its checks: {type(exc).__name__}: {exc}")
            log.error("model load refused: %s", exc)
            if self._model is None:
                self._error = exc.public
                metrics.set_not_ready()
            raise exc from None
        self._model = model
        self._error = None
        metrics.set_model(
            model.version, model.loaded_at, float(model.metadata["training_anomaly_ratio"])
        )
        log.info(
            "model %s loaded from %s (%d features: %s)",
            model.version,
            path,
            model.n_features,
            ", ".join(model.feature_names),
        )
        return model
