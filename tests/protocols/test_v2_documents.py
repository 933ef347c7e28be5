"""V2 metadata and repository documents: what a client reads from them is what the infer codec
accepts and answers."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service import __version__
from service.protocols import v2
from tests.protocols.triton import DTYPES, read_response, request_body

NAMES = ("mean", "sd", "max")


def test_model_metadata_shape_and_fields():
    meta = v2.model_metadata("fraud", ["1", "3"], NAMES, parameters={"threshold": 0.62})
    assert meta == {
        "name": "fraud",
        "versions": ["1", "3"],
        "platform": "vigil_iforest",
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [-1, 3],
                "parameters": {
                    "feature_names": ["mean", "sd", "max"],
                    "datatypes": ["FP64", "FP32"],
                },
            }
        ],
        "outputs": [
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]},
            {"name": "prediction", "datatype": "INT32", "shape": [-1]},
            {"name": "anomaly_score", "datatype": "FP64", "shape": [-1]},
        ],
        "parameters": {"threshold": 0.62},
    }
    assert "parameters" not in v2.model_metadata("fraud", [], NAMES)
    orjson.dumps(meta)  # serialisable as is


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_client_built_from_the_metadata_is_understood(binary):
    meta = v2.model_metadata("fraud", ["1"], NAMES)
    declared = meta["inputs"][0]
    for datatype in declared["parameters"]["datatypes"]:
        shape = [5 if d == -1 else d for d in declared["shape"]]
        X = np.arange(15, dtype=DTYPES[datatype]).reshape(shape)
        request = v2.parse_infer_request(*request_body(X, binary=binary), NAMES, 10)
        assert request.features.tolist() == X.tolist()

        flags = np.array([False, True, False, False, True])
        body, length = v2.encode_infer_response(
            model_name="fraud", model_version="1", request_id=None, outputs=request.outputs,
            is_anomaly=flags, anomaly_score=np.linspace(0.3, 0.9, 5),
        )  # fmt: skip
        answered = read_response(body, length).get_response()["outputs"]
        # Each output is as the metadata declares it: name, datatype, one value per row.
        assert [(o["name"], o["datatype"]) for o in answered] == [
            (o["name"], o["datatype"]) for o in meta["outputs"]
        ]
        assert all(o["shape"] == [len(X)] for o in answered)


def test_server_metadata_names_the_implemented_extensions():
    assert v2.server_metadata(__version__) == {
        "name": "vigil",
        "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository"],
    }
    assert v2.server_metadata("1.0", extensions=["binary_tensor_data"])["extensions"] == [
        "binary_tensor_data"
    ]


def test_model_ready_document():
    assert v2.model_ready("fraud", False) == {"name": "fraud", "ready": False}


def test_repository_index_entries():
    assert v2.repository_index_entry("fraud", "2", "READY") == {
        "name": "fraud",
        "version": "2",
        "state": "READY",
        "reason": "",
    }
    assert v2.repository_index_entry("old", None, "UNAVAILABLE", "unloaded") == {
        "name": "old",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    }
    with pytest.raises(ValueError, match="state must be one of READY, UNAVAILABLE"):
        v2.repository_index_entry("fraud", "2", "ready")


@pytest.mark.parametrize(
    ("body", "ready_only"),
    [(b"", False), (b"{}", False), (b'{"ready": true}', True), (b'{"ready": false}', False)],
)
def test_repository_index_request(body, ready_only):
    assert v2.parse_repository_index_request(body) is ready_only


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"ready": "yes"}', 'ready: expected true or false, got "yes"'),
        (
            b"[true]",
            'request body must be a JSON object with an optional "ready" flag, got an array',
        ),
    ],
)
def test_bad_repository_index_request_is_a_400(body, message):
    with pytest.raises(v2.V2Error) as caught:
        v2.parse_repository_index_request(body)
    assert (caught.value.message, caught.value.status) == (message, 400)


def test_repository_load_and_unload_requests():
    v2.parse_repository_load_request(b"")
    v2.parse_repository_load_request(b'{"parameters": {}}')
    v2.parse_repository_load_request(b'{"parameters": {"unload_dependents": true}}', "unload")
    with pytest.raises(v2.V2Error) as caught:  # a config override would be silently lost
        v2.parse_repository_load_request(b'{"parameters": {"config": "{}"}}')
    assert caught.value.message == "parameters.config: not supported by load; send no parameters"
    with pytest.raises(v2.V2Error) as caught:
        v2.parse_repository_load_request(b'{"parameters": {"unload_dependents": true}}')
    assert caught.value.status == 400
