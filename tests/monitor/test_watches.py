"""Watches against real processes: a Vigil whose watch polls a real Prometheus scraping it.

The stack is monitor/localstack.py's, with the test intervals (1 s scrapes, `for:` capped at
2 s, watch steps of 1 s). Traffic comes from tester.py, as a user would send it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.monitor.conftest import fast_options, prom_query
from tests.support import REPO, metric, scrape, start_server, wait_for

pytestmark = pytest.mark.slow

# The request rate of the one-row route over 3 s (short, so a burst shows within seconds).
WATCH = """
watches:
  - name: traffic
    query: sum by (job) (rate(http_requests_total{job="vigil", handler="/prediction"}[3s]))
    step: 1s
    detector: rolling
    params: {warmup: 10, k: 6, window: 60}
    max_series: 1
  - name: per_handler
    query: sum by (handler) (rate(http_requests_total{job="vigil"}[3s]))
    step: 1s
    detector: rolling
    params: {warmup: 10}
    max_series: 1
"""


def run_tester_in_background(
    url: str, data: Path, rate: float, duration: float
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tester.py"), "--url", url, "--data", str(data),
         "--stream", "--rate", str(rate), "--duration", str(duration), "--threads", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def watch_metric(url: str, name: str, **labels: str) -> float | None:
    for (n, found), value in scrape(url).items():
        if n == name and set(labels.items()) <= found:
            return value
    return None


def test_a_traffic_burst_is_flagged_exported_and_alerted_and_prometheus_down_changes_nothing(
    stack_programs, tmp_path, model_path, data_dir, credentials, receiver
):
    from monitor import localstack

    watches = tmp_path / "watches.yml"
    watches.write_text(WATCH)
    opts = fast_options(tmp_path / "stack", model_path, credentials, receiver.url)
    opts.watches = watches
    stack = localstack.up(opts)
    baseline = burst = None
    try:
        vigil = stack.backend_url("vigil")
        baseline = run_tester_in_background(vigil, data_dir / "test.csv", rate=10, duration=120)
        # Warm-up: 10 points of steady traffic, then a band; let the band settle 15 more steps.
        wait_for(
            lambda: watch_metric(vigil, "vigil_watch_upper", watch="traffic") is not None,
            60,
            "the traffic watch's band",
        )
        settled = time.time() + 15
        wait_for(
            lambda: (watch_metric(vigil, "vigil_watch_last_success_timestamp_seconds",
                                  watch="traffic") or 0) > settled,
            40,
            "15 more polls",
        )  # fmt: skip
        m = scrape(vigil)
        # Two series for per_handler (its cap is 1): one exported, the other counted.
        assert metric(m, "vigil_watch_series", watch="per_handler") == 1
        assert metric(m, "vigil_watch_dropped_series_total", watch="per_handler") > 0
        before = {a["startsAt"] for a in receiver.alerts()}

        burst_start = time.time()
        burst = run_tester_in_background(vigil, data_dir / "test.csv", rate=100, duration=10)

        # Exported by the service, seen by Prometheus, and alerted through Alertmanager.
        def flagged_in_prometheus() -> bool:
            q = 'max_over_time(vigil_watch_anomalous{watch="traffic"}[30s]) == 1'
            return bool(prom_query(stack, q))

        wait_for(flagged_in_prometheus, 40, "the burst flagged by the watch")
        alert = receiver.wait_for_alert(
            lambda a: (
                a["labels"].get("alertname") == "VigilWatchAnomaly"
                and a["labels"].get("watch") == "traffic"
            ),
            timeout=40,
        )
        assert alert["startsAt"] not in before
        starts = datetime.fromisoformat(alert["startsAt"]).timestamp()
        assert starts >= burst_start - 2, "the watch fired before the burst"
        assert alert["labels"]["exported_job"] == "vigil"  # the series' own label, kept
        burst.wait(30)

        # The same query once, through POST /series/detect: per series, with its labels.
        now = time.time()
        query = WATCH.split("query: ", 1)[1].split("\n", 1)[0]
        body = {
            "detector": "rolling",
            "params": {"warmup": 10, "k": 6, "window": 60},
            "prometheus": {"query": query, "start": now - 90, "end": now, "step": "1s"},
        }
        r = requests.post(f"{vigil}/series/detect", json=body, timeout=30)
        assert r.status_code == 200, r.text
        (series,) = r.json()["series"]
        assert series["labels"] == {"job": "vigil"}
        flagged = [a["timestamp"] for a in series["anomalies"]]
        assert any(burst_start - 2 <= t <= burst_start + 15 for t in flagged), flagged
        body["prometheus"]["query"] = "sum(rate(x[1m]"
        r = requests.post(f"{vigil}/series/detect", json=body, timeout=30)
        assert r.status_code == 422 and r.json()["detail"].startswith("prometheus.query: ")

        # Prometheus down: serving is untouched; the watch counts errors and goes stale.
        m = scrape(vigil)
        last = metric(m, "vigil_watch_last_success_timestamp_seconds", watch="traffic")
        errors = metric(m, "vigil_watch_errors_total", watch="traffic")
        stack.stop_component("prometheus")
        wait_for(
            lambda: (
                metric(scrape(vigil), "vigil_watch_errors_total", watch="traffic") >= errors + 3
            ),
            30,
            "failed polls counted",
        )
        s = requests.Session()
        for _ in range(50):
            assert s.post(f"{vigil}/prediction", json=[0.0, 0.1], timeout=5).status_code == 200
        m = scrape(vigil)
        assert metric(m, "vigil_watch_last_success_timestamp_seconds", watch="traffic") == last
        assert time.time() - last >= 3  # the staleness Prometheus would compute grows
    finally:
        for proc in (baseline, burst):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        stack.stop()


class Blackhole:
    """A TCP port that accepts connections and never answers: a Prometheus that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_hanging_prometheus_never_blocks_serving(tmp_path, model_path):
    hole = Blackhole()
    watches = tmp_path / "watches.yml"
    watches.write_text("watches:\n  - {name: hang, query: up, step: 1s, detector: rolling}\n")
    server = start_server(
        model_path,
        tmp_path / "logs",
        env={
            "VIGIL_WATCHES": str(watches),
            "VIGIL_PROMETHEUS_URL": hole.url,
            "VIGIL_PROMETHEUS_TIMEOUT": "10",  # each poll hangs for 10 s
        },
    )
    try:
        wait_for(lambda: len(hole.held) >= 1, 10, "the watch's first poll")
        s = requests.Session()
        # Every answer comes while the poll hangs, each within a client timeout half of its 10 s.
        for _ in range(50):
            assert s.post(f"{server.url}/prediction", json=[0.0, 0.1], timeout=5).status_code == 200
        body = {"timestamps": [1, 2, 3, 4], "values": [1, 2, 1, 2], "detector": "rolling"}
        assert s.post(f"{server.url}/series/detect", json=body, timeout=5).status_code == 200
        m = scrape(server.url)
        assert metric(m, "vigil_watch_last_success_timestamp_seconds", watch="hang") == 0
        # A one-off query to the same Prometheus times out on its own, as a 504.
        q = {"prometheus": {"query": "up", "start": 0, "end": 10, "step": 1}}
        assert s.post(f"{server.url}/series/detect", json=q, timeout=30).status_code == 504
    finally:
        server.stop()
        hole.close()
