"""Drift end to end, with the real service, Prometheus and Alertmanager of a stack started by
monitor/localstack.py, its drift windows shortened by the test-only knob (the hourly window
to WINDOWS["1h"], the 5-minute one to WINDOWS["5m"]; the row floors stay 500 and 200).

- The live recording rule's PSI of a known set of rows equals the offline command's
  (service.drift.offline) on the same rows, to 1e-6, for each feature and the score.
- tester.py streams the training rows (no PSI above 0.1, no drift alert), then drifts one
  feature: its PSI rises above 0.2, the other's stays low, and VigilFeatureDrift fires for
  that feature only, reaching a webhook through Alertmanager; the dashboard's drift row,
  queried as Grafana would, shows it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import yaml

from monitor import localstack
from service.data.dataset import load_csv
from service.drift import offline
from service.drift.binning import SCORE
from service.models.loaded import Model
from tests.monitor.conftest import (
    SENSORS,
    SENSORS_DEFAULT,
    Webhook,
    eventually,
    fast_options,
    prom_query,
)
from tests.monitor.dashboard import queries, substitute
from tests.monitor.test_anomaly_burst import points, query_range, unix_time
from tests.support import REPO

pytestmark = pytest.mark.slow

WINDOWS = {"1h": "10s", "5m": "5s"}
PSI = {w: f"job_model_feature:vigil_feature_psi:{w}" for w in WINDOWS}
ROWS = {w: f"job_model_feature:vigil_feature_rows:increase{w}" for w in WINDOWS}
DRIFT_ALERTS = 'ALERTS{alertname=~"VigilFeatureDrift|VigilScoreDrift", model="default"}'


@pytest.fixture(scope="module")
def alerts() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def drift_stack(
    stack_programs, tmp_path_factory, model_path, sensors_registry, credentials, alerts
) -> Iterator[localstack.Stack]:
    """`default` (IsolationForest) and `sensors` (ECOD, version 2), nothing scored yet."""
    opts = fast_options(
        tmp_path_factory.mktemp("drift-stack"),
        model_path,
        credentials,
        alerts.url,
        registry=sensors_registry,
        drift_windows=WINDOWS,
    )
    stack = localstack.up(opts)
    yield stack
    stack.stop()


def by_feature(result: list[dict]) -> dict[str, float]:
    return {s["metric"]["feature"]: float(s["value"][1]) for s in result}


# ---------------------------------------------------------------------------- the knob


def test_the_drift_window_knob_rewrites_only_the_drift_ranges_and_floors(promtool, tmp_path):
    opts = localstack.StackOptions(
        user="u",
        password_hash="h",
        webhook_url="http://x/",
        drift_windows={"1h": "12s", "5m": "6s"},
        drift_min_rows={"1h": 300},
    )
    (rule_glob,) = localstack.render_rules(opts, tmp_path)
    assert rule_glob == str(tmp_path / "*.yml")
    for source in sorted(localstack.RULES_DIR.glob("*.yml")):
        original, rendered = source.read_text(), (tmp_path / source.name).read_text()
        if source.name != localstack.DRIFT_RULES:
            assert yaml.safe_load(rendered) == yaml.safe_load(original)
            continue
        before = [r for g in yaml.safe_load(original)["groups"] for r in g["rules"]]
        after = [r for g in yaml.safe_load(rendered)["groups"] for r in g["rules"]]
        # Same rules, names and `for:`; only the ranges and the hourly floor differ.
        assert [{k: v for k, v in r.items() if k != "expr"} for r in after] == [
            {k: v for k, v in r.items() if k != "expr"} for r in before
        ]
        exprs = "\n".join(r["expr"] for r in after)
        assert "[1h]" not in exprs and "[5m]" not in exprs
        assert exprs.count("[12s]") == exprs.count("[6s]") == 1
        assert re.search(r"increase1h\s*>= 300\b", exprs) and re.search(
            r"increase5m\s*>= 200\b", exprs
        )
    r = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / localstack.DRIFT_RULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # A window the file does not have is refused, not silently ignored.
    opts.drift_windows = {"6h": "1m"}
    with pytest.raises(localstack.StackError, match=r"no \[6h\] range"):
        localstack.render_rules(opts, tmp_path / "again")


# ---------------------------------------------------------------------------- offline == live


def test_the_live_psi_of_served_rows_equals_the_offline_psi(
    drift_stack, sensors_versions, data_dir
):
    """Training rows to `sensors` (untouched before): those holding a bin edge of `mean`
    or of the score, one per request (the single-row path; bins are right-closed), then 600
    in batches with `sd` moved up by three standard deviations (its lowest bin left empty,
    so the 1e-4 floor counts). While both shortened windows hold exactly these rows, each
    rule's PSI of each feature and of the score equals the offline one."""
    sel = f'{{job="vigil", model="{SENSORS}", version="{SENSORS_DEFAULT}"}}'
    model = Model(sensors_versions[int(SENSORS_DEFAULT) - 1], name=SENSORS)
    ref = model.metadata["drift_reference"]
    names = list(model.feature_names)
    m, sd = names.index("mean"), names.index("sd")
    train = load_csv(data_dir / "train.csv", features=names).X
    train_scores = model.score(train).anomaly_score
    mean_edges, score_edges = set(ref["features"][m]["edges"]), set(ref["score"]["edges"])
    at_edges = train[
        [
            (x[m] in mean_edges or score in score_edges) and x[sd] > ref["features"][sd]["edges"][0]
            for x, score in zip(train, train_scores, strict=True)
        ]
    ]
    assert len(at_edges) >= 10
    drifted = train[:600].copy()
    drifted[:, sd] += 3 * train[:, sd].std()
    rows = np.vstack([at_edges, drifted])
    report = offline.compare(ref, rows, names, model.score(rows).anomaly_score)
    expected = {c.name: c.psi for c in report.columns}
    assert list(expected) == [*names, SCORE]
    assert expected["sd"] > 0.2 and expected["mean"] < 0.1  # a real drift and none
    assert next(c for c in report.columns if c.name == "sd").counts[0] == 0

    # Nothing scored yet: once the rules have two scrapes to go on, the rows count 0 and
    # there is no PSI (a quiet window is no drift).
    def quiet() -> None:
        for w in WINDOWS:
            assert by_feature(prom_query(drift_stack, ROWS[w] + sel)) == dict.fromkeys(
                expected, 0.0
            )
            assert prom_query(drift_stack, PSI[w] + sel) == []

    eventually(quiet, timeout=15)

    url = f"{drift_stack.backend_url('vigil')}/models/{SENSORS}"
    with requests.Session() as s:
        answers = [s.post(f"{url}/prediction", json=x.tolist(), timeout=10) for x in at_edges]
        answers += [
            s.post(f"{url}/predictions", json=drifted[i : i + 100].tolist(), timeout=10)
            for i in range(0, len(drifted), 100)
        ]
    for r in answers:
        assert r.status_code == 200 and r.json()["version"] == int(SENSORS_DEFAULT), r.text

    # Poll (bounded by the shorter window) until a rule evaluation has scraped all the rows
    # and still sees the counters' zeros from before them: then it holds exactly these rows.
    live: dict[str, dict[str, float]] = {w: {} for w in WINDOWS}
    deadline = time.monotonic() + localstack.parse_duration(WINDOWS["5m"]) + 10
    while time.monotonic() < deadline:
        for w in WINDOWS:  # the latest PSI each rule gave (once the window passes, none)
            live[w] = by_feature(prom_query(drift_stack, PSI[w] + sel)) or live[w]
        if all(
            live[w].keys() == expected.keys()
            and all(abs(live[w][f] - v) < 1e-6 for f, v in expected.items())
            for w in WINDOWS
        ):
            break
        time.sleep(0.2)
    for w in WINDOWS:
        assert live[w].keys() == expected.keys(), (w, live)
        for feature, value in expected.items():
            assert live[w][feature] == pytest.approx(value, abs=1e-6), (w, feature, live[w])


