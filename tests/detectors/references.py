"""The library reference for each kind: the same detector, fitted by the library itself on the
same rows with the same parameters, and its scores for query rows.

``reference(kind, X, params, seed)`` returns ``(scores_of(Q), threshold)``. With a scaler the
library is fitted on ``scaler.fit_transform(X)`` and scores ``scaler.transform(Q)`` (what a
user would do by hand). ECOD and COPOD are scored one row at a time (Vigil's documented
reference: PyOD's ``decision_function`` of that row alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from pyod.models.cblof import CBLOF
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.knn import KNN
from pyod.models.lof import LOF
from pyod.models.mcd import MCD
from pyod.models.ocsvm import OCSVM
from pyod.models.pca import PCA
from sklearn import preprocessing
from sklearn.ensemble import IsolationForest
from sklearn.neural_network import MLPRegressor

from service.detectors.autoencoder import auto_layers

Scores = Callable[[np.ndarray], np.ndarray]

_SCALERS = {
    "standard": preprocessing.StandardScaler,
    "minmax": preprocessing.MinMaxScaler,
    "robust": preprocessing.RobustScaler,
}


def _pyod(kind: str, p: dict[str, Any], seed: int):
    c = p["contamination"]
    if kind == "ecod":
        return ECOD(contamination=c)
    if kind == "copod":
        return COPOD(contamination=c)
    if kind == "hbos":
        return HBOS(n_bins=p["n_bins"], alpha=p["alpha"], tol=p["tol"], contamination=c)
    if kind == "knn":
        return KNN(
            contamination=c,
            n_neighbors=p["n_neighbors"],
            method=p["method"],
            algorithm="ball_tree",
            p=p["p"],
        )
    if kind == "lof":
        return LOF(n_neighbors=p["n_neighbors"], algorithm="ball_tree", p=p["p"], contamination=c)
    if kind == "pca":
        return PCA(
            n_components=p["n_components"],
            n_selected_components=p["n_selected_components"],
            weighted=p["weighted"],
            standardization=p["standardization"],
            contamination=c,
            random_state=seed,
        )
    if kind == "ocsvm":
        return OCSVM(
            kernel=p["kernel"],
            nu=p["nu"],
            gamma=p["gamma"],
            degree=p["degree"],
            coef0=p["coef0"],
            tol=p["tol"],
            max_iter=p["max_iter"],
            contamination=c,
        )
    if kind == "mcd":
        return MCD(
            contamination=c,
            support_fraction=p["support_fraction"],
            assume_centered=p["assume_centered"],
            random_state=seed,
        )
    if kind == "cblof":
        return CBLOF(
            n_clusters=p["n_clusters"],
            alpha=p["alpha"],
            beta=p["beta"],
            use_weights=p["use_weights"],
            contamination=c,
            random_state=seed,
        )
    raise KeyError(kind)


def reference(kind: str, X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Scores, float]:
    """The library's scorer for raw query rows, and its threshold."""
    transform: Callable[[np.ndarray], np.ndarray] = lambda A: A  # noqa: E731
    if params["scaler"] != "none":
        scaler = _SCALERS[params["scaler"]]().fit(X)
        transform = scaler.transform
    Xs = transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "iforest":
            est = IsolationForest(
                n_estimators=params["n_estimators"],
                max_samples=params["max_samples"],
                contamination=params["contamination"],
                max_features=params["max_features"],
                bootstrap=params["bootstrap"],
                random_state=seed,
                n_jobs=1,
            ).fit(Xs)
            return (lambda Q: -est.score_samples(transform(Q))), float(-est.offset_)
        if kind == "autoencoder":
            return _autoencoder(Xs, params, seed, transform)
        det = _pyod(kind, params, seed).fit(Xs)
    if kind in ("ecod", "copod"):

        def per_row(Q: np.ndarray) -> np.ndarray:
            Qs = transform(Q)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.array([det.decision_function(Qs[i : i + 1])[0] for i in range(len(Q))])

        return per_row, float(det.threshold_)
    return (lambda Q: det.decision_function(transform(Q))), float(det.threshold_)


def _autoencoder(Xs, params, seed, transform) -> tuple[Scores, float]:
    layers = params["hidden_layer_sizes"]
    if layers == "auto":
        layers = auto_layers(Xs.shape[1])
    std = preprocessing.StandardScaler().fit(Xs)
    Z = std.transform(Xs)
    mlp = MLPRegressor(
        hidden_layer_sizes=layers,
        activation=params["activation"],
        alpha=params["alpha"],
        learning_rate_init=params["learning_rate_init"],
        max_iter=params["max_iter"],
        batch_size=min(params["batch_size"], Xs.shape[0]),
        random_state=seed,
    ).fit(Z, Z)

    def scores(Q: np.ndarray) -> np.ndarray:
        Zq = std.transform(transform(Q))
        return ((Zq - mlp.predict(Zq).reshape(Zq.shape)) ** 2).sum(axis=1)

    z_train = ((Z - mlp.predict(Z).reshape(Z.shape)) ** 2).sum(axis=1)
    threshold = float(np.percentile(z_train, 100 * (1 - params["contamination"])))
    return scores, threshold
