"""Helpers for tests that run real processes: free ports, a live Vigil server, polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class LiveServer:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_server(
    model_path: Path | str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout: float = 30,
    preexec_fn: Callable[[], None] | None = None,
) -> LiveServer:
    """Start ``python -m service serve`` on a free port; wait until live (and ready if asked)."""
    port = free_port()
    full_env = {
        **os.environ,
        "VIGIL_MODEL_PATH": str(model_path),
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_ACCESS_LOG": "false",
        **(env or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"vigil-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    path = "/health/ready" if ready else "/health/live"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        return requests.get(server.url + path, timeout=2).status_code == 200

    try:
        wait_for(up, timeout, f"{server.url}{path}")
    except BaseException:
        server.stop()
        raise
    return server


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Parse a /metrics page into {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=5).text
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def run_tester(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run tester.py as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(REPO / "tester.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
