"""V2 infer requests built by the real tritonclient parse to the exact matrix it was given, and
responses we encode read back in tritonclient as the scores we encoded."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.models import artifact
from service.models.loaded import Model
from service.protocols import v2
from service.serving import dataplane as handlers
from tests.protocols.triton import DTYPES, read_response, request_body

NAMES = ("mean", "sd")


def parse(body: bytes, header_length: int | None, names=NAMES, max_rows: int = 10_000):
    return v2.parse_infer_request(body, header_length, names, max_rows)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_tensor_parses_to_the_exact_matrix(datatype, binary):
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((7, 2)) * 1e3).astype(DTYPES[datatype])
    X[0] = [0.1, -0.0]
    X[1] = [np.finfo(X.dtype).max, np.finfo(X.dtype).tiny / 4]  # a subnormal too
    body, header_length = request_body(X, binary=binary, request_id="req-42")
    assert (header_length is not None) == binary

    request = parse(body, header_length)

    assert same_bits(request.features, X.astype(np.float64))
    assert request.features.flags.c_contiguous
    assert request.datatype == datatype
    assert request.id == "req-42"


def test_fp32_json_and_binary_give_the_same_matrix_and_round_hand_written_values():
    X = np.array([[0.1, 1 / 3]], dtype=np.float32)
    from_json = parse(*request_body(X, binary=False)).features
    from_binary = parse(*request_body(X, binary=True)).features
    assert same_bits(from_json, from_binary)
    # A hand-written FP32 tensor means FP32 values: 0.1 is read as float32(0.1), not 0.1.
    hand = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[0.1,0.3333333333]}]}'
    assert same_bits(parse(hand, None).features, from_json)
    assert parse(hand, None).features[0, 0] != 0.1


def test_nested_row_major_data_equals_flat():
    flat = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[1,2.5,3,4]}]}'
    nested = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[1,2.5],[3,4]]}]}'
    expected = np.array([[1, 2.5], [3, 4]], dtype=np.float64)
    assert same_bits(parse(flat, None).features, expected)
    assert same_bits(parse(nested, None).features, expected)


def test_requested_outputs_come_back_in_tritonclient_binary_or_json_as_asked():
    outputs = [
        triton.InferRequestedOutput("anomaly_score", binary_data=True),
        triton.InferRequestedOutput("is_anomaly", binary_data=False),
    ]
    body, header_length = request_body(np.zeros((3, 2)), binary=True, outputs=outputs)
    request = parse(body, header_length)
    assert request.outputs == (
        v2.RequestedOutput("anomaly_score", binary=True),
        v2.RequestedOutput("is_anomaly", binary=False),
    )
    flags = np.array([True, False, True])
    scores = np.array([0.71, 0.42, 0.9999999999999999])
    out, out_length = v2.encode_infer_response(
        model_name="m", model_version="2", request_id=None, outputs=request.outputs,
        is_anomaly=flags, anomaly_score=scores,
    )  # fmt: skip
    result = read_response(out, out_length)
    assert same_bits(result.as_numpy("anomaly_score"), scores)
    assert same_bits(result.as_numpy("is_anomaly"), flags)
    assert result.as_numpy("prediction") is None  # not asked for, not sent
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["anomaly_score", "is_anomaly"]
    assert "data" in response["outputs"][1] and "data" not in response["outputs"][0]
    assert "id" not in response and response["model_version"] == "2"


def test_without_outputs_tritonclient_gets_all_three_binary_and_a_plain_request_all_json():
    body, header_length = request_body(np.zeros((1, 2)), binary=False)  # binary_data_output
    assert [(o.name, o.binary) for o in parse(body, header_length).outputs] == [
        ("is_anomaly", True), ("prediction", True), ("anomaly_score", True),
    ]  # fmt: skip
    plain = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[0,0]}]}'
    request = parse(plain, None)
    assert [(o.name, o.binary) for o in request.outputs] == [
        ("is_anomaly", False), ("prediction", False), ("anomaly_score", False),
    ]  # fmt: skip
    out, out_length = v2.encode_infer_response(
        model_name="m", model_version=None, request_id="7", outputs=request.outputs,
        is_anomaly=np.array([True]), anomaly_score=np.array([0.75]),
    )  # fmt: skip
    assert out_length is None
    assert dict(v2.response_headers(out_length)) == {b"content-type": b"application/json"}
    result = read_response(out, out_length)
    assert result.get_response() == {
        "model_name": "m",
        "id": "7",
        "outputs": [
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "prediction", "datatype": "INT32", "shape": [1], "data": [-1]},
            {"name": "anomaly_score", "datatype": "FP64", "shape": [1], "data": [0.75]},
        ],
    }


def test_binary_response_headers_carry_the_json_header_length():
    request = parse(*request_body(np.zeros((2, 2)), binary=True))
    out, out_length = v2.encode_infer_response(
        model_name="m", model_version="1", request_id=None, outputs=request.outputs,
        is_anomaly=np.array([False, True]), anomaly_score=np.array([0.5, 0.8]),
    )  # fmt: skip
    headers = dict(v2.response_headers(out_length))
    assert headers[v2.HEADER_LENGTH.lower().encode()] == str(out_length).encode()
    assert headers[b"content-type"] == b"application/octet-stream"
    assert (
        out[out_length:]
        == b"\x00\x01" + np.array([1, -1], "<i4").tobytes() + np.array([0.5, 0.8], "<f8").tobytes()
    )


@pytest.fixture(scope="module")
def model(model_path) -> Model:
    return Model(artifact.load(model_path), model_path)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_answers_equal_the_predictions_route_for_the_same_rows(model, datatype, binary):
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 0.1, (40, 2)), rng.uniform(-3, 3, (10, 2))])
    X = X.astype(DTYPES[datatype])
    rows = X.astype(np.float64).tolist()  # the same values, as /predictions receives them
    expected = handlers.batch_result(model, model.score(model.parser.many(rows, 10_000)), True)

    request = v2.parse_infer_request(*request_body(X, binary=binary), model.feature_names, 10_000)
    scores = model.score(request.features)
    out, out_length = v2.encode_infer_response(
        model_name="default", model_version="1", request_id=request.id,
        outputs=request.outputs, is_anomaly=scores.is_anomaly, anomaly_score=scores.anomaly_score,
    )  # fmt: skip
    result = read_response(out, out_length)

    got = [
        {"prediction": int(p), "is_anomaly": bool(a), "anomaly_score": float(s)}
        for p, a, s in zip(
            result.as_numpy("prediction"),
            result.as_numpy("is_anomaly"),
            result.as_numpy("anomaly_score"),
            strict=True,
        )
    ]
    assert got == expected["predictions"]
    assert {p["is_anomaly"] for p in got} == {True, False}  # both kinds of answer compared


@st.composite
def tensors(draw):
    datatype = draw(st.sampled_from(["FP32", "FP64"]))
    dtype = np.dtype(DTYPES[datatype])
    shape = (draw(st.integers(1, 30)), draw(st.integers(1, 6)))
    values = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, shape, elements=values))


@settings(max_examples=150, deadline=None)
@given(X=tensors(), binary=st.booleans(), request_id=st.text(max_size=8))
def test_any_finite_tensor_round_trips_exactly(X, binary, request_id):
    names = tuple(f"f{i}" for i in range(X.shape[1]))
    body, header_length = request_body(X, binary=binary, request_id=request_id)
    request = v2.parse_infer_request(body, header_length, names, 30)
    assert same_bits(request.features, X.astype(np.float64))
    assert request.id == (request_id or None)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    rows=st.integers(1, 40),
    picked=st.lists(st.sampled_from(list(v2.OUTPUTS)), unique=True),
)
def test_any_scores_read_back_exactly_in_tritonclient(data, rows, picked):
    flags = data.draw(hnp.arrays(np.bool_, rows))
    scores = data.draw(hnp.arrays(np.float64, rows, elements=st.floats(0, 1, exclude_min=True)))
    outputs = [v2.RequestedOutput(name, data.draw(st.booleans())) for name in picked]
    outputs = outputs or [v2.RequestedOutput(name) for name in v2.OUTPUTS]
    out, out_length = v2.encode_infer_response(
        model_name="m", model_version="3", request_id="x", outputs=outputs,
        is_anomaly=flags, anomaly_score=scores,
    )  # fmt: skip
    result = read_response(out, out_length)
    expected = {
        "is_anomaly": flags,
        "prediction": np.where(flags, -1, 1).astype(np.int32),
        "anomaly_score": scores,
    }
    for output in outputs:
        assert same_bits(result.as_numpy(output.name), expected[output.name])
