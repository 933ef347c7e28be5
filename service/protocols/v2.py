"""Open Inference Protocol V2 (REST): infer requests in; responses and documents out.

Pure: bytes and plain values in, numpy and bytes out; no web framework. The routes read the
body and the ``Inference-Header-Content-Length`` header, call :func:`parse_infer_request`,
score ``request.features``, and answer :func:`encode_infer_response`'s bytes with
:func:`response_headers`. A :class:`V2Error` becomes ``{"error": message}`` with its status.

A Vigil model has one input tensor, ``[rows, n_features]`` of FP64 (FP32 accepted, converted
exactly to float64), and three outputs per row: ``is_anomaly`` (BOOL), ``prediction`` (INT32,
1 inlier / -1 anomaly) and ``anomaly_score`` (FP64). Implemented extensions: binary tensor
data (a JSON header of ``Inference-Header-Content-Length`` bytes, then raw little-endian
tensors, each input's size in ``parameters.binary_data_size``) and the model repository.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson

from service.protocols.common import (
    NOT_FOUND,
    NOT_READY,
    ProtocolError,
    decode_object,
    not_ready_message,
    type_name,
    unknown_model_message,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "input-0"
"""The name the metadata gives the input; requests may name it anything (there is one)."""
INPUT_DATATYPES: dict[str, np.dtype] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
OUTPUTS: dict[str, str] = {"is_anomaly": "BOOL", "prediction": "INT32", "anomaly_score": "FP64"}
"""Output name -> datatype, in the order a response lists them when none are requested."""
EXTENSIONS = ("binary_tensor_data", "model_repository")
SERVER_NAME = "vigil"
REPOSITORY_STATES = ("READY", "UNAVAILABLE", "LOADING", "UNLOADING")
ROW_LIMIT_SETTING = "VIGIL_MAX_BATCH_ROWS"
_NUMBER_TYPES = {int, float}  # exactly: a JSON true is not a feature value
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_OUTPUT_LIST = ", ".join(OUTPUTS)
_JSON_HEADERS = ((b"content-type", b"application/json"),)
_BINARY_TYPE = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()


class V2Error(ProtocolError):
    """A refused V2 request: 400 bad request, 404 unknown model or version, 503 not ready."""


class RequestedOutput(NamedTuple):
    name: str
    """One of :data:`OUTPUTS`."""
    binary: bool = False
    """Send it as binary tensor data after the JSON header rather than in ``data``."""


class InferRequest(NamedTuple):
    """A parsed infer request (a named tuple: built on every request, so built cheaply)."""

    id: str | None
    """The request's ``id``, to echo in the response; None when it sent none."""
    features: np.ndarray
    """float64, C-contiguous, shape (rows, n_features), every value finite."""
    datatype: str
    """``FP64`` or ``FP32`` (already converted exactly to float64)."""
    outputs: tuple[RequestedOutput, ...]
    """What to answer, in order: the request's ``outputs``, or all of :data:`OUTPUTS`."""
    parameters: dict[str, Any]
    """The request's ``parameters`` (``binary_data_output`` is already applied to outputs)."""


_ALL_OUTPUTS = {
    binary: tuple(RequestedOutput(name, binary) for name in OUTPUTS) for binary in (False, True)
}


# --- infer requests ---------------------------------------------------------------------------


