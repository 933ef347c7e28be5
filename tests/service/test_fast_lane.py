"""The fast lane (service/api/fast_lane.py) answers exactly as FastAPI would.

A corpus of good and bad requests to every route the fast lane takes (and a few it must leave
to FastAPI) is replayed against the same app with the fast lane on and off, through the ASGI
interface: every message sent (status, headers, body) must be the same, and so must the change
each request makes to the metrics (HTTP and model series; durations only by their counts).
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware

from service.api.app import create_app
from service.api.fast_lane import FastLane, _servable
from service.data.dataset import load_csv
from service.models import artifact
from service.models.registry import Registry
from service.settings import Settings
from service.training.trainer import train

FEATURES = ["mean", "sd"]
JSON = [(b"content-type", b"application/json")]
MAX_BODY = 4096
V2 = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[0.1,0.1]}]}'
V2_BATCH = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[0.1,0.1],[3,-2]]}]}'
V2_ID_OUTPUTS = V2[:-1] + b',"id":"r1","outputs":[{"name":"anomaly_score"}]}'

# (name, method, path, query, headers, body chunks [None: the client hangs up after them])
Request = tuple[str, str, str, bytes, list, list]


def corpus() -> list[Request]:
    out: list[Request] = []

    def add(name, path, body, query=b"score=true", headers=JSON, method="POST"):
        chunks = body if isinstance(body, list) else [body]
        out.append((name, method, path, query, headers, chunks))

    one, batch = b"[0.1, 0.1]", b"[[0.1, 0.1], [3.0, -2.0], [0.2, 0.3]]"
    for base in ("/prediction", "/models/sensors/prediction", "/models/sensors/versions/2/"
                 "prediction", "/models/sensors/aliases/challenger/prediction"):  # fmt: skip
        many = base + "s"
        add(f"{base} good", base, one)
        add(f"{base} far row", base, b"[1e6, -1e6]")
        add(f"{base} by name", base, b'{"sd": 0.2, "mean": 0.1}')
        add(f"{base} no score", base, one, query=b"")
        add(f"{base} score=0", base, one, query=b"score=0")
        add(f"{base} score twice", base, one, query=b"score=true&score=false")
        add(f"{base} score=maybe", base, one, query=b"score=maybe")
        add(f"{base} other query", base, one, query=b"x=1&score=yes")
        add(f"{base} empty body", base, b"")
        add(f"{base} not json", base, b"[0.1, ")
        add(f"{base} NaN", base, b"[NaN, 0.1]")
        add(f"{base} too big for float64", base, b"[1e400, 0.1]")
        add(f"{base} three features", base, b"[0.1, 0.1, 0.1]")
        add(f"{base} string", base, b'["a", 0.1]')
        add(f"{base} bool", base, b"[true, 0.1]")
        add(f"{base} object", base, b'{"x": 1}')
        add(f"{base} repeated key", base, b'{"mean": 1, "mean": 2, "sd": 0}')
        add(f"{base} batch to one", base, batch)
        add(f"{base} text/plain", base, one, headers=[(b"content-type", b"text/plain")])
        add(f"{base} no content type", base, one, headers=[])
        add(f"{base} gzip", base, one, headers=[*JSON, (b"content-encoding", b"gzip")])
        add(f"{base} declared too long", base, one, headers=[*JSON, (b"content-length", b"9999")])
        add(f"{base} chunks", base, [b"[0.1", b", 0.1", b"]"])
        add(f"{base} chunks over limit", base, [b"[" + b"0.1, " * 600, b"0.1]" * 300])
        add(f"{base} hangs up", base, [b"[0.1", None])
        add(f"{base} GET", base, b"", method="GET")
        add(f"{base} HEAD", base, b"", method="HEAD")
        add(f"{many} good", many, batch)
        add(f"{many} one row", many, b"[[0.1, 0.1]]")
        add(f"{many} empty", many, b"[]")
        add(f"{many} flat", many, one)
        add(f"{many} ragged", many, b"[[0.1, 0.1], [0.1]]")
        add(f"{many} over the row limit", many, b"[" + b",".join([b"[0.1,0.1]"] * 51) + b"]")
        add(f"{many} score=false", many, batch, query=b"score=false")
    for path in (
        "/models/nobody/prediction",
        "/models/sensors/versions/9/prediction",
        "/models/sensors/versions/two/prediction",
        "/models/sensors/aliases/nobody/predictions",
        "/models/broken/prediction",
        "/models/broken/predictions",
        "/models//prediction",
        "/prediction/",
        "/models/sensors/prediction/",
        "/models/sensors/predict",
    ):
        add(f"{path}", path, one)
    infer = "/v2/models/sensors/infer"
    add("v2 infer", infer, V2, query=b"")
    add("v2 infer version", "/v2/models/sensors/versions/2/infer", V2, query=b"")
    add("v2 infer unknown version", "/v2/models/sensors/versions/9/infer", V2, query=b"")
    add("v2 infer unknown", "/v2/models/nobody/infer", V2, query=b"")
    add("v2 infer broken", "/v2/models/broken/infer", V2, query=b"")
    add("v2 infer bad", infer, b'{"inputs": 3}', query=b"")
    add("v2 infer empty", infer, b"", query=b"")
    add("v2 infer no content type", infer, V2, query=b"", headers=[])
    add("v2 infer text/plain", infer, V2, query=b"", headers=[(b"content-type", b"text/plain")])
    add("v2 infer gzip", infer, V2, query=b"", headers=[*JSON, (b"content-encoding", b"gzip")])
    add("v2 infer too long", infer, V2, query=b"", headers=[*JSON, (b"content-length", b"9999")])
    add("v2 infer chunks", infer, [V2[:20], V2[20:]], query=b"")
    add("v2 infer hangs up", infer, [V2[:20], None], query=b"")
    add("v2 infer id and outputs", infer, V2_ID_OUTPUTS, query=b"")
    add("v2 infer batch", infer, V2_BATCH, query=b"")
    header = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","parameters":' + (
        b'{"binary_data_size":32}}],"parameters":{"binary_data_output":true}}'
    )
    length = (b"inference-header-content-length", str(len(header)).encode())
    binary = header + struct.pack("<4d", 0.1, 0.1, 3.0, -2.0)
    octets = [(b"content-type", b"application/octet-stream"), length]
    add("v2 infer binary", infer, binary, query=b"", headers=octets)
    add("v2 infer binary truncated", infer, binary[:-8], query=b"", headers=octets)
    add("kserve v1", "/v1/models/sensors:predict", b'{"instances": [[0.1, 0.1]]}', query=b"")
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory, data_dir) -> FastAPI:
    """A registry: sensors (v1 default, v2 at alias challenger) and broken (does not load)."""
    X = load_csv(data_dir / "train.csv").X
    root = tmp_path_factory.mktemp("fast-lane") / "models"
    registry = Registry(root)
    for seed in (1, 2):
        model = train(X, FEATURES, params={"n_estimators": 20}, seed=seed)
        registry.register("sensors", lambda p, m=model: artifact.save(m, p))
    registry.promote("sensors", 2, "challenger")
    model = train(X, FEATURES, params={"n_estimators": 5}, seed=3)
    registry.register("broken", lambda p: artifact.save(model, p))
    joblib_file = root / "broken" / "1" / "model.joblib"
    joblib_file.write_bytes(joblib_file.read_bytes()[:100])  # its hash no longer matches
    settings = Settings(
        registry=root,
        model_path=root / "none.joblib",
        default_model="sensors",
        max_batch_rows=50,
        max_body_bytes=MAX_BODY,
    )
    app = create_app(settings)
    app.state.store.load()  # what the lifespan does first
    return app


def replay(app: FastAPI, request: Request, fast_lane: bool) -> list[dict]:
    """The messages ``app`` sends for ``request``, with the fast lane on or off."""
    if app.fast_lane != fast_lane:
        app.fast_lane = fast_lane
        app.middleware_stack = None  # rebuilt on the next call
    _, method, path, query, headers, chunks = request
    body_length = sum(len(c) for c in chunks if c is not None)
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(body_length).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "root_path": "", "query_string": query, "headers": [(b"host", b"vigil"), *headers],
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "state": {},
    }  # fmt: skip
    pending = list(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        if not pending:
            await asyncio.sleep(3600)  # a real server's receive blocks until the client acts
        chunk = pending.pop(0)
        if chunk is None:
            return {"type": "http.disconnect"}
        more = bool(pending)
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        except Exception:  # an unhandled error is re-raised after the 500 is sent
            sent.append({"raised": True})

    asyncio.run(run())
    return sent


def metric_samples() -> Counter:
    """Every HTTP and model sample but durations' sums and buckets (they depend on timing)."""
    out: Counter = Counter()
    timed = ("http_request_duration_seconds", "vigil_inference_duration_seconds")
    for family in REGISTRY.collect():
        if not family.name.startswith(("http_request", "vigil_")):
            continue
        for s in family.samples:
            if s.name.endswith("_created") or (
                family.name in timed and s.name.endswith(("_sum", "_bucket"))
            ):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return out


