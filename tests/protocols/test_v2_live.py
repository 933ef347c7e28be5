"""The Open Inference Protocol V2 routes of a live Vigil, driven by the real tritonclient.http.

Every infer answer is compared, bit for bit, with Vigil's own ``/predictions`` answer for the
same rows and model version.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service import __version__
from tests.protocols.conftest import BODY_LIMIT
from tests.support import metric, scrape

pytestmark = pytest.mark.slow

OUTPUTS = ("is_anomaly", "prediction", "anomaly_score")
DTYPES = {"FP32": np.float32, "FP64": np.float64}


@pytest.fixture(scope="module")
def client(served):
    c = triton.InferenceServerClient(served.host, network_timeout=30)
    yield c
    c.close()


def rows(n_features: int, n: int = 25, seed: int = 1) -> np.ndarray:
    """Normal rows with a few far out, so that both outcomes occur."""
    X = np.random.default_rng(seed).normal(0.1, 0.1, (n, n_features))
    X[::7] += 3.0
    return X


def infer(client, name, X, *, datatype="FP64", binary=True, version="", outputs=None, **kw):
    tensor = triton.InferInput("input-0", list(X.shape), datatype)
    tensor.set_data_from_numpy(X.astype(DTYPES[datatype]), binary_data=binary)
    if outputs is None:
        outputs = [triton.InferRequestedOutput(o, binary_data=binary) for o in OUTPUTS]
    return client.infer(name, [tensor], model_version=version, outputs=outputs, **kw)


def refused(call, status: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == status, caught.value
    return caught.value.message()


def assert_same_as_predictions(result: triton.InferResult, answer: dict) -> None:
    expected = answer["predictions"]
    flags = result.as_numpy("is_anomaly")
    assert flags.dtype == np.bool_
    assert flags.tolist() == [p["is_anomaly"] for p in expected]
    assert result.as_numpy("prediction").tolist() == [p["prediction"] for p in expected]
    scores = result.as_numpy("anomaly_score")
    assert scores.dtype == np.float64
    assert scores.tobytes() == np.array([p["anomaly_score"] for p in expected]).tobytes()


# --- server -----------------------------------------------------------------------------------


def test_server_is_live_and_ready_and_says_what_it_speaks(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "vigil",
        "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository"],
    }


def test_model_metadata_gives_the_input_the_outputs_and_the_loaded_versions(client):
    meta = client.get_model_metadata("sensors")
    assert meta["name"] == "sensors"
    assert meta["versions"] == ["1", "2"]  # version 3 is registered, not loaded (no alias)
    assert meta["platform"] == "vigil_iforest"
    [tensor] = meta["inputs"]
    assert (tensor["datatype"], tensor["shape"]) == ("FP64", [-1, 2])
    assert tensor["parameters"]["feature_names"] == ["mean", "sd"]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("is_anomaly", "BOOL", [-1]),
        ("prediction", "INT32", [-1]),
        ("anomaly_score", "FP64", [-1]),
    ]
    assert meta["parameters"]["version"] == "1"  # the default alias
    assert client.get_model_metadata("sensors", "2")["parameters"]["version"] == "2"
    wide = client.get_model_metadata("wide")
    assert (wide["platform"], wide["inputs"][0]["shape"]) == ("vigil_ecod", [-1, 3])


def test_readiness_of_models_and_versions(client):
    assert client.is_model_ready("sensors")
    assert client.is_model_ready("sensors", "2")
    assert client.is_model_ready("wide")
    assert not client.is_model_ready("sensors", "3")  # registered but not loaded
    assert not client.is_model_ready("nope")


def test_unknown_model_and_version_are_404_naming_what_exists(client):
    message = refused(lambda: infer(client, "nope", rows(2)), "404")
    assert message == "no model 'nope'; models: sensors, wide"
    message = refused(lambda: infer(client, "sensors", rows(2), version="3"), "404")
    assert message == (
        "model 'sensors' has no loaded version 3 (registered but not loaded: see"
        " VIGIL_REGISTRY_LOAD); versions: 1, 2"
    )
    assert refused(lambda: client.get_model_metadata("nope"), "404").startswith("no model")


# --- infer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    ("name", "version", "path"),
    [
        ("sensors", "", "/predictions"),
        ("sensors", "2", "/models/sensors/versions/2/predictions"),
        ("wide", "", "/models/wide/predictions"),
    ],
    ids=["default", "version-2", "wide"],
)
def test_infer_answers_what_predictions_answers(
    served, client, datatype, binary, name, version, path
):
    X = rows(3 if name == "wide" else 2)
    result = infer(
        client, name, X, datatype=datatype, binary=binary, version=version, request_id="r-7"
    )
    # The rows the tensor carried: FP32 values, exactly, as float64 JSON numbers.
    answer = served.predictions(X.astype(DTYPES[datatype]).astype(np.float64).tolist(), path)
    assert {p["prediction"] for p in answer["predictions"]} == {-1, 1}
    assert_same_as_predictions(result, answer)
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == str(answer["version"])
    assert response["id"] == "r-7"
    assert response["parameters"] == {
        "kind": answer["kind"],
        "content_hash": answer["model_version"],
    }


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_one_row_answers_what_prediction_answers(served, client, binary):
    """One row takes /prediction's single-row path; the answer is /prediction's."""
    for row in ([0.1, 0.1], [3.0, -2.5]):
        result = infer(client, "sensors", np.array([row]), binary=binary)
        one = requests.post(f"{served.url}/prediction?score=true", json=row, timeout=10).json()
        assert result.as_numpy("is_anomaly").tolist() == [one["is_anomaly"]]
        assert result.as_numpy("prediction").tolist() == [one["prediction"]]
        assert result.as_numpy("anomaly_score").tolist() == [one["anomaly_score"]]


def test_default_outputs_come_back_binary_and_requested_ones_alone(served, client):
    X = rows(2)
    # No outputs listed: tritonclient asks for all of them as binary data.
    result = infer(client, "sensors", X, outputs=[])
    assert_same_as_predictions(result, served.predictions(X.tolist()))
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    only = [triton.InferRequestedOutput("prediction", binary_data=False)]
    result = infer(client, "sensors", X, outputs=only)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["prediction"]
    assert result.as_numpy("anomaly_score") is None
    expected = [p["prediction"] for p in served.predictions(X.tolist())["predictions"]]
    assert result.as_numpy("prediction").tolist() == expected


def test_a_10000_row_binary_tensor_is_one_request(served, client):
    X = rows(2, n=10_000, seed=3)
    assert_same_as_predictions(infer(client, "sensors", X), served.predictions(X.tolist()))


def test_bad_tensors_are_400_naming_the_field(client):
    message = refused(lambda: infer(client, "sensors", rows(3)), "400")
    assert message == "inputs[0].shape: expected [rows, 2] (2 features: mean, sd), got [25,3]"
    X = rows(2)
    X[4, 1] = np.nan
    message = refused(lambda: infer(client, "sensors", X), "400")
    assert message == "inputs[0].data: row 4, feature 1 (sd) is nan; values must be finite"
    too_many = np.zeros((10_001, 2), dtype=np.float32)
    message = refused(lambda: infer(client, "sensors", too_many, datatype="FP32"), "400")
    assert message == "inputs[0].shape: 10001 rows; the limit is 10000 (VIGIL_MAX_BATCH_ROWS)"


def test_body_types_and_the_body_limit(served):
    url = f"{served.url}/v2/models/sensors/infer"
    X = rows(2, n=2)
    tensor = triton.InferInput("x", [2, 2], "FP64")
    tensor.set_data_from_numpy(X, binary_data=True)
    body, length = triton.InferenceServerClient.generate_request_body([tensor])
    header = {"Inference-Header-Content-Length": str(length)}
    for ctype in ({}, {"Content-Type": "application/octet-stream"}):
        answer = requests.post(url, data=body, headers={**header, **ctype}, timeout=10)
        assert answer.status_code == 200, answer.text
        # No outputs listed: binary outputs, after a JSON header of the length it says.
        assert answer.headers["content-type"] == "application/octet-stream"
        result = triton.InferenceServerClient.parse_response_body(
            answer.content, header_length=int(answer.headers["Inference-Header-Content-Length"])
        )
        assert result.as_numpy("anomaly_score").shape == (2,)
    tensor.set_data_from_numpy(X, binary_data=False)
    json_body, _ = triton.InferenceServerClient.generate_request_body([tensor])
    answer = requests.post(
        url, data=json_body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    answer = requests.post(url, data=json_body, headers={"Content-Type": "text/csv"}, timeout=10)
    assert answer.status_code == 415
    accepted = "application/json or application/octet-stream"
    assert answer.json() == {"error": f"Content-Type must be {accepted}, got text/csv"}
    big = b" " * (BODY_LIMIT + 1)
    answer = requests.post(url, data=big, timeout=10)
    assert answer.status_code == 413
    limit = f"the limit is {BODY_LIMIT} (VIGIL_MAX_BODY_BYTES)"
    assert answer.json() == {"error": f"body is {BODY_LIMIT + 1} bytes; {limit}"}


def test_infers_count_in_the_model_metrics(served, client):
    before = scrape(served.url)
    X = rows(2, n=30, seed=9)
    flags = infer(client, "sensors", X, version="2").as_numpy("is_anomaly")
    infer(client, "sensors", X[:1], binary=False, version="2")
    after = scrape(served.url)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    anomalies = int(flags.sum()) + int(flags[0])
    assert 0 < anomalies < 31
    labels = {"model": "sensors", "version": "2"}
    assert delta("vigil_predictions_total", **labels, outcome="anomaly") == anomalies
    assert delta("vigil_predictions_total", **labels, outcome="normal") == 31 - anomalies
    assert delta("vigil_rows_per_request_count", endpoint="v2") == 2
    assert delta("vigil_rows_per_request_sum", endpoint="v2") == 31
    assert delta("vigil_inference_duration_seconds_count", model="sensors", endpoint="v2") == 2
    handler = {"handler": "/v2/models/{name}/versions/{version}/infer", "method": "POST"}
    assert delta("http_requests_total", **handler, status="200") == 2
