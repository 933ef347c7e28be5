#!/usr/bin/env python3
"""What each layer of ``POST /prediction?score=true`` costs: in-process, one layer off at a time.

    python bench/layers.py [--quick] [--requests N] [--rounds R]

Each variant runs in its own process: the app is built as ``service.api.app.create_app`` builds it,
with one layer replaced by a no-op (or configured otherwise), and driven through its ASGI
interface with the seed's request, no network and no server in between. The figure is the
thread's CPU time per request (less sensitive than wall time to other load on the machine),
the best of the rounds; a layer's cost is the difference from "as shipped". The no-op
ceiling app (bench/servers/noop.py) runs through the same driver, for scale. What uvicorn,
httptools and the access log add is measured over HTTP by bench/bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

BODY = b"[0.1, 0.1]"
EXPECTED_START = b'{"prediction":1,"is_anomaly":false'

# name -> what is changed; "shipped" changes nothing.
VARIANTS = {
    "shipped": "Vigil as shipped",
    "no-http-metrics": "without the HTTP metrics middleware (/metrics still served)",
    "instrumentator-middleware": "HTTP metrics by prometheus-fastapi-instrumentator's middleware",
    "no-model-metrics": "without the model metrics (vigil_*)",
    "no-validation": "without feature validation (the list straight into numpy)",
    "no-json-decode": "without JSON decoding (body read, not parsed)",
    "no-json-encode": "without building the response JSON (constant bytes)",
    "no-model": "without the model (constant scores)",
    "no-fastapi-telemetry": "FastAPI's native telemetry check off",
    "routes-on-app": "routes on the app itself, not an included router",
    "fastapi-handler": "scoring routes on FastAPI's generic handler, not api.ScoringRoute",
    "noop-ceiling": "the no-op ceiling app (bench/servers/noop.py), for scale",
}


def patch(variant: str) -> None:
    """Replace one layer before the app is built."""
    import numpy as np

    from service.api import http_metrics as http_metrics_module
    from service.api.routes import predict as api
    from service.core import features as validation
    from service.models import loaded as scoring
    from service.serving import telemetry as metrics

    if variant == "no-http-metrics":
        from prometheus_fastapi_instrumentator import Instrumentator

        def instrument(app) -> None:
            Instrumentator().expose(app, include_in_schema=False, should_gzip=False)

        http_metrics_module.instrument = instrument
    elif variant == "instrumentator-middleware":
        from prometheus_client import REGISTRY
        from prometheus_fastapi_instrumentator import Instrumentator
        from prometheus_fastapi_instrumentator import metrics as http_metrics

        for collector in (
            http_metrics_module.HTTP_REQUESTS,
            http_metrics_module.HTTP_LATENCY,
            http_metrics_module.HTTP_INPROGRESS,
        ):
            REGISTRY.unregister(collector)

        def instrument(app) -> None:
            instrumentator = Instrumentator(
                should_group_status_codes=False,
                should_ignore_untemplated=True,
                should_instrument_requests_inprogress=True,
                inprogress_labels=True,
                excluded_handlers=http_metrics_module.EXCLUDED_HANDLERS,
            )
            instrumentator.add(http_metrics.requests())
            instrumentator.add(
                http_metrics.latency(
                    buckets=http_metrics_module.LATENCY_BUCKETS, should_include_status=False
                )
            )
            instrumentator.instrument(app)
            instrumentator.expose(app, include_in_schema=False, should_gzip=False)

        http_metrics_module.instrument = instrument
    elif variant == "no-model-metrics":
        metrics.record_row = lambda *args: None
    elif variant == "no-validation":
        validation.FeatureParser.one = lambda self, value: np.array([value], dtype=np.float64)
    elif variant == "no-json-decode":

        async def read_json(request, max_bytes):
            await api.read_body(request, max_bytes)
            return [0.1, 0.1]

        api.read_json = read_json
    elif variant == "no-json-encode":
        from fastapi import Response

        body = EXPECTED_START + b',"model_version":"0","anomaly_score":0.5}'
        api._json = lambda content, status_code=200: Response(body, media_type="application/json")
    elif variant == "no-model":
        constant = scoring.Scores(anomaly_score=np.array([0.5]), is_anomaly=np.array([False]))
        scoring.Model.score = lambda self, X: constant
    elif variant == "no-fastapi-telemetry":
        from fastapi.telemetry import _asgi

        _asgi.NativeTelemetry.enabled = lambda self: False
    elif variant == "fastapi-handler":
        from fastapi.routing import APIRoute

        api.ScoringRoute.get_route_handler = APIRoute.get_route_handler
    elif variant == "routes-on-app":
        from fastapi import FastAPI

        include_router = FastAPI.include_router

        def include(self, router, **kwargs):
            if router is api.router:
                self.router.routes.extend(router.routes)
            else:
                include_router(self, router, **kwargs)

        FastAPI.include_router = include


def build_app(variant: str, model_path: str):
    if variant == "noop-ceiling":
        sys.path.insert(0, str(BENCH / "servers"))
        from noop import app

        return app
    patch(variant)
    from service.api.app import create_app
    from service.settings import Settings

    return create_app(Settings(model_path=model_path))


def scope() -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/prediction",
        "raw_path": b"/prediction",
        "query_string": b"score=true",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "state": {},
    }


async def drive(app, n_requests: int, repeats: int) -> float:
    """Best thread CPU seconds per request over ``repeats`` runs of ``n_requests``."""
    startup: asyncio.Queue = asyncio.Queue()
    started: asyncio.Queue = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(lifespan_scope, startup.get, started.put))
    message = await started.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {message}")

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def requests(n: int) -> None:
        for _ in range(n):
            sent.clear()
            await app({**scope(), "state": dict(lifespan_scope["state"])}, receive, send)

    await requests(min(2000, n_requests))
    if sent[0]["status"] != 200 or not sent[-1]["body"].startswith(EXPECTED_START):
        raise RuntimeError(f"unexpected answer: {sent}")
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        await requests(n_requests)
        best = min(best, (time.thread_time() - start) / n_requests)
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    return best


def child(variant: str, model_path: str, n_requests: int) -> None:
    import uvloop

    app = build_app(variant, model_path)
    print(uvloop.run(drive(app, n_requests, repeats=3)) * 1e6)


def make_model(tmp: Path) -> Path:
    py = sys.executable
    for args in (
        ["sample-data", "--out-dir", str(tmp)],
        ["train", "--data", str(tmp / "train.csv"), "--out", str(tmp / "model.joblib")],
    ):
        subprocess.run([py, "-m", "service", *args], cwd=REPO, check=True, capture_output=True)
    return tmp / "model.joblib"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer requests")
    parser.add_argument("--requests", type=int, help="requests per timed run")
    parser.add_argument("--rounds", type=int, help="alternating rounds (best one counts)")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results folder")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_requests = args.requests or (2000 if args.quick else 5000)
    if args.variant:
        child(args.variant, args.model, n_requests)
        return 0

    rounds = args.rounds or (1 if args.quick else 5)
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="vigil-layers-") as tmp:
        model = make_model(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
        for r in range(rounds):
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--variant", variant, "--model", str(model)]
                command += ["--requests", str(n_requests)]
                out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{variant} failed:\n{out.stderr}")
                samples[variant].append(float(out.stdout.split()[-1]))
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)

    best = {variant: min(times) for variant, times in samples.items()}
    shipped = best["shipped"]
    lines = [
        "POST /prediction?score=true in-process (ASGI, no server): thread CPU µs per request,"
        f" best of {rounds} round(s) of 3 x {n_requests:,} requests",
        f"  {'variant':<27} {'µs/req':>7} {'layer cost':>11}  what",
    ]
    for variant, what in VARIANTS.items():
        cost = "" if variant in ("shipped", "noop-ceiling") else f"{shipped - best[variant]:+.1f}"
        lines.append(f"  {variant:<27} {best[variant]:>7.1f} {cost:>11}  {what}")
    spread = max(samples["shipped"]) - shipped
    lines.append(
        "  (layer cost: as shipped minus the variant. Other load on the machine moves single"
        f" runs: as shipped ranged over {spread:.1f} µs across the rounds)"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layers.txt").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
