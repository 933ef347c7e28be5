"""``cblof``: PyOD's cluster-based local outlier factor on scikit-learn's KMeans.

A row joins its nearest KMeans centre (as ``KMeans.predict``: argmin of ``|c|^2 - 2 x.c``,
first on ties); in a large cluster it scores its distance to that centre, in a small one its
distance to the nearest large centre; ``use_weights`` multiplies by the cluster's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, FitError, Param, boolean, integer, number
from service.detectors.table import register


class CBLOF(DetectorKind):
    name = "cblof"
    summary = "CBLOF (PyOD, KMeans): distance to large clusters"
    params = (
        Param("n_clusters", 8, integer(2, 10_000), "KMeans clusters"),
        Param(
            "alpha",
            0.9,
            number(0.0, 1.0, low_open=True, high_open=True),
            "share of rows the large clusters hold",
        ),
        Param("beta", 5.0, number(1.0, low_open=True), "size ratio that splits large from small"),
        Param("use_weights", False, boolean(), "multiply scores by cluster size"),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.cblof import CBLOF as Model

        if params["n_clusters"] > X.shape[0]:
            raise FitError(
                f"cblof: n_clusters ({params['n_clusters']}) is more than the "
                f"{X.shape[0]} training rows"
            )
        det = Model(
            n_clusters=params["n_clusters"],
            alpha=params["alpha"],
            beta=params["beta"],
            use_weights=params["use_weights"],
            contamination=params["contamination"],
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # KMeans: fewer distinct points than clusters
            try:
                det.fit(X)
            except ValueError as exc:
                raise FitError(f"cblof: {exc}") from None
        k = det.cluster_centers_.shape[0]
        large = np.zeros(k, dtype=bool)
        large[np.asarray(det.large_cluster_labels_, dtype=np.intp)] = True
        return Fit(
            state={
                "centers": np.array(det.cluster_centers_, dtype=np.float64),
                "large": large,
                "sizes": np.bincount(det.cluster_labels_, minlength=k).astype(np.int64),
                "use_weights": bool(params["use_weights"]),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        C = np.ascontiguousarray(state["centers"], dtype=np.float64)
        large = np.asarray(state["large"], dtype=bool)
        sizes = np.asarray(state["sizes"])
        if C.ndim != 2 or large.shape != (C.shape[0],) or sizes.shape != large.shape:
            raise ValueError("cblof state: centres, sizes and large flags disagree")
        if not large.any():
            raise ValueError("cblof state: no large cluster")
        self.n_features = C.shape[1]
        self._C = C
        self._Ct = np.ascontiguousarray(C.T)
        self._c_sq = np.einsum("ij,ij->i", C, C)  # sklearn's row_norms(squared=True)
        self._large = large
        self._large_C = np.ascontiguousarray(C[large])
        self._sizes = sizes.astype(np.float64)
        self._use_weights = bool(state["use_weights"])

    def score(self, X: np.ndarray) -> np.ndarray:
        labels = np.argmin(self._c_sq + -2.0 * (X @ self._Ct), axis=1)
        # large cluster: pairwise_distances_no_broadcast(X, centres[labels])
        own = np.sqrt(np.sum(np.square(self._C[labels] - X), axis=1))
        small = ~self._large[labels]
        if small.any():
            Xs = X[small]
            to_large = np.sqrt(((Xs[:, None, :] - self._large_C[None]) ** 2).sum(axis=2))
            own[small] = np.min(to_large, axis=1)
        if self._use_weights:
            own = own * self._sizes[labels]
        return own


register(CBLOF())
