"""The benchmarks' shared plumbing: pinned server processes, wrk, in-process timing, tables.

Servers run pinned to core ``SERVER_CORE`` and wrk to ``CLIENT_CORE`` (``taskset``), so the
load generator never competes with the server it measures. ``bench.py`` and ``kinds.py`` use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

SERVER_CORE, CLIENT_CORE = 0, 1
CONNECTIONS = 16
SINGLE_PATH = "/prediction?score=true"
NAMED_PATH = "/models/default/prediction?score=true"  # the same model, by name
SINGLE_BODY = [0.1, 0.1]
UVICORN_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--log-level", "info"]


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
    ready_path: str = SINGLE_PATH
    """Ready once ``POST ready_path`` with ``SINGLE_BODY`` answers 200."""
    proc: subprocess.Popen | None = field(default=None, repr=False)

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

    def wait_ready(self, timeout: float = 90) -> dict:
        """Wait until it answers the benchmark request; returns that answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                r = requests.post(self.url + self.ready_path, json=SINGLE_BODY, timeout=2)
                if r.status_code == 200:
                    return r.json()
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log_path.read_text()}")

    def rss_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        return proc_status_mb(self.proc.pid, "VmHWM")

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU seconds the server process has used so far (all threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def uvicorn_server(
    name: str,
    app: str,
    port: int,
    tmp: Path,
    env: dict[str, str] | None = None,
    access_log: bool = False,
) -> Server:
    """One of the bench's own apps (``bench/servers``) under ``python -m uvicorn``; with
    ``access_log``, uvicorn's own access log goes to the server's log file, as Vigil's does."""
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH / "servers"), app]
    command += ["--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS]
    if not access_log:
        command.append("--no-access-log")
    safe = name.replace("+", "-").replace(" ", "-")
    return Server(name, command, {**os.environ, **(env or {})}, port, tmp / f"{safe}.log")


def model_settings(model_path: Path) -> dict[str, str]:
    """The settings that serve one artifact file, and no registry, as ``make run`` does."""
    return {"VIGIL_MODEL_PATH": str(model_path), "VIGIL_REGISTRY": str(model_path.parent / "none")}


def vigil_server(
    name: str, port: int, tmp: Path, settings: dict[str, str], access_log: bool = False
) -> Server:
    """Vigil as shipped: ``python -m service serve``, one worker, configured by ``settings``
    (``VIGIL_*`` variables: the model path or the registry)."""
    env = {
        **os.environ,
        **settings,
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_WORKERS": "1",
        "VIGIL_ACCESS_LOG": str(access_log).lower(),
        "VIGIL_LOG_LEVEL": "info",
    }
    safe = name.replace("+", "-")
    return Server(name, [sys.executable, "-m", "service", "serve"], env, port, tmp / f"{safe}.log")


def post_scope(path: str, query: bytes, body: bytes) -> dict:
    """The ASGI scope of a JSON POST, for the benchmarks that drive an app in-process."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


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


def alternating_rounds(
    targets: list[tuple[str, str]], rounds: int, seconds: int, warmup: int
) -> dict[str, list[WrkResult]]:
    """wrk on every ``(name, url)`` target (the seed's one-row body): a warm-up each, then
    ``rounds`` rounds in rotating order, so that a change in the machine's background load
    falls on all of them; report the median round."""
    post = BENCH / "post.lua"
    for _, url in targets:
        run_wrk(url, post, warmup)
    runs: dict[str, list[WrkResult]] = {name: [] for name, _ in targets}
    for r in range(rounds):
        shift = r % len(targets)
        for name, url in targets[shift:] + targets[:shift]:
            runs[name].append(run_wrk(url, post, seconds))
        done = "  ".join(f"{name} {rs[-1].rps:,.0f}" for name, rs in runs.items())
        print(f"  round {r + 1}/{rounds} req/s: {done}", flush=True)
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


# ----------------------------------------------------------------------------- in-process timing


def rows_like_the_sample_data(n: int, n_features: int = 2, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0.1, 0.1, (n, n_features)), 6)


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
