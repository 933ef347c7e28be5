"""Prometheus metrics: the HTTP metrics of prometheus-fastapi-instrumentator, and the model's.

Label values are bounded: ``outcome`` is anomaly|normal, ``endpoint`` is one of the two
prediction routes, ``version`` holds only the loaded model's version (the old series is
removed on a swap), ``handler`` is a route template, never a raw path, and ``method`` is one of
the standard methods or ``other``.
"""

from __future__ import annotations

import re
from time import perf_counter

import numpy as np
from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# From 0.5 ms (a fast single-row call) to 10 s (a large batch on a loaded machine).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# s(x) lives in (0, 1]; normal points sit near 0.4-0.5, clear anomalies above 0.6.
SCORE_BUCKETS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
INFERENCE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
EXCLUDED_HANDLERS = ["/metrics", "/health/live", "/health/ready"]

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


# The series prometheus-fastapi-instrumentator records, with the names, help texts, labels and
# multiprocess mode it gives them (Vigil's settings: status codes not grouped, latency without
# status, in-progress by method and handler).
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    ["handler", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Duration of HTTP requests in seconds",
    ["handler", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_INPROGRESS = Gauge(
    "http_requests_inprogress",
    "Number of HTTP requests in progress.",
    ["method", "handler"],
    multiprocess_mode="livesum",
)


# The methods of RFC 9110 and PATCH. Any other method a client sends (PROPFIND, MKCOL, ...) is
# recorded as OTHER_METHOD, so clients cannot grow the number of series with methods.
STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The ``method`` label value for a request method: bounded to ten values."""
    return method if method in STANDARD_METHODS else OTHER_METHOD


class HTTPMetricsMiddleware:
    """ASGI middleware recording the HTTP metrics as prometheus-fastapi-instrumentator's
    middleware does with Vigil's settings, at a fifth of its per-request cost.

    Same semantics: ``handler`` is the route template found by the library's own
    ``get_route_name``; requests matching no route (404s) and the excluded handlers are not
    recorded; ``status`` is the response's status code, 500 when the app raised before
    answering; the duration runs until the response is sent. One difference: a method outside
    :data:`STANDARD_METHODS` is labelled ``other`` (the library records any method as sent).

    The library's middleware also builds a Request, a Response, a Headers and an Info object,
    scans every route and looks up three label children on each request, which costs about as
    much as scoring the row (bench/layers.py). Here the label children are kept, and the
    template of a path that is a route's own path is remembered per standard method: a
    bounded cache (routes x methods), which a client cannot fill with paths of its choosing.
    Other requests (404s, paths that fill a template's parameters, other methods) are
    resolved each time.
    """

    def __init__(self, app: ASGIApp, excluded_handlers: tuple[str, ...] = ()) -> None:
        self.app = app
        self._excluded = [re.compile(pattern) for pattern in excluded_handlers]
        self._handlers: dict[tuple[str, str, str], str | None] = {}
        self._series: dict[tuple[str, str], tuple[Gauge, Histogram, dict[int, Counter]]] = {}

    def _handler(self, scope: Scope) -> str | None:
        """The route template to record ``scope`` under, or None to leave it out."""
        path = scope["path"]
        key = (scope.get("root_path", ""), path, scope["method"])
        try:
            return self._handlers[key]
        except KeyError:
            pass
        template = get_route_name(HTTPConnection(scope), should_include_root_path=False)
        handler = template
        if handler is not None and any(p.search(handler) for p in self._excluded):
            handler = None
        if template == path and key[2] in STANDARD_METHODS:
            self._handlers[key] = handler
        return handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        handler = self._handler(scope)
        if handler is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in STANDARD_METHODS:
            method = OTHER_METHOD
        series = self._series.get((method, handler))
        if series is None:
            series = (
                HTTP_INPROGRESS.labels(method, handler),
                HTTP_LATENCY.labels(handler, method),
                {},
            )
            self._series[(method, handler)] = series
        inprogress, latency, requests_by_status = series
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        inprogress.inc()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            inprogress.dec()
            latency.observe(perf_counter() - start)
            counter = requests_by_status.get(status)
            if counter is None:
                counter = requests_by_status[status] = HTTP_REQUESTS.labels(
                    handler, method, str(status)
                )
            counter.inc()


def instrument(app: FastAPI) -> None:
    """Add the HTTP metrics middleware and the /metrics route (the instrumentator's, which
    also merges the workers' files in multiprocess mode)."""
    app.add_middleware(HTTPMetricsMiddleware, excluded_handlers=tuple(EXCLUDED_HANDLERS))
    Instrumentator().expose(app, include_in_schema=False, should_gzip=False)


RELOADS = Counter("vigil_model_reloads", "Model reload attempts, by result.", ["result"])
for _result in ("reloaded", "unchanged", "refused"):
    RELOADS.labels(result=_result)


def record_reload(result: str) -> None:
    RELOADS.labels(result=result).inc()
