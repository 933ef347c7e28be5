"""HTTP metrics: prometheus-fastapi-instrumentator's series, recorded by a lean middleware.

Label values are bounded: ``handler`` is a route template, never a raw path, and ``method`` is
one of the standard methods or ``other``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from time import perf_counter

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.serving.telemetry import observe_one

# From 0.5 ms (a fast single-row call) to 10 s (a large batch on a loaded machine).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
EXCLUDED_HANDLERS = ["/metrics", "/health/live", "/health/ready"]

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


class HandlerSeries:
    """The label children of one (method, handler): looked up once, each ``.labels()`` costs
    about a microsecond. Shared by :class:`HTTPMetricsMiddleware` and the fast lane
    (``service.api.fast_lane``), so both record a request alike."""

    __slots__ = ("handler", "inprogress", "latency", "method", "requests_by_status")

    def __init__(self, method: str, handler: str) -> None:
        self.method = method
        self.handler = handler
        self.inprogress = HTTP_INPROGRESS.labels(method, handler)
        self.latency = HTTP_LATENCY.labels(handler, method)
        self.requests_by_status: dict[int, Counter] = {}

    def finished(self, status: int, seconds: float) -> None:
        """One request answered ``status`` after ``seconds`` (in progress since ``inc``)."""
        self.inprogress.dec()
        observe_one(self.latency, seconds)
        counter = self.requests_by_status.get(status)
        if counter is None:
            counter = self.requests_by_status[status] = HTTP_REQUESTS.labels(
                self.handler, self.method, str(status)
            )
        counter.inc()


_SERIES: dict[tuple[str, str], HandlerSeries] = {}


def series(method: str, handler: str) -> HandlerSeries:
    """The series of ``method`` (a standard method or ``other``) on route template ``handler``."""
    found = _SERIES.get((method, handler))
    if found is None:
        found = _SERIES[(method, handler)] = HandlerSeries(method, handler)
    return found


def is_excluded(handler: str, patterns: Sequence[str] = EXCLUDED_HANDLERS) -> bool:
    """Whether requests to route template ``handler`` go unrecorded (/metrics, health)."""
    return any(re.search(pattern, handler) for pattern in patterns)


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
    much as scoring the row (bench/layers.py). Here the label children are kept
    (:class:`HandlerSeries`), and the
    template of a path that is a route's own path is remembered per standard method: a
    bounded cache (routes x methods), which a client cannot fill with paths of its choosing.
    A path that fills a template's parameters (``/v2/models/sensors/infer``) is remembered
    once it has been answered below 400, which only the served models' names, versions and
    aliases are, up to :attr:`TEMPLATED_CACHE_SIZE` paths. Other requests (404s, other
    methods) are resolved each time.
    """

    TEMPLATED_CACHE_SIZE = 1024

    def __init__(self, app: ASGIApp, excluded_handlers: tuple[str, ...] = ()) -> None:
        self.app = app
        self._excluded = [re.compile(pattern) for pattern in excluded_handlers]
        self._handlers: dict[tuple[str, str, str], str | None] = {}
        self._templated: dict[tuple[str, str, str], str] = {}

    def _handler(self, scope: Scope) -> str | None:
        """The route template to record ``scope`` under, or None to leave it out."""
        path = scope["path"]
        key = (scope.get("root_path", ""), path, scope["method"])
        try:
            return self._handlers[key]
        except KeyError:
            pass
        known = self._templated.get(key)
        if known is not None:
            return known
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
        recorded = series(method, handler)
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        recorded.inprogress.inc()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            recorded.finished(status, perf_counter() - start)
            if (
                status < 400
                and handler != scope["path"]
                and method is scope["method"]
                and len(self._templated) < self.TEMPLATED_CACHE_SIZE
            ):
                self._templated[(scope.get("root_path", ""), scope["path"], method)] = handler


class _Merged:
    """What /metrics writes: a registry's metrics, then those of ``extra`` collectors."""

    def __init__(self, registry: CollectorRegistry, extra: Sequence[Collector]) -> None:
        self.registry = registry
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        for collector in self.extra:
            yield from collector.collect()


def instrument(app: FastAPI, collectors: Sequence[Collector] = ()) -> None:
    """Add the HTTP metrics middleware and the /metrics route: as the instrumentator's (which
    merges the workers' files in multiprocess mode), plus ``collectors``, which read shared
    state at scrape time (the job store) and so answer the same from every worker."""
    app.add_middleware(HTTPMetricsMiddleware, excluded_handlers=tuple(EXCLUDED_HANDLERS))
    extra = tuple(collectors)

    def metrics() -> Response:
        registry = REGISTRY
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        body = generate_latest(_Merged(registry, extra))  # type: ignore[arg-type]
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
