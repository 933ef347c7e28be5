#!/usr/bin/env python3
"""Where a request to ``/models/KIND/prediction(s)`` spends its time: in-process, by stage.

    python bench/profile_kind.py [--kinds lof ecod ...] [--registry DIR] [--requests N]

Trains one model per kind as ``bench.py`` does (or reuses ``--registry``), builds the app as
``service.api.app.create_app`` does with ``VIGIL_REGISTRY`` and sends it requests through its
ASGI interface (no server, no network). For each kind:

- one row (``POST /models/KIND/prediction?score=true``, body ``[0.1, 0.1]``): thread CPU µs per
  whole request, against the no-op ceiling app (``bench/servers/noop.py``) driven the same way,
  and the cost of each stage the route runs (JSON decode, feature check, scoring, percentile
  and metrics, response build and encode), each timed alone;
- a 10,000-row batch (``/models/KIND/predictions?score=true``): the process's CPU ms (every
  thread: it scores in a worker thread) per whole request and per stage, against the library's
  own call on the same rows.

CPU time, not wall time: other programs on the machine delay a request without adding to it.

The stages are the functions the routes call (``service.api.routes.predict``); what the whole
request costs beyond their sum is the framework (routing, middleware, ASGI).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import kinds
import numpy as np
from harness import REPO, post_scope, rows_like_the_sample_data, table

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ONE = b"[0.1, 0.1]"


def per_call(fn: Callable[[], object], n: int, clock=time.thread_time) -> float:
    """Best of 3 runs of ``n`` calls: seconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - start) / n)
    return best


class Driver:
    """An app started (lifespan) in a private event loop, requests sent one at a time."""

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.state: dict = {}
        self._startup: asyncio.Queue | None = None
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self._startup, started = asyncio.Queue(), asyncio.Queue()
        await self._startup.put({"type": "lifespan.startup"})
        lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._lifespan = asyncio.ensure_future(
            self.app(lifespan_scope, self._startup.get, started.put)
        )
        message = await started.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {message}")

    def request(self, path: str, body: bytes, n: int = 1) -> bytes:
        """Send the request ``n`` times; the last answer's body (200 required)."""
        s = post_scope(path, b"score=true", body)
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        async def run() -> None:
            for _ in range(n):
                sent.clear()
                await self.app({**s, "state": dict(self.state)}, receive, send)

        self.loop.run_until_complete(run())
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{path}: {sent}")
        return b"".join(m.get("body", b"") for m in sent[1:])

    def close(self) -> None:
        async def stop() -> None:
            await self._startup.put({"type": "lifespan.shutdown"})
            await self._lifespan

        self.loop.run_until_complete(stop())
        self.loop.close()


