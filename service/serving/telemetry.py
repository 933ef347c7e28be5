"""The model's Prometheus metrics: rows scored, scores, inference time, the loaded model.

Label values are bounded: ``outcome`` is anomaly|normal, ``endpoint`` is one of the two
prediction routes, and ``version`` holds only the loaded model's version (the old series is
removed on a swap). The HTTP metrics are the transport's: ``service.api.http_metrics``.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

# s(x) lives in (0, 1]; normal points sit near 0.4-0.5, clear anomalies above 0.6.
SCORE_BUCKETS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
INFERENCE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

PREDICTIONS = Counter("vigil_predictions", "Rows scored, by outcome.", ["outcome"])
ANOMALY_SCORE = Histogram(
    "vigil_anomaly_score", "Anomaly score s(x) of scored rows.", buckets=SCORE_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "vigil_inference_duration_seconds",
    "Time spent scoring one request's rows in the model.",
    ["endpoint"],
    buckets=INFERENCE_BUCKETS,
)
ROWS_PER_REQUEST = Histogram(
    "vigil_rows_per_request", "Rows in each scored request.", ["endpoint"], buckets=ROWS_BUCKETS
)
# multiprocess_mode applies with several workers: live workers only, combined as named.
MODEL_INFO = Gauge(
    "vigil_model_info",
    "The loaded model (value 1), labelled with its version.",
    ["version"],
    multiprocess_mode="livemax",
)
MODEL_LOADED_AT = Gauge(
    "vigil_model_loaded_timestamp_seconds",
    "Unix time the loaded model was loaded.",
    multiprocess_mode="livemax",
)
MODEL_READY = Gauge(
    "vigil_model_ready",
    "1 while a model is loaded and serving (in every worker), else 0.",
    multiprocess_mode="livemin",
)
MODEL_EXPECTED_ANOMALY_RATIO = Gauge(
    "vigil_model_expected_anomaly_ratio",
    "Share of training rows the loaded model flags: the anomaly rate to expect on normal traffic.",
    multiprocess_mode="livemax",
)
_current_version: str | None = None

# Label children are looked up once here, not per request (``.labels()`` costs about a
# microsecond each). Every series exists from the start, at 0.
ENDPOINTS = ("prediction", "predictions")
_ANOMALY = PREDICTIONS.labels(outcome="anomaly")
_NORMAL = PREDICTIONS.labels(outcome="normal")
_INFERENCE = {e: INFERENCE_SECONDS.labels(endpoint=e) for e in ENDPOINTS}
_ROWS = {e: ROWS_PER_REQUEST.labels(endpoint=e) for e in ENDPOINTS}


def record_row(endpoint: str, score: float, is_anomaly: bool, seconds: float) -> None:
    """Count one scored row: the single-row hot path."""
    (_ANOMALY if is_anomaly else _NORMAL).inc()
    ANOMALY_SCORE.observe(score)
    _INFERENCE[endpoint].observe(seconds)
    _ROWS[endpoint].observe(1)


def record_scores(endpoint: str, anomaly_scores: np.ndarray, n_anomalies: int, seconds: float):
    """Count one scored request's rows."""
    n = int(anomaly_scores.shape[0])
    if n_anomalies:
        _ANOMALY.inc(n_anomalies)
    if n - n_anomalies:
        _NORMAL.inc(n - n_anomalies)
    if n == 1:
        ANOMALY_SCORE.observe(float(anomaly_scores[0]))
    else:
        observe_many(ANOMALY_SCORE, anomaly_scores)
    _INFERENCE[endpoint].observe(seconds)
    _ROWS[endpoint].observe(n)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every v, as one increment per bucket.

    Uses the client's bucket and sum values (the same ones ``observe`` updates, in-process
    and multiprocess alike): observing 10,000 scores one by one would cost more than
    scoring them.
    """
    bounds = np.asarray(histogram._upper_bounds)
    index = np.searchsorted(bounds, values, side="left")  # first bound with value <= bound
    counts = np.bincount(index, minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for i in np.flatnonzero(counts):
        histogram._buckets[i].inc(int(counts[i]))


def set_model(version: str, loaded_at: float, expected_anomaly_ratio: float) -> None:
    global _current_version
    if _current_version is not None and _current_version != version:
        # Zero the old series first: with several workers, clear() would not reach the file.
        MODEL_INFO.labels(version=_current_version).set(0)
        MODEL_INFO.remove(_current_version)
    MODEL_INFO.labels(version=version).set(1)
    _current_version = version
    MODEL_LOADED_AT.set(loaded_at)
    MODEL_READY.set(1)
    MODEL_EXPECTED_ANOMALY_RATIO.set(expected_anomaly_ratio)


def set_not_ready() -> None:
    MODEL_READY.set(0)


RELOADS = Counter("vigil_model_reloads", "Model reload attempts, by result.", ["result"])
for _result in ("reloaded", "unchanged", "refused"):
    RELOADS.labels(result=_result)


def record_reload(result: str) -> None:
    RELOADS.labels(result=result).inc()