def parse_infer_request(
    body: bytes,
    header_length: str | int | None,
    feature_names: Sequence[str],
    max_rows: int,
) -> InferRequest:
    """Parse and validate an infer request for a model with ``feature_names``.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None when absent):
    the JSON header's size, binary tensor data following it. Raises :class:`V2Error` (400)
    naming the field, e.g. ``inputs[0].shape: ...``.
    """
    binary: bytes | memoryview = b""
    framed = header_length is not None
    if framed:
        size = _header_length(header_length, len(body))
        binary = memoryview(body)[size:]
        body = body[:size]
    doc = decode_object(body, V2Error, 'an "inputs" array of one tensor')
    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise V2Error(f"id: expected a string, got {type_name(request_id)}")
    parameters = _parameters(doc.get("parameters"), "parameters")
    binary_output = parameters.get("binary_data_output", False)
    if type(binary_output) is not bool:
        raise V2Error(
            f"parameters.binary_data_output: expected true or false, got {_show(binary_output)}"
        )
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        got = "none" if inputs is None else _show(inputs) if inputs == [] else type_name(inputs)
        raise V2Error(f"inputs: expected an array of one input tensor, got {got}")
    if len(inputs) > 1:
        raise V2Error(
            f"inputs: expected one input tensor (the [rows, {len(feature_names)}] feature"
            f" matrix), got {len(inputs)}"
        )
    features, datatype = _input_matrix(inputs[0], binary, framed, feature_names, max_rows)
    outputs = _outputs(doc.get("outputs"), binary_output)
    return InferRequest(request_id, features, datatype, outputs, parameters)


def _header_length(value: str | int, body_size: int) -> int:
    if type(value) is int:
        size = value
    elif isinstance(value, str) and value.isascii() and value.strip().isdigit():
        digits = value.strip()
        if len(digits) > 18:  # more than any body holds (and int() refuses 4,300 digits)
            raise V2Error(
                f"{HEADER_LENGTH}: {_show(digits)} is beyond the end of the {body_size}-byte body"
            )
        size = int(digits)
    else:
        raise V2Error(f"{HEADER_LENGTH}: expected a whole number of bytes, got {_show(value)}")
    if size > body_size:
        raise V2Error(f"{HEADER_LENGTH}: {size} is beyond the end of the {body_size}-byte body")
    if size < 0:
        raise V2Error(f"{HEADER_LENGTH}: expected a whole number of bytes, got {size}")
    return size


def _input_matrix(
    tensor: object,
    binary: bytes | memoryview,
    framed: bool,
    names: Sequence[str],
    max_rows: int,
) -> tuple[np.ndarray, str]:
    if type(tensor) is not dict:
        raise V2Error(
            "inputs[0]: expected a tensor object with name, shape, datatype and data,"
            f" got {type_name(tensor)}"
        )
    datatype = tensor.get("datatype")
    dtype = INPUT_DATATYPES.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise V2Error(f"inputs[0].datatype: expected FP64 or FP32, got {_show(datatype)}")
    n = len(names)
    rows = _rows(tensor.get("shape"), names, max_rows)
    params = _parameters(tensor.get("parameters"), "inputs[0].parameters")
    for key in _SHARED_MEMORY if params else ():
        if key in params:
            raise V2Error(
                f"inputs[0].parameters.{key}: the shared-memory extension is not supported;"
                " send the tensor in the request body"
            )
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise V2Error(
                "inputs[0]: has both data and parameters.binary_data_size; send the tensor one way"
            )
        X = _binary_matrix(size, binary, framed, rows, n, dtype, datatype)
    else:
        if "data" not in tensor:
            raise V2Error(
                "inputs[0].data: missing; send the values in data, or as binary tensor data"
                " with parameters.binary_data_size"
            )
        if binary:
            raise V2Error(
                f"request body: {len(binary)} bytes follow the JSON header but no input has"
                " parameters.binary_data_size"
            )
        X = _json_matrix(tensor["data"], rows, names)
        if datatype == "FP32":  # FP32 values: round them as the client's own FP32 would be
            with np.errstate(over="ignore"):
                X = X.astype(np.float32).astype(np.float64)
            bad = _first_nonfinite(X)
            if bad is not None:
                r, i, _ = bad
                raise V2Error(
                    f"inputs[0].data: row {r}, feature {i} ({names[i]}) is beyond the FP32"
                    " range; send the tensor as FP64"
                )
        return X, datatype  # finite: strict JSON has no NaN, Infinity or 1e999
    bad = _first_nonfinite(X)
    if bad is not None:
        r, i, value = bad
        raise V2Error(
            f"inputs[0].data: row {r}, feature {i} ({names[i]}) is {value}; values must be finite"
        )
    return X, datatype


