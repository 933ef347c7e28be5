"""KServe V1: instances parse exactly as /predictions rows do, refusals name the field."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service.core.features import FeatureParser
from service.models import artifact
from service.models.loaded import Model
from service.protocols import error_body, kserve_v1
from service.serving import dataplane as handlers

PARSER = FeatureParser(("mean", "sd"))


def parse(body: bytes, max_rows: int = 10) -> np.ndarray:
    return kserve_v1.parse_predict_request(body, PARSER, max_rows)


def test_instances_as_arrays_and_objects_give_the_predictions_matrix():
    rows = [[0.1, 0.2], {"sd": 4, "mean": 3.5}, [1e-300, -0.0]]
    X = parse(orjson.dumps({"instances": rows}))
    assert X.dtype == np.float64
    assert X.tobytes() == PARSER.many(rows, 10).tobytes()
    assert X.tolist() == [[0.1, 0.2], [3.5, 4.0], [1e-300, -0.0]]


def test_predict_answer_is_the_predictions_body(model_path):
    model = Model(artifact.load(model_path), model_path)
    rows = [[0.0, 0.1], [3.0, 3.0], {"mean": 0.05, "sd": 0.1}]
    X = kserve_v1.parse_predict_request(orjson.dumps({"instances": rows}), model.parser, 10_000)
    answer = handlers.batch_result(model, model.score(X), True)
    assert answer == handlers.batch_result(model, model.score(model.parser.many(rows, 10)), True)
    assert [p["prediction"] for p in answer["predictions"]] == [1, -1, 1]
    assert set(answer["predictions"][0]) == {"prediction", "is_anomaly", "anomaly_score"}


CASES = {
    "no instances": (
        b'{"rows": []}',
        'instances: missing; send {"instances": [[...], ...]}, one row per instance',
    ),
    "columnar inputs": (
        b'{"inputs": {"mean": [1]}}',
        'instances: missing (the columnar "inputs" format is not supported); send'
        ' {"instances": [[...], ...]}, one row per instance',
    ),
    "a flat instance": (
        b'{"instances": [0.1, 0.2]}',
        "instances: expected an array of instances (arrays of 2 features (mean, sd) or objects"
        " keyed by feature name), got a flat array of numbers; send one instance as [[...]]",
    ),
    "empty": (b'{"instances": []}', "instances: empty batch: send at least one row"),
    "not an array": (
        b'{"instances": {"mean": 1}}',
        "instances: expected a JSON array of rows, got an object",
    ),
    "too many rows": (
        orjson.dumps({"instances": [[0, 0]] * 11}),
        "instances: batch has 11 rows; the limit is 10 (VIGIL_MAX_BATCH_ROWS)",
    ),
    "wrong feature count": (
        b'{"instances": [[0, 0], [1, 2, 3]]}',
        "instances: row 1: expected 2 features (mean, sd), got 3",
    ),
    "unknown feature name": (
        b'{"instances": [{"mean": 0, "sdev": 1}]}',
        "instances: row 0: expected 2 features (mean, sd): missing sd; unknown sdev",
    ),
    "a string value": (
        b'{"instances": [[0, "1"]]}',
        "instances: row 0: feature 1 (sd) must be a number, got a string",
    ),
    "NaN": (
        b'{"instances": [[NaN, 1]]}',
        "body is not valid JSON: NaN and Infinity are not JSON numbers; feature values must be"
        " finite",
    ),
    "body an array": (
        b"[[0, 1]]",
        'request body must be a JSON object with an "instances" array, got an array',
    ),
    "empty body": (b"", 'request body is empty: send a JSON object with an "instances" array'),
}


@pytest.mark.parametrize(("body", "message"), CASES.values(), ids=CASES.keys())
def test_bad_predict_request_is_a_400_naming_the_field(body, message):
    with pytest.raises(kserve_v1.V1Error) as caught:
        parse(body)
    assert (caught.value.message, caught.value.status) == (message, 400)


def test_model_documents_and_errors():
    assert kserve_v1.models_list(["a", "b"]) == {"models": ["a", "b"]}
    assert kserve_v1.model_status("a", True) == {"name": "a", "ready": True}
    missing = kserve_v1.unknown_model("c", ["b", "a"])
    assert (missing.message, missing.status) == ("unknown model 'c'; models: a, b", 404)
    busy = kserve_v1.not_ready("a", None)
    assert (busy.message, busy.status) == ("model 'a' is not ready: no version loaded", 503)
    assert orjson.loads(error_body(missing.message)) == {"error": missing.message}
