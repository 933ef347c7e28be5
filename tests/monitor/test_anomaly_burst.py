"""End to end: tester.py streams normal rows through Caddy (basic auth) into a stack started
by monitor/localstack.py, with a burst of injected anomalies in the middle. The anomaly-rate
alert fires in the real Prometheus, reaches a webhook through the real Alertmanager, and the
dashboard's anomaly panels, queried as Grafana would, show the burst and not the baseline."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from monitor import localstack
from service.models import artifact
from tests.monitor.conftest import prom_query
from tests.monitor.dashboard import queries, substitute
from tests.support import REPO

pytestmark = pytest.mark.slow

RATE = 100  # requests per second, one row each
DURATION = 14  # seconds
BURST_START, BURST_LENGTH = 6, 4  # seconds into the stream
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval for a 1 s scrape interval


def query_range(stack: localstack.Stack, expr: str, start: float, end: float) -> list[dict]:
    r = requests.get(
        stack.backend_url("prometheus") + "/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": "1s"},
        headers=stack.backend_auth("prometheus"),
        timeout=10,
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def points(result: list[dict], **labels: str) -> list[tuple[float, float]]:
    """The (time, value) points of the one series with these labels."""
    (series,) = [s for s in result if all(s["metric"].get(k) == v for k, v in labels.items())]
    return [(float(t), float(v)) for t, v in series["values"]]


def unix_time(rfc3339: str) -> float:
    """Alertmanager's timestamps carry nanoseconds, more than fromisoformat takes."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", rfc3339)
    assert m, rfc3339
    base = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.UTC).timestamp()
    return base + float(m.group(2) or 0)


def test_an_injected_burst_fires_the_anomaly_alert_and_shows_on_the_dashboard(
    stack, receiver, credentials, data_dir, model_path
):
    # Normal rows (the training data, which the model flags about 2% of), then a burst in
    # which every row's sd is raised by 10 standard deviations, then normal rows again.
    env = {**os.environ, "VIGIL_USER": credentials.user, "VIGIL_PASSWORD": credentials.password}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tester.py"), "--url", stack.front_url("api"),
         "--data", str(data_dir / "train.csv"), "--stream", "--rate", str(RATE),
         "--duration", str(DURATION), "--inject", f"step:{BURST_START}:{BURST_LENGTH}:10",
         "--inject-columns", "sd", "--seed", "1", "--score-every", "0"],
        env=env, capture_output=True, text=True, timeout=DURATION + 60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    total, burst = RATE * DURATION, RATE * BURST_LENGTH
    assert f"requests: {total}  " in out and "errors: 0 (none)" in out
    assert f"rows: {total} sent, {total} scored, {burst} injected" in out
    recall = float(re.search(r"vs injected labels: precision \S+  recall (\S+)", out).group(1))
    assert recall > 0.95, out
    t0 = float(re.search(r"unix (\d+\.\d+)", out).group(1))
    burst_start, burst_end = t0 + BURST_START, t0 + BURST_START + BURST_LENGTH

    # The alert goes out through Alertmanager, and it started with the burst, not before.
    alert = receiver.wait_for_alert(
        lambda a: a["labels"]["alertname"] == "VigilAnomalyRateHigh" and a["status"] == "firing",
        timeout=60,
    )
    assert alert["labels"] == {
        "alertname": "VigilAnomalyRateHigh",
        "severity": "warning",
        "job": "vigil",
    }
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigilanomalyratehigh"
    assert unix_time(alert["startsAt"]) >= burst_start
    # No other alert: the stream itself was healthy (no errors, fast answers).
    assert {a["labels"]["alertname"] for a in receiver.alerts()} == {"VigilAnomalyRateHigh"}

    # The dashboard's anomaly panels, as Grafana would query them over the stream.
    q = {name: substitute(expr, rate_interval=RATE_INTERVAL) for name, expr in queries()}
    end = time.time()

    def before(pts):  # windows (T - 4 s, T] that hold only rows sent before the burst
        return [v for t, v in pts if t0 + 2 <= t <= burst_start - 0.5]

    def during(pts):
        return [v for t, v in pts if burst_start + 1 <= t <= burst_end + 3]

    ratio = points(query_range(stack, q["Anomaly rate vs expected [A]"], t0, end))
    alert_line = points(query_range(stack, q["Anomaly rate vs expected [C]"], t0, end))
    line_value = alert_line[-1][1]
    assert line_value == pytest.approx(0.06, abs=0.02)  # 3 x the training share, at least 5%
    assert before(ratio) and max(before(ratio)) < line_value
    assert during(ratio) and max(during(ratio)) > 0.5

    outcomes = query_range(stack, q["Predictions by outcome [A]"], t0, end)
    anomalies = points(outcomes, outcome="anomaly")
    assert max(during(anomalies)) > 3 * max(before(anomalies)) + 10

    # Score distribution: the burst's rows land in the buckets above the threshold.
    heat = query_range(stack, q["Anomaly score distribution [A]"], t0, end)
    threshold = artifact.read_manifest(model_path)["metadata"]["threshold"]
    above = next(le for le in ("0.6", "0.65", "0.7", "0.75") if float(le) > threshold)
    everything = dict(points(heat, le="+Inf"))
    below = dict(points(heat, le=above))

    def high_share(ts: list[float]) -> float:
        total_rows = sum(everything[t] for t in ts if t in below)
        return sum(everything[t] - below[t] for t in ts if t in below) / total_rows

    times = sorted(everything)
    assert high_share([t for t in times if t0 + 2 <= t <= burst_start - 0.5]) < 0.1
    assert high_share([t for t in times if burst_start + 1 <= t <= burst_end]) > 0.5

    firing = prom_query(stack, q["Firing alerts [A]"])
    assert "VigilAnomalyRateHigh" in {s["metric"]["alertname"] for s in firing}
