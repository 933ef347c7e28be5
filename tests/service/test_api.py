"""The HTTP API, in-process (the real app through Starlette's TestClient)."""

import shutil

import numpy as np
import pytest
import sklearn
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.models import artifact
from service.settings import Settings


def client_for(model_path, **settings) -> TestClient:
    settings.setdefault("registry", model_path.parent / "no-registry")
    return TestClient(create_app(Settings(model_path=model_path, **settings)))


@pytest.fixture(scope="module")
def client(model_path):
    with client_for(model_path, max_batch_rows=50) as c:
        yield c


def test_seed_request_answers_like_sklearn(client, reference):
    r = client.post("/prediction?score=true", json=[0.1, 0.1])
    assert r.status_code == 200
    body = r.json()
    x = np.array([[0.1, 0.1]])
    assert body["prediction"] == int(reference.predict(x)[0])
    assert body["is_anomaly"] is bool(reference.predict(x)[0] == -1)
    assert body["anomaly_score"] == pytest.approx(-reference.score_samples(x)[0], abs=1e-12)
    assert body["model_version"] == artifact.load(client.app.state.settings.model_path).version
    # A lone VIGIL_MODEL_PATH file is served as version 1 of the model "default".
    assert (body["model"], body["version"], body["kind"]) == ("default", 1, "iforest")


def test_score_false_leaves_the_score_out(client):
    r = client.post("/prediction?score=false", json=[0.1, 0.1])
    assert r.status_code == 200
    names = {"model", "version", "model_version", "kind"}
    assert set(r.json()) == {"prediction", "is_anomaly", *names}


def test_object_keyed_by_feature_name(client):
    by_name = client.post("/prediction?score=true", json={"sd": 0.5, "mean": 0.5}).json()
    by_order = client.post("/prediction?score=true", json=[0.5, 0.5]).json()
    assert by_name == by_order
    assert by_name["is_anomaly"] is True


def test_batch_results_in_order(client, reference):
    rows = [[0.1, 0.1], [0.5, 0.5], {"mean": 0.0, "sd": 0.1}]
    r = client.post("/predictions?score=true", json=rows)
    assert r.status_code == 200
    body = r.json()
    X = np.array([[0.1, 0.1], [0.5, 0.5], [0.0, 0.1]])
    assert [p["prediction"] for p in body["predictions"]] == reference.predict(X).tolist()
    np.testing.assert_allclose(
        [p["anomaly_score"] for p in body["predictions"]], -reference.score_samples(X), atol=1e-12
    )
    assert body["model_version"] == client.get("/model_information").json()["model_version"]


def test_batch_over_the_limit_is_413_with_the_limit(client):
    r = client.post("/predictions", json=[[0.1, 0.1]] * 51)
    assert r.status_code == 413
    assert r.json()["detail"] == "batch has 51 rows; the limit is 50 (VIGIL_MAX_BATCH_ROWS)"


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ("[0.1, 0.1, 3]", 422, "expected 2 features (mean, sd), got 3"),
        ("[0.1]", 422, "expected 2 features (mean, sd), got 1"),
        ('["a", 0.1]', 422, "feature 0 (mean) must be a number, got a string"),
        ("[0.1, true]", 422, "feature 1 (sd) must be a number, got a boolean"),
        ("[0.1, null]", 422, "feature 1 (sd) must be a number, got null"),
        ("[[0.1, 0.1]]", 422, "nested arrays are not accepted"),
        ("[[0.1], [0.1]]", 422, "feature 0 (mean) is an array"),
        ("[]", 422, "empty array: expected 2 features (mean, sd)"),
        ("[NaN, 0.1]", 400, "NaN and Infinity are not JSON numbers"),
        ("[Infinity, 0.1]", 400, "NaN and Infinity are not JSON numbers"),
        ("[1e999, 0.1]", 400, "a number is too large for a float64"),
        ("[0.1, 0.1", 400, "body is not valid JSON"),
        ("not json", 400, "body is not valid JSON"),
        ("", 400, "request body is empty"),
        ('"0.1, 0.1"', 422, "got a string"),
        ('{"mean": 0.1}', 422, "expected 2 features (mean, sd): missing sd"),
        ('{"mean": 0.1, "sd": 0.1, "x": 1}', 422, "unknown x"),
    ],
)
def test_bad_single_input_is_a_clear_4xx(client, body, status, detail):
    r = client.post("/prediction", content=body, headers=JSON)
    assert r.status_code == status
    assert detail in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ("[]", 422, "empty batch"),
        ("[0.1, 0.1]", 422, "got a flat array"),
        ("[[0.1, 0.1], [0.1]]", 422, "row 1: expected 2 features (mean, sd), got 1"),
        ('[[0.1, 0.1], ["x", 1]]', 422, "row 1: feature 0 (mean) must be a number"),
        ("[[0.1, 0.1], 5]", 422, "row 1: expected an array"),
        ('{"rows": []}', 422, "expected a JSON array of rows, got an object"),
    ],
)
def test_bad_batch_input_is_a_clear_4xx(client, body, status, detail):
    r = client.post("/predictions", content=body, headers=JSON)
    assert r.status_code == status
    assert detail in r.json()["detail"]


