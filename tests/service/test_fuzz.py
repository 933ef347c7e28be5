"""Property-based fuzzing of the HTTP API: never a 5xx, every 4xx a readable JSON message."""

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.settings import Settings
from tests.support import REPO

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(["mean", "sd", "x", ""]) | st.text(max_size=5), children, max_size=4
        )
    ),
    max_leaves=40,
)
row_like = st.lists(
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**400), 10**400)),
    min_size=0,
    max_size=4,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
valid_row = st.lists(finite, min_size=2, max_size=2) | st.fixed_dictionaries(
    {"mean": finite, "sd": finite}
)
bodies = st.one_of(
    valid_row.map(lambda v: json.dumps(v).encode()),
    st.lists(valid_row, min_size=1, max_size=5).map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    row_like.map(lambda v: json.dumps(v).encode()),
    st.lists(row_like, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"[NaN, 1]", b"[1, -Infinity]", b"[" * 3000, b"[1e999, 0]", b"\xff\xfe"]),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "application/x-www-form-urlencoded",
        "application/problem+json",
        "multipart/form-data",
        "application/json; charset=latin-1",
        "*/*",
    ]
)
queries = st.dictionaries(
    st.sampled_from(["score", "Score", "x"]),
    st.sampled_from(["true", "false", "1", "0", "yes", "maybe", "", "TRUE", "%00"]),
    max_size=2,
)


@pytest.fixture(scope="module")
def client(model_path):
    settings_ = Settings(model_path=model_path, max_batch_rows=100, max_body_bytes=4096)
    with TestClient(create_app(settings_), raise_server_exceptions=False) as c:
        yield c


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/prediction", "/predictions", "/model_information", "/admin/reload"]),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    body=bodies,
    content_type=content_types,
    query=queries,
)
def test_no_input_gives_a_5xx(client, path, method, body, content_type, query):
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.request(method, path, content=body, headers=headers, params=query)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail
        assert "Traceback" not in r.text
        assert str(REPO) not in r.text and "/tmp" not in r.text
