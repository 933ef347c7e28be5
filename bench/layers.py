#!/usr/bin/env python3
"""What each layer of ``POST /prediction?score=true`` costs: in-process, one layer off at a time.

    python bench/layers.py [--quick] [--requests N] [--rounds R] [--no-http] [--py-spy SECONDS]

Each variant runs in its own process: the app is built as ``service.api.app.create_app`` builds it,
with one layer replaced by a no-op (or configured otherwise), and driven through its ASGI
interface with the seed's request, no network and no server in between, 16 requests at a time
(as wrk's 16 connections arrive: the row batcher scores each wave in one call). The figure is
the thread's CPU time per request (less sensitive than wall time to other load on the machine),
the best of the rounds; a layer's cost is the difference from "as shipped". The empty ASGI app
and the FastAPI no-op (bench/servers) run through the same driver, for scale.

Then, over HTTP (unless ``--no-http``), wrk against the empty ASGI app and Vigil as bench.py
runs them: the empty app's time per request is the server's own work (uvicorn, httptools, the
socket), and Vigil's minus it is what the app costs once it shares the core with the server;
each server's CPU time per request is read from ``/proc``. With ``--py-spy``, Vigil's CPU time
over HTTP is then split by layer (``bench/http_profile.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import http_profile
from harness import post_scope

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

BODY = b"[0.1, 0.1]"
EXPECTED_START = b'{"prediction":1,"is_anomaly":false'
WAVE = 16  # requests in flight at once, as wrk -c16

# name -> what is changed; "shipped" changes nothing.
VARIANTS = {
    "shipped": "Vigil as shipped",
    "framework": "the scoring route through FastAPI's middleware and router (fast lane off)",
    "no-batching": "every row scored alone (no row batcher)",
    "no-model": "without the model (constant scores)",
    "no-model-metrics": "without the model metrics (vigil_*: counts, percentiles, drift bins)",
    "no-http-metrics": "without the HTTP metrics (http_requests_*)",
    "no-validation": "without feature validation (the list straight into numpy)",
    "no-json-decode": "without JSON decoding (body read, not parsed)",
    "no-body-read": "without reading the body (nor decoding it)",
    "no-json-encode": "without building the response JSON (constant bytes)",
    "noop-ceiling": "the FastAPI no-op (bench/servers/noop.py), for scale",
    "empty-asgi": "the empty ASGI app (bench/servers/empty_asgi.py), for scale",
}


def patch(variant: str) -> None:
    """Replace one layer before the app is built."""
    import numpy as np

    from service.api import fast_lane, http_metrics
    from service.api.routes import predict as api
    from service.core import features as validation
    from service.detectors import detector
    from service.models import loaded as scoring
    from service.serving import telemetry as metrics

    if variant == "framework":
        fast_lane.FastLaneApp.fast_lane = False
    elif variant == "no-batching":
        detector.Detector.rows_independent = property(lambda self: False)
    elif variant == "no-http-metrics":
        http_metrics.is_excluded = lambda handler, patterns=(): True
    elif variant == "no-model-metrics":
        metrics.record_row = metrics.record_rows = lambda *args: None
    elif variant == "no-validation":
        validation.FeatureParser.one = lambda self, value: np.array([value], dtype=np.float64)
    elif variant == "no-json-decode":

        async def read_json_from(scope, receive, max_bytes):
            await api.read_body_from(receive, max_bytes)
            return [0.1, 0.1]

        api.read_json_from = read_json_from
    elif variant == "no-body-read":

        async def no_read(scope, receive, max_bytes):
            return [0.1, 0.1]

        api.read_json_from = no_read
    elif variant == "no-json-encode":
        from types import SimpleNamespace

        body = EXPECTED_START + b',"model_version":"0","anomaly_score":0.5}'
        api.orjson = SimpleNamespace(dumps=lambda content: body)
    elif variant == "no-model":
        scoring.Model.score = lambda self, X: scoring.Scores(
            anomaly_score=np.full(len(X), 0.5), is_anomaly=np.zeros(len(X), dtype=bool)
        )
        scoring.Model.score_one = lambda self, X: (False, 0.5)


def build_app(variant: str, model_path: str):
    if variant in ("noop-ceiling", "empty-asgi"):
        sys.path.insert(0, str(BENCH / "servers"))
        if variant == "empty-asgi":
            from empty_asgi import app
        else:
            from noop import app

        return app
    patch(variant)
    from service.api.app import create_app
    from service.settings import Settings

    return create_app(Settings(model_path=model_path))


def scope() -> dict:
    return post_scope("/prediction", b"score=true", BODY)


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

    async def one() -> None:
        await app({**scope(), "state": dict(lifespan_scope["state"])}, receive, send)

    async def requests(n: int) -> None:
        for _ in range(n // WAVE):
            sent.clear()
            await asyncio.gather(*(one() for _ in range(WAVE)))

    n_requests -= n_requests % WAVE
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


@dataclass
class OverHttp:
    """One server under wrk: median requests/s, and its process's CPU per request."""

    rps: float
    user_us: float
    system_us: float

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.system_us


