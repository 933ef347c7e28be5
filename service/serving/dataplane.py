"""Prediction handlers: score rows, record model metrics, shape results. No FastAPI here."""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
import numpy as np

from service.models.loaded import Model, Scores
from service.serving import telemetry as metrics


def _timed_score(model: Model, X: np.ndarray) -> tuple[Scores, float]:
    start = time.perf_counter()
    scores = model.score(X)
    return scores, time.perf_counter() - start


def score_row(model: Model, X: np.ndarray, endpoint: str = "prediction") -> tuple[bool, float]:
    """Score the one row of ``X`` on the event loop (tens of microseconds) and count it.

    Returns ``(is_anomaly, anomaly_score)`` as Python values.
    """
    scores, seconds = _timed_score(model, X)
    anomaly = bool(scores.is_anomaly[0])
    score = float(scores.anomaly_score[0])
    metrics.record_row(endpoint, score, anomaly, seconds)
    return anomaly, score


async def score(model: Model, X: np.ndarray, *, endpoint: str, inline_rows: int) -> Scores:
    """Score ``X`` with ``model`` and count it in the model metrics.

    Small inputs on the compiled forest take microseconds and run on the event loop; anything
    larger runs in a worker thread so a big batch never blocks the event loop.
    """
    if X.shape[0] <= inline_rows:
        scores, seconds = _timed_score(model, X)
    else:
        scores, seconds = await anyio.to_thread.run_sync(_timed_score, model, X)
    metrics.record_scores(
        endpoint, scores.anomaly_score, int(np.count_nonzero(scores.is_anomaly)), seconds
    )
    return scores


def single_result(model: Model, row: tuple[bool, float], with_score: bool) -> dict[str, Any]:
    """The response for one row scored by :func:`score_row`."""
    anomaly, score = row
    out: dict[str, Any] = {
        "prediction": -1 if anomaly else 1,
        "is_anomaly": anomaly,
        "model_version": model.version,
    }
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
    return {"model_version": model.version, "predictions": rows}


def model_information(model: Model) -> dict[str, Any]:
    meta = model.metadata
    keys = (
        "created_at", "feature_names", "n_features", "n_training_rows", "threshold", "offset",
        "training_anomaly_ratio", "training_scores", "params", "max_samples_effective",
        "sklearn_version", "vigil_version",
    )  # fmt: skip
    info = {k: meta[k] for k in keys}
    info["model_version"] = model.version
    info["model_file"] = model.source.name if model.source else ""
    info["loaded_at"] = model.loaded_at
    return info
