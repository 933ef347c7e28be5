"""POST /series/detect in-process: the answer's shape, causality over HTTP, and every refusal."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.series import detect
from service.settings import Settings
from tests.series import gen

PARAMS = {"warmup": 288, "period": 86400}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # No model: the series route needs none, and must work on a service that is not ready.
    app = create_app(
        Settings(
            model_path=tmp_path_factory.mktemp("none") / "absent.joblib",
            registry=tmp_path_factory.mktemp("registry"),
            max_series_points=5000,
            max_body_bytes=400_000,
        )
    )
    with TestClient(app) as c:
        yield c


def spiked():
    t, x = gen.seasonal(days=3)
    x[500] += 40
    return t, x


def test_one_series_answers_every_point_with_band_anomalies_and_forecast(client):
    t, x = spiked()
    r = client.post(
        "/series/detect",
        json={"detector": "seasonal", "params": PARAMS, "timestamps": t.tolist(),
              "values": x.tolist(), "horizon": 4},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["points"]) == t.size
    p = body["points"][500]
    assert set(p) == {"timestamp", "value", "score", "is_anomaly", "expected", "lower", "upper"}
    assert p["is_anomaly"] and p["value"] > p["upper"] and 0 <= p["score"] <= 1
    assert p["lower"] < p["expected"] < p["upper"]
    assert [a["timestamp"] for a in body["anomalies"]] == [
        q["timestamp"] for q in body["points"] if q["is_anomaly"]
    ]
    assert t[500] in [a["timestamp"] for a in body["anomalies"]]
    assert [f["timestamp"] for f in body["forecast"]] == [t[-1] + 300 * k for k in (1, 2, 3, 4)]
    # The same numbers as the library's.
    assert body == json.loads(
        json.dumps(detect(t.tolist(), x.tolist(), "seasonal", PARAMS, 4).to_dict())
    )


def test_a_prefix_gets_the_same_answers_over_http(client):
    t, x = spiked()
    whole = client.post(
        "/series/detect", json={"params": PARAMS, "timestamps": t.tolist(), "values": x.tolist()}
    ).json()["points"]
    for cut in (300, 501, 700):
        part = client.post(
            "/series/detect",
            json={"params": PARAMS, "timestamps": t[:cut].tolist(), "values": x[:cut].tolist()},
        ).json()["points"]
        assert part == whole[:cut]


def test_iso_timestamps_unsorted_and_duplicates_get_their_defined_answers(client):
    ts = ["2024-05-01T00:00:00Z", "2024-05-01T00:10:00Z", "2024-05-01T00:05:00Z",
          "2024-05-01T00:05:00Z", "2024-05-01T00:15:00Z"]  # fmt: skip
    r = client.post("/series/detect", json={"detector": "rolling", "timestamps": ts,
                                            "values": [1, 2, 3, 5, None]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["timestamp"] for p in body["points"]] == [
        "2024-05-01T00:00:00Z", "2024-05-01T00:05:00Z", "2024-05-01T00:10:00Z",
        "2024-05-01T00:15:00Z"]  # fmt: skip
    assert body["points"][1]["value"] == 4.0 and body["points"][3]["value"] is None
    assert len(body["notes"]) == 3  # unsorted, duplicates, a missing value


def test_several_series_are_answered_each_with_its_labels(client):
    t, x = spiked()
    a = {"labels": {"host": "a"}, "timestamps": t.tolist(), "values": x.tolist()}
    b = {"labels": {"host": "b"}, "timestamps": t.tolist(), "values": (x * 0 + 5).tolist()}
    body = client.post("/series/detect", json={"params": PARAMS, "series": [a, b]}).json()
    assert body["detector"] == "seasonal" and body["params"]["warmup"] == 288
    assert [s["labels"] for s in body["series"]] == [{"host": "a"}, {"host": "b"}]
    assert body["series"][0]["points"][500]["is_anomaly"]
    assert not body["series"][1]["anomalies"]


T3 = [1, 2, 3]
BAD = [
    ("not an object", [1, 2], 422, "body must be a JSON object"),
    ("no series", {"detector": "seasonal"}, 422, "exactly one of timestamps and values"),
    ("two forms", {"timestamps": T3, "values": T3, "series": []}, 422, "exactly one of"),
    ("unknown field", {"timestamps": T3, "values": T3, "k": 1}, 422, "unknown field 'k'"),
    ("values missing", {"timestamps": T3}, 422, "values is required"),
    ("timestamps missing", {"values": T3}, 422, "timestamps is required"),
    ("values not an array", {"timestamps": T3, "values": "1,2,3"}, 422, "values must be an array"),
    ("lengths differ", {"timestamps": T3, "values": [1, 2]}, 422, "same length, got 3"),
    ("too short", {"timestamps": [1, 2], "values": [1, 2]}, 422, "at least 3 are needed"),
    ("too short after duplicates", {"timestamps": [1, 1, 2], "values": [1, 2, 3]}, 422,
     "values has 2 measured points"),
    ("only nulls", {"timestamps": T3, "values": [None, None, 1]}, 422, "1 measured points"),
    ("bad timestamp", {"timestamps": [1, "noon", 3], "values": T3}, 422,
     "timestamps[1] is not an ISO 8601 timestamp: 'noon'"),
    ("boolean timestamp", {"timestamps": [1, True, 3], "values": T3}, 422, "timestamps[1]"),
    ("null timestamp", {"timestamps": [1, None, 3], "values": T3}, 422, "timestamps[1]"),
    ("string value", {"timestamps": T3, "values": [1, "2", 3]}, 422,
     "values[1] must be a number or null, got '2'"),
    ("boolean value", {"timestamps": T3, "values": [1, 2, False]}, 422, "values[2]"),
    ("unknown detector", {"detector": "arima", "timestamps": T3, "values": T3}, 422,
     "detector must be one of seasonal, windowed, rolling, got 'arima'"),
    ("detector not a string", {"detector": 3, "timestamps": T3, "values": T3}, 422, "detector"),
    ("unknown parameter", {"params": {"kk": 1}, "timestamps": T3, "values": T3}, 422,
     "seasonal: unknown parameter 'kk'"),
    ("parameter out of range", {"params": {"k": 0}, "timestamps": T3, "values": T3}, 422,
     "seasonal: parameter k must be > 0, got 0"),
    ("params not an object", {"params": [1], "timestamps": T3, "values": T3}, 422,
     "params must be an object"),
    ("horizon", {"horizon": -1, "timestamps": T3, "values": T3}, 422, "horizon must be"),
    ("horizon boolean", {"horizon": True, "timestamps": T3, "values": T3}, 422, "horizon"),
    ("too many points", {"timestamps": list(range(5001)), "values": [1] * 5001}, 413,
     "values has 5,001 points, more than the limit 5,000 (VIGIL_MAX_SERIES_POINTS)"),
    ("series empty", {"series": []}, 422, "series must be a non-empty array"),
    ("series item", {"series": [3]}, 422, "series[0]: must be an object"),
    ("series labels", {"series": [{"labels": {"a": 1}, "timestamps": T3, "values": T3}]}, 422,
     "series[0]: labels must be an object of strings"),
    ("series unknown", {"series": [{"timestamps": T3, "values": T3, "x": 1}]}, 422,
     "series[0]: unknown field 'x'"),
    ("series bad value", {"series": [{"timestamps": T3, "values": T3},
                                     {"timestamps": T3, "values": [1, 2, "x"]}]}, 422,
     "series[1]: values[2] must be a number"),
    ("series total", {"series": [{"timestamps": list(range(3000)), "values": [1] * 3000}] * 2},
     413, "series have 6,000 points"),
    ("prometheus not object", {"prometheus": "up"}, 422, "prometheus must be an object"),
    ("prometheus missing", {"prometheus": {"query": "up", "start": 1, "end": 2}}, 422,
     "prometheus.step is required"),
    ("prometheus query", {"prometheus": {"query": " ", "start": 1, "end": 9, "step": 1}}, 422,
     "prometheus.query must be a non-empty PromQL string"),
    ("prometheus start", {"prometheus": {"query": "up", "start": "x", "end": 9, "step": 1}}, 422,
     "prometheus.start is not an ISO 8601 timestamp"),
    ("prometheus order", {"prometheus": {"query": "up", "start": 9, "end": 1, "step": 1}}, 422,
     "prometheus.end must be after prometheus.start"),
    ("prometheus step", {"prometheus": {"query": "up", "start": 1, "end": 9, "step": "1x"}}, 422,
     "prometheus.step must be seconds or a duration like 30s, got '1x'"),
    ("prometheus step 0", {"prometheus": {"query": "up", "start": 1, "end": 9, "step": 0}}, 422,
     "prometheus.step must be above 0"),
    ("prometheus points", {"prometheus": {"query": "up", "start": 0, "end": 9000, "step": 1}},
     413, "9,001 points per series"),
    ("prometheus unknown", {"prometheus": {"query": "up", "start": 1, "end": 9, "step": 1,
                                           "x": 1}}, 422, "prometheus: unknown field 'x'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "status", "detail"), BAD, ids=[b[0] for b in BAD])
def test_every_malformed_body_is_a_4xx_naming_the_field(client, case, body, status, detail):
    r = client.post("/series/detect", json=body)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_transport_refusals(client):
    r = client.post("/series/detect", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/series/detect", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    big = b'{"timestamps": [' + b"1," * 250_000 + b'1], "values": []}'
    r = client.post("/series/detect", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_a_prometheus_query_without_a_prometheus_is_503(client):
    body = {"prometheus": {"query": "up", "start": 0, "end": 60, "step": "15s"}}
    r = client.post("/series/detect", json=body)
    assert r.status_code == 503 and "VIGIL_PROMETHEUS_URL" in r.json()["detail"]


def test_an_unreachable_prometheus_is_502_naming_it(tmp_path):
    from tests.support import free_port

    settings_ = Settings(
        model_path=tmp_path / "absent.joblib",
        registry=tmp_path,
        prometheus_url=f"http://127.0.0.1:{free_port()}",
    )
    with TestClient(create_app(settings_)) as c:
        body = {"prometheus": {"query": "up", "start": 0, "end": 60, "step": "15s"}}
        r = c.post("/series/detect", json=body)
    assert r.status_code == 502 and "cannot reach Prometheus" in r.json()["detail"]


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    ["detector", "params", "horizon", "timestamps", "values", "series", "prometheus", "labels"]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(FIELDS, JSON, max_size=4) | JSON)
def test_no_body_is_ever_a_5xx(client, body):
    r = client.post("/series/detect", json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code != 200:
        assert isinstance(r.json()["detail"], str)
