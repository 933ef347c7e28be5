"""Paths that fill a route template (``/v2/models/default/ready``): the HTTP metrics label them
with the template whether or not the middleware remembers them, and it remembers only paths
answered below 400, up to its bound, so clients cannot grow its memory with names they make up.

Straight through the ASGI interface, as tests/service/test_http_metrics.py does. (POSTs to the
scoring routes, V2 infer among them, are recorded by the fast lane instead, which never
remembers a path: tests/service/test_fast_lane.py.)
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from service.api.app import create_app
from service.settings import Settings
from tests.service.test_http_metrics import metrics_middleware


def send_all(app, requests: list[tuple[str, str, bytes]]) -> list[int]:
    async def run() -> list[int]:
        statuses = []
        for method, path, body in requests:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": b"", "headers": [],
                "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
            }  # fmt: skip
            sent = []

            async def receive(body=body) -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict, sent=sent) -> None:
                sent.append(message)

            await app(scope, receive, send)
            statuses.append(sent[0]["status"])
        return statuses

    return asyncio.run(run())


def requests_total(handler: str, method: str, status: str) -> float:
    labels = {"handler": handler, "method": method, "status": status}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


def test_made_up_names_are_labelled_but_not_remembered(model_path, tmp_path):
    app = create_app(Settings(model_path=model_path, registry=tmp_path / "none"))
    app.state.store.load()  # what the lifespan does first
    send_all(app, [("GET", "/health/live", b"")])  # builds the middleware stack
    middleware = metrics_middleware(app)
    template = "/v2/models/{name}/ready"
    before = {s: requests_total(template, "GET", s) for s in ("200", "404")}

    made_up = [("GET", f"/v2/models/m{i}/ready", b"") for i in range(300)]
    assert set(send_all(app, made_up)) == {404}
    assert middleware._templated == {}
    assert send_all(app, [("GET", "/v2/models/default/ready", b"")] * 3) == [200] * 3
    assert middleware._templated == {("", "/v2/models/default/ready", "GET"): template}

    assert requests_total(template, "GET", "404") - before["404"] == 300
    assert requests_total(template, "GET", "200") - before["200"] == 3


def test_the_remembered_paths_are_bounded(model_path, tmp_path):
    app = create_app(Settings(model_path=model_path, registry=tmp_path / "none"))
    app.state.store.load()
    send_all(app, [("GET", "/health/live", b"")])
    middleware = metrics_middleware(app)
    middleware.TEMPLATED_CACHE_SIZE = 2
    paths = ["/models/default", "/v2/models/default", "/v2/models/default/ready"]
    before = requests_total("/v2/models/{name}/ready", "GET", "200")
    assert send_all(app, [("GET", p, b"") for p in paths * 2]) == [200] * 6
    assert len(middleware._templated) == 2
    assert requests_total("/v2/models/{name}/ready", "GET", "200") - before == 2