def _rows(shape: object, names: Sequence[str], max_rows: int) -> int:
    n = len(names)
    if (
        type(shape) is list
        and len(shape) == 2
        and type(shape[0]) is int
        and type(shape[1]) is int
        and 0 < shape[0] <= max_rows
        and shape[1] == n
    ):
        return shape[0]  # the usual case, in a few attribute checks: it is on the hot path
    expected = f"[rows, {n}] ({_features(names)})"
    if (
        type(shape) is not list
        or not all(type(d) is int for d in shape)
        or any(d < 0 for d in shape)
    ):
        raise V2Error(
            f"inputs[0].shape: expected {expected} as an array of whole numbers, got {_show(shape)}"
        )
    if len(shape) != 2 or shape[1] != n:
        hint = f"; send one row as [1, {n}]" if shape == [n] else ""
        raise V2Error(f"inputs[0].shape: expected {expected}, got {_show(shape)}{hint}")
    rows = shape[0]
    if rows == 0:
        raise V2Error("inputs[0].shape: 0 rows; send at least one row")
    raise V2Error(f"inputs[0].shape: {rows} rows; the limit is {max_rows} ({ROW_LIMIT_SETTING})")


def _binary_matrix(
    size: object,
    binary: bytes | memoryview,
    framed: bool,
    rows: int,
    n: int,
    dtype: np.dtype,
    datatype: str,
) -> np.ndarray:
    where = "inputs[0].parameters.binary_data_size"
    if type(size) is not int or size < 0:
        raise V2Error(f"{where}: expected a whole number of bytes, got {_show(size)}")
    if not framed:
        raise V2Error(
            f"{where}: set, but the request has no {HEADER_LENGTH} header to say where the"
            " binary data starts"
        )
    need = rows * n * dtype.itemsize
    if size != need:
        raise V2Error(f"{where}: {size} bytes, but shape [{rows}, {n}] of {datatype} is {need}")
    if len(binary) < size:
        raise V2Error(
            f"inputs[0]: binary tensor data is truncated: {len(binary)} bytes follow the JSON"
            f" header, {size} expected"
        )
    if len(binary) > size:
        raise V2Error(
            f"request body: {len(binary) - size} bytes follow the tensor data; each input's"
            " parameters.binary_data_size must cover the body"
        )
    # astype copies: the matrix owns its memory, aligned and native, whatever the body was.
    return np.frombuffer(binary, dtype=dtype, count=rows * n).reshape(rows, n).astype(np.float64)


def _json_matrix(data: object, rows: int, names: Sequence[str]) -> np.ndarray:
    n = len(names)
    where = "inputs[0].data"
    if type(data) is not list:
        raise V2Error(
            f"{where}: expected an array of numbers, flat or nested by row, got {type_name(data)}"
        )
    if data and type(data[0]) is list:  # nested row-major: one array per row
        if len(data) != rows:
            raise V2Error(f"{where}: {len(data)} rows, but shape [{rows}, {n}] has {rows}")
        if set(map(type, data)) != {list} or set(map(len, data)) != {n}:
            for r, row in enumerate(data):
                if type(row) is not list:
                    raise V2Error(
                        f"{where}[{r}]: expected an array of {n} numbers, got {type_name(row)}"
                    )
                if len(row) != n:
                    raise V2Error(
                        f"{where}[{r}]: {len(row)} values, but shape [{rows}, {n}] has {n} a row"
                    )
        values = chain.from_iterable(data)
    else:
        if len(data) != rows * n:
            raise V2Error(f"{where}: {len(data)} values, but shape [{rows}, {n}] has {rows * n}")
        values = iter(data)
    if not set(map(type, values)) <= _NUMBER_TYPES:
        flat = data if not data or type(data[0]) is not list else list(chain.from_iterable(data))
        k = next(k for k, v in enumerate(flat) if type(v) not in _NUMBER_TYPES)
        r, i = divmod(k, n)
        raise V2Error(
            f"{where}: row {r}, feature {i} ({names[i]}) must be a number, got {type_name(flat[k])}"
        )
    return np.array(data, dtype=np.float64).reshape(rows, n)


