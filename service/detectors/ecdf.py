"""``ecod`` and ``copod``: PyOD's empirical-CDF detectors, scored one row at a time.

PyOD scores new rows by refitting its empirical distributions on the training rows plus the
*whole batch*, so a row's score depends on its batch-mates. Vigil's reference is PyOD's
``decision_function`` called on each row alone (training rows plus that one row), whatever
batch the row came in. That is computed here without refitting:

* the ECDF of ``train + row`` at the row's value is PyOD's ``np.linspace(1/N, 1, N)`` at the
  index given by the number of training values ``<=`` (left tail) or ``>=`` (right tail) the
  row's value plus one (ties take the last position of their run, as PyOD's
  ``ecdf_terminate_equals_inplace``); counts come from ``searchsorted`` on sorted columns;
* the sign of the skewness of each column of ``train + row`` (scipy's ``skew``, NaN for a
  constant column, then ``nan_to_num``) comes from shifted power sums of the training column
  updated with the row. When the sign is not certain from a rounding-error bound, the row's
  skewness is recomputed with scipy's exact arithmetic on the stacked matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit
from service.detectors.table import register

_EPS = float(np.finfo(np.float64).eps)


def _skew_sign_exact(A: np.ndarray) -> np.ndarray:
    """``np.sign(np.nan_to_num(scipy.stats.skew(A, axis=0)))`` with scipy's arithmetic."""
    mean = np.mean(A, axis=0, keepdims=True)
    dz = A - mean
    m2 = np.mean(dz**2, axis=0)
    s = dz**2
    s *= dz
    m3 = np.mean(s, axis=0)
    with np.errstate(all="ignore"):
        zero = m2 <= (_EPS * mean[0]) ** 2
        vals = np.where(zero, np.nan, m3 / m2**1.5)
    return np.sign(np.nan_to_num(vals))


class _EcdfScorer:
    """Per-row ECOD/COPOD scores against fixed training rows (see the module docstring)."""

    def __init__(self, X_train: np.ndarray, copod: bool) -> None:
        T = np.ascontiguousarray(X_train, dtype=np.float64)
        if T.ndim != 2 or T.shape[0] < 1:
            raise ValueError("ecdf state: X_train must be a non-empty 2-D array")
        self._T = T
        self._copod = copod
        n, d = T.shape
        self.n_features = d
        self._n = n
        N = n + 1
        # PyOD: np.linspace(np.ones(d) / N, np.ones(d), N); every column is the same.
        self._probs = np.ascontiguousarray(np.linspace(np.ones(1) / N, np.ones(1), N)[:, 0])
        self._sorted_T = np.ascontiguousarray(np.sort(T, axis=0).T)  # (d, n)
        mu = T.mean(axis=0)
        D = T - mu
        self._mu = mu
        self._S1 = D.sum(axis=0)
        self._S2 = (D**2).sum(axis=0)
        self._S3 = (D**3).sum(axis=0)
        self._A3 = (np.abs(D) ** 3).sum(axis=0)
        self._spread = np.abs(mu) + np.abs(D).max(axis=0)
        self._tol = 16.0 * N * _EPS

    def _counts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (row, column): training values <= x and training values >= x."""
        m, d = X.shape
        if m * self._n * d <= 32768:  # small batches: one comparison pass beats d calls
            S = self._sorted_T[None, :, :]
            x = X[:, :, None]
            return (x >= S).sum(axis=2), (x <= S).sum(axis=2)
        le = np.empty((m, d), dtype=np.intp)
        lt = np.empty((m, d), dtype=np.intp)
        for j in range(d):
            col = self._sorted_T[j]
            le[:, j] = np.searchsorted(col, X[:, j], side="right")
            lt[:, j] = np.searchsorted(col, X[:, j], side="left")
        return le, self._n - lt

    def _skew_sign(self, X: np.ndarray) -> np.ndarray:
        """Sign of the skewness of each column of ``train + row``, per row: (m, d)."""
        N = self._n + 1
        e = X - self._mu
        delta = (self._S1 + e) / N
        e2 = e * e
        s2 = self._S2 + e2
        nd2 = N * delta * delta
        M2 = s2 - nd2
        M3 = (self._S3 + e2 * e) - 3.0 * delta * s2 + 2.0 * nd2 * delta
        # Generous rounding-error bounds of our M3/M2 and of scipy's, which also suffers from
        # the error of its mean (~ N * eps * |values|).
        absd = np.abs(delta)
        abse = np.abs(e)
        scale = self._spread + abse
        big = s2 + nd2
        tol = self._tol
        bound3 = tol * (
            self._A3 + e2 * abse + 3.0 * absd * s2 + 2.0 * nd2 * absd + 3.0 * big * scale
        )
        mean = self._mu + delta
        zero_line = 5.0 * N * (_EPS * mean) ** 2 + tol * big + (tol * scale) ** 2
        sure = (np.abs(M3) > bound3) & (zero_line < M2)
        sign = np.sign(M3)
        if not sure.all():
            for r in np.flatnonzero(~sure.all(axis=1)):
                sign[r] = _skew_sign_exact(np.vstack([self._T, X[r : r + 1]]))
        return sign

    def score(self, X: np.ndarray) -> np.ndarray:
        le, ge = self._counts(X)
        probs = self._probs
        # -1 * np.log(column_ecdf(X)) and of -X, as PyOD writes it.
        U_l = -1 * np.log(probs[le])  # index (count + 1) - 1
        U_r = -1 * np.log(probs[ge])
        skewness = self._skew_sign(X)
        U_skew = U_l * -1 * np.sign(skewness - 1) + U_r * np.sign(skewness + 1)
        if self._copod:
            out = np.maximum(U_skew, np.add(U_l, U_r) / 2)
        else:
            out = np.maximum(U_l, U_r)
            out = np.maximum(U_skew, out)
        return out.sum(axis=1)


class _EcdfKind(DetectorKind):
    copod = False

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        if self.copod:
            from pyod.models.copod import COPOD as Model
        else:
            from pyod.models.ecod import ECOD as Model
        det = Model(contamination=params["contamination"]).fit(X)
        return Fit(
            state={"X_train": np.array(X, dtype=np.float64)},
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    rows_independent = True  # each row is scored as if alone, against the training rows

    def scorer(self, state: Mapping[str, Any]) -> _EcdfScorer:
        return _EcdfScorer(state["X_train"], copod=self.copod)


class ECOD(_EcdfKind):
    name = "ecod"
    summary = "ECOD (PyOD): empirical-CDF tail probabilities, parameter-free"


class COPOD(_EcdfKind):
    name = "copod"
    summary = "COPOD (PyOD): copula-based tail probabilities, parameter-free"
    copod = True


register(ECOD())
register(COPOD())
