"""``pca``: PyOD's PCA detector: weighted distances of the (standardized) row to the selected
principal axes, ``sum(cdist(z, components) / explained_variance_ratio)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, FitError, Param, boolean, integer, optional
from service.detectors.table import register


def _n_components(raw: Any) -> int | float | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
        return None
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            value = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value == int(value) and value >= 1:
            return int(value)
        if 0 < value < 1:
            return float(value)
    raise ValueError("must be none, an integer >= 1 or a fraction of variance in (0, 1)")


class PCA(DetectorKind):
    name = "pca"
    summary = "PCA (PyOD): weighted distance to the principal axes"
    params = (
        Param("n_components", None, _n_components, "components kept by sklearn's PCA"),
        Param("n_selected_components", None, optional(integer(1)), "last components scored"),
        Param("weighted", True, boolean(), "divide by each component's explained variance"),
        Param("standardization", True, boolean(), "standardize features before the PCA"),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.pca import PCA as Model

        nc = params["n_components"]
        if isinstance(nc, int) and nc > min(X.shape):
            raise FitError(
                f"pca: n_components ({nc}) must be at most min(rows, features) = {min(X.shape)}"
            )
        det = Model(
            n_components=nc,
            n_selected_components=params["n_selected_components"],
            weighted=params["weighted"],
            standardization=params["standardization"],
            contamination=params["contamination"],
            random_state=seed,
        )
        try:
            det.fit(X)
        except ValueError as exc:
            raise FitError(f"pca: {exc}") from None
        state: dict[str, Any] = {
            "components": np.array(det.selected_components_, dtype=np.float64),
            "weights": np.array(det.selected_w_components_, dtype=np.float64),
            "mean": None,
            "scale": None,
        }
        if params["standardization"]:
            state["mean"] = np.array(det.scaler_.mean_, dtype=np.float64)
            state["scale"] = np.array(det.scaler_.scale_, dtype=np.float64)
        return Fit(
            state=state,
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
            info={"n_components": int(det.n_components_)},
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        C = np.ascontiguousarray(state["components"], dtype=np.float64)
        w = np.asarray(state["weights"], dtype=np.float64)
        if C.ndim != 2 or w.shape != (C.shape[0],):
            raise ValueError("pca state: components and weights disagree")
        self.n_features = C.shape[1]
        self._C = C
        self._w = w
        self._mean = state["mean"]
        self._scale = state["scale"]
        self._chunk = max(1, 65536 // (C.shape[0] * C.shape[1]))

    def score(self, X: np.ndarray) -> np.ndarray:
        if self._mean is not None:  # StandardScaler.transform: X -= mean_; X /= scale_
            X = (X - self._mean) / self._scale
        C, w = self._C, self._w
        if X.shape[0] <= self._chunk:
            return np.sum(np.sqrt(((X[:, None, :] - C[None]) ** 2).sum(axis=2)) / w, axis=1)
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], self._chunk):
            Z = X[start : start + self._chunk]
            D = np.sqrt(((Z[:, None, :] - C[None]) ** 2).sum(axis=2))
            out[start : start + self._chunk] = np.sum(D / w, axis=1)
        return out


register(PCA())
