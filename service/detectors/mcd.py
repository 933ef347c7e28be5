"""``mcd``: PyOD's MCD: squared Mahalanobis distance to the robust (Minimum Covariance
Determinant) location, with its precision matrix, as ``MinCovDet.mahalanobis``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, FitError, Param, boolean, number, optional
from service.detectors.table import register


class MCD(DetectorKind):
    name = "mcd"
    summary = "MCD (PyOD / scikit-learn MinCovDet): robust Mahalanobis distance"
    params = (
        Param(
            "support_fraction",
            None,
            optional(number(0.0, 1.0, low_open=True)),
            "share of rows in the robust estimate (none: sklearn's default)",
        ),
        Param("assume_centered", False, boolean(), "take the location as zero"),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.mcd import MCD as Model

        det = Model(
            contamination=params["contamination"],
            support_fraction=params["support_fraction"],
            assume_centered=params["assume_centered"],
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "covariance is not full rank"
            try:
                det.fit(X)
            except ValueError as exc:
                raise FitError(f"mcd: {exc}") from None
        est = det.detector_
        return Fit(
            state={
                "location": np.array(est.location_, dtype=np.float64),
                "precision": np.array(est.get_precision(), dtype=np.float64),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        loc = np.asarray(state["location"], dtype=np.float64)
        P = np.ascontiguousarray(state["precision"], dtype=np.float64)
        if loc.ndim != 1 or P.shape != (loc.shape[0], loc.shape[0]):
            raise ValueError("mcd state: location and precision disagree")
        self.n_features = loc.shape[0]
        self._loc = loc
        self._P = P

    def score(self, X: np.ndarray) -> np.ndarray:
        D = X - self._loc
        # scipy's cdist "mahalanobis" is sqrt(d . VI d); sklearn squares it again.
        return np.einsum("ij,ij->i", D @ self._P, D)


register(MCD())