def _first_nonfinite(X: np.ndarray) -> tuple[int, int, float] | None:
    """(row, feature, value) of the first NaN or infinity, if any."""
    if np.isfinite(X).all():
        return None
    k = int(np.flatnonzero(~np.isfinite(X))[0])
    r, i = divmod(k, X.shape[1])
    return r, i, float(X.flat[k])


def _outputs(value: object, default_binary: bool) -> tuple[RequestedOutput, ...]:
    if value is None or value == []:  # the spec: none requested means all of them
        return _ALL_OUTPUTS[default_binary]
    if type(value) is not list:
        raise V2Error(
            f'outputs: expected an array of {{"name": ...}} objects, got {type_name(value)}'
        )
    requested: list[RequestedOutput] = []
    for k, item in enumerate(value):
        where = f"outputs[{k}]"
        if type(item) is not dict:
            raise V2Error(f"{where}: expected an object with a name, got {type_name(item)}")
        name = item.get("name")
        if type(name) is not str or name not in OUTPUTS:
            raise V2Error(
                f"{where}.name: unknown output {_show(name)}; the outputs are {_OUTPUT_LIST}"
            )
        if any(r.name == name for r in requested):
            raise V2Error(f"{where}.name: {name} is requested twice")
        params = _parameters(item.get("parameters"), f"{where}.parameters")
        if "classification" in params:
            raise V2Error(
                f"{where}.parameters.classification: the classification extension is not supported"
            )
        binary = params.get("binary_data", default_binary)
        if type(binary) is not bool:
            raise V2Error(
                f"{where}.parameters.binary_data: expected true or false, got {_show(binary)}"
            )
        requested.append(RequestedOutput(name, binary))
    return tuple(requested)


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise V2Error(f"{where}: expected an object, got {type_name(value)}")
    return value


def _features(names: Sequence[str]) -> str:
    return f"{len(names)} features: {', '.join(names)}"


def _show(value: object, limit: int = 60) -> str:
    """A JSON rendering of (part of) what the client sent, for a message."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- infer responses --------------------------------------------------------------------------


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[RequestedOutput],
    is_anomaly: np.ndarray,
    anomaly_score: np.ndarray,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when an output is binary, the JSON header's length (else None).

    Each output has shape ``[rows]``; ``id`` is echoed when the request had one.
    """
    rows = len(is_anomaly)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": OUTPUTS[output.name],
            "shape": [rows],
        }
        if output.binary:
            raw = _output_bytes(output.name, is_anomaly, anomaly_score)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _output_list(output.name, is_anomaly, anomaly_score)
        tensors.append(tensor)
    doc["outputs"] = tensors
    header = orjson.dumps(doc)
    if not chunks:
        return header, None
    return b"".join((header, *chunks)), len(header)


def _output_bytes(name: str, is_anomaly: np.ndarray, anomaly_score: np.ndarray) -> bytes:
    """An output as binary tensor data: BOOL one byte each, INT32 and FP64 little-endian."""
    if name == "is_anomaly":
        return np.asarray(is_anomaly, dtype=np.bool_).tobytes()
    if name == "prediction":
        return np.where(is_anomaly, -1, 1).astype("<i4").tobytes()
    return np.asarray(anomaly_score, dtype="<f8").tobytes()


def _output_list(name: str, is_anomaly: np.ndarray, anomaly_score: np.ndarray) -> list:
    """An output as JSON ``data`` (lists: cheaper than numpy for the one-row hot path)."""
    if name == "is_anomaly":
        return [bool(a) for a in is_anomaly.tolist()]
    if name == "prediction":
        return [-1 if a else 1 for a in is_anomaly.tolist()]
    return [float(s) for s in anomaly_score.tolist()]


