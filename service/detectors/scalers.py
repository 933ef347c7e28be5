"""The common ``scaler`` parameter: fitted on the training rows, stored as arrays, applied to
raw client values before a kind scores them.

The arithmetic is scikit-learn's ``transform`` for each scaler (same operations, same order),
so a model trained with ``scaler=standard`` scores exactly like PyOD fitted on
``StandardScaler().fit_transform(train)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SCALERS", "Scaler", "fit_scaler"]

SCALERS = ("none", "standard", "minmax", "robust")


class Scaler:
    """``none``: identity; ``standard``/``robust``: ``(X - a) / b``; ``minmax``: ``X * a + b``."""

    def __init__(self, name: str, a: np.ndarray | None = None, b: np.ndarray | None = None):
        if name not in SCALERS:
            raise ValueError(f"unknown scaler {name!r}")
        if name != "none" and (a is None or b is None or a.shape != b.shape or a.ndim != 1):
            raise ValueError(f"scaler {name!r} needs two 1-D arrays of the same length")
        self.name = name
        self._a = None if a is None else np.array(a, dtype=np.float64)
        self._b = None if b is None else np.array(b, dtype=np.float64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.name == "none":
            return X
        if self.name == "minmax":  # MinMaxScaler: X *= scale_; X += min_
            return X * self._a + self._b
        return (X - self._a) / self._b  # StandardScaler / RobustScaler: X -= c; X /= s

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "a": self._a, "b": self._b}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Scaler:
        return cls(state["name"], state.get("a"), state.get("b"))


def fit_scaler(name: str, X: np.ndarray) -> Scaler:
    """Fit the scikit-learn scaler called ``name`` on ``X`` and keep its arrays."""
    if name == "none":
        return Scaler("none")
    from sklearn import preprocessing

    if name == "standard":
        est = preprocessing.StandardScaler().fit(X)
        return Scaler(name, est.mean_, est.scale_)
    if name == "minmax":
        est = preprocessing.MinMaxScaler().fit(X)
        return Scaler(name, est.scale_, est.min_)
    if name == "robust":
        est = preprocessing.RobustScaler().fit(X)
        return Scaler(name, est.center_, est.scale_)
    raise ValueError(f"unknown scaler {name!r}")
