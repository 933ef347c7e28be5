"""Fit any kind by name, and load a fitted one for serving: the package's front door.

    params = resolve_params("lof", ["n_neighbors=10", "scaler=standard"])   # CLI strings
    params = resolve_params("lof", {"n_neighbors": 10})                      # JSON values
    state = fit("lof", X, params, seed=42)        # plain data, for the artifact
    detector = load(state)                        # no PyOD needed
    scores = detector.score(X_raw)                # raw client values; higher = more anomalous
    detector.is_anomaly(scores), detector.percentile(scores)

Every kind takes the common parameters ``contamination``, ``scaler`` and ``max_train_rows``
besides its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.detectors import table
from service.detectors.base import (
    DetectorKind,
    FitError,
    Param,
    ParamError,
    Scorer,
    choice,
    integer,
    number,
    optional,
)
from service.detectors.calibration import Calibration
from service.detectors.scalers import SCALERS, Scaler, fit_scaler

__all__ = [
    "STATE_FORMAT",
    "Detector",
    "common_params",
    "fit",
    "load",
    "param_specs",
    "parse_assignments",
    "resolve_params",
]

STATE_FORMAT = 1
MIN_TRAINING_ROWS = 10  # the same floor as service.training.trainer.MIN_TRAINING_ROWS


def common_params(kind: DetectorKind) -> tuple[Param, ...]:
    """The parameters every kind takes; defaults are the kind's."""
    return (
        Param(
            "contamination",
            kind.default_contamination,
            number(0.0, 0.5, low_open=True),
            "expected share of anomalies: the threshold is that quantile of training scores",
        ),
        Param(
            "scaler",
            "none",
            choice(*SCALERS),
            "fitted on the training rows and applied to every scored row",
        ),
        Param(
            "max_train_rows",
            kind.default_max_train_rows,
            optional(integer(MIN_TRAINING_ROWS)),
            "fit on a seeded random subsample of at most this many rows (none: all rows)",
        ),
    )


def param_specs(kind: DetectorKind) -> dict[str, Param]:
    """Every parameter ``kind`` accepts, its own first, by name."""
    return {p.name: p for p in (*kind.params, *common_params(kind))}


def parse_assignments(kind: str, assignments: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` (as ``--param`` gives them) to a dict; a repeated name is an error."""
    out: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(kind, name or item, f"parameter {item!r} must be written name=value")
        if name in out:
            raise ParamError(kind, name, f"parameter {name!r} is given twice")
        out[name] = value.strip()
    return out


def resolve_params(kind_name: str, given: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
    """Validate ``given`` (a mapping of JSON values, or ``k=v`` strings) and fill defaults.

    Raises :class:`ParamError` naming the kind and the parameter, or
    :class:`~service.detectors.table.UnknownKindError`.
    """
    kind = table.get(kind_name)
    if not isinstance(given, Mapping):
        given = parse_assignments(kind_name, given)
    specs = param_specs(kind)
    for name in given:
        if name not in specs:
            known = ", ".join(specs)
            raise ParamError(kind_name, str(name), f"unknown parameter {name!r} (known: {known})")
    return {
        name: spec.value(kind_name, given[name]) if name in given else spec.default
        for name, spec in specs.items()
    }


def fit(
    kind_name: str,
    X: np.ndarray,
    params: Mapping[str, Any] | Iterable[str] = (),
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit kind ``kind_name`` on ``X`` (finite float64, rows x features); return its state.

    The state holds the kind, the resolved parameters, the scaler, the kind's own state and the
    calibration (threshold, training-score quantiles); ``load`` turns it into a scorer.
    ``progress`` (e.g. ``print``) is told what is being fitted on how many rows, and when done.
    """
    say = progress or (lambda _message: None)
    kind = table.get(kind_name)
    params = resolve_params(kind_name, params)
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 1:
        raise FitError(f"{kind_name}: training data must be a 2-D array, got shape {X.shape}")
    if X.shape[0] < MIN_TRAINING_ROWS:
        raise FitError(
            f"{kind_name}: {X.shape[0]} training rows; at least {MIN_TRAINING_ROWS} are needed"
        )
    if not np.isfinite(X).all():
        raise FitError(f"{kind_name}: training data has NaN or infinite values")
    n_rows = X.shape[0]
    limit = params["max_train_rows"]
    if limit is not None and n_rows > limit:
        rows = np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))
        X = X[rows]
        say(f"{kind_name}: fitting on a random subsample of {limit} of {n_rows} rows "
            f"(max_train_rows={limit})")  # fmt: skip
    scaler = fit_scaler(params["scaler"], X)
    Xs = np.ascontiguousarray(scaler.transform(X))
    own = {p.name: params[p.name] for p in kind.params}
    own["contamination"] = params["contamination"]
    say(f"{kind_name}: fitting {X.shape[0]} rows x {X.shape[1]} features")
    started = time.perf_counter()
    result = kind.fit(Xs, own, seed)
    fit_seconds = time.perf_counter() - started
    if not np.isfinite(result.training_scores).all() or not np.isfinite(result.threshold):
        raise FitError(
            f"{kind_name}: the fitted detector gives non-finite scores on the training data "
            "(are all features constant?)"
        )
    say(f"{kind_name}: fitted in {fit_seconds:.2f} s")
    calibration = Calibration.from_training(result.training_scores, result.threshold)
    return {
        "format": STATE_FORMAT,
        "kind": kind_name,
        "params": params,
        "seed": int(seed),
        "n_features": int(X.shape[1]),
        "n_training_rows": int(n_rows),
        "n_rows_fitted": int(X.shape[0]),
        "fit_seconds": fit_seconds,
        "scaler": scaler.to_state(),
        "detector": result.state,
        "calibration": calibration.to_state(),
        "training_anomaly_ratio": float(calibration.is_anomaly(result.training_scores).mean()),
        "info": result.info,
    }


@dataclass(frozen=True)
class Detector:
    """A loaded, fitted detector: raw client rows in, raw scores, flags and percentiles out."""

    kind: str
    n_features: int
    params: dict[str, Any]
    scaler: Scaler
    scorer: Scorer
    calibration: Calibration

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @property
    def rows_independent(self) -> bool:
        """Whether a row's score in a batch equals its score alone (``DetectorKind``)."""
        return table.get(self.kind).rows_independent

    def score(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (higher is more anomalous) of finite float64 rows ``X`` (n, d)."""
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must be 2-D with {self.n_features} columns, got {X.shape}")
        return self.scorer.score(self.scaler.transform(X))

    def is_anomaly(self, scores: np.ndarray) -> np.ndarray:
        return self.calibration.is_anomaly(scores)

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        return self.calibration.percentile(scores)


def load(state: Mapping[str, Any]) -> Detector:
    """Rebuild a :class:`Detector` from :func:`fit`'s state (needs numpy and scipy only)."""
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"detector state format {state.get('format')!r} is not {STATE_FORMAT}")
    kind = table.get(state["kind"])
    scorer = kind.scorer(state["detector"])
    if scorer.n_features != state["n_features"]:
        raise ValueError("detector state: the scorer's feature count disagrees with the state")
    return Detector(
        kind=state["kind"],
        n_features=int(state["n_features"]),
        params=dict(state["params"]),
        scaler=Scaler.from_state(state["scaler"]),
        scorer=scorer,
        calibration=Calibration.from_state(state["calibration"]),
    )
