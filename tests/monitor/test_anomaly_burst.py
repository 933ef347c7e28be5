"""End to end, with two models served: tester.py streams normal rows through Caddy (basic auth)
to the `default` model of a stack started by monitor/localstack.py, with a burst of injected
anomalies in the middle, while the `sensors` model (another kind) is sent normal rows all
along. The anomaly-rate alert fires for `default` (and its version) only in the real
Prometheus, reaches a webhook through the real Alertmanager, and the dashboard's anomaly
panels, queried as Grafana would for each model, show the burst on `default` and not the
baseline, and nothing on `sensors`."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from monitor import localstack
from tests.monitor.conftest import SENSORS, SENSORS_DEFAULT, prom_query
from tests.monitor.dashboard import queries, substitute
from tests.support import REPO

pytestmark = pytest.mark.slow

RATE = 100  # requests per second, one row each
DURATION = 14  # seconds
BURST_START, BURST_LENGTH = 6, 4  # seconds into the stream
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval for a 1 s scrape interval
SENSORS_BATCH, SENSORS_EVERY = 20, 0.25  # rows, seconds: 80 rows/s, over 500 in the stream


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


def read_rows(path) -> list[list[float]]:
    with open(path, newline="") as f:
        return [[float(x) for x in row] for row in list(csv.reader(f))[1:]]


def high_share(heat: list[dict], le: str, times: list[float]) -> float:
    """Share of the rows of a heatmap query's windows ending at ``times`` above bucket ``le``."""
    everything, below = dict(points(heat, le="+Inf")), dict(points(heat, le=le))
    ts = [t for t in times if t in everything and t in below]
    assert ts, f"no heatmap points at {times}"
    return sum(everything[t] - below[t] for t in ts) / sum(everything[t] for t in ts)


