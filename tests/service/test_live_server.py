"""The real service process over real HTTP: answers equal scikit-learn, metrics count exactly."""

import numpy as np
import pytest
import requests

from service.data.dataset import load_csv
from service.models import artifact
from service.models.loaded import Model
from tests.support import metric, scrape, start_server

pytestmark = pytest.mark.slow


def test_every_test_row_matches_sklearn(live_server, reference, data_dir):
    est = reference
    ds = load_csv(data_dir / "test.csv", label_column="label")
    expected_pred = est.predict(ds.X)
    expected_score = -est.score_samples(ds.X)
    with requests.Session() as s:
        answers = [
            s.post(f"{live_server.url}/prediction?score=true", json=row, timeout=5).json()
            for row in ds.X.tolist()
        ]
    assert [a["prediction"] for a in answers] == expected_pred.tolist()
    assert [a["is_anomaly"] for a in answers] == (expected_pred == -1).tolist()
    np.testing.assert_allclose([a["anomaly_score"] for a in answers], expected_score, atol=1e-12)
    # The sample data's anomalies are clear: the model catches them.
    assert (expected_pred[ds.labels] == -1).mean() > 0.9

    batch = requests.post(
        f"{live_server.url}/predictions?score=true", json=ds.X.tolist(), timeout=30
    ).json()["predictions"]
    assert [b["prediction"] for b in batch] == expected_pred.tolist()
    np.testing.assert_allclose([b["anomaly_score"] for b in batch], expected_score, atol=1e-12)


def test_metrics_count_exactly_what_was_sent(tmp_path, model_path, reference):
    server = start_server(model_path, tmp_path)
    try:
        est = reference
        rows = [[0.0, 0.1], [0.5, 0.5], [0.01, 0.09], [-0.4, 0.45]]
        flagged = int((est.predict(np.array(rows)) == -1).sum())
        url = server.url
        for row in rows:
            assert requests.post(f"{url}/prediction", json=row, timeout=5).status_code == 200
        assert requests.post(f"{url}/predictions", json=rows[:3], timeout=5).status_code == 200
        assert requests.post(f"{url}/prediction", json=[1], timeout=5).status_code == 422
        requests.get(f"{url}/model_information", timeout=5)
        requests.get(f"{url}/health/ready", timeout=5)
        requests.get(f"{url}/metrics", timeout=5)

        m = scrape(url)
        flagged_batch = int((est.predict(np.array(rows[:3])) == -1).sum())
        anomalies = flagged + flagged_batch
        # A lone VIGIL_MODEL_PATH file is version 1 of the model "default".
        v1 = {"model": "default", "version": "1"}
        assert metric(m, "vigil_predictions_total", outcome="anomaly", **v1) == anomalies
        assert metric(m, "vigil_predictions_total", outcome="normal", **v1) == 7 - anomalies
        # The score histogram holds each score's percentile among the training scores.
        model = Model(artifact.load(model_path))
        pct = model.percentile(-est.score_samples(np.array(rows + rows[:3])))
        assert metric(m, "vigil_score_percentile_count", **v1) == 7
        assert metric(m, "vigil_score_percentile_sum", **v1) == pytest.approx(pct.sum(), abs=1e-9)
        assert metric(m, "vigil_score_percentile_bucket", le="0.5", **v1) == (pct <= 0.5).sum()
        assert metric(m, "vigil_score_percentile_bucket", le="0.99", **v1) == (pct <= 0.99).sum()
        assert metric(m, "vigil_rows_per_request_count", endpoint="prediction") == 4
        assert metric(m, "vigil_rows_per_request_sum", endpoint="predictions") == 3
        inference = {"model": "default", "endpoint": "prediction"}
        assert metric(m, "vigil_inference_duration_seconds_count", **inference) == 4
        assert metric(m, "vigil_model_ready", model="default") == 1
        info = {"kind": "iforest", "model_version": model.version, **v1}
        assert metric(m, "vigil_model_info", **info) == 1
        assert metric(m, "vigil_model_default", **v1) == 1
        assert (
            metric(m, "vigil_model_expected_anomaly_ratio", **v1)
            == (model.metadata["training_anomaly_ratio"])
        )
        assert metric(m, "vigil_model_loaded_timestamp_seconds", **v1) > 0

        def http(handler, status):
            labels = {"handler": handler, "method": "POST", "status": status}
            return metric(m, "http_requests_total", **labels)

        assert http("/prediction", "200") == 4
        assert http("/prediction", "422") == 1
        assert http("/predictions", "200") == 1
        get = {"handler": "/model_information", "method": "GET", "status": "200"}
        assert metric(m, "http_requests_total", **get) == 1
        # Health and metrics endpoints stay out of the HTTP metrics.
        assert not [k for k in m if dict(k[1]).get("handler", "").startswith(("/health", "/met"))]
        count = {"handler": "/prediction", "method": "POST"}
        assert metric(m, "http_request_duration_seconds_count", **count) == 5
        assert metric(m, "http_request_duration_seconds_bucket", le="0.0005", **count) >= 0
    finally:
        server.stop()


def test_seed_curl_host_works(live_server):
    """The seed's curl examples call http://0.0.0.0:8000; on Linux that reaches 127.0.0.1."""
    url = live_server.url.replace("127.0.0.1", "0.0.0.0")
    r = requests.post(f"{url}/prediction?score=true", json=[0.1, 0.1], timeout=5)
    assert r.status_code == 200
    assert 0 < r.json()["anomaly_score"] <= 1


def test_not_ready_server_answers_503(tmp_path):
    server = start_server(tmp_path / "absent.joblib", tmp_path, ready=False)
    try:
        r = requests.get(f"{server.url}/health/ready", timeout=5)
        assert r.status_code == 503
        assert "model file not found" in r.json()["reason"]
        r = requests.post(f"{server.url}/prediction", json=[0.1, 0.1], timeout=5)
        assert r.status_code == 503
        m = scrape(server.url)
        assert metric(m, "vigil_model_ready", model="default") == 0
        assert (
            metric(m, "http_requests_total", handler="/prediction", method="POST", status="503")
            == 1
        )
    finally:
        server.stop()
