"""Every malformed V2 infer request is a V2Error whose message names the field and the problem,
with status 400; unknown models are 404 and models that cannot score 503."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from service.protocols import error_body, v2
from tests.protocols.triton import request_body

NAMES = ("mean", "sd")


def refusal(body: bytes, header_length=None, max_rows: int = 10) -> v2.V2Error:
    with pytest.raises(v2.V2Error) as caught:
        v2.parse_infer_request(body, header_length, NAMES, max_rows)
    return caught.value


def tensor_json(**changes) -> bytes:
    tensor = {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
    tensor.update(changes)
    tensor = {k: v for k, v in tensor.items() if v is not ...}
    return orjson.dumps({"inputs": [tensor]})


JSON_CASES = {
    "bad datatype": (
        tensor_json(datatype="INT64"),
        'inputs[0].datatype: expected FP64 or FP32, got "INT64"',
    ),
    "no datatype": (
        tensor_json(datatype=...),
        "inputs[0].datatype: expected FP64 or FP32, got null",
    ),
    "shape and data length differ": (
        tensor_json(data=[1, 2, 3]),
        "inputs[0].data: 3 values, but shape [2, 2] has 4",
    ),
    "wrong feature count": (
        tensor_json(shape=[1, 3], data=[1, 2, 3]),
        "inputs[0].shape: expected [rows, 2] (2 features: mean, sd), got [1,3]",
    ),
    "one-dimensional shape": (
        tensor_json(shape=[2], data=[1, 2]),
        "inputs[0].shape: expected [rows, 2] (2 features: mean, sd), got [2]; send one row as"
        " [1, 2]",
    ),
    "negative dimension": (
        tensor_json(shape=[-1, 2]),
        "inputs[0].shape: expected [rows, 2] (2 features: mean, sd) as an array of whole"
        " numbers, got [-1,2]",
    ),
    "shape of strings": (
        tensor_json(shape=["2", "2"]),
        "inputs[0].shape: expected [rows, 2] (2 features: mean, sd) as an array of whole"
        ' numbers, got ["2","2"]',
    ),
    "no rows": (
        tensor_json(shape=[0, 2], data=[]),
        "inputs[0].shape: 0 rows; send at least one row",
    ),
    "too many rows": (
        tensor_json(shape=[11, 2], data=[0] * 22),
        "inputs[0].shape: 11 rows; the limit is 10 (VIGIL_MAX_BATCH_ROWS)",
    ),
    "a string value": (
        tensor_json(data=[1, 2, "3", 4]),
        "inputs[0].data: row 1, feature 0 (mean) must be a number, got a string",
    ),
    "a boolean value": (
        tensor_json(data=[[1, True], [3, 4]]),
        "inputs[0].data: row 0, feature 1 (sd) must be a number, got a boolean",
    ),
    "a nested row too short": (
        tensor_json(data=[[1, 2], [3]]),
        "inputs[0].data[1]: 1 values, but shape [2, 2] has 2 a row",
    ),
    "nested rows fewer than the shape's": (
        tensor_json(data=[[1, 2]]),
        "inputs[0].data: 1 rows, but shape [2, 2] has 2",
    ),
    "a nested row that is not an array": (
        tensor_json(data=[[1, 2], 3]),
        "inputs[0].data[1]: expected an array of 2 numbers, got a number",
    ),
    "data not an array": (
        tensor_json(data={"mean": 1}),
        "inputs[0].data: expected an array of numbers, flat or nested by row, got an object",
    ),
    "no data": (
        tensor_json(data=...),
        "inputs[0].data: missing; send the values in data, or as binary tensor data with"
        " parameters.binary_data_size",
    ),
    "FP32 value beyond its range": (
        tensor_json(datatype="FP32", data=[1, 2, 3, 1e39]),
        "inputs[0].data: row 1, feature 1 (sd) is beyond the FP32 range; send the tensor as FP64",
    ),
    "binary size without the header": (
        tensor_json(data=..., parameters={"binary_data_size": 32}),
        "inputs[0].parameters.binary_data_size: set, but the request has no"
        " Inference-Header-Content-Length header to say where the binary data starts",
    ),
    "both data and binary size": (
        tensor_json(parameters={"binary_data_size": 32}),
        "inputs[0]: has both data and parameters.binary_data_size; send the tensor one way",
    ),
    "shared memory": (
        tensor_json(data=..., parameters={"shared_memory_region": "r"}),
        "inputs[0].parameters.shared_memory_region: the shared-memory extension is not"
        " supported; send the tensor in the request body",
    ),
    "two inputs": (
        orjson.dumps({"inputs": [orjson.loads(tensor_json())["inputs"][0]] * 2}),
        "inputs: expected one input tensor (the [rows, 2] feature matrix), got 2",
    ),
    "no inputs": (b'{"id": "1"}', "inputs: expected an array of one input tensor, got none"),
    "empty inputs": (b'{"inputs": []}', "inputs: expected an array of one input tensor, got []"),
    "input not an object": (
        b'{"inputs": [[1, 2]]}',
        "inputs[0]: expected a tensor object with name, shape, datatype and data, got an array",
    ),
    "id not a string": (
        orjson.dumps({"id": 7, **orjson.loads(tensor_json())}),
        "id: expected a string, got a number",
    ),
    "parameters not an object": (
        orjson.dumps({"parameters": [1], **orjson.loads(tensor_json())}),
        "parameters: expected an object, got an array",
    ),
    "binary_data_output not a boolean": (
        orjson.dumps({"parameters": {"binary_data_output": 1}, **orjson.loads(tensor_json())}),
        "parameters.binary_data_output: expected true or false, got 1",
    ),
    "empty body": (
        b"  ",
        'request body is empty: send a JSON object with an "inputs" array of one tensor',
    ),
    "not JSON": (
        b"{inputs",
        (
            "body is not valid JSON: unexpected character, expected a string key: line 1 column 2"
            " (char 1)"
        ),
    ),
    "NaN, as tritonclient's JSON writes it": (
        b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[NaN,1.0]}]}',
        "body is not valid JSON: NaN and Infinity are not JSON numbers; feature values must be"
        " finite",
    ),
    "a number beyond float64": (
        tensor_json().replace(b"[1,2,3,4]", b"[1,2,3,1e999]"),
        "a number is too large for a float64 (line 1 column 76 (char 75)); feature values must"
        " be finite",
    ),
    "body an array": (
        b"[[0.1, 0.1]]",
        'request body must be a JSON object with an "inputs" array of one tensor, got an array',
    ),
}


def outputs_json(outputs) -> bytes:
    return orjson.dumps({**orjson.loads(tensor_json()), "outputs": outputs})


OUTPUT_CASES = {
    "unknown output": (
        [{"name": "score"}],
        'outputs[0].name: unknown output "score"; the outputs are is_anomaly, prediction,'
        " anomaly_score",
    ),
    "output without a name": (
        [{"name": "prediction"}, {}],
        "outputs[1].name: unknown output null; the outputs are is_anomaly, prediction,"
        " anomaly_score",
    ),
    "output twice": (
        [{"name": "prediction"}, {"name": "prediction"}],
        "outputs[1].name: prediction is requested twice",
    ),
    "classification": (
        [{"name": "anomaly_score", "parameters": {"classification": 2}}],
        "outputs[0].parameters.classification: the classification extension is not supported",
    ),
    "binary_data not a boolean": (
        [{"name": "anomaly_score", "parameters": {"binary_data": "yes"}}],
        'outputs[0].parameters.binary_data: expected true or false, got "yes"',
    ),
    "outputs not an array": (
        {"name": "prediction"},
        'outputs: expected an array of {"name": ...} objects, got an object',
    ),
    "output not an object": (
        ["prediction"],
        "outputs[0]: expected an object with a name, got a string",
    ),
}


@pytest.mark.parametrize(("body", "message"), JSON_CASES.values(), ids=JSON_CASES.keys())
def test_malformed_json_request_is_a_400_naming_the_field(body, message):
    error = refusal(body)
    assert (error.message, error.status) == (message, 400)


@pytest.mark.parametrize(("outputs", "message"), OUTPUT_CASES.values(), ids=OUTPUT_CASES.keys())
def test_malformed_outputs_are_a_400_naming_the_output(outputs, message):
    error = refusal(outputs_json(outputs))
    assert (error.message, error.status) == (message, 400)


def test_unknown_output_requested_through_tritonclient():
    body, length = request_body(
        np.zeros((1, 2)), binary=True, outputs=[triton.InferRequestedOutput("output0")]
    )
    assert refusal(body, length).message.startswith('outputs[0].name: unknown output "output0"')


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_or_infinity_in_a_binary_tensor_is_refused_with_its_place(value, dtype):
    X = np.zeros((3, 2), dtype=dtype)
    X[2, 1] = value
    error = refusal(*request_body(X, binary=True))
    assert error.status == 400
    assert error.message == (
        f"inputs[0].data: row 2, feature 1 (sd) is {float(value)}; values must be finite"
    )


def test_nan_in_a_json_tensor_from_tritonclient_is_refused():
    X = np.array([[np.nan, 1.0]])
    error = refusal(*request_body(X, binary=False))
    assert error.message.startswith("body is not valid JSON: NaN and Infinity")


def binary_body() -> tuple[bytes, int]:
    body, length = request_body(np.arange(4, dtype=np.float64).reshape(2, 2), binary=True)
    assert length is not None and len(body) == length + 32
    return body, length


def test_truncated_binary_tensor_is_refused():
    body, length = binary_body()
    error = refusal(body[:-1], length)
    assert (error.message, error.status) == (
        "inputs[0]: binary tensor data is truncated: 31 bytes follow the JSON header, 32 expected",
        400,
    )


def test_header_length_beyond_the_body_is_refused():
    body, _ = binary_body()
    error = refusal(body, len(body) + 1)
    assert (error.message, error.status) == (
        f"Inference-Header-Content-Length: {len(body) + 1} is beyond the end of the"
        f" {len(body)}-byte body",
        400,
    )


@pytest.mark.parametrize("header", ["abc", "-5", "1.5", "", "١٢"])
def test_header_length_that_is_not_a_byte_count_is_refused(header):
    body, _ = binary_body()
    error = refusal(body, header)
    shown = orjson.dumps(header).decode()
    assert error.message == (
        f"Inference-Header-Content-Length: expected a whole number of bytes, got {shown}"
    )


def test_header_length_of_thousands_of_digits_is_refused_as_beyond_the_body():
    body, _ = binary_body()
    error = refusal(body, "9" * 5000)
    assert error.message == (
        f'Inference-Header-Content-Length: "{"9" * 56}... is beyond the end of the'
        f" {len(body)}-byte body"
    )


def test_header_length_as_the_http_header_string_is_accepted():
    body, length = binary_body()
    request = v2.parse_infer_request(body, str(length), NAMES, 10)
    assert request.features.tolist() == [[0, 1], [2, 3]]


def test_header_length_short_of_the_json_header_is_refused_as_bad_json():
    body, length = binary_body()
    assert refusal(body, length - 1).message.startswith("body is not valid JSON")


def test_bytes_after_the_tensor_data_are_refused():
    body, length = binary_body()
    error = refusal(body + b"\0" * 8, length)
    assert error.message == (
        "request body: 8 bytes follow the tensor data; each input's parameters.binary_data_size"
        " must cover the body"
    )


def test_binary_bytes_with_a_json_tensor_are_refused():
    body = tensor_json()
    error = refusal(body + b"\0" * 16, len(body))
    assert error.message == (
        "request body: 16 bytes follow the JSON header but no input has parameters.binary_data_size"
    )


def test_binary_size_that_does_not_fit_the_shape_is_refused():
    body, length = request_body(np.zeros((2, 2), dtype=np.float32), binary=True)
    header = orjson.loads(body[:length])
    header["inputs"][0]["datatype"] = "FP64"  # 16 bytes of FP32 declared as FP64
    fake = orjson.dumps(header)
    error = refusal(fake + body[length:], len(fake))
    assert error.message == (
        "inputs[0].parameters.binary_data_size: 16 bytes, but shape [2, 2] of FP64 is 32"
    )


@pytest.mark.parametrize("size", [-1, "16", 1.5, True])
def test_binary_size_that_is_not_a_byte_count_is_refused(size):
    body = tensor_json(data=..., parameters={"binary_data_size": size})
    error = refusal(body, len(body))
    assert error.message == (
        "inputs[0].parameters.binary_data_size: expected a whole number of bytes,"
        f" got {orjson.dumps(size).decode()}"
    )


def test_a_huge_shape_is_refused_before_anything_is_allocated():
    error = refusal(tensor_json(shape=[2**62, 2], data=[1, 2]))
    assert error.message == (
        f"inputs[0].shape: {2**62} rows; the limit is 10 (VIGIL_MAX_BATCH_ROWS)"
    )


def test_long_values_are_shortened_in_messages():
    error = refusal(tensor_json(datatype="X" * 500))
    assert error.message == 'inputs[0].datatype: expected FP64 or FP32, got "' + "X" * 56 + "..."


def test_unknown_model_is_404_and_not_ready_503_with_the_error_body():
    missing = v2.unknown_model("nope", ["b", "a"])
    assert (missing.message, missing.status) == ("unknown model 'nope'; models: a, b", 404)
    version = v2.unknown_version("a", "9", ["1", "2"])
    assert (version.message, version.status) == (
        "model 'a' has no version '9'; versions: 1, 2",
        404,
    )
    busy = v2.not_ready("a", "the artifact failed its hash check")
    assert (busy.message, busy.status) == (
        "model 'a' is not ready: the artifact failed its hash check",
        503,
    )
    assert orjson.loads(error_body(busy.message)) == {"error": busy.message}


def test_unknown_model_lists_at_most_twenty_names():
    error = v2.unknown_model("x", [f"m{i:02}" for i in range(25)])
    assert error.message.endswith("m19 and 5 more")
