"""The models' Prometheus metrics: rows scored, score percentiles, inference time, what is
loaded. The names and labels are the contract the recording rules, alerts and dashboard use.

Label values are bounded: ``model`` and ``version`` come only from the registry (a version is
its number), ``outcome`` is anomaly|normal, ``endpoint`` one of the two prediction routes or ``v2``
(Open Inference Protocol infers). The
series of a version that is unloaded are removed on the swap. The HTTP metrics are the
transport's: ``service.api.http_metrics``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Counter_
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from service.drift.binning import SCORE, ModelBins
from service.drift.reference import validate as validate_reference

# A score's percentile among its model's training scores, in [0, 1]: one bucket set for every
# kind. Anomalies sit above 1 - contamination (0.9 to 0.98 with the default contaminations).
PERCENTILE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
INFERENCE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

PREDICTIONS = Counter(
    "vigil_predictions", "Rows scored, by model, version and outcome.",
    ["model", "version", "outcome"],
)  # fmt: skip
SCORE_PERCENTILE = Histogram(
    "vigil_score_percentile",
    "Each scored row's score as its percentile among the model's training scores (0 to 1).",
    ["model", "version"],
    buckets=PERCENTILE_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "vigil_inference_duration_seconds",
    "Time spent scoring one request's rows in the model.",
    ["model", "endpoint"],
    buckets=INFERENCE_BUCKETS,
)
ROWS_PER_REQUEST = Histogram(
    "vigil_rows_per_request", "Rows in each scored request.", ["endpoint"], buckets=ROWS_BUCKETS
)
# multiprocess_mode applies with several workers: live workers only, combined as named.
MODEL_INFO = Gauge(
    "vigil_model_info",
    "A loaded model version (value 1), with its kind and content hash.",
    ["model", "version", "kind", "model_version"],
    multiprocess_mode="livemax",
)
MODEL_DEFAULT = Gauge(
    "vigil_model_default",
    "The version a model's default alias serves (value 1).",
    ["model", "version"],
    multiprocess_mode="livemax",
)
MODEL_LOADED_AT = Gauge(
    "vigil_model_loaded_timestamp_seconds",
    "Unix time a model version was loaded.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
MODEL_READY = Gauge(
    "vigil_model_ready",
    "1 while the model's default version is loaded and serving (in every worker), else 0.",
    ["model"],
    multiprocess_mode="livemin",
)
MODEL_EXPECTED_ANOMALY_RATIO = Gauge(
    "vigil_model_expected_anomaly_ratio",
    "Share of training rows the version flags: the anomaly rate to expect on normal traffic.",
    ["model", "version"],
    multiprocess_mode="livemax",
)

# Drift (service.drift): rows per bin of each feature, and of the score (feature "__score__"),
# against the training share of each bin; the recording rules compute the PSI from these.
FEATURE_BINS = Counter(
    "vigil_feature_bin",
    "Scored rows per bin of each feature (bins at the training deciles); __score__ is the score.",
    ["model", "version", "feature", "bin"],
)
FEATURE_REFERENCE_SHARE = Gauge(
    "vigil_feature_reference_share",
    "Share of the training rows in each bin of each feature (and of the score).",
    ["model", "version", "feature", "bin"],
    multiprocess_mode="livemax",
)

ENDPOINTS = ("prediction", "predictions", "v2")
_ROWS = {e: ROWS_PER_REQUEST.labels(endpoint=e) for e in ENDPOINTS}


class DriftCounters:
    """One version's bin counters, per feature and for the score, from its reference."""

    def __init__(self, model: str, version: str, reference: dict[str, Any]) -> None:
        self.bins = ModelBins(reference)
        self.features = [
            [FEATURE_BINS.labels(model, version, name, str(b)) for b in range(n)]
            for name, n in zip(self.bins.feature_names, self.bins.n_bins, strict=True)
        ]
        self.score = [
            FEATURE_BINS.labels(model, version, SCORE, str(b))
            for b in range(self.bins.score_n_bins)
        ]
        self.shares = [
            (col["name"], col["shares"]) for col in [*reference["features"], reference["score"]]
        ]

    def row(self, x: list[float], score: float) -> None:
        for counters, b in zip(self.features, self.bins.row(x), strict=True):
            counters[b].inc()
        self.score[self.bins.score(score)].inc()

    def rows(self, X: list[list[float]], scores: list[float]) -> None:
        """:meth:`row` for each row, as one increment per bin that any row fell in."""
        hits: Counter_[tuple[int, int]] = Counter_()
        bins = self.bins
        for x in X:
            hits.update(enumerate(bins.row(x)))
        for (j, b), n in hits.items():
            self.features[j][b].inc(n)
        for b, n in Counter_(bins.score(s) for s in scores).items():
            self.score[b].inc(n)

    def batch(self, X: np.ndarray, scores: np.ndarray) -> None:
        per_feature = self.bins.batch_counts(X)
        for counters, counts in zip(self.features, per_feature, strict=True):
            _inc_nonzero(counters, counts)
        _inc_nonzero(self.score, self.bins.score_counts(scores))