def delta(before: Counter, after: Counter) -> dict:
    """What changed; sums to 9 significant digits (a running float sum's last bit varies)."""
    keys = set(before) | set(after)
    return {
        k: float(f"{after[k] - before[k]:.9g}") if k[0].endswith("_sum") else after[k] - before[k]
        for k in keys
        if after[k] != before[k]
    }


def test_the_fast_lane_takes_the_scoring_routes(app):
    replay(app, corpus()[0], fast_lane=True)
    assert isinstance(app.middleware_stack, FastLane)
    served = set(app.middleware_stack.paths)
    expected = {
        "/prediction",
        "/predictions",
        "/models/{name}/prediction",
        "/models/{name}/versions/{version}/predictions",
        "/models/{name}/aliases/{alias}/prediction",
        "/v2/models/{name}/infer",
    }
    assert expected <= served


@pytest.mark.parametrize("request_", corpus(), ids=lambda r: r[0])
def test_same_answer_and_metrics_with_and_without_the_fast_lane(app, request_):
    before = metric_samples()
    fast = replay(app, request_, fast_lane=True)
    middle = metric_samples()
    framework = replay(app, request_, fast_lane=False)
    after = metric_samples()

    assert fast == framework
    assert delta(before, middle) == delta(middle, after)
    assert fast[0]["status"] != 500 and "raised" not in fast[-1]


