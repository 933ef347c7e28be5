"""The data plane: which model answers, score its rows, record its metrics, shape results.

Transport-free: routes of every protocol (Vigil's JSON, V2, KServe V1) resolve a model here
and score through here, so they answer alike and count alike. No FastAPI here.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
import numpy as np

from service.models.loaded import Model, Scores
from service.models.store import Catalog, ModelNotFound, ModelStore
from service.serving import telemetry
from service.serving.row_batcher import RowBatcher


class NotReady(Exception):
    """No model can answer (503); ``reason`` says why, naming files by base name only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def default_model(store: ModelStore) -> Model:
    """The model the unnamed routes serve, or :class:`NotReady`."""
    catalog = store.catalog
    model = catalog.default
    if model is None:
        raise NotReady(f"no model loaded: {catalog.not_ready_reason()}")
    return model


def resolve(
    catalog: Catalog, name: str, version: str | int | None = None, alias: str | None = None
) -> Model:
    """Model ``name`` at ``version``, at ``alias``, or at its default alias.

    :class:`ModelNotFound` (404) for an unknown name, version or alias; :class:`NotReady` (503)
    for a known model whose default version did not load.
    """
    entry = catalog.model(name)
    if version is not None:
        return entry.version(version)
    if alias is not None:
        return entry.alias(alias)
    model = entry.default
    if model is None:
        raise NotReady(f"model {name!r} is not ready: {entry.error or 'no default version'}")
    return model


def _timed_score(model: Model, X: np.ndarray) -> tuple[Scores, float]:
    start = time.perf_counter()
    scores = model.score(X)
    return scores, time.perf_counter() - start


async def score_row(
    model: Model, X: np.ndarray, endpoint: str = "prediction"
) -> tuple[bool, float]:
    """Score the one row of ``X`` on the event loop (microseconds) and count it.

    A kind whose rows score alike alone and in a batch scores it in one call with the other
    one-row requests of this turn of the event loop (:mod:`service.serving.row_batcher`).
    Returns ``(is_anomaly, anomaly_score)`` as Python values.
    """
    batcher = model.row_batcher
    if batcher is None and model.rows_independent:
        batcher = model.row_batcher = RowBatcher(model)
    if batcher is not None:
        anomaly, score = await batcher.score(X, endpoint)  # counted by the batcher
    else:
        start = time.perf_counter()
        anomaly, score = model.score_one(X)
        seconds = time.perf_counter() - start
        telemetry.record_row(
            model.metrics, endpoint, X, score, anomaly, model.percentile_one(score), seconds
        )
    if anomaly and model.anomaly_hook is not None:
        model.anomaly_hook(model.name, X.tolist(), 1)
    return anomaly, score


async def score(model: Model, X: np.ndarray, *, endpoint: str, inline_rows: int) -> Scores:
    """Score ``X`` with ``model`` and count it in the model metrics.

    Small inputs take microseconds and run on the event loop; anything larger runs in a
    worker thread so a big batch never blocks the event loop.
    """
    if X.shape[0] <= inline_rows:
        scores, seconds = _timed_score(model, X)
    else:
        scores, seconds = await anyio.to_thread.run_sync(_timed_score, model, X)
    n_anomalies = int(np.count_nonzero(scores.is_anomaly))
    telemetry.record_scores(
        model.metrics,
        endpoint,
        X,
        scores.anomaly_score,
        model.percentile(scores.anomaly_score),
        n_anomalies,
        seconds,
    )
    if n_anomalies and model.anomaly_hook is not None:
        model.anomaly_hook(model.name, X[scores.is_anomaly][:5].tolist(), n_anomalies)
    return scores


def _names(model: Model) -> dict[str, Any]:
    return {
        "model": model.name,
        "version": model.number,
        "model_version": model.version,
        "kind": model.kind,
    }


def single_result(model: Model, row: tuple[bool, float], with_score: bool) -> dict[str, Any]:
    """The response for one row scored by :func:`score_row`."""
    anomaly, score = row
    out: dict[str, Any] = {"prediction": -1 if anomaly else 1, "is_anomaly": anomaly}
    out.update(_names(model))
    if with_score:
        out["anomaly_score"] = score
    return out


def batch_result(model: Model, scores: Scores, with_score: bool) -> dict[str, Any]:
    flags = scores.is_anomaly.tolist()
    if with_score:
        rows = [
            {"prediction": -1 if a else 1, "is_anomaly": a, "anomaly_score": s}
            for a, s in zip(flags, scores.anomaly_score.tolist(), strict=True)
        ]
    else:
        rows = [{"prediction": -1 if a else 1, "is_anomaly": a} for a in flags]
    return {**_names(model), "predictions": rows}


def model_information(model: Model) -> dict[str, Any]:
    return model.describe()


def models_listing(catalog: Catalog) -> dict[str, Any]:
    """``GET /models``: every model with its versions, aliases, kind and features."""
    out = []
    for name in sorted(catalog.models):
        entry = catalog.models[name]
        shown = entry.default or next(iter(entry.versions.values()), None)
        out.append(
            {
                "name": name,
                "kind": entry.kind,
                "ready": entry.ready,
                "default_version": entry.aliases.get("default"),
                "versions": sorted(entry.versions),
                "registered_versions": list(entry.registered),
                "aliases": dict(sorted(entry.aliases.items())),
                "feature_names": list(shown.feature_names) if shown else [],
                **({"reason": entry.error} if entry.error else {}),
            }
        )
    return {"models": out, "default_model": catalog.default_name}


def model_detail(catalog: Catalog, name: str) -> dict[str, Any]:
    """``GET /models/{name}``: the default version's information plus the model's listing."""
    entry = catalog.model(name)
    model = entry.default
    if model is None:
        raise NotReady(f"model {name!r} is not ready: {entry.error or 'no default version'}")
    info = model.describe()
    info["aliases"] = dict(sorted(entry.aliases.items()))
    info["versions"] = sorted(entry.versions)
    return info


def readiness(catalog: Catalog) -> tuple[bool, dict[str, Any]]:
    """``/health/ready``: ready while the default model serves (with no default model: while
    any model serves); each model's state listed."""
    models = {
        name: "ready" if e.ready else f"not ready: {e.error or 'no default version'}"
        for name, e in sorted(catalog.models.items())
    }
    model = catalog.default
    if model is not None:
        return True, {
            "status": "ready",
            "model": model.name,
            "model_version": model.version,
            "models": models,
        }
    if catalog.default_name is None and any(e.ready for e in catalog.models.values()):
        return True, {"status": "ready", "model": None, "model_version": None, "models": models}
    return False, {"status": "not ready", "reason": catalog.not_ready_reason(), "models": models}


__all__ = [
    "ModelNotFound",
    "NotReady",
    "batch_result",
    "default_model",
    "model_detail",
    "model_information",
    "models_listing",
    "readiness",
    "resolve",
    "score",
    "score_row",
    "single_result",
]
