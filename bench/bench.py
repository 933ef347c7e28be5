#!/usr/bin/env python3
"""Benchmark: Vigil against a bare FastAPI no-op endpoint (the ceiling) and the seed's approach.

    python bench/bench.py [--quick] [--out DIR]

Trains the default model (``sample-data`` + ``train``) in a temporary folder, then starts
these servers with the same uvicorn settings (one worker, uvloop, httptools, access log off),
pinned to core 0, and drives each with wrk pinned to core 1 (``-t1 -c16``, ``POST
/prediction?score=true``, body ``[0.1, 0.1]``) in alternating rounds:

- Vigil as shipped (``python -m service serve``, every metric on);
- ``bench/servers/noop.py``: a FastAPI endpoint with a ``list[float]`` body returning a constant;
- ``bench/servers/baseline.py``: the seed's way, scikit-learn ``predict`` and ``score_samples``
  on every request;
- Vigil with its access log on, to show what that setting costs (no target).

It prints requests/s, p50 and p99 of each with the ratios and whether each target is met; then
``POST /predictions`` with 10,000 rows (one request at a time) against back-to-back in-process
scikit-learn ``score_samples``, the Vigil worker's resident memory, and how the cost grows with
batch size, number of trees and number of features (tables, and a PNG plot). Everything
printed also goes to ``--out`` (default ``bench/results/``, git-ignored). Timings are not part
of the test suite; the smoke test runs ``--quick`` and checks only that the tables come out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SERVER_CORE, CLIENT_CORE = 0, 1
CONNECTIONS = 16
BATCH_ROWS = 10_000
BATCH_CONNECTIONS = 1  # one batch at a time, like the back-to-back in-process calls
SINGLE_PATH = "/prediction?score=true"
BATCH_PATH = "/predictions?score=true"
UVICORN_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--log-level", "info"]

# The targets: each a ratio measured in one run.
MIN_SHARE_OF_NOOP = 0.80
MAX_P99_OVER_NOOP = 1.30
MIN_TIMES_BASELINE = 30.0
MIN_BATCH_SHARE_OF_SKLEARN = 0.60
MAX_RSS_MB = 150.0


@dataclass(frozen=True)
class Mode:
    rounds: int  # alternating wrk rounds per server; the median round is reported
    seconds: int  # wrk duration per round
    warmup: int  # wrk seconds per server before the rounds
    batch_seconds: int
    timing_budget: float  # seconds spent timing each in-process cell
    batch_sizes: tuple[int, ...]
    trees: tuple[int, ...]
    features: tuple[int, ...]


FULL = Mode(
    rounds=3,
    seconds=8,
    warmup=2,
    batch_seconds=8,
    timing_budget=0.3,
    batch_sizes=(1, 10, 100, 1000, 2000, 5000, 10_000),
    trees=(100, 200, 500, 1000),
    features=(2, 5, 10, 20, 50, 100),
)
QUICK = Mode(
    rounds=1,
    seconds=1,
    warmup=1,
    batch_seconds=1,
    timing_budget=0.03,
    batch_sizes=(1, 100, 10_000),
    trees=(100, 300),
    features=(2, 20),
)


# --------------------------------------------------------------------------------- processes


def pinned(core: int) -> list[str]:
    """``taskset -c core`` when there are two cores or more to pin to, else nothing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > max(SERVER_CORE, CLIENT_CORE):
        return ["taskset", "-c", str(core)]
    return []


