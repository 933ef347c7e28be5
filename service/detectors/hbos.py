"""``hbos``: PyOD's histogram-based outlier score.

Per feature, ``log2(density + alpha)`` of the bin a value falls in (``np.digitize(...,
right=True)``), summed and negated. Values outside the training range get the edge bin's
score when within ``tol`` bin widths of the edge, else the feature's lowest score, exactly as
PyOD's ``_calculate_outlier_scores``. Edges are padded with +inf so features with different
bin counts (``n_bins=auto``) share one array.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, Param, integer, number
from service.detectors.table import register


def _n_bins(raw: Any) -> int | str:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        return integer(3, 100_000)(raw)  # PyOD: n_bins > 2
    except ValueError:
        raise ValueError("must be 'auto' or an integer in [3, 100000]") from None


class HBOS(DetectorKind):
    name = "hbos"
    summary = "HBOS (PyOD): per-feature histograms"
    rows_independent = True  # per-row bin lookups, summed along the row
    params = (
        Param("n_bins", 10, _n_bins, "bins per feature, or auto (Birge-Rozenblac)"),
        Param(
            "alpha",
            0.1,
            number(0.0, 1.0, low_open=True, high_open=True),
            "regulariser added to each bin's density",
        ),
        Param(
            "tol",
            0.5,
            number(0.0, 1.0, low_open=True, high_open=True),
            "how far (in bin widths) past an edge keeps it",
        ),
    )

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from pyod.models.hbos import HBOS as Model

        det = Model(
            n_bins=params["n_bins"],
            alpha=params["alpha"],
            tol=params["tol"],
            contamination=params["contamination"],
        ).fit(X)
        d = X.shape[1]
        if params["n_bins"] == "auto":
            hists = [np.asarray(h, dtype=np.float64) for h in det.hist_]
            edges = [np.asarray(e, dtype=np.float64) for e in det.bin_edges_]
        else:
            hists = [det.hist_[:, i] for i in range(d)]
            edges = [det.bin_edges_[:, i] for i in range(d)]
        n_bins = np.array([h.shape[0] for h in hists], dtype=np.intp)
        width = int(n_bins.max())
        hist = np.zeros((width, d))
        bin_edges = np.full((width + 1, d), np.inf)
        for i in range(d):
            hist[: n_bins[i], i] = hists[i]
            bin_edges[: n_bins[i] + 1, i] = edges[i]
        return Fit(
            state={
                "hist": hist,
                "bin_edges": bin_edges,
                "n_bins": n_bins,
                "alpha": float(params["alpha"]),
                "tol": float(params["tol"]),
            },
            training_scores=np.asarray(det.decision_scores_, dtype=np.float64),
            threshold=float(det.threshold_),
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(state)


class _Scorer:
    def __init__(self, state: Mapping[str, Any]) -> None:
        hist = np.asarray(state["hist"], dtype=np.float64)
        edges = np.asarray(state["bin_edges"], dtype=np.float64)
        nb = np.asarray(state["n_bins"], dtype=np.intp)
        width, d = hist.shape
        if edges.shape != (width + 1, d) or nb.shape != (d,) or nb.min() < 1 or nb.max() > width:
            raise ValueError("hbos state: inconsistent shapes")
        self.n_features = d
        cols = np.arange(d)
        out = np.log2(hist + state["alpha"])  # (width, d)
        valid = np.arange(width)[:, None] < nb[None, :]
        self._edges = np.ascontiguousarray(edges)  # padded with +inf
        self._edges_t = np.ascontiguousarray(edges.T)
        self._nb = nb
        self._flat = np.ascontiguousarray(out.T).ravel()  # feature-major: j * width + bin
        self._base = cols * width
        self._min = np.where(valid, out, np.inf).min(axis=0)
        self._first = out[0]
        self._last = out[nb - 1, cols]
        self._e0 = edges[0]
        self._low_tol = (edges[1] - edges[0]) * state["tol"]
        self._e_last = edges[nb, cols]
        self._high_tol = (edges[nb, cols] - edges[nb - 1, cols]) * state["tol"]
        self._broadcast_rows = max(1, 8192 // (width + 1))

    def _bin_index(self, X: np.ndarray) -> np.ndarray:
        """``np.digitize(x, edges, right=True)`` per feature: the number of edges < x."""
        if X.shape[0] <= self._broadcast_rows:
            return (self._edges[None, :, :] < X[:, None, :]).sum(axis=1)
        idx = np.empty(X.shape, dtype=np.intp)
        for j in range(self.n_features):
            idx[:, j] = np.searchsorted(self._edges_t[j], X[:, j], side="left")
        return idx

    def score(self, X: np.ndarray) -> np.ndarray:
        idx = self._bin_index(X)
        inside = self._flat[self._base + np.clip(idx - 1, 0, self._nb - 1)]
        low = np.where(self._e0 - X <= self._low_tol, self._first, self._min)
        high = np.where(X - self._e_last <= self._high_tol, self._last, self._min)
        scores = np.where(idx == 0, low, np.where(idx == self._nb + 1, high, inside))
        return -1 * np.sum(scores, axis=1)


register(HBOS())
