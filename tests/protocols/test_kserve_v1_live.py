"""KServe V1 on a live Vigil, with requests: listing, status, and ``:predict`` answering
exactly what ``/models/{name}/predictions?score=true`` answers."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.support import metric, scrape

pytestmark = pytest.mark.slow


def get(served, path: str) -> requests.Response:
    return requests.get(served.url + path, timeout=10)


def predict(served, name: str, body) -> requests.Response:
    return requests.post(f"{served.url}/v1/models/{name}:predict", json=body, timeout=30)


def test_models_and_their_status(served):
    assert get(served, "/v1/models").json() == {"models": ["sensors", "wide"]}
    answer = get(served, "/v1/models/wide")
    assert (answer.status_code, answer.json()) == (200, {"name": "wide", "ready": True})
    answer = get(served, "/v1/models/nope")
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "no model 'nope'; models: sensors, wide"},
    )


@pytest.mark.parametrize("name", ["sensors", "wide"])
def test_predict_answers_what_predictions_answers(served, name):
    n = 3 if name == "wide" else 2
    X = np.random.default_rng(4).normal(0.1, 0.1, (12, n))
    X[::5] += 3
    rows = X.tolist()
    rows[1] = dict(zip(["a", "b", "c"] if n == 3 else ["mean", "sd"], rows[1], strict=True))
    answer = predict(served, name, {"instances": rows})
    assert answer.status_code == 200, answer.text
    expected = served.predictions(X.tolist(), f"/models/{name}/predictions")
    assert answer.json() == expected
    assert {p["prediction"] for p in expected["predictions"]} == {-1, 1}


def test_refusals_are_errors_naming_the_field(served):
    answer = predict(served, "sensors", {"instances": [[0.1, 0.2, 0.3]]})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("instances: row 0: expected 2 features")
    answer = predict(served, "sensors", {"rows": [[0.1, 0.2]]})
    assert (answer.status_code, answer.json()["error"]) == (
        400,
        'instances: missing; send {"instances": [[...], ...]}, one row per instance',
    )
    answer = predict(served, "nope", {"instances": [[0.1, 0.2]]})
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "no model 'nope'; models: sensors, wide"},
    )
    answer = requests.post(
        f"{served.url}/v1/models/sensors:predict",
        data=b'{"instances": [[0.1, 0.2]]}',
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert (answer.status_code, answer.json()) == (
        415,
        {"error": "Content-Type must be application/json, got text/plain"},
    )


def test_predict_counts_in_the_model_metrics(served):
    before = scrape(served.url)
    assert predict(served, "wide", {"instances": [[0.0, 0.0, 0.0]] * 4}).status_code == 200
    after = scrape(served.url)
    labels = {"model": "wide", "version": "1"}
    rows = sum(
        metric(after, "vigil_predictions_total", **labels, outcome=o)
        - metric(before, "vigil_predictions_total", **labels, outcome=o)
        for o in ("anomaly", "normal")
    )
    assert rows == 4
    handler = {"handler": "/v1/models/{name}:predict", "method": "POST", "status": "200"}
    assert (
        metric(after, "http_requests_total", **handler)
        - metric(before, "http_requests_total", **handler)
        == 1
    )