def over_http(
    model: Path, tmp: Path, quick: bool, profile_seconds: int | None
) -> tuple[dict[str, OverHttp], dict[str, float] | None]:
    """The empty ASGI app and Vigil (access logs off) as bench.py runs them, in alternating
    rounds: req/s and CPU per request of each; with ``profile_seconds``, Vigil's layers as
    ``http_profile`` samples them, in a run of its own after the timed rounds."""
    from harness import (
        SINGLE_PATH,
        free_port,
        model_settings,
        run_wrk,
        uvicorn_server,
        vigil_server,
    )

    servers = [
        uvicorn_server("empty ASGI", "empty_asgi:app", free_port(), tmp),
        vigil_server("Vigil", free_port(), tmp, model_settings(model)),
    ]
    post = BENCH / "post.lua"
    runs: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in servers}
    layers = None
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
            run_wrk(server.url + SINGLE_PATH, post, 1)  # warm-up
        for r in range(1 if quick else 3):
            for server in servers[r % 2 :] + servers[: r % 2]:
                user, system = server.cpu_seconds()
                result = run_wrk(server.url + SINGLE_PATH, post, 2 if quick else 5)
                user_after, system_after = server.cpu_seconds()
                per = 1e6 / result.requests
                runs[server.name].append(
                    (result.rps, (user_after - user) * per, (system_after - system) * per)
                )
        if profile_seconds:
            vigil = servers[1]
            layers = http_profile.sample(
                vigil.proc.pid, vigil.url + SINGLE_PATH, post, profile_seconds
            )
    finally:
        for server in servers:
            server.stop()
    figures = {
        name: OverHttp(*(statistics.median(column) for column in zip(*rows, strict=True)))
        for name, rows in runs.items()
    }
    return figures, layers


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
    parser.add_argument("--no-http", action="store_true", help="skip the wrk comparison")
    parser.add_argument(
        "--py-spy",
        type=int,
        metavar="SECONDS",
        help="also sample Vigil under wrk with py-spy for this long: where its CPU goes by layer",
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_requests = args.requests or (2000 if args.quick else 5000)
    if args.variant:
        child(args.variant, args.model, n_requests)
        return 0

    rounds = args.rounds or (1 if args.quick else 5)
    spy = bool(args.py_spy) and http_profile.available() is not None
    if args.py_spy and not spy:
        print("py-spy is not installed (pip install py-spy): no layer profile", file=sys.stderr)
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
        http, layers = (
            (None, None)
            if args.no_http
            else over_http(model, Path(tmp), args.quick, args.py_spy if spy else None)
        )

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
    if http is not None:
        empty, vigil = http["empty ASGI"], http["Vigil"]
        app_us = vigil.cpu_us - empty.cpu_us
        lines += [
            "over HTTP (wrk -c16 on the other core, median of alternating rounds): the server"
            " process's CPU per request",
            f"  empty ASGI app {empty.rps:>8,.0f} req/s {empty.cpu_us:6.1f} µs (user"
            f" {empty.user_us:.1f}, system {empty.system_us:.1f}): the server's own work",
            f"  Vigil          {vigil.rps:>8,.0f} req/s {vigil.cpu_us:6.1f} µs (user"
            f" {vigil.user_us:.1f}, system {vigil.system_us:.1f}):"
            f" {vigil.rps / empty.rps:.0%} of the empty app's req/s",
            f"  Vigil's app over HTTP {app_us:.1f} µs, in-process {shipped:.1f} µs:"
            f" {app_us / shipped:.1f}x once it shares the core with the server",
        ]
        if layers:
            lines.append(
                f"where Vigil's CPU goes over HTTP (py-spy, {args.py_spy} s): share of its"
                f" {vigil.cpu_us:.1f} µs per request"
            )
            lines += [
                f"  {layer:<58} {share:6.1%} {share * vigil.cpu_us:6.1f} µs"
                for layer, share in layers.items()
            ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layers.txt").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