def test_an_injected_burst_on_one_model_fires_its_alert_and_shows_on_the_dashboard(
    stack, receiver, credentials, data_dir, tmp_path
):
    # Normal rows to `default` (the training data, which it flags about 2% of), then a burst
    # in which every row's sd is raised by 10 standard deviations, then normal rows again.
    env = {**os.environ, "VIGIL_USER": credentials.user, "VIGIL_PASSWORD": credentials.password}
    out_path = tmp_path / "tester.out"
    with out_path.open("w") as out_file:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "tester.py"), "--url", stack.front_url("api"),
             "--data", str(data_dir / "train.csv"), "--stream", "--rate", str(RATE),
             "--duration", str(DURATION), "--inject", f"step:{BURST_START}:{BURST_LENGTH}:10",
             "--inject-columns", "sd", "--seed", "1", "--score-every", "0"],
            env=env, stdout=out_file, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    # Meanwhile `sensors` gets the training rows, unchanged, in batches, until the stream ends.
    rows = read_rows(data_dir / "train.csv")
    session = requests.Session()
    session.auth = credentials.auth
    sensors_url = f"{stack.front_url('api')}/models/{SENSORS}/predictions"
    sensors_rows = 0
    try:
        while proc.poll() is None:
            start = sensors_rows % (len(rows) - SENSORS_BATCH)
            r = session.post(sensors_url, json=rows[start : start + SENSORS_BATCH], timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == SENSORS and r.json()["version"] == int(SENSORS_DEFAULT)
            sensors_rows += SENSORS_BATCH
            with contextlib.suppress(subprocess.TimeoutExpired):  # paces the batches
                proc.wait(timeout=SENSORS_EVERY)
        assert proc.wait(timeout=DURATION + 60) == 0, out_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = out_path.read_text()
    total, burst = RATE * DURATION, RATE * BURST_LENGTH
    assert f"requests: {total}  " in out and "errors: 0 (none)" in out
    assert f"rows: {total} sent, {total} scored, {burst} injected" in out
    recall = float(re.search(r"vs injected labels: precision \S+  recall (\S+)", out).group(1))
    assert recall > 0.95, out
    assert sensors_rows >= 500  # enough for the alert to judge `sensors` too
    t0 = float(re.search(r"unix (\d+\.\d+)", out).group(1))
    burst_start, burst_end = t0 + BURST_START, t0 + BURST_START + BURST_LENGTH

    # The alert goes out through Alertmanager for `default` and its version, and it started
    # with the burst, not before.
    alert = receiver.wait_for_alert(
        lambda a: a["labels"]["alertname"] == "VigilAnomalyRateHigh" and a["status"] == "firing",
        timeout=60,
    )
    assert alert["labels"] == {
        "alertname": "VigilAnomalyRateHigh",
        "severity": "warning",
        "job": "vigil",
        "model": "default",
        "version": "1",
    }
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigilanomalyratehigh"
    assert unix_time(alert["startsAt"]) >= burst_start
    # `sensors` had the traffic to be judged, and its anomaly share stayed under its line.
    sel = f'{{job="vigil", model="{SENSORS}", version="{SENSORS_DEFAULT}"}}'
    (scored,) = prom_query(stack, f"job_model_version:vigil_predictions:increase15m{sel}")
    assert float(scored["value"][1]) >= 500
    (share,) = prom_query(stack, f"job_model_version:vigil_anomalies:ratio_rate15m{sel}")
    (expected,) = prom_query(
        stack, f"job_model_version:vigil_model_expected_anomaly_ratio:max{sel}"
    )
    assert float(share["value"][1]) < max(3 * float(expected["value"][1]), 0.05)
    # No other alert: the streams themselves were healthy (no errors, fast answers), and the
    # anomaly alert is about `default` alone. A 10-standard-deviation step on `sd` is also a
    # drift of `default`'s inputs and scores (tests/monitor/test_drift_e2e.py covers those).
    drift = {"VigilFeatureDrift", "VigilScoreDrift"}
    sent = {(a["labels"]["alertname"], a["labels"].get("model")) for a in receiver.alerts()}
    assert {s for s in sent if s[0] not in drift} == {("VigilAnomalyRateHigh", "default")}
    assert {model for name, model in sent if name in drift} <= {"default"}
    firing = prom_query(stack, 'ALERTS{alertname="VigilAnomalyRateHigh"}')
    assert {a["metric"]["model"] for a in firing} == {"default"}

    # The dashboard's anomaly panels, as Grafana would query them over the stream, with the
    # model variable set to each model in turn.
    def panels(model: str) -> dict[str, str]:
        return {
            name: substitute(expr, rate_interval=RATE_INTERVAL, model=model)
            for name, expr in queries()
        }

    q, q_sensors = panels("default"), panels(SENSORS)
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
    # `sensors` stays under its own line all along, the burst included.
    sensors_ratio = points(query_range(stack, q_sensors["Anomaly rate vs expected [A]"], t0, end))
    sensors_line = points(query_range(stack, q_sensors["Anomaly rate vs expected [C]"], t0, end))
    assert during(sensors_ratio) and max(during(sensors_ratio)) < sensors_line[-1][1]

    outcomes = query_range(stack, q["Predictions by outcome [A]"], t0, end)
    anomalies = points(outcomes, outcome="anomaly")
    assert max(during(anomalies)) > 3 * max(before(anomalies)) + 10

    # Score percentiles: `default`'s rows land above its training p99 during the burst (the
    # training rows themselves, before it, about 1% of the time); `sensors`' never much.
    heat = query_range(stack, q["Score percentile distribution [A]"], t0, end)
    times = sorted(t for t, _ in points(heat, le="+Inf"))
    quiet = [t for t in times if t0 + 2 <= t <= burst_start - 0.5]
    loud = [t for t in times if burst_start + 3 <= t <= burst_end + 1]  # mostly burst rows
    assert high_share(heat, "0.99", quiet) < 0.1
    assert high_share(heat, "0.99", loud) > 0.5
    heat_sensors = query_range(stack, q_sensors["Score percentile distribution [A]"], t0, end)
    assert high_share(heat_sensors, "0.99", loud) < 0.1

    firing = prom_query(stack, q["Firing alerts [A]"])
    assert "VigilAnomalyRateHigh" in {s["metric"]["alertname"] for s in firing}
