"""The V2 model repository extension on a live Vigil, with tritonclient.http: index, load
(the registry's reload with its guarantees) and unload (refused: the registry decides)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.models import artifact
from service.models.registry import Registry
from tests.protocols.conftest import ADMIN_TOKEN, build_registry, serve_registry

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def registry_server(tmp_path, model_path):
    """A server of its own: these tests change its registry."""
    root = tmp_path / "registry"
    build_registry(root, model_path)
    server = serve_registry(root, tmp_path / "logs")
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield root, client, server.url
    client.close()
    server.stop()


def refused(call, status: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == status, caught.value
    return caught.value.message()


def score(client, name: str, row: list[float]) -> tuple[str, float]:
    tensor = triton.InferInput("input-0", [1, len(row)], "FP64")
    tensor.set_data_from_numpy(np.array([row]))
    result = client.infer(name, [tensor])
    return result.get_response()["model_version"], float(result.as_numpy("anomaly_score")[0])


def test_index_lists_every_registered_version_with_its_state(registry_server):
    _, client, url = registry_server
    index = client.get_model_repository_index()
    assert index == [
        {"name": "sensors", "version": "1", "state": "READY", "reason": ""},
        {"name": "sensors", "version": "2", "state": "READY", "reason": ""},
        {
            "name": "sensors",
            "version": "3",
            "state": "UNAVAILABLE",
            "reason": "not loaded (VIGIL_REGISTRY_LOAD=aliased)",
        },
        {"name": "wide", "version": "1", "state": "READY", "reason": ""},
    ]
    ready = requests.post(f"{url}/v2/repository/index", json={"ready": True}, timeout=10)
    assert ready.json() == [e for e in index if e["state"] == "READY"]
    refused = requests.post(f"{url}/v2/repository/index", json={"ready": "yes"}, timeout=10)
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": 'ready: expected true or false, got "yes"'},
    )


def test_load_reloads_the_registry_and_serves_the_model(registry_server, model_path):
    root, client, _ = registry_server
    registry = Registry(root)
    trained = artifact.load(model_path)
    registry.register("fresh", lambda p: artifact.save(trained, p))
    assert not client.is_model_ready("fresh")  # not until a reload

    message = refused(lambda: client.load_model("fresh"), "401")
    assert message == "admin token required: send 'Authorization: Bearer <VIGIL_ADMIN_TOKEN>'"
    assert refused(
        lambda: client.load_model("fresh", headers={"Authorization": "Bearer no"}), "403"
    )
    assert not client.is_model_ready("fresh")

    client.load_model("fresh", headers=ADMIN)
    assert client.is_model_ready("fresh")
    assert score(client, "fresh", [0.1, 0.1]) == score(client, "sensors", [0.1, 0.1])
    assert {"name": "fresh", "version": "1", "state": "READY", "reason": ""} in (
        client.get_model_repository_index()
    )

    # A model the registry does not have: the reload happens, the answer is 404.
    message = refused(lambda: client.load_model("nope", headers=ADMIN), "404")
    assert message == "no model 'nope'; models: fresh, sensors, wide"


def test_a_refused_reload_keeps_the_models_served(registry_server, model_path):
    root, client, _ = registry_server
    registry = Registry(root)
    before = score(client, "sensors", [0.3, -0.1])
    version = registry.register("sensors", lambda p: artifact.save(artifact.load(model_path), p))
    registry.promote("sensors", version.number)
    data = version.path.read_bytes()
    version.path.write_bytes(data[: len(data) // 2])  # the new default is damaged

    message = refused(lambda: client.load_model("sensors", headers=ADMIN), "409")
    assert message == (
        "reload refused, the models served before keep serving: model.joblib: sensors@4: model"
        f" file does not match its manifest: {len(data) // 2} bytes, manifest says {len(data)}"
    )
    assert client.is_model_ready("sensors")
    assert score(client, "sensors", [0.3, -0.1]) == before
    assert client.get_model_metadata("sensors")["versions"] == ["1", "2"]

    registry.promote("sensors", 2)  # no alias on the damaged version 4: it is not loaded
    client.load_model("sensors", headers=ADMIN)
    assert score(client, "sensors", [0.3, -0.1])[0] == "2"


def test_unload_is_refused_and_says_how_to_stop_serving(registry_server):
    _, client, _ = registry_server
    assert refused(lambda: client.unload_model("sensors"), "401")
    message = refused(lambda: client.unload_model("sensors", headers=ADMIN), "400")
    assert message == (
        "unload is not supported: the registry decides what is served. To stop serving"
        " 'sensors', change the registry (python -m service models ...) and POST"
        " /v2/repository/models/sensors/load to reload it"
    )
    assert client.is_model_ready("sensors")
    message = refused(lambda: client.unload_model("nope", headers=ADMIN), "404")
    assert message.startswith("no model 'nope'")