def _inc_nonzero(counters: list, counts: np.ndarray) -> None:
    for b in np.flatnonzero(counts):
        counters[b].inc(int(counts[b]))


class ModelMetrics:
    """One loaded version's label children, looked up once at load (``.labels()`` costs about
    a microsecond each). Label values come from the registry, never from a request."""

    def __init__(self, model: str, version: str, reference: dict[str, Any] | None) -> None:
        self.anomaly = PREDICTIONS.labels(model, version, "anomaly")
        self.normal = PREDICTIONS.labels(model, version, "normal")
        self.percentile = SCORE_PERCENTILE.labels(model, version)
        self.inference = {e: INFERENCE_SECONDS.labels(model, e) for e in ENDPOINTS}
        # Without a usable reference (an artifact trained without one), drift is unavailable:
        # no series at all, never zeros that would read as "no drift".
        self.drift = DriftCounters(model, version, reference) if reference else None


def record_row(
    m: ModelMetrics,
    endpoint: str,
    x: np.ndarray,
    score: float,
    is_anomaly: bool,
    percentile: float,
    seconds: float,
) -> None:
    """Count one scored row ``x`` (1 x d): the single-row hot path."""
    (m.anomaly if is_anomaly else m.normal).inc()
    observe_one(m.percentile, percentile)
    observe_one(m.inference[endpoint], seconds)
    observe_one(_ROWS[endpoint], 1)
    if m.drift is not None:
        m.drift.row(x[0].tolist(), score)


def record_rows(
    m: ModelMetrics,
    endpoints: list[str],
    X: np.ndarray,
    scores: list[float],
    flags: list[bool],
    percentiles: list[float],
    seconds: float,
) -> None:
    """:func:`record_row` for one-row requests scored in one call (``service.serving.
    row_batcher``): row i came from a request to ``endpoints[i]``, and each request's scoring
    took the call's ``seconds``. The same series end up with the same counts and sums (up to
    the order of float additions), in one increment per counter, bucket and sum touched."""
    n = len(scores)
    n_anomalies = sum(flags)
    if n_anomalies:
        m.anomaly.inc(n_anomalies)
    if n - n_anomalies:
        m.normal.inc(n - n_anomalies)
    observe_all(m.percentile, percentiles)
    for endpoint, count in Counter_(endpoints).items():
        observe_repeated(m.inference[endpoint], seconds, count)
        observe_repeated(_ROWS[endpoint], 1, count)
    if m.drift is not None:
        m.drift.rows(X.tolist(), scores)


def record_scores(
    m: ModelMetrics,
    endpoint: str,
    X: np.ndarray,
    scores: np.ndarray,
    percentiles: np.ndarray,
    n_anomalies: int,
    seconds: float,
) -> None:
    """Count one scored request's rows."""
    n = int(percentiles.shape[0])
    if n_anomalies:
        m.anomaly.inc(n_anomalies)
    if n - n_anomalies:
        m.normal.inc(n - n_anomalies)
    if n == 1:
        m.percentile.observe(float(percentiles[0]))
    else:
        observe_many(m.percentile, percentiles)
    m.inference[endpoint].observe(seconds)
    _ROWS[endpoint].observe(n)
    if m.drift is not None:
        m.drift.batch(X, scores)