def test_the_answers_are_what_the_routes_promise(app):
    """The replay compares like with like: the corpus covers answers of every kind."""
    statuses = {r[0]: replay(app, r, fast_lane=True)[0]["status"] for r in corpus()}
    assert statuses["/prediction good"] == 200
    assert statuses["/models/sensors/aliases/challenger/predictions good"] == 200
    assert statuses["/prediction score=maybe"] == 422
    assert statuses["/prediction not json"] == 400
    assert statuses["/prediction text/plain"] == 415
    assert statuses["/prediction chunks over limit"] == 413
    assert statuses["/prediction hangs up"] == 499
    assert statuses["/prediction GET"] == 405
    assert statuses["/models/nobody/prediction"] == 404
    assert statuses["/models/broken/prediction"] == 503
    assert statuses["/prediction/"] == 307
    assert statuses["v2 infer"] == statuses["kserve v1"] == 200
    assert statuses["v2 infer binary"] == statuses["v2 infer batch"] == 200
    assert statuses["v2 infer unknown version"] == 404
    assert statuses["v2 infer broken"] == 503
    assert statuses["v2 infer gzip"] == statuses["v2 infer text/plain"] == 415
    assert statuses["v2 infer too long"] == 413
    assert statuses["v2 infer binary truncated"] == statuses["v2 infer empty"] == 400
    assert statuses["v2 infer hangs up"] == 499


def test_an_unexpected_error_is_a_logged_500_on_both_paths(app, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr("service.serving.dataplane.score_row", boom)
    request = corpus()[0]
    fast, framework = (replay(app, request, fast_lane=on) for on in (True, False))
    assert fast == framework
    assert fast[0]["status"] == 500 and fast[-1] == {"raised": True}
    assert caplog.text.count("scorer exploded") >= 2


# --- when the fast lane steps aside ----------------------------------------------------------


def test_a_route_an_earlier_route_could_answer_is_left_to_fastapi():
    app = FastAPI()

    @app.post("/models/special/prediction")
    async def special() -> dict:
        return {}

    from service.api.routes import predict

    served = {r.path for r in _servable([*app.router.routes, *predict.router.routes])}
    assert "/models/{name}/prediction" not in served  # "special" would be answered by the other
    assert "/prediction" in served and "/models/{name}/predictions" in served


def test_other_middleware_turns_the_fast_lane_off(model_path: Path):
    app = create_app(Settings(model_path=model_path))
    app.user_middleware.insert(0, Middleware(BaseHTTPMiddleware, dispatch=_passthrough))
    app.state.store.load()
    sent = replay(app, corpus()[0], fast_lane=True)
    assert sent[0]["status"] == 200
    assert not isinstance(app.middleware_stack, FastLane)


async def _passthrough(request, call_next):
    return await call_next(request)