def profile(registry: Path, kind_names: list[str], X_train, X_batch, n: int) -> dict:
    import orjson

    from service.api.app import create_app
    from service.core.features import decode_json
    from service.serving import dataplane, telemetry
    from service.settings import Settings

    sys.path.insert(0, str(REPO / "bench" / "servers"))
    from noop import app as noop_app

    noop = Driver(noop_app)
    noop_us = per_call(lambda: noop.request("/prediction", ONE, 100), n // 100) / 100 * 1e6
    noop.close()

    libs = kinds.libraries(registry, kind_names, X_train)
    settings = Settings(registry=registry, default_model=kind_names[0])
    driver = Driver(create_app(settings))
    store = driver.state.get("store") or driver.app.state.store
    batch_body = json.dumps(X_batch.tolist()).encode()
    # As the server does after start-up; here it also keeps the libraries' objects (PyOD,
    # scikit-learn) out of the collections that 10,000-row requests trigger.
    gc.collect()
    gc.freeze()
    out = {}
    for kind in kind_names:
        model = dataplane.resolve(store.catalog, kind, None, None)
        X1 = model.parser.one(decode_json(ONE))
        row = model.score_one(X1)
        one = {
            "request": per_call(
                lambda k=kind: driver.request(f"/models/{k}/prediction", ONE, 100), n // 100
            )
            / 100,
            "json decode": per_call(lambda: decode_json(ONE), n),
            "features": per_call(lambda m=model: m.parser.one([0.1, 0.1]), n),
            "score": per_call(lambda m=model, X=X1: m.score_one(X), n),
            "percentile+metrics": per_call(
                lambda m=model, s=row[1]: telemetry.record_row(
                    m.metrics, "prediction", False, m.percentile_one(s), 1e-5
                ),
                n,
            ),
            "response": per_call(
                lambda m=model, r=row: orjson.dumps(dataplane.single_result(m, r, True)), n
            ),
        }
        payload = decode_json(batch_body)
        Xb = model.parser.many(payload, 100_000)
        scores = model.score(Xb)
        cpu = time.process_time  # every thread's CPU: the batch scores in a worker thread
        reps = 5
        batch = {
            "request": per_call(
                lambda k=kind: driver.request(f"/models/{k}/predictions", batch_body), reps, cpu
            ),
            "json decode": per_call(lambda: decode_json(batch_body), reps, cpu),
            "features": per_call(lambda m=model, p=payload: m.parser.many(p, 100_000), reps, cpu),
            "score": per_call(lambda m=model, X=Xb: m.score(X), reps, cpu),
            "percentile+metrics": per_call(
                lambda m=model, s=scores: telemetry.record_scores(
                    m.metrics,
                    "predictions",
                    m.percentile(s.anomaly_score),
                    int(np.count_nonzero(s.is_anomaly)),
                    1e-3,
                ),
                reps,
                cpu,
            ),
            "response": per_call(
                lambda m=model, s=scores: orjson.dumps(dataplane.batch_result(m, s, True)),
                reps,
                cpu,
            ),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            library = per_call(lambda f=libs[kind][0]: f(X_batch), reps, cpu)
        out[kind] = {"one": one, "batch": batch, "library_batch": library}
        print(f"  {kind} done", file=sys.stderr, flush=True)
    driver.close()
    return {"noop_us": noop_us, "kinds": out}


STAGES = ("json decode", "features", "score", "percentile+metrics", "response")


def render(r: dict, rows: int) -> list[str]:
    out = [
        "one row, POST /models/KIND/prediction?score=true in-process (ASGI): thread CPU µs;"
        f" the no-op ceiling app: {r['noop_us']:.1f} µs per request",
    ]
    body = []
    for kind, k in r["kinds"].items():
        one = k["one"]
        rest = one["request"] - sum(one[s] for s in STAGES)
        body.append(
            [
                kind,
                f"{one['request'] * 1e6:.1f}",
                *(f"{one[s] * 1e6:.1f}" for s in STAGES),
                f"{rest * 1e6:.1f}",
                f"{r['noop_us'] / (one['request'] * 1e6):.0%}",
            ]
        )
    out += table(["kind", "request", *STAGES, "framework", "no-op/request"], body)
    out += [
        "",
        f"{rows:,}-row batch, POST /models/KIND/predictions?score=true in-process (ASGI):"
        " process CPU ms; library: its own call on the same rows",
    ]
    body = []
    for kind, k in r["kinds"].items():
        b = k["batch"]
        rest = b["request"] - sum(b[s] for s in STAGES)
        body.append(
            [
                kind,
                f"{b['request'] * 1e3:.2f}",
                *(f"{b[s] * 1e3:.2f}" for s in STAGES),
                f"{rest * 1e3:.2f}",
                f"{k['library_batch'] * 1e3:.2f}",
                f"{k['library_batch'] / b['request']:.0%}",
            ]
        )
    out += table(["kind", "request", *STAGES, "other", "library", "library/request"], body)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", metavar="KIND", help="default: every kind")
    parser.add_argument("--registry", type=Path, help="reuse a registry with one model per kind")
    parser.add_argument("--requests", type=int, default=5000, help="single-row requests per run")
    args = parser.parse_args()
    kind_names = args.kinds or kinds.default_kinds()

    from service.data.dataset import load_csv

    with tempfile.TemporaryDirectory(prefix="vigil-profile-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [sys.executable, "-m", "service", "sample-data", "--out-dir", str(data)],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        registry = args.registry
        if registry is None:
            registry = Path(tmp) / "registry"
            kinds.train(kind_names, data / "train.csv", registry)
        X_train = load_csv(data / "train.csv").X
        X_batch = rows_like_the_sample_data(kinds.BATCH_ROWS)
        result = profile(registry, kind_names, X_train, X_batch, args.requests)
    print("\n".join(render(result, kinds.BATCH_ROWS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