def observe_one(histogram: Histogram, value: float) -> None:
    """``histogram.observe(value)`` for a labelled child and a number that is not NaN.

    The same two increments ``observe`` makes (the sum, and the first bucket whose bound is
    >= value), without its per-call checks and loop over the buckets: a third of its cost,
    on the single-row hot path where four histograms are observed per request.
    """
    histogram._sum.inc(value)
    histogram._buckets[bisect_left(histogram._upper_bounds, value)].inc(1)


def observe_repeated(histogram: Histogram, value: float, times: int) -> None:
    """``histogram.observe(value)`` ``times`` times, as one increment of the bucket and sum."""
    histogram._sum.inc(value * times)
    histogram._buckets[bisect_left(histogram._upper_bounds, value)].inc(times)


def observe_all(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe(v)`` for each of a few values: one increment per bucket touched."""
    if len(values) == 1:
        observe_one(histogram, values[0])
        return
    bounds = histogram._upper_bounds
    histogram._sum.inc(sum(values))
    for i, n in Counter_(bisect_left(bounds, v) for v in values).items():
        histogram._buckets[i].inc(n)


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


def _reference(model) -> dict[str, Any] | None:
    reference = model.metadata.get("drift_reference")
    try:
        validate_reference(reference, model.feature_names)
    except ValueError:
        return None
    return reference


def _drop(gauge: Gauge, *labels: str) -> None:
    # Zero first: with several workers, remove() does not reach the worker's file.
    gauge.labels(*labels).set(0)
    gauge.remove(*labels)


def on_swap(old, new) -> None:
    """Before a catalog (``service.models.store.Catalog``) replaces another: give every newly
    loaded version its metrics, and move the model gauges to the new catalog."""
    old_versions = {(m.name, m.number): m for m in old.served()}
    new_versions = {(m.name, m.number): m for m in new.served()}
    for key, model in new_versions.items():
        version = str(model.number)
        if getattr(model, "metrics", None) is None:
            model.metrics = ModelMetrics(model.name, version, _reference(model))
            if model.metrics.drift is not None:
                for feature, shares in model.metrics.drift.shares:
                    for b, share in enumerate(shares):
                        FEATURE_REFERENCE_SHARE.labels(model.name, version, feature, str(b)).set(
                            share
                        )
        previous = old_versions.get(key)
        if previous is not None and (previous.kind, previous.version) != (
            model.kind,
            model.version,
        ):  # a lone VIGIL_MODEL_PATH file is always version 1: its hash tells them apart
            _drop(MODEL_INFO, model.name, version, previous.kind, previous.version)
        MODEL_INFO.labels(model.name, version, model.kind, model.version).set(1)
        MODEL_LOADED_AT.labels(model.name, version).set(model.loaded_at)
        MODEL_EXPECTED_ANOMALY_RATIO.labels(model.name, version).set(
            float(model.metadata["training_anomaly_ratio"])
        )
    for (name, number), model in old_versions.items():
        if (name, number) not in new_versions:
            version = str(number)
            _drop(MODEL_INFO, name, version, model.kind, model.version)
            _drop(MODEL_LOADED_AT, name, version)
            _drop(MODEL_EXPECTED_ANOMALY_RATIO, name, version)
            drift = getattr(model, "metrics", None) and model.metrics.drift
            if drift:
                for feature, shares in drift.shares:
                    for b in range(len(shares)):
                        _drop(FEATURE_REFERENCE_SHARE, name, version, feature, str(b))
    old_defaults = {n: e.default for n, e in old.models.items()}
    for name, entry in new.models.items():
        default = entry.default
        before = old_defaults.get(name)
        if before is not None and (default is None or before.number != default.number):
            _drop(MODEL_DEFAULT, name, str(before.number))
        if default is not None:
            MODEL_DEFAULT.labels(name, str(default.number)).set(1)
        MODEL_READY.labels(name).set(1 if entry.ready else 0)
    for name, before in old_defaults.items():
        if name not in new.models:
            if before is not None:
                _drop(MODEL_DEFAULT, name, str(before.number))
            _drop(MODEL_READY, name)


RELOADS = Counter("vigil_model_reloads", "Model reload attempts, by result.", ["result"])
for _result in ("reloaded", "unchanged", "refused"):
    RELOADS.labels(result=_result)


def record_reload(result: str) -> None:
    RELOADS.labels(result=result).inc()