def test_missing_body_and_wrong_content_type(client):
    r = client.post("/prediction")
    assert r.status_code == 400
    assert "request body is empty" in r.json()["detail"]
    r = client.post("/prediction", content="[0.1, 0.1]", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["detail"] == "Content-Type must be application/json, got text/plain"


def test_bad_query_parameter(client):
    r = client.post("/prediction?score=maybe", json=[0.1, 0.1])
    assert r.status_code == 422
    assert "query parameter score" in r.json()["detail"]


def test_oversized_body_is_413(model_path):
    with client_for(model_path, max_body_bytes=1024) as c:
        r = c.post("/predictions", content="[" + ",".join(["[0.1,0.1]"] * 200) + "]", headers=JSON)
    assert r.status_code == 413
    assert "the limit is 1024" in r.json()["detail"]


def test_model_information(client, model_path):
    info = client.get("/model_information").json()
    meta = artifact.load(model_path).metadata
    assert info["model_version"] == meta["version"]
    assert info["feature_names"] == ["mean", "sd"]
    assert info["threshold"] == meta["threshold"]
    assert info["params"]["n_estimators"] == 100
    assert info["n_training_rows"] == 2000
    assert info["created_at"] == meta["created_at"]
    assert info["training_scores"] == meta["training_scores"]
    assert info["library_versions"] == meta["library_versions"]
    assert info["library_versions"]["scikit-learn"] == sklearn.__version__
    assert (info["model"], info["version"], info["kind"]) == ("default", 1, "iforest")
    assert info["offset"] == -meta["threshold"]
    assert info["model_file"] == "model.joblib"


def test_health(client, model_path):
    assert client.get("/health/live").json() == {"status": "alive"}
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "model": "default",
        "model_version": artifact.load(model_path).version,
        "models": {"default": "ready"},
    }


@pytest.fixture
def corrupt_model(tmp_path, model_path):
    dst = tmp_path / "model.joblib"
    shutil.copy(model_path, dst)
    shutil.copy(artifact.manifest_path(model_path), artifact.manifest_path(dst))
    dst.write_bytes(dst.read_bytes()[:1000])
    return dst


@pytest.mark.parametrize(
    ("which", "reason"),
    [("missing", "model file not found"), ("corrupt", "does not match its manifest")],
)
def test_without_a_model_it_is_live_not_ready_and_503(tmp_path, corrupt_model, which, reason):
    path = tmp_path / "nothing.joblib" if which == "missing" else corrupt_model
    with client_for(path) as c:
        assert c.get("/health/live").status_code == 200
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert reason in ready.json()["reason"]
        assert str(tmp_path) not in ready.json()["reason"]
        for method, path_ in [
            ("POST", "/prediction"),
            ("POST", "/predictions"),
            ("GET", "/model_information"),
        ]:
            r = c.request(method, path_, json=[0.1, 0.1])
            assert r.status_code == 503
            assert r.json()["detail"].startswith("no model loaded: ")
            assert reason in r.json()["detail"]


def test_openapi_documents_request_examples(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/prediction"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["array"]["value"] == [0.1, 0.1]
    assert "/predictions" in spec["paths"]
    assert client.get("/docs").status_code == 200
