"""``knn`` and ``lof``: PyOD's nearest-neighbour detectors.

Vigil fits them with ``algorithm='ball_tree'``: every scikit-learn algorithm finds the same
neighbours, but ``'auto'`` may pick brute force, whose ``|x|^2 - 2 x.y + |y|^2`` distances lose
precision for near-duplicate rows; the tree computes each distance directly, as the serving
path does. Serving queries a ``scipy.spatial.cKDTree`` over the training rows (built at load):
the same direct Minkowski distances, bit for bit in our tests. For LOF, ties at the k-th
neighbour between training rows of different density may be broken differently from
scikit-learn's tree (both choices are valid neighbours); the score can differ only then.

Fitting does not scale past tens of thousands of rows (and serving keeps every training row),
so both kinds subsample to ``max_train_rows`` (default 20,000; ``none`` for all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, FitError, Param, choice, integer, number
from service.detectors.table import register

_P = Param("p", 2.0, number(1.0), "Minkowski distance power: 2 Euclidean, 1 Manhattan")


def _check_k(kind: str, k: int, n_rows: int) -> None:
    if k >= n_rows:
        raise FitError(
            f"{kind}: n_neighbors ({k}) must be smaller than the number of training rows ({n_rows})"
        )


class _Neighbours:
    """k nearest training rows of each query row: distances ascending, and their indices."""

    def __init__(self, X_train: np.ndarray, k: int, p: float) -> None:
        from scipy.spatial import cKDTree

        T = np.ascontiguousarray(X_train, dtype=np.float64)
        if T.ndim != 2 or not 1 <= k <= T.shape[0]:
            raise ValueError("neighbours state: bad training rows or n_neighbors")
        self.n_features = T.shape[1]
        self._tree = cKDTree(T, leafsize=16, balanced_tree=False, compact_nodes=False)
        self._k = int(k)
        self._p = float(p)

    def query(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self._tree.query(X, k=self._k, p=self._p)
        if self._k == 1:
            dist, idx = dist[:, None], idx[:, None]
        return dist, idx


class KNN(DetectorKind):
    name = "knn"
    summary = "kNN (PyOD): distance to the k-th nearest training row (or mean/median)"
    default_max_train_rows = 20_000
    params = (
        Param("n_neighbors", 5, integer(1, 10_000), "neighbours considered"),
        Param("method", "largest", choice("largest", "mean", "median"), "k-th, mean or median"),
        _P,
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.knn import KNN as Model

        _check_k(self.name, params["n_neighbors"], X.shape[0])
        det = Model(
            contamination=params["contamination"],
            n_neighbors=params["n_neighbors"],
            method=params["method"],
            algorithm="ball_tree",
            p=params["p"],
        ).fit(X)
        return Fit(
            state={
                "X_train": np.array(X),
                "n_neighbors": int(params["n_neighbors"]),
                "method": params["method"],
                "p": float(params["p"]),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    def scorer(self, state: Mapping[str, Any]) -> _KnnScorer:
        return _KnnScorer(state)


class _KnnScorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        if state["method"] not in ("largest", "mean", "median"):
            raise ValueError("knn state: bad method")
        self._nn = _Neighbours(state["X_train"], state["n_neighbors"], state["p"])
        self._method = state["method"]
        self.n_features = self._nn.n_features

    def score(self, X: np.ndarray) -> np.ndarray:
        dist, _ = self._nn.query(X)
        if self._method == "largest":
            return dist[:, -1].copy()
        if self._method == "mean":
            return np.mean(dist, axis=1)
        return np.median(dist, axis=1)


class LOF(DetectorKind):
    name = "lof"
    summary = "LOF (PyOD / scikit-learn LocalOutlierFactor, novelty=True)"
    default_max_train_rows = 20_000
    params = (Param("n_neighbors", 20, integer(1, 10_000), "neighbours considered"), _P)

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.lof import LOF as Model

        _check_k(self.name, params["n_neighbors"], X.shape[0])
        det = Model(
            n_neighbors=params["n_neighbors"],
            algorithm="ball_tree",
            p=params["p"],
            contamination=params["contamination"],
        ).fit(X)
        lof = det.detector_
        k = int(lof.n_neighbors_)
        return Fit(
            state={
                "X_train": np.array(X),
                "n_neighbors": k,
                "p": float(params["p"]),
                "k_distance": np.array(lof._distances_fit_X_[:, k - 1], dtype=np.float64),
                "lrd": np.array(lof._lrd, dtype=np.float64),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    def scorer(self, state: Mapping[str, Any]) -> _LofScorer:
        return _LofScorer(state)


class _LofScorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        n = np.asarray(state["X_train"]).shape[0]
        self._kdist = np.asarray(state["k_distance"], dtype=np.float64)
        self._lrd = np.asarray(state["lrd"], dtype=np.float64)
        if self._kdist.shape != (n,) or self._lrd.shape != (n,):
            raise ValueError("lof state: k_distance and lrd must have one value per row")
        self._nn = _Neighbours(state["X_train"], state["n_neighbors"], state["p"])
        self.n_features = self._nn.n_features
        self._n = n

    def score(self, X: np.ndarray) -> np.ndarray:
        # LocalOutlierFactor.score_samples, negated as PyOD's decision_function does.
        dist, idx = self._nn.query(X)
        if idx.max() >= self._n:
            # Distances that overflow float64 (a row near 1e154 or beyond) come back from the
            # tree as no neighbour: index n, distance inf. Any row's k-distance then gives
            # reach inf, and the score is inf, as PyOD's.
            with np.errstate(divide="ignore"):
                return self._score(dist, np.minimum(idx, self._n - 1))
        return self._score(dist, idx)

    def _score(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        reach = np.maximum(dist, self._kdist[idx])
        X_lrd = 1.0 / (np.mean(reach, axis=1) + 1e-10)
        ratios = self._lrd[idx] / X_lrd[:, np.newaxis]
        return -1 * -np.mean(ratios, axis=1)


register(KNN())
register(LOF())