# ---------------------------------------------------------------------------- end to end

RATE, BATCH = 50, 4  # requests/s, rows each: 200 rows/s, 2,000 in the hourly window
STABLE, RAMP, AFTER = 16, 2, 10  # seconds: training rows, the drift's ramp, drifted rows
MAGNITUDE = 3  # standard deviations of `sd`


def test_drift_in_one_feature_fires_its_alert_only(drift_stack, alerts, data_dir, tmp_path):
    sel = '{job="vigil", model="default"}'
    assert prom_query(drift_stack, PSI["1h"] + sel) == []  # no rows yet: no PSI
    duration = STABLE + RAMP + AFTER
    out_path = tmp_path / "tester.out"
    with out_path.open("w") as out:
        r = subprocess.run(
            [sys.executable, str(REPO / "tester.py"), "--url", drift_stack.backend_url("vigil"),
             "--data", str(data_dir / "train.csv"), "--stream", "--rate", str(RATE),
             "--batch", str(BATCH), "--duration", str(duration), "--threads", "2",
             "--inject", f"drift:{STABLE}:{RAMP}:{MAGNITUDE}", "--inject-columns", "sd",
             "--seed", "1", "--score-every", "0"],
            stdout=out, stderr=subprocess.STDOUT, text=True, timeout=duration + 60,
        )  # fmt: skip
    text = out_path.read_text()
    assert r.returncode == 0, text
    assert "errors: 0 (none)" in text, text
    t0 = float(re.search(r"unix (\d+\.\d+)", text).group(1))
    drift_start = t0 + STABLE

    alert = alerts.wait_for_alert(
        lambda a: (
            a["labels"]["alertname"] == "VigilFeatureDrift"
            and a["labels"]["model"] == "default"
            and a["status"] == "firing"
        ),
        timeout=30,
    )
    assert alert["labels"] == {
        "alertname": "VigilFeatureDrift",
        "severity": "warning",
        "job": "vigil",
        "model": "default",
        "version": "1",
        "feature": "sd",
    }
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigilfeaturedrift"
    assert unix_time(alert["startsAt"]) >= drift_start
    # For that feature only, in Alertmanager's notifications and in Prometheus (`sensors`
    # has its own, from the other test's drifted rows).
    features = {a["labels"]["feature"] for a in alerts.alerts()
                if a["labels"]["alertname"] == "VigilFeatureDrift"
                and a["labels"]["model"] == "default"}  # fmt: skip
    assert features == {"sd"}
    firing = prom_query(drift_stack, 'ALERTS{alertname="VigilFeatureDrift", model="default"}')
    assert {a["metric"]["feature"] for a in firing} == {"sd"}

    end = time.time()
    for w in WINDOWS:
        psi = query_range(drift_stack, PSI[w] + sel, t0, end)
        assert {s["metric"]["feature"] for s in psi} == {"mean", "sd", SCORE}
        # The training rows: once the window is full of them (1,000 rows or more), every
        # PSI, each feature's and the score's, is there and below 0.1.
        full = t0 + localstack.parse_duration(WINDOWS[w]) + 1
        for feature in ("mean", "sd", SCORE):
            stable = [v for t, v in points(psi, feature=feature) if full <= t <= drift_start]
            assert len(stable) >= 5, (w, feature, stable)
            assert max(stable) < 0.1, (w, feature, stable)
        # Then `sd` drifts above 0.2; `mean`, never touched, stays below 0.1.
        assert max(v for t, v in points(psi, feature="sd") if t > drift_start) > 0.2
        assert max(v for t, v in points(psi, feature="mean") if t >= full) < 0.1
    # No drift alert, not even pending, while the rows were the training rows.
    assert query_range(drift_stack, DRIFT_ALERTS, t0, drift_start) == []

    # The dashboard's drift row, queried as Grafana would with the model `default` and the
    # feature `sd` selected, shows it: the PSI lines, and at the stream's end the rows of
    # both windows (all drifted) piled into the top bin against the training deciles.
    q = {name: substitute(expr, model="default", feature="sd") for name, expr in queries()}
    features = query_range(drift_stack, q["Feature drift (PSI) [A]"], t0, end)
    assert {s["metric"]["feature"] for s in features} == {"mean", "sd"}
    assert max(v for _, v in points(features, feature="sd")) > 0.2
    score = query_range(drift_stack, q["Score drift (PSI) [A]"], t0, end)
    assert {s["metric"]["feature"] for s in score} == {SCORE}
    last = t0 + duration - 0.5
    bars = {}
    for ref in "ABC":  # last hour, last 5 minutes, training
        expr = q[f"Bin shares vs training: $feature [{ref}]"]
        result = query_range(drift_stack, expr, last, last)
        bars[ref] = {s["metric"]["bin"]: float(s["values"][-1][1]) for s in result}
    assert bars["A"].keys() == bars["B"].keys() == bars["C"].keys() == {str(b) for b in range(10)}
    assert sum(bars["C"].values()) == pytest.approx(1)
    assert bars["A"]["9"] > 0.5 and bars["B"]["9"] > 0.5 and bars["C"]["9"] < 0.2
