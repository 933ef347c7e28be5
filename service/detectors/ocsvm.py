"""``ocsvm``: PyOD's one-class SVM (scikit-learn ``OneClassSVM``, i.e. libsvm).

Score: ``-(sum_i dual_coef_i * K(sv_i, x) + intercept_)``. The RBF kernel's squared distance is
summed from coordinate differences, as libsvm does: the ``|x|^2 - 2 x.sv + |sv|^2`` shortcut
loses too much when rows sit far from the origin and the decision value is a small difference
of large sums. libsvm's fit is quadratic in the rows, hence ``max_train_rows`` (default
10,000).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, Param, choice, integer, number
from service.detectors.table import register


def _gamma(raw: Any) -> float | str:
    if isinstance(raw, str) and raw.strip().lower() in ("auto", "scale"):
        return raw.strip().lower()
    try:
        return number(0.0, low_open=True)(raw)
    except ValueError:
        raise ValueError("must be 'auto', 'scale' or a number > 0") from None


class OCSVM(DetectorKind):
    name = "ocsvm"
    summary = "One-class SVM (PyOD / scikit-learn OneClassSVM)"
    default_max_train_rows = 10_000
    params = (
        Param("kernel", "rbf", choice("rbf", "linear", "poly", "sigmoid"), "kernel"),
        Param("nu", 0.5, number(0.0, 1.0, low_open=True), "bound on the share of margin errors"),
        Param("gamma", "auto", _gamma, "kernel coefficient: auto = 1 / features"),
        Param("degree", 3, integer(0, 20), "poly kernel degree"),
        Param("coef0", 0.0, number(), "poly/sigmoid kernel constant"),
        Param("tol", 1e-3, number(0.0, low_open=True), "stopping tolerance"),
        Param("max_iter", -1, integer(-1), "solver iteration limit (-1: none)"),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.ocsvm import OCSVM as Model

        det = Model(
            kernel=params["kernel"],
            nu=params["nu"],
            gamma=params["gamma"],
            degree=params["degree"],
            coef0=params["coef0"],
            tol=params["tol"],
            max_iter=params["max_iter"],
            contamination=params["contamination"],
        ).fit(X)
        svm = det.detector_
        return Fit(
            state={
                "kernel": params["kernel"],
                "support_vectors": np.array(svm.support_vectors_, dtype=np.float64),
                "dual_coef": np.array(svm.dual_coef_[0], dtype=np.float64),
                "intercept": float(svm.intercept_[0]),
                "gamma": float(svm._gamma),
                "degree": int(params["degree"]),
                "coef0": float(params["coef0"]),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
            info={"n_support_vectors": int(svm.support_vectors_.shape[0])},
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        SV = np.ascontiguousarray(state["support_vectors"], dtype=np.float64)
        coef = np.asarray(state["dual_coef"], dtype=np.float64)
        if SV.ndim != 2 or coef.shape != (SV.shape[0],):
            raise ValueError("ocsvm state: support vectors and coefficients disagree")
        if state["kernel"] not in ("rbf", "linear", "poly", "sigmoid"):
            raise ValueError("ocsvm state: unknown kernel")
        self.n_features = SV.shape[1]
        self._SVt = np.ascontiguousarray(SV.T)
        self._coef = coef
        self._intercept = float(state["intercept"])
        self._kernel = state["kernel"]
        self._gamma = float(state["gamma"])
        self._degree = int(state["degree"])
        self._coef0 = float(state["coef0"])
        self._chunk = max(1, (1 << 16) // SV.shape[0])

    def _decision(self, X: np.ndarray) -> np.ndarray:
        if self._kernel == "rbf":
            # libsvm: sum += d * d over the features in order, then exp(-gamma * sum).
            sq = np.zeros((X.shape[0], self._SVt.shape[1]))
            for j in range(self.n_features):
                diff = X[:, j, None] - self._SVt[j]
                diff *= diff
                sq += diff
            sq *= -self._gamma
            return np.exp(sq, out=sq) @ self._coef + self._intercept
        dot = X @ self._SVt
        if self._kernel == "linear":
            K = dot
        elif self._kernel == "poly":
            K = (self._gamma * dot + self._coef0) ** self._degree
        else:
            K = np.tanh(self._gamma * dot + self._coef0)
        return K @ self._coef + self._intercept

    def score(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] <= self._chunk:
            return -1 * self._decision(X)
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], self._chunk):
            out[start : start + self._chunk] = -1 * self._decision(X[start : start + self._chunk])
        return out


register(OCSVM())
