"""Vigil's HTTP metrics middleware records what prometheus-fastapi-instrumentator's would.

Both run on the same app over the same requests: the library's middleware (into a registry of
its own, with the settings Vigil documents) and Vigil's lean one (into the default registry).
Every series must agree, so an upgrade of the library that changes its semantics shows here.
"""

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as reference_metrics

from service.app import create_app
from service.metrics import EXCLUDED_HANDLERS, LATENCY_BUCKETS
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
]


def http_samples(registry: CollectorRegistry) -> Counter:
    """{(sample name, labels): value} of the HTTP series, durations' sums left out."""
    out: Counter = Counter()
    for family in registry.collect():
        if not family.name.startswith("http_request"):
            continue
        for s in family.samples:
            if s.name.endswith(("_sum", "_created")):
                continue
            if s.name.endswith("_bucket"):  # bucket placement depends on timing; counts do not
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return out


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
