"""The OpenAPI document describes the serving model's rows, the batch limit and the admin route."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.models import artifact
from service.settings import Settings
from service.training.trainer import TrainingParams, train

NAMES = ["mean", "sd", "skew"]
TOKEN = "openapi-test-token"


def three_feature_model(path: Path) -> str:
    X = np.random.default_rng(3).normal(0, 0.05, (300, len(NAMES)))
    model = train(X, NAMES, TrainingParams(n_estimators=20, random_state=3))
    artifact.save(model, path)
    return model.version


def client_for(model_path: Path, **settings) -> TestClient:
    return TestClient(create_app(Settings(model_path=model_path, **settings)))


def request_body(doc: dict, path: str) -> dict:
    return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]


def test_rows_are_the_serving_models_features(tmp_path):
    three_feature_model(tmp_path / "m.joblib")
    with client_for(tmp_path / "m.joblib", max_batch_rows=7) as c:
        doc = c.get("/openapi.json").json()
        row, batch = doc["components"]["schemas"]["Row"], doc["components"]["schemas"]["Batch"]
        array, keyed = row["oneOf"]
        assert array["type"] == "array"
        assert array["minItems"] == array["maxItems"] == 3
        assert array["items"]["type"] == "number"
        assert keyed["type"] == "object"
        assert list(keyed["properties"]) == keyed["required"] == NAMES
        assert keyed["additionalProperties"] is False
        assert batch["items"] == {"$ref": "#/components/schemas/Row"}
        assert (batch["minItems"], batch["maxItems"]) == (1, 7)  # VIGIL_MAX_BATCH_ROWS

        # Each documented example is one the service accepts.
        for path, schema in [("/prediction", "Row"), ("/predictions", "Batch")]:
            body = request_body(doc, path)
            assert body["schema"] == {"$ref": f"#/components/schemas/{schema}"}
            assert len(body["examples"]) == 2
            for example in body["examples"].values():
                assert c.post(path, json=example["value"]).status_code == 200


def test_the_document_follows_the_model_once_one_loads(tmp_path):
    path = tmp_path / "m.joblib"
    with client_for(path, admin_token=TOKEN) as c:
        before = c.get("/openapi.json").json()
        array, keyed = before["components"]["schemas"]["Row"]["oneOf"]
        assert "maxItems" not in array and "required" not in keyed  # no model: no features
        assert "examples" not in request_body(before, "/prediction")
        assert c.app.openapi() is c.app.openapi()  # built once per model, not per request

        version = three_feature_model(path)  # training writes atomically, as in production
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.json()["result"] == "reloaded", r.json()

        after = c.get("/openapi.json").json()
        array, keyed = after["components"]["schemas"]["Row"]["oneOf"]
        assert array["maxItems"] == 3 and keyed["required"] == NAMES
        assert request_body(after, "/prediction")["examples"]["object"]["value"] == dict.fromkeys(
            NAMES, 0.1
        )
        assert version in after["info"]["description"]


def test_admin_reload_is_documented_only_when_it_exists(model_path):
    with client_for(model_path) as c:
        doc = c.get("/openapi.json").json()
        assert "/admin/reload" not in doc["paths"]
        assert "securitySchemes" not in doc["components"]
        assert c.post("/admin/reload").status_code == 404

    with client_for(model_path, admin_token=TOKEN) as c:
        doc = c.get("/openapi.json").json()
        op = doc["paths"]["/admin/reload"]["post"]
        assert op["security"] == [{"AdminToken": []}]
        assert doc["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"
        assert set(op["responses"]) == {"200", "401", "403", "409"}
        assert c.post("/admin/reload").status_code == 401
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
