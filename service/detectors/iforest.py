"""``iforest``: today's IsolationForest and its compiled exact scorer, as a kind.

Training is scikit-learn's ``IsolationForest`` built as ``service.training.trainer.train``
builds it; serving is ``service.detectors.compiled_forest.CompiledForest`` (bit-identical to
``score_samples``). The raw score is the paper's s(x) = ``-score_samples(x)``, as the service
answers today, and the threshold is ``-offset_``, so ``score > threshold`` is exactly
``predict(x) == -1``. Defaults are Vigil's ``TrainingParams`` (contamination 0.02), not PyOD's.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from service.detectors.base import DetectorKind, Fit, FitError, Param, boolean, integer, number
from service.detectors.compiled_forest import CompiledForest
from service.detectors.table import register


def _max_samples(raw: Any) -> int | float | str:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, int) and not isinstance(raw, bool):
        return integer(1)(raw)
    try:
        return number(0.0, 1.0, low_open=True)(raw)
    except ValueError:
        raise ValueError("must be 'auto', an integer >= 1 or a fraction in (0, 1]") from None


def _max_features(raw: Any) -> int | float:
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, int) and not isinstance(raw, bool):
        return integer(1)(raw)
    try:
        return number(0.0, 1.0, low_open=True)(raw)
    except ValueError:
        raise ValueError("must be an integer >= 1 or a fraction in (0, 1]") from None


def _defaults() -> dict[str, Any]:
    from service.training.trainer import TrainingParams

    return {f.name: f.default for f in fields(TrainingParams)}


class IForest(DetectorKind):
    name = "iforest"
    summary = "IsolationForest (scikit-learn), served by the compiled exact forest"
    rows_independent = True  # each row walks the trees alone; per-row sums in tree order

    # Parameters and defaults come from service.training.trainer.TrainingParams, which imports
    # scikit-learn: built on first use so that loading a fitted forest does not import it.
    @functools.cached_property
    def params(self) -> tuple[Param, ...]:  # type: ignore[override]
        d = _defaults()
        return (
            Param("n_estimators", d["n_estimators"], integer(1, 100_000), "number of trees"),
            Param("max_samples", d["max_samples"], _max_samples, "rows drawn per tree"),
            Param("max_features", d["max_features"], _max_features, "features drawn per tree"),
            Param("bootstrap", d["bootstrap"], boolean(), "draw rows with replacement"),
        )

    @functools.cached_property
    def default_contamination(self) -> float:  # type: ignore[override]
        return float(_defaults()["contamination"])

    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        from sklearn.ensemble import IsolationForest

        from service.training.trainer import TrainingParams

        tp = TrainingParams(**dict(params), random_state=seed)
        try:
            tp.validate()
        except ValueError as exc:
            raise FitError(f"iforest: {exc}") from None
        if isinstance(tp.max_features, int) and tp.max_features > X.shape[1]:
            raise FitError(
                f"iforest: max_features ({tp.max_features}) is more than the {X.shape[1]} features"
            )
        est = IsolationForest(
            n_estimators=tp.n_estimators,
            max_samples=tp.max_samples,
            contamination=tp.contamination,
            max_features=tp.max_features,
            bootstrap=tp.bootstrap,
            random_state=tp.random_state,
            n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # max_samples > n_samples: clipped
            est.fit(X)
        forest = CompiledForest.from_estimator(est)
        raw = est.score_samples(X)
        if not np.array_equal(forest.score_samples(X), raw):
            raise RuntimeError("the compiled forest disagrees with scikit-learn on training data")
        state = forest.to_state()
        return Fit(
            state=state,
            training_scores=-raw,
            threshold=float(-est.offset_),
            info={"max_samples_effective": int(est.max_samples_)},
        )

    def scorer(self, state: Mapping[str, Any]) -> _Scorer:
        return _Scorer(CompiledForest.from_state(dict(state)))


class _Scorer:
    def __init__(self, forest: CompiledForest) -> None:
        self.forest = forest
        self.n_features = forest.n_features

    def score(self, X: np.ndarray) -> np.ndarray:
        return -self.forest.score_samples(X)


register(IForest())
