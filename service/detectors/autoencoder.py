"""``autoencoder``: a reconstruction-error autoencoder on scikit-learn's ``MLPRegressor``.

No deep-learning framework: an MLP is trained (seeded, so deterministic) to reconstruct its
input after standardization (``StandardScaler``), through a narrow middle layer. The score is
the squared reconstruction error in standardized units, ``((z - predict(z)) ** 2).sum(axis=1)``;
serving replays ``MLPRegressor``'s forward pass in numpy (same operations, same order).
The threshold follows PyOD's rule on the training rows' scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import (
    DetectorKind,
    Fit,
    Param,
    choice,
    integer,
    integer_list,
    number,
    pyod_threshold,
)
from service.detectors.table import register

_ACTIVATIONS = ("tanh", "relu", "logistic", "identity")


def _hidden(raw: Any) -> tuple[int, ...] | str:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        return integer_list(1)(raw)
    except ValueError:
        raise ValueError("must be 'auto' or a list of layer widths such as 32,4,32") from None


def auto_layers(n_features: int) -> tuple[int, ...]:
    """``hidden_layer_sizes=auto``: wide, a bottleneck of half the features, wide."""
    wide = max(8, 2 * n_features)
    return (wide, max(1, n_features // 2), wide)


class AutoEncoder(DetectorKind):
    name = "autoencoder"
    summary = "Autoencoder (scikit-learn MLPRegressor): squared reconstruction error"
    params = (
        Param("hidden_layer_sizes", "auto", _hidden, "layer widths, or auto (see docs)"),
        Param("activation", "tanh", choice(*_ACTIVATIONS), "hidden-layer activation"),
        Param("alpha", 1e-4, number(0.0), "L2 penalty"),
        Param("learning_rate_init", 1e-3, number(0.0, low_open=True), "Adam step size"),
        Param("max_iter", 200, integer(1, 100_000), "training epochs"),
        Param("batch_size", 200, integer(1), "minibatch rows"),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
        from sklearn.preprocessing import StandardScaler

        layers = params["hidden_layer_sizes"]
        if layers == "auto":
            layers = auto_layers(X.shape[1])
        scaler = StandardScaler().fit(X)
        Z = scaler.transform(X)
        mlp = MLPRegressor(
            hidden_layer_sizes=layers,
            activation=params["activation"],
            alpha=params["alpha"],
            learning_rate_init=params["learning_rate_init"],
            max_iter=params["max_iter"],
            batch_size=min(params["batch_size"], X.shape[0]),
            random_state=seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            mlp.fit(Z, Z)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        recon = mlp.predict(Z).reshape(Z.shape)
        scores = ((Z - recon) ** 2).sum(axis=1)
        state: dict[str, Any] = {
            "mean": np.array(scaler.mean_),
            "scale": np.array(scaler.scale_),
            "activation": params["activation"],
            "n_layers": len(mlp.coefs_),
        }
        for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
            state[f"W{i}"] = np.array(W, dtype=np.float64)
            state[f"b{i}"] = np.array(b, dtype=np.float64)
        return Fit(
            state=state,
            training_scores=scores,
            threshold=pyod_threshold(scores, params["contamination"]),
            info={
                "hidden_layer_sizes": list(layers),
                "converged": converged,
                "n_iter": int(mlp.n_iter_),
                "loss": float(mlp.loss_),
            },
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        n_layers = int(state["n_layers"])
        self._W = [np.asarray(state[f"W{i}"], dtype=np.float64) for i in range(n_layers)]
        self._b = [np.asarray(state[f"b{i}"], dtype=np.float64) for i in range(n_layers)]
        self._mean = np.asarray(state["mean"], dtype=np.float64)
        self._scale = np.asarray(state["scale"], dtype=np.float64)
        d = self._mean.shape[0]
        shapes_ok = self._W[0].shape[0] == d and self._W[-1].shape[1] == d
        for W, b in zip(self._W, self._b, strict=True):
            shapes_ok = shapes_ok and W.ndim == 2 and b.shape == (W.shape[1],)
        for W, W_next in zip(self._W, self._W[1:], strict=False):
            shapes_ok = shapes_ok and W.shape[1] == W_next.shape[0]
        if not shapes_ok or self._scale.shape != (d,):
            raise ValueError("autoencoder state: layer shapes do not chain")
        if state["activation"] not in _ACTIVATIONS:
            raise ValueError("autoencoder state: unknown activation")
        self._activation = state["activation"]
        self.n_features = d

    def _hidden(self, a: np.ndarray) -> None:
        if self._activation == "tanh":
            np.tanh(a, out=a)
        elif self._activation == "relu":
            np.maximum(a, 0, out=a)
        elif self._activation == "logistic":
            from scipy.special import expit

            expit(a, out=a)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """``MLPRegressor._forward_pass_fast``: ``a = a @ W; a += b``; activation between."""
        a = Z
        last = len(self._W) - 1
        for i, (W, b) in enumerate(zip(self._W, self._b, strict=True)):
            a = a @ W
            a += b
            if i != last:
                self._hidden(a)
        return a

    def score(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self._mean) / self._scale
        return ((Z - self.predict(Z)) ** 2).sum(axis=1)


register(AutoEncoder())
