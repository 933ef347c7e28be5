"""Vigil's HTTP metrics middleware records what prometheus-fastapi-instrumentator's would.

Both run on the same app over the same requests: the library's middleware (into a registry of
its own, with the settings Vigil documents) and Vigil's lean one (into the default registry).
Every series must agree, so an upgrade of the library that changes its semantics shows here;
the one intended difference is that methods outside the standard ones are labelled ``other``.
And no client can grow the series or the middleware's memory with paths or methods.
"""

import asyncio
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as reference_metrics

from service.api.app import create_app
from service.api.http_metrics import (
    EXCLUDED_HANDLERS,
    LATENCY_BUCKETS,
    OTHER_METHOD,
    STANDARD_METHODS,
    HTTPMetricsMiddleware,
    method_label,
)
from service.settings import Settings

JSON = {"Content-Type": "application/json"}
REQUESTS = [
    ("POST", "/prediction?score=true", "[0.1, 0.1]", JSON),
    ("POST", "/prediction", "[0.5, 0.5]", JSON),
    ("POST", "/prediction", "[0.1]", JSON),
    ("POST", "/prediction", "[NaN, 1]", JSON),
    ("POST", "/prediction", "[0.1, 0.1]", {"Content-Type": "text/plain"}),
    ("POST", "/prediction?score=maybe", "[0.1, 0.1]", JSON),
    ("POST", "/predictions", "[[0.1, 0.1], [0.2, 0.1]]", JSON),
    ("POST", "/predictions", "[" + ",".join(["[0.1,0.1]"] * 60) + "]", JSON),
    ("GET", "/prediction", None, {}),
    ("GET", "/model_information", None, {}),
    ("GET", "/health/live", None, {}),
    ("GET", "/health/ready", None, {}),
    ("GET", "/metrics", None, {}),
    ("GET", "/no/such/path", None, {}),
    ("GET", "/openapi.json", None, {}),
    ("POST", "/admin/reload", None, {}),
    ("HEAD", "/model_information", None, {}),
    ("HEAD", "/health/live", None, {}),
    ("PROPFIND", "/prediction", None, {}),
    ("MKCOL", "/model_information", None, {}),
    ("DELETE", "/predictions", None, {}),
]


def http_samples(registry: CollectorRegistry) -> Counter:
    """{(sample name, labels): value} of the HTTP series, durations' sums left out, methods
    labelled as Vigil labels them."""
    out: Counter = Counter()
    for family in registry.collect():
        if not family.name.startswith("http_request"):
            continue
        for s in family.samples:
            if s.name.endswith(("_sum", "_created")):
                continue
            if s.name.endswith("_bucket"):  # bucket placement depends on timing; counts do not
                continue
            labels = {**s.labels, "method": method_label(s.labels["method"])}
            out[(s.name, tuple(sorted(labels.items())))] += s.value
    return out


def metrics_middleware(app) -> HTTPMetricsMiddleware:
    layer = app.middleware_stack
    while not isinstance(layer, HTTPMetricsMiddleware):
        layer = layer.app
    return layer


@pytest.fixture
def app_with_both(model_path):
    app = create_app(Settings(model_path=model_path, max_batch_rows=50))
    reference = CollectorRegistry()
    Instrumentator(
        should_group_status_codes=False,
        should_ignore_untemplated=True,
        excluded_handlers=EXCLUDED_HANDLERS,
        registry=reference,
    ).add(reference_metrics.requests(registry=reference)).add(
        reference_metrics.latency(
            buckets=LATENCY_BUCKETS, should_include_status=False, registry=reference
        )
    ).instrument(app)
    return app, reference


def test_same_series_as_the_instrumentator(app_with_both):
    app, reference = app_with_both
    before = http_samples(REGISTRY)
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [
            client.request(method, url, content=body, headers=headers).status_code
            for method, url, body, headers in REQUESTS
        ]
    assert {200, 400, 404, 405, 413, 415, 422} <= set(statuses)
    assert method_label("PROPFIND") == OTHER_METHOD
    ours = http_samples(REGISTRY)
    ours.subtract(before)
    ours = Counter({k: v for k, v in ours.items() if v and "inprogress" not in k[0]})
    theirs = Counter({k: v for k, v in http_samples(reference).items() if v})
    assert ours == theirs
    # What that means: one series per route template and status, none for 404s or health.
    handlers = {dict(labels)["handler"] for _, labels in ours}
    assert handlers == {
        "/prediction",
        "/predictions",
        "/model_information",
        "/openapi.json",
        "/admin/reload",
    }


def test_clients_cannot_grow_the_series_or_the_path_cache(model_path):
    """Distinct paths (404s, 65 KB each) and unusual methods on every route: the number of
    series and the middleware's cache stay where one request of each kind put them.

    Straight through the ASGI interface: the TestClient's thread hops would make the 1,400
    requests take a minute on a busy machine.
    """
    app = create_app(Settings(model_path=model_path))
    routes = ["/prediction", "/predictions", "/model_information", "/openapi.json", "/docs"]

    async def statuses(requests: list[tuple[str, str]]) -> list[int]:
        out = []
        for method, path in requests:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": b"", "headers": [],
                "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
            }  # fmt: skip
            sent = []

            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict, sent=sent) -> None:
                sent.append(message)

            await app(scope, receive, send)
            out.append(sent[0]["status"])
        return out

    def http_lines() -> int:
        return sum(line.startswith(b"http_") for line in generate_latest(REGISTRY).splitlines())

    # Every route with every standard method and one other method.
    methods = [*sorted(STANDARD_METHODS - {"CONNECT"}), "PROPFIND"]
    asyncio.run(statuses([(m, route) for route in routes for m in methods]))
    lines = http_lines()
    cached = len(metrics_middleware(app)._handlers)

    flood = [("GET", f"/{i}/" + "x" * 65_000) for i in range(1_100)]
    flood += [(f"X-METHOD-{i}", routes[i % len(routes)]) for i in range(300)]
    assert set(asyncio.run(statuses(flood))) == {404, 405}
    assert http_lines() == lines
    assert len(metrics_middleware(app)._handlers) == cached
    assert cached <= len(app.routes) * len(STANDARD_METHODS)
