"""Input a JSON library or an HTTP client lets through that the service must still refuse clearly:
repeated keys, thousands of unknown keys, compressed bodies."""

import gzip
import json

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from service.api.app import create_app
from service.core.features import InputError, decode_json
from service.settings import Settings

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(model_path):
    with TestClient(create_app(Settings(model_path=model_path))) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/prediction", '{"mean": 0.1, "mean": 99, "sd": 0.1}', "mean"),
        ("/predictions", '[{"mean": 0.1, "sd": 0.1}, {"sd": 1, "mean": 2, "sd": 3}]', "sd"),
        ("/predictions", '[[0.1, 0.1], {"mean": 1, "sd": 2, "mean": 1}]', "mean"),
    ],
)
def test_a_repeated_key_is_422_naming_it(client, path, body, key):
    r = client.post(path, content=body, headers=JSON)
    assert r.status_code == 422
    assert r.json()["detail"] == f'duplicate key "{key}" in an object: give each feature once'


def test_objects_without_repeats_are_scored(client):
    r = client.post("/predictions", json=[{"mean": 0.1, "sd": 0.1}, {"sd": 0.1, "mean": 0.1}])
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == 2


keys = st.text(alphabet='ab:"\\{}', min_size=0, max_size=3)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), keys, st.just([1, {"c": 2}]))


@given(st.lists(st.tuples(keys, values), max_size=6), st.booleans())
def test_duplicates_are_found_exactly(pairs, as_batch):
    """Keys and string values with colons, quotes and braces in them, nested objects: a body
    is refused for a duplicate exactly when one of its objects repeats a key."""
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    if as_batch:
        text = f"[[0.1, 0.2], {text}]"
    names = [k for k, _ in pairs]
    repeated = len(set(names)) < len(names)
    try:
        decode_json(text.encode())
        refused = False
    except InputError as exc:
        assert exc.status_code == 422
        assert exc.message.startswith("duplicate key ")
        refused = True
    assert refused == repeated


def test_many_unknown_keys_give_a_short_detail(client):
    row = {"mean": 0.1, "sd": 0.1, **{f"k{i}": 1 for i in range(100_000)}}
    r = client.post("/prediction", content=orjson.dumps(row), headers=JSON)
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "expected 2 features (mean, sd): unknown k0, k1, k2, k3, k4 and 99,995 more"
    )


def test_long_key_names_are_shortened_in_the_detail(client):
    r = client.post("/prediction", json={"sd": 0.1, "x" * 100_000: 1}, headers=JSON)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("expected 2 features (mean, sd): missing mean; unknown xxxx")
    assert len(detail) < 200


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip"])
def test_a_compressed_body_is_415_naming_the_encoding(client, encoding):
    body = gzip.compress(b"[0.1, 0.1]")
    headers = {**JSON, "Content-Encoding": encoding}
    r = client.post("/prediction", content=body, headers=headers)
    assert r.status_code == 415
    assert r.json()["detail"] == (
        f"Content-Encoding {encoding} is not accepted: send the JSON body uncompressed"
    )


def test_identity_encoding_is_read_as_is(client):
    headers = {**JSON, "Content-Encoding": "identity"}
    assert client.post("/prediction", content=b"[0.1, 0.1]", headers=headers).status_code == 200