def response_headers(header_length: int | None) -> tuple[tuple[bytes, bytes], ...]:
    """Content type and, for a binary response, ``Inference-Header-Content-Length``, as raw
    (lower-case) ASGI headers."""
    if header_length is None:
        return _JSON_HEADERS
    return (_BINARY_TYPE, (_HEADER_LENGTH_KEY, str(header_length).encode()))


# --- errors with their status -----------------------------------------------------------------


def unknown_model(name: str, known: Sequence[str]) -> V2Error:
    """404 for a model the registry does not serve; the message lists those it does."""
    return V2Error(unknown_model_message(name, known), NOT_FOUND)


def unknown_version(name: str, version: str, versions: Sequence[str]) -> V2Error:
    """404 for a version the model does not have (or that is not loaded)."""
    listed = ", ".join(versions) or "none"
    return V2Error(f"model {name!r} has no version {version!r}; versions: {listed}", NOT_FOUND)


def not_ready(name: str, reason: str | None) -> V2Error:
    """503 for a known model that cannot score now."""
    return V2Error(not_ready_message(name, reason), NOT_READY)


# --- metadata and repository documents --------------------------------------------------------


def server_metadata(version: str, extensions: Sequence[str] = EXTENSIONS) -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": SERVER_NAME, "version": version, "extensions": list(extensions)}


def model_metadata(
    name: str,
    versions: Sequence[str],
    feature_names: Sequence[str],
    *,
    kind: str = "iforest",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /v2/models/{name}[/versions/{v}]``: the input is FP64 ``[-1, n_features]`` (its
    ``parameters`` name the features and say FP32 is accepted too); the three outputs are
    ``[-1]``. ``parameters`` (threshold, content hash...) go into the document's own."""
    doc: dict[str, Any] = {
        "name": name,
        "versions": list(versions),
        "platform": f"vigil_{kind}",
        "inputs": [
            {
                "name": INPUT_NAME,
                "datatype": "FP64",
                "shape": [-1, len(feature_names)],
                "parameters": {
                    "feature_names": list(feature_names),
                    "datatypes": list(INPUT_DATATYPES),
                },
            }
        ],
        "outputs": [
            {"name": output, "datatype": datatype, "shape": [-1]}
            for output, datatype in OUTPUTS.items()
        ],
    }
    if parameters:
        doc["parameters"] = dict(parameters)
    return doc


def model_ready(name: str, ready: bool) -> dict[str, Any]:
    """``GET /v2/models/{name}/ready``'s body (the status, 200 or 503, is what clients read)."""
    return {"name": name, "ready": ready}


def repository_index_entry(
    name: str, version: str | None, state: str, reason: str = ""
) -> dict[str, Any]:
    """One entry of ``POST /v2/repository/index``'s array."""
    if state not in REPOSITORY_STATES:
        raise ValueError(f"state must be one of {', '.join(REPOSITORY_STATES)}, got {state!r}")
    entry: dict[str, Any] = {"name": name}
    if version is not None:
        entry["version"] = version
    entry["state"] = state
    entry["reason"] = reason
    return entry


def parse_repository_index_request(body: bytes) -> bool:
    """``POST /v2/repository/index``: True when only ready models are asked for
    (``{"ready": true}``); an empty body asks for all."""
    if not body.strip():
        return False
    doc = decode_object(body, V2Error, 'an optional "ready" flag')
    ready = doc.get("ready", False)
    if type(ready) is not bool:
        raise V2Error(f"ready: expected true or false, got {_show(ready)}")
    return ready


def parse_repository_load_request(body: bytes, action: str = "load") -> None:
    """Validate the optional body of ``.../load`` or ``.../unload``: Vigil takes no load
    parameters (no config override, no model files in the request), and refuses them rather
    than ignore them; unload's ``unload_dependents`` is accepted (models have no dependents)."""
    if not body.strip():
        return
    doc = decode_object(body, V2Error, 'optional "parameters"')
    params = _parameters(doc.get("parameters"), "parameters")
    for key, value in params.items():
        if action == "unload" and key == "unload_dependents" and type(value) is bool:
            continue
        raise V2Error(f"parameters.{key}: not supported by {action}; send no parameters")