@contextlib.contextmanager
def on_core(core: int) -> Iterator[None]:
    """Run this (in-process) block on one core, like a one-worker server."""
    before = os.sched_getaffinity(0)
    if pinned(core):
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*pinned(SERVER_CORE), *self.command],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> dict:
        """Wait until it answers the benchmark request; returns that answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                r = requests.post(self.url + SINGLE_PATH, json=[0.1, 0.1], timeout=2)
                if r.status_code == 200:
                    return r.json()
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log_path.read_text()}")

    def rss_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def uvicorn_server(
    name: str, app: str, port: int, tmp: Path, env: dict[str, str] | None = None
) -> Server:
    """One of the bench's own apps (``bench/servers``) under ``python -m uvicorn``."""
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH / "servers"), app]
    command += ["--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS, "--no-access-log"]
    return Server(name, command, {**os.environ, **(env or {})}, port, tmp / f"{name}.log")


def vigil_server(name: str, model: Path, port: int, tmp: Path, access_log: bool) -> Server:
    """Vigil as shipped: ``python -m service serve``, configured by its settings."""
    env = {
        **os.environ,
        "VIGIL_MODEL_PATH": str(model),
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_WORKERS": "1",
        "VIGIL_ACCESS_LOG": str(access_log).lower(),
        "VIGIL_LOG_LEVEL": "info",
    }
    return Server(name, [sys.executable, "-m", "service", "serve"], env, port, tmp / f"{name}.log")


# --------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(out: str, pct: str) -> float:
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * _UNIT_MS[m.group(2)] if m else float("nan")


def run_wrk(url: str, script: Path, seconds: int, connections: int = CONNECTIONS) -> WrkResult:
    cmd = [*pinned(CLIENT_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        [*cmd, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_latency_ms(out, "50"),
        p99_ms=_latency_ms(out, "99"),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        errors=errors,
    )


def median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
    )


# ----------------------------------------------------------------------------- in-process timing


def seconds_per_call(fn: Callable[[], object], budget: float, min_calls: int = 3) -> float:
    """Median seconds per call of ``fn()``, over about ``budget`` seconds (after one warm-up)."""
    fn()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < min_calls or spent < budget:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        samples.append(took)
        spent += took
        if len(samples) >= 10_000:
            break
    return statistics.median(samples)


def rows_per_second(fn: Callable[[], object], rows: int, budget: float) -> float:
    """Throughput of back-to-back calls, like wrk's: total rows over total time."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget:
        fn()
        calls += 1
    return calls * rows / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------- the run


def make_model(tmp: Path) -> tuple[Path, Path]:
    """The default model, as ``make train`` makes it; and its estimator alone, for the baseline."""
    for args in (
        ["sample-data", "--out-dir", str(tmp / "data")],
        ["train", "--data", str(tmp / "data" / "train.csv"), "--out", str(tmp / "model.joblib")],
    ):
        subprocess.run(
            [sys.executable, "-m", "service", *args], cwd=REPO, check=True, capture_output=True
        )
    import joblib

    from service.models import artifact

    estimator_path = tmp / "estimator.joblib"
    joblib.dump(artifact.load(tmp / "model.joblib").estimator(), estimator_path)
    return tmp / "model.joblib", estimator_path


def rows_like_the_sample_data(n: int, n_features: int = 2, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0.1, 0.1, (n, n_features)), 6)


def single_row_rounds(servers: list[Server], mode: Mode) -> dict[str, list[WrkResult]]:
    """Every server gets a warm-up, then ``mode.rounds`` rounds in rotating order, so that a
    change in the machine's background load falls on all of them; the median round counts."""
    post = BENCH / "post.lua"
    for s in servers:
        run_wrk(s.url + SINGLE_PATH, post, mode.warmup)
    runs: dict[str, list[WrkResult]] = {s.name: [] for s in servers}
    for r in range(mode.rounds):
        for s in servers[r % len(servers) :] + servers[: r % len(servers)]:
            runs[s.name].append(run_wrk(s.url + SINGLE_PATH, post, mode.seconds))
        done = "  ".join(f"{name} {rs[-1].rps:,.0f}" for name, rs in runs.items())
        print(f"  round {r + 1}/{mode.rounds} req/s: {done}", flush=True)
    return runs


def post_script(tmp: Path, name: str, body: bytes) -> Path:
    """A wrk script posting ``body`` (read from a file: it may be large) as JSON."""
    body_path = tmp / f"{name}.json"
    body_path.write_bytes(body)
    script = tmp / f"{name}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = assert(io.open("{body_path}", "rb"))\nwrk.body = f:read("*a")\nf:close()\n'
    )
    return script


def batch_over_http(vigil: Server, X: np.ndarray, tmp: Path, mode: Mode) -> WrkResult:
    """wrk posting the same ``len(X)``-row body to ``/predictions`` (its answer checked first)."""
    body = json.dumps(X.tolist()).encode()
    answer = requests.post(
        vigil.url + BATCH_PATH,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    answer.raise_for_status()
    if len(answer.json()["predictions"]) != len(X):
        raise AssertionError("the batch answer does not have one result per row")
    script = post_script(tmp, "batch", body)
    run_wrk(vigil.url + BATCH_PATH, script, mode.warmup, BATCH_CONNECTIONS)
    return run_wrk(vigil.url + BATCH_PATH, script, mode.batch_seconds, BATCH_CONNECTIONS)


def http_batch_latency(url: str, sizes: tuple[int, ...], tmp: Path, seconds: int) -> dict:
    """Median latency (s) of ``POST /predictions`` by batch size, wrk sending one at a time."""
    out = {}
    for n in sizes:
        script = post_script(
            tmp, f"rows-{n}", json.dumps(rows_like_the_sample_data(n).tolist()).encode()
        )
        out[n] = run_wrk(url + BATCH_PATH, script, seconds, connections=1).p50_ms / 1e3
    return out


def cost_growth(mode: Mode, model_path: Path) -> dict[str, dict]:
    """In-process seconds per call, on one core: by batch size on the default model (Vigil's
    scoring path, the compiled forest alone, scikit-learn); by number of trees and of features
    on forests fitted here (compiled forest and scikit-learn, 1 and 100 rows)."""
    from sklearn.ensemble import IsolationForest

    from service.detectors.compiled_forest import CompiledForest
    from service.models import artifact
    from service.models.loaded import Model

    art = artifact.load(model_path)
    model, estimator = Model(art, model_path), art.estimator()
    budget = mode.timing_budget
    growth: dict[str, dict] = {"batch": {}, "trees": {}, "features": {}}

    def forest_cells(n_trees: int, n_features: int) -> dict[str, float]:
        rng = np.random.default_rng(n_trees * 1000 + n_features)
        fitted = IsolationForest(n_estimators=n_trees, random_state=0)
        fitted.fit(rng.normal(size=(2000, n_features)))
        compiled = CompiledForest.from_estimator(fitted)
        cells = {}
        for rows in (1, 100):
            X = rng.normal(size=(rows, n_features))
            if not np.array_equal(compiled.score_samples(X), fitted.score_samples(X)):
                raise AssertionError(f"the compiled forest differs ({n_trees}, {n_features})")
            cells[f"compiled_{rows}"] = seconds_per_call(
                lambda X=X: compiled.score_samples(X), budget
            )
            cells[f"sklearn_{rows}"] = seconds_per_call(lambda X=X: fitted.score_samples(X), budget)
        return cells

    with on_core(SERVER_CORE):
        for n in mode.batch_sizes:
            X = rows_like_the_sample_data(n)
            growth["batch"][n] = {
                "vigil": seconds_per_call(lambda X=X: model.score(X), budget),
                "compiled": seconds_per_call(lambda X=X: art.forest.score_samples(X), budget),
                "sklearn": seconds_per_call(lambda X=X: estimator.score_samples(X), budget),
            }
        for n_trees in mode.trees:
            growth["trees"][n_trees] = forest_cells(n_trees, 2)
        for n_features in mode.features:
            growth["features"][n_features] = forest_cells(100, n_features)
    return growth


def measure(mode: Mode) -> dict:
    """Everything the report shows, as plain numbers."""
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    servers: list[Server] = []
    try:
        model_path, estimator_path = make_model(tmp)
        env = {"BENCH_ESTIMATOR": str(estimator_path)}
        servers = [
            uvicorn_server("no-op", "noop:app", free_port(), tmp),
            vigil_server("Vigil", model_path, free_port(), tmp, access_log=False),
            uvicorn_server("baseline", "baseline:app", free_port(), tmp, env),
            vigil_server("Vigil+log", model_path, free_port(), tmp, access_log=True),
        ]
        for s in servers:
            s.start()
        answers = {s.name: s.wait_ready() for s in servers}
        if answers["Vigil"]["anomaly_score"] != answers["baseline"]["anomaly_score"]:
            raise AssertionError(f"Vigil and the baseline disagree: {answers}")
        vigil = servers[1]

        rounds = single_row_rounds(servers, mode)
        rss_single_rows = vigil.rss_mb()
        X_batch = rows_like_the_sample_data(BATCH_ROWS)
        batch = batch_over_http(vigil, X_batch, tmp, mode)
        http_latency = http_batch_latency(vigil.url, mode.batch_sizes, tmp, mode.batch_seconds)
        rss = {s.name: s.rss_mb() for s in servers}
        vigil_peak = vigil.peak_rss_mb()
        for s in servers:
            s.stop()

        import joblib

        estimator = joblib.load(estimator_path)
        with on_core(SERVER_CORE):
            sklearn_rows_s = rows_per_second(
                lambda: estimator.score_samples(X_batch), BATCH_ROWS, max(1.0, mode.seconds / 2)
            )
        growth = cost_growth(mode, model_path)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "single": {name: asdict(median_result(rs)) for name, rs in rounds.items()},
        "rounds": {name: [asdict(r) for r in rs] for name, rs in rounds.items()},
        "batch": {
            **asdict(batch),
            "rows_per_s": batch.rps * BATCH_ROWS,
            "sklearn_rows_per_s": sklearn_rows_s,
        },
        "rss_mb": {"vigil_single_rows": rss_single_rows, "vigil_peak": vigil_peak, **rss},
        "growth": growth,
        "http_batch_seconds": http_latency,
    }


# ------------------------------------------------------------------------------------ report


def fmt_ms(ms: float) -> str:
    return f"{ms * 1000:.0f} µs" if ms < 1 else f"{ms:.2f} ms"


def fmt_s(seconds: float) -> str:
    return fmt_ms(seconds * 1e3)


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns as wide as their widest cell: the first left-aligned, the others right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return indent + "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        )

    return [line(header), *(line(r) for r in rows)]


def targets(r: dict) -> list[tuple[bool, str]]:
    noop, vigil, base = (WrkResult(**r["single"][k]) for k in ("no-op", "Vigil", "baseline"))
    batch, sklearn_rows = r["batch"]["rows_per_s"], r["batch"]["sklearn_rows_per_s"]
    rss = max(r["rss_mb"]["vigil_single_rows"], r["rss_mb"]["Vigil"])
    return [
        (
            vigil.rps >= MIN_SHARE_OF_NOOP * noop.rps,
            f"Vigil req/s >= {MIN_SHARE_OF_NOOP:.0%} of the no-op's: {vigil.rps / noop.rps:.0%}"
            f" ({vigil.rps:,.0f} vs {noop.rps:,.0f})",
        ),
        (
            vigil.p99_ms <= MAX_P99_OVER_NOOP * noop.p99_ms,
            f"Vigil p99 <= {MAX_P99_OVER_NOOP}x the no-op's: {vigil.p99_ms / noop.p99_ms:.2f}x"
            f" ({fmt_ms(vigil.p99_ms)} vs {fmt_ms(noop.p99_ms)})",
        ),
        (
            vigil.rps >= MIN_TIMES_BASELINE * base.rps,
            f"Vigil req/s >= {MIN_TIMES_BASELINE:.0f}x the baseline's: {vigil.rps / base.rps:.1f}x"
            f" ({vigil.rps:,.0f} vs {base.rps:,.0f})",
        ),
        (
            batch >= MIN_BATCH_SHARE_OF_SKLEARN * sklearn_rows,
            f"{BATCH_ROWS:,}-row batches >= {MIN_BATCH_SHARE_OF_SKLEARN:.0%} of in-process"
            f" scikit-learn rows/s: {batch / sklearn_rows:.0%}"
            f" ({batch:,.0f} vs {sklearn_rows:,.0f})",
        ),
        (rss <= MAX_RSS_MB, f"RSS per worker <= {MAX_RSS_MB:.0f} MB: {rss:.0f} MB"),
    ]


def render(r: dict, mode_name: str, stamp: dt.datetime) -> list[str]:
    pin = (
        f"servers pinned to core {SERVER_CORE} and wrk to core {CLIENT_CORE} (taskset)"
        if pinned(SERVER_CORE)
        else "NOT pinned (no taskset, or a single core)"
    )
    mode = QUICK if mode_name == "quick" else FULL
    out = [
        f"Vigil benchmark ({mode_name}), {stamp:%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()},"
        f" Python {platform.python_version()}; {pin}",
        "servers: uvicorn, 1 worker, uvloop, httptools, access log off (Vigil: python -m service"
        " serve; the others: python -m uvicorn)",
        f"load: wrk -t1 -c{CONNECTIONS} -d{mode.seconds}s --latency -s bench/post.lua, POST"
        f" {SINGLE_PATH}, body [0.1, 0.1]; median of {mode.rounds} alternating round(s)",
        "",
    ]
    single = {name: WrkResult(**v) for name, v in r["single"].items()}
    noop, base = single["no-op"], single["baseline"]
    labels = {
        "no-op": "no-op FastAPI endpoint (ceiling)",
        "Vigil": "Vigil, all metrics on",
        "baseline": "baseline: sklearn per request",
        "Vigil+log": "Vigil with access log on",
    }
    out += table(
        ["single row", "req/s", "p50", "p99", "vs no-op", "vs baseline"],
        [
            [
                labels[name],
                f"{s.rps:,.0f}",
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                f"{s.rps / noop.rps:.0%}",
                f"{s.rps / base.rps:.1f}x",
            ]
            for name, s in single.items()
        ],
    )
    per_round = [
        f"{v['rps'] / n['rps']:.0%}"
        for v, n in zip(r["rounds"]["Vigil"], r["rounds"]["no-op"], strict=True)
    ]
    out.append(f"  Vigil / no-op req/s in each round: {', '.join(per_round)}")
    errors = sum(s.errors for s in single.values()) + r["batch"]["errors"]
    if errors:
        out.append(f"  WARNING: {errors} failed or non-2xx responses")
    b, rss = r["batch"], r["rss_mb"]
    out += [
        "",
        f"batch: POST {BATCH_PATH} with {BATCH_ROWS:,} rows (wrk -c{BATCH_CONNECTIONS}):"
        f" {b['rps']:.1f} req/s = {b['rows_per_s']:,.0f} rows/s (p50 {fmt_ms(b['p50_ms'])});"
        f" in-process scikit-learn score_samples: {b['sklearn_rows_per_s']:,.0f} rows/s",
        f"RSS (VmRSS): Vigil worker {rss['vigil_single_rows']:.0f} MB after the single-row runs,"
        f" {rss['Vigil']:.0f} MB after the batches (peak {rss['vigil_peak']:.0f} MB);"
        f" no-op {rss['no-op']:.0f} MB, baseline {rss['baseline']:.0f} MB",
        "",
        "targets",
        *(f"  [{'met' if ok else 'NOT met':>7}] {text}" for ok, text in targets(r)),
        "",
        "cost growth: median time per call, in-process on one core; HTTP: p50 of POST"
        " /predictions?score=true, one request at a time (wrk -c1)",
    ]
    g, http = r["growth"], r["http_batch_seconds"]
    out += table(
        ["rows", "Vigil path", "compiled", "scikit-learn", "HTTP", "Vigil rows/s"],
        [
            [
                f"{n:,}",
                fmt_s(c["vigil"]),
                fmt_s(c["compiled"]),
                fmt_s(c["sklearn"]),
                fmt_s(http[n]),
                f"{n / c['vigil']:,.0f}",
            ]
            for n, c in sorted(g["batch"].items())
        ],
    )
    out.append(
        "  Vigil path: the compiled forest up to FAST_PATH_MAX_ROWS rows, scikit-learn above"
    )
    for key, what in (("trees", "trees (2 features)"), ("features", "features (100 trees)")):
        out += table(
            [what, "compiled 1", "sklearn 1", "compiled 100", "sklearn 100"],
            [
                [
                    str(x),
                    *(
                        fmt_s(c[k])
                        for k in ("compiled_1", "sklearn_1", "compiled_100", "sklearn_100")
                    ),
                ]
                for x, c in sorted(g[key].items())
            ],
        )
    return out


def plot(growth: dict, http: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    sizes = sorted(growth["batch"])
    ax = axes[0]
    ax.plot(sizes, [growth["batch"][n]["vigil"] * 1e3 for n in sizes], "o-", label="Vigil path")
    ax.plot(
        sizes, [growth["batch"][n]["sklearn"] * 1e3 for n in sizes], "o--", label="scikit-learn"
    )
    ax.plot(sizes, [http[n] * 1e3 for n in sizes], "s:", label="Vigil over HTTP")
    ax.set(xlabel="rows per call", title="Batch size (default model: 100 trees, 2 features)")
    for ax, key, title in (
        (axes[1], "trees", "Number of trees (2 features)"),
        (axes[2], "features", "Number of features (100 trees)"),
    ):
        xs = sorted(growth[key])
        for cell, style, label in (
            ("compiled_1", "o-", "compiled, 1 row"),
            ("sklearn_1", "o--", "scikit-learn, 1 row"),
            ("compiled_100", "s-", "compiled, 100 rows"),
            ("sklearn_100", "s--", "scikit-learn, 100 rows"),
        ):
            ax.plot(xs, [growth[key][x][cell] * 1e3 for x in xs], style, label=label)
        ax.set(xlabel=key, title=title)
    for ax in axes:
        ax.set(xscale="log", yscale="log", ylabel="ms per call")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("How Vigil's scoring cost grows (in-process on one core; HTTP end to end)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round of everything")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results folder")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    mode_name = "quick" if args.quick else "full"
    stamp = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    results = measure(QUICK if args.quick else FULL)

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "cost_growth.png"
    plot(results["growth"], results["http_batch_seconds"], png)
    lines = render(results, mode_name, stamp)
    lines += ["", f"plot: {png}  ({time.monotonic() - started:.0f} s in all)"]
    text = "\n".join(lines) + "\n"
    print("\n" + text, end="")
    name = f"bench-{stamp:%Y%m%d-%H%M%S}-{mode_name}"
    for path in (args.out / f"{name}.txt", args.out / "latest.txt"):
        path.write_text(text)
    results["targets"] = [{"met": ok, "what": what} for ok, what in targets(results)]
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
