"""The Grafana dashboard: its JSON checked structurally; the model panels' queries run by
promtool on series shaped as the metric contract (two models, two versions); and every panel's
every query run, with Grafana's variables substituted (the model variable as All and as each
model), against a real Prometheus that scraped a real service serving two models of two kinds
under real traffic to both (including 4xx, 5xx and anomalies). Grafana itself is not
needed."""

from __future__ import annotations

import math
import re
import subprocess
import time

import pytest
import requests
import yaml

from monitor import localstack
from tests.monitor.conftest import (
    BROKEN,
    SENSORS,
    SENSORS_DEFAULT,
    SENSORS_KIND,
    drive_traffic,
    eventually,
    prom_query,
)
from tests.monitor.dashboard import (
    ALL,
    DASHBOARD,
    GRAFANA,
    all_panels,
    queries,
    query_panels,
    substitute,
)

DATASOURCES = yaml.safe_load(
    (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
)
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "vigil.yml").read_text())

# The panels the issues ask for, by title.
REQUIRED_PANELS = {
    "Request rate by endpoint",
    "Error ratio",
    "Latency p50 / p95 / p99",
    "Requests in flight",
    "Ready per model",
    "Default version per model",
    "Expected anomaly rate",
    "Predictions by outcome",
    "Anomaly rate vs expected",
    "Score percentile distribution",
    "Rows above the training p99",
    "Inference time",
    "Rows per request",
    "Model versions",
    "Model reloads",
    "Process CPU",
    "Process memory",
    "Firing alerts",
    "Feature drift (PSI)",
    "Score drift (PSI)",
    "Bin shares vs training: $feature",
}
# The series the service exports with a `model` label (the metric contract of issue #10).
MODEL_METRICS = {
    "vigil_predictions_total",
    "vigil_score_percentile_bucket",
    "vigil_score_percentile_count",
    "vigil_score_percentile_sum",
    "vigil_inference_duration_seconds_bucket",
    "vigil_inference_duration_seconds_count",
    "vigil_inference_duration_seconds_sum",
    "vigil_model_info",
    "vigil_model_default",
    "vigil_model_ready",
    "vigil_model_expected_anomaly_ratio",
    "vigil_model_loaded_timestamp_seconds",
    "vigil_feature_bin_total",
    "vigil_feature_reference_share",
}
# A metric name, or a recording rule's (level:metric:operations), and its label matchers.
SELECTOR = re.compile(r"\b((?:\w+:)?(?:vigil|http|process)_\w+(?::\w+)?|up)\b(\{[^}]*\})?")


def panel(title: str) -> dict:
    (found,) = [p for p in query_panels() if p["title"] == title]
    return found


# ---------------------------------------------------------------------------- structure


def test_provisioning_names_the_datasource_uid_the_dashboard_uses():
    (datasource,) = DATASOURCES["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == "vigil-prometheus"
    assert datasource["url"] == "${VIGIL_PROMETHEUS_URL}"
    uids = set()
    for panel in query_panels():
        uids.add(panel["datasource"]["uid"])
        uids.update(t["datasource"]["uid"] for t in panel["targets"])
    for variable in DASHBOARD["templating"]["list"]:
        uids.add(variable["datasource"]["uid"])
    assert uids == {datasource["uid"]}


def test_provider_loads_the_dashboards_folder():
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${VIGIL_DASHBOARDS_DIR}"
    assert DASHBOARD["uid"] and DASHBOARD["title"] == "Vigil"


def test_panel_ids_are_unique():
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids)), ids


def test_grid_positions_fit_and_do_not_overlap():
    boxes = []
    for panel in all_panels():
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, panel["title"]
        assert g["x"] + g["w"] <= 24, f"{panel['title']} is wider than the grid"
        boxes.append((panel["title"], g))
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1 :]:
            apart = (
                ga["x"] + ga["w"] <= gb["x"]
                or gb["x"] + gb["w"] <= ga["x"]
                or ga["y"] + ga["h"] <= gb["y"]
                or gb["y"] + gb["h"] <= ga["y"]
            )
            assert apart, f"panels {a!r} and {b!r} overlap"


def test_the_issue_s_panels_are_there_and_each_has_queries():
    titles = {p["title"] for p in query_panels()}
    assert titles >= REQUIRED_PANELS, REQUIRED_PANELS - titles
    for p in query_panels():
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
    heatmap = panel("Score percentile distribution")
    assert heatmap["type"] == "heatmap"
    (target,) = heatmap["targets"]
    assert target["format"] == "heatmap"
    # One bucket set for every kind: the score's percentile among the training scores, summed
    # over the selected models.
    assert "sum by (le) (increase(vigil_score_percentile_bucket{" in target["expr"]


def test_every_variable_in_the_queries_is_defined():
    defined = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert defined == {"job", "instance", "model", "feature"}
    for _, expr in queries():
        substitute(expr)  # raises on an unknown variable


def test_the_model_variable_lists_the_loaded_models_all_by_default():
    (model,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "model"]
    query = 'label_values(vigil_model_info{job="$job"}, model)'
    assert model["query"]["query"] == model["definition"] == query
    assert model["multi"] and model["includeAll"] and model["allValue"] == ".*"
    assert model["current"]["value"] == ["$__all"]
    assert model["refresh"] == 2  # on time range change: new models appear without a reload


def test_the_feature_variable_lists_the_selected_models_features_and_the_score():
    (feature,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "feature"]
    query = 'label_values(vigil_feature_reference_share{job="$job", model=~"$model"}, feature)'
    assert feature["query"]["query"] == feature["definition"] == query
    # One feature at a time (the bin chart), regex-escaped as an includeAll variable is.
    assert not feature["multi"] and feature["includeAll"] and feature["allValue"] == ".*"
    assert feature["current"]["value"] == "__score__" and feature["refresh"] == 2
    for p in query_panels():
        for t in p["targets"]:
            if "$feature" in t["expr"]:
                assert 'feature=~"$feature"' in t["expr"], p["title"]


def test_every_series_is_filtered_by_job_instance_and_model_where_it_has_one():
    for name, expr in queries():
        if expr.startswith("ALERTS"):
            continue
        for metric, matchers in SELECTOR.findall(expr):
            assert matchers, f"{name}: {metric} without label matchers"
            if ":" in metric:  # a recording rule: summed over the instances, per model
                assert 'job="$job"' in matchers and 'model=~"$model"' in matchers, name
                continue
            assert 'job="$job"' in matchers and 'instance=~"$instance"' in matchers, name
            has_model = metric in MODEL_METRICS
            assert ('model=~"$model"' in matchers) == has_model, f"{name}: {metric}"


def test_model_panels_show_each_model_apart():
    """A graph of a model metric names the model in every series (the heatmap sums the
    selected models; tables show the labels as columns)."""
    for p in query_panels():
        if p["type"] not in ("timeseries", "stat"):
            continue
        for t in p["targets"]:
            if any(m in MODEL_METRICS for m, _ in SELECTOR.findall(t["expr"])):
                assert "{{model}}" in t["legendFormat"], f"{p['title']} [{t['refId']}]"
    # The anomaly rate is per version: each is held to its own expected ratio.
    for t in panel("Anomaly rate vs expected")["targets"]:
        assert "by (model, version)" in t["expr"] and "v{{version}}" in t["legendFormat"]
    for t in panel("Inference time")["targets"]:
        assert "by (model, endpoint, le)" in t["expr"]


def test_the_versions_table_shows_kind_default_load_time_and_expected_rate():
    table = panel("Model versions")
    assert table["type"] == "table"
    exprs = {t["refId"]: t["expr"] for t in table["targets"]}
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    assert "by (model, version, kind) (vigil_model_info{" in exprs["A"]
    assert "vigil_model_default{" in exprs["B"]
    assert "vigil_model_loaded_timestamp_seconds{" in exprs["C"]
    assert "vigil_model_expected_anomaly_ratio{" in exprs["D"]
    merge, organize = table["transformations"]
    assert merge["id"] == "merge"  # one row per (model, version)
    assert organize["options"]["renameByName"] == {
        "Value #B": "default",
        "Value #C": "loaded at",
        "Value #D": "expected anomaly rate",
    }


def test_rate_queries_use_the_rate_interval():
    for name, expr in queries():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{name}: fixed window [{window}]"


# ------------------------------------------------- contract-shaped series, in promtool

# Two instances serving two models, shaped as the service's metric contract (issue #10): per
# minute, sensors v1 (the default) scores 600 rows, 20% anomalies, a quarter of them above
# its training p99; sensors v2 (loaded, a challenger) 600 rows, 5% anomalies; payments v3
# (the default) 240 rows, none anomalous (its anomaly series not even created), 1/16 above
# its training p99. payments is not ready on b.
M = 'job="vigil", instance="{i}", model="{m}"'
MV = M + ', version="{v}"'
PER_INSTANCE = [
    (MV, "vigil_predictions_total", 'outcome="anomaly"', "sensors", "1", "0+120x30"),
    (MV, "vigil_predictions_total", 'outcome="normal"', "sensors", "1", "0+480x30"),
    (MV, "vigil_predictions_total", 'outcome="anomaly"', "sensors", "2", "0+30x30"),
    (MV, "vigil_predictions_total", 'outcome="normal"', "sensors", "2", "0+570x30"),
    (MV, "vigil_predictions_total", 'outcome="normal"', "payments", "3", "0+240x30"),
    (MV, "vigil_model_expected_anomaly_ratio", "", "sensors", "1", "0.02x30"),
    (MV, "vigil_model_expected_anomaly_ratio", "", "sensors", "2", "0.1x30"),
    (MV, "vigil_model_expected_anomaly_ratio", "", "payments", "3", "0.05x30"),
    (MV, "vigil_model_info", 'kind="iforest"', "sensors", "1", "1x30"),
    (MV, "vigil_model_info", 'kind="iforest"', "sensors", "2", "1x30"),
    (MV, "vigil_model_info", 'kind="ecod"', "payments", "3", "1x30"),
    (MV, "vigil_model_default", "", "sensors", "1", "1x30"),
    (MV, "vigil_model_default", "", "payments", "3", "1x30"),
    (M, "vigil_model_ready", "", "sensors", "", "1x30"),
    (MV, "vigil_score_percentile_bucket", 'le="0.99"', "sensors", "1", "0+450x30"),
    (MV, "vigil_score_percentile_count", "", "sensors", "1", "0+600x30"),
    (MV, "vigil_score_percentile_bucket", 'le="0.99"', "payments", "3", "0+225x30"),
    (MV, "vigil_score_percentile_count", "", "payments", "3", "0+240x30"),
]
CONTRACT_SERIES = [
    {"series": f"{metric}{{{', '.join(filter(None, [labels.format(i=i, m=m, v=v), extra]))}}}",
     "values": values}
    for i in ("a:8000", "b:8000")
    for labels, metric, extra, m, v, values in PER_INSTANCE
] + [
    {"series": 'vigil_model_ready{job="vigil", instance="a:8000", model="payments"}',
     "values": "1x30"},
    {"series": 'vigil_model_ready{job="vigil", instance="b:8000", model="payments"}',
     "values": "0x30"},
]  # fmt: skip
# What each panel shows for them: every model (and version) apart, with its own expectation.
EXPECTED_SAMPLES = {
    "Ready per model [A]": {
        'vigil_model_ready{job="vigil", instance="a:8000", model="sensors"}': 1,
        'vigil_model_ready{job="vigil", instance="b:8000", model="sensors"}': 1,
        'vigil_model_ready{job="vigil", instance="a:8000", model="payments"}': 1,
        'vigil_model_ready{job="vigil", instance="b:8000", model="payments"}': 0,
    },
    "Default version per model [A]": {
        '{model="sensors", version="1"}': 1,
        '{model="payments", version="3"}': 1,
    },
    # The default versions' only, not the challenger's.
    "Expected anomaly rate [A]": {
        '{model="sensors", version="1"}': 0.02,
        '{model="payments", version="3"}': 0.05,
    },
    "Predictions by outcome [A]": {  # rows/s over both instances
        '{model="sensors", outcome="anomaly"}': 5,
        '{model="sensors", outcome="normal"}': 35,
        '{model="payments", outcome="normal"}': 8,
    },
    "Anomaly rate vs expected [A]": {
        '{model="sensors", version="1"}': 0.2,
        '{model="sensors", version="2"}': 0.05,
        '{model="payments", version="3"}': 0,
    },
    "Anomaly rate vs expected [C]": {
        '{model="sensors", version="1"}': 0.06,
        '{model="sensors", version="2"}': 0.30000000000000004,  # 3 * 0.1 in floats
        '{model="payments", version="3"}': 0.15000000000000002,
    },
    "Rows above the training p99 [A]": {
        '{model="sensors", version="1"}': 0.25,
        '{model="payments", version="3"}': 0.0625,
    },
    "Model versions [A]": {
        '{model="sensors", version="1", kind="iforest"}': 1,
        '{model="sensors", version="2", kind="iforest"}': 1,
        '{model="payments", version="3", kind="ecod"}': 1,
    },
}


@pytest.mark.slow
def test_model_panels_on_contract_shaped_series(promtool, tmp_path):
    """The model panels' queries, run by promtool's PromQL engine on series shaped as the
    service's metric contract: each model and version is shown apart, with its own expected
    ratio, and the model variable lists every loaded model."""
    q = dict(queries())
    cases = [
        {
            "expr": substitute(q[name]),
            "eval_time": "20m",
            "exp_samples": [{"labels": k, "value": v} for k, v in samples.items()],
        }
        for name, samples in EXPECTED_SAMPLES.items()
    ]
    cases.append(
        {
            "expr": 'count by (model) (vigil_model_info{job="vigil"})',  # the model variable
            "eval_time": "20m",
            "exp_samples": [
                {"labels": '{model="sensors"}', "value": 4},
                {"labels": '{model="payments"}', "value": 2},
            ],
        }
    )
    test = {"interval": "1m", "input_series": CONTRACT_SERIES, "promql_expr_test": cases}
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": [test]}, sort_keys=False))
    r = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------------------- real data


def finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


# The models the live stack's service serves (`pumps` never loads).
MODELS = ("default", SENSORS)


@pytest.mark.slow
def test_every_panel_query_returns_data(monitor_stack, not_ready_server):
    """Every query returns data with the model variable at All, and with it set to each
    model; then the series of a model metric are that model's only (the firing alerts panel
    lists every alert whatever the model, and a watch's series carry their own labels)."""
    drive_traffic(monitor_stack.backend_url("vigil"), not_ready_server.url)
    pending = {(name, model): expr for name, expr in queries() for model in (ALL, *MODELS)}
    pending.update(
        {
            ("variable job", ALL): 'count by (job) (vigil_model_ready{job="vigil"})',
            ("variable instance", ALL): 'count by (instance) (vigil_model_ready{job="vigil"})',
            ("variable model", ALL): 'count by (model) (vigil_model_info{job="vigil"})',
            ("variable feature", ALL): (
                'count by (feature) (vigil_feature_reference_share{job="vigil", model=~".*"})'
            ),
        }
    )
    # Bounded wait: the last scrape and rule evaluation, and VigilNotReady's 2 s `for:`, take
    # a few seconds after the traffic. Every query must return at least one finite value.
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for (name, model), expr in list(pending.items()):
            result = prom_query(monitor_stack, substitute(expr, model=model))
            if not finite(result):
                continue
            # Exempt: the firing alerts (every alert), and the watches, whose `model` label is
            # the watched series' own (a watch on Vigil's anomaly rate by model), not a filter.
            if model != ALL and not expr.startswith("ALERTS") and "vigil_watch_" not in expr:
                shown = {s["metric"].get("model", model) for s in result}
                assert shown == {model}, f"{name} for model {model} shows {shown}"
            del pending[(name, model)]
        if pending:
            time.sleep(1)
    assert not pending, "queries without data:\n" + "\n".join(
        f"  {name} (model {model}): {substitute(expr, model=model)}"
        for (name, model), expr in pending.items()
    )


def by_labels(result: list[dict], *names: str) -> dict[tuple[str, ...], float]:
    """{(label values...): value} of an instant query's samples."""
    return {tuple(s["metric"].get(n, "") for n in names): float(s["value"][1]) for s in result}


@pytest.mark.slow
def test_the_data_shows_the_traffic(monitor_stack, not_ready_server):
    """Not just any data: the errors, each model's anomalies and versions, the broken model
    and the model-less instance are visible, each under its own name."""
    drive_traffic(monitor_stack.backend_url("vigil"), not_ready_server.url, rounds=2)
    q = {name: substitute(expr) for name, expr in queries()}
    main = f"127.0.0.1:{monitor_stack.ports['vigil']}"
    model_less = f"127.0.0.1:{not_ready_server.port}"

    def value(expr: str, **labels: str) -> float:
        for sample in prom_query(monitor_stack, expr):
            if all(sample["metric"].get(k) == v for k, v in labels.items()):
                return float(sample["value"][1])
        raise AssertionError(f"no sample with {labels} for {expr}")

    def check() -> None:
        assert value(q["Error ratio [A]"]) > 0  # 5xx
        assert value(q["Error ratio [B]"]) > 0  # 4xx
        # Both models scored rows, normal and anomalous, each under its own name.
        outcomes = by_labels(prom_query(monitor_stack, q["Predictions by outcome [A]"]),
                             "model", "outcome")  # fmt: skip
        for model in MODELS:
            assert outcomes.get((model, "anomaly"), 0) > 0, (model, outcomes)
            assert outcomes.get((model, "normal"), 0) > 0, (model, outcomes)
        # Each version's anomaly share is the traffic's: 35 of every 170 rows, 2 of 10.
        ratios = by_labels(prom_query(monitor_stack, q["Anomaly rate vs expected [A]"]),
                           "model", "version")  # fmt: skip
        assert ratios.keys() == {("default", "1"), (SENSORS, "1"), (SENSORS, "2")}, ratios
        assert ratios[("default", "1")] == pytest.approx(35 / 170, abs=0.03)
        assert ratios[(SENSORS, "2")] == pytest.approx(35 / 170, abs=0.03)
        assert ratios[(SENSORS, "1")] == pytest.approx(0.2, abs=0.03)
        versions = by_labels(prom_query(monitor_stack, q["Model versions [A]"]),
                             "model", "version", "kind")  # fmt: skip
        assert versions == {
            ("default", "1", "iforest"): 1,
            (SENSORS, "1", SENSORS_KIND): 1,
            (SENSORS, SENSORS_DEFAULT, SENSORS_KIND): 1,
        }
        defaults = by_labels(prom_query(monitor_stack, q["Default version per model [A]"]),
                             "model", "version")  # fmt: skip
        assert defaults == {("default", "1"): 1, (SENSORS, SENSORS_DEFAULT): 1}
        ready = by_labels(prom_query(monitor_stack, q["Ready per model [A]"]), "instance", "model")
        assert ready == {
            (main, "default"): 1,
            (main, SENSORS): 1,
            (main, BROKEN): 0,
            (model_less, "default"): 0,
        }
        rates = prom_query(monitor_stack, q["Request rate by endpoint [A]"])
        handlers = {s["metric"]["handler"] for s in rates if float(s["value"][1]) > 0}
        assert {"/prediction", "/predictions", "/model_information", "/models/{name}",
                "/models/{name}/prediction", "/models/{name}/predictions",
                "/models/{name}/versions/{version}/predictions"} <= handlers  # fmt: skip

    eventually(check)
    # A model name from a request (404: no model "nope") never becomes a label value.
    assert prom_query(monitor_stack, '{model="nope"}') == []


@pytest.mark.slow
def test_real_errors_and_anomalies_fire_alerts_that_reach_the_webhook(
    monitor_stack, not_ready_server, webhook
):
    """503s from the model-less instance burn the error budget; 20% anomalies on over 500
    rows are far above each model's expected rate, so each model's default version alerts
    (sensors version 1, on under 500 rows, does not). Each alert goes through Alertmanager,
    but the slow burn, inhibited by the fast one, is not sent."""
    for _ in range(2):
        drive_traffic(monitor_stack.backend_url("vigil"), not_ready_server.url, rounds=2)
    sent = {"VigilNotReady", "VigilErrorBudgetBurnFast", "VigilAnomalyRateHigh"}

    def firing() -> None:
        result = prom_query(monitor_stack, 'ALERTS{alertstate="firing"}')
        assert sent | {"VigilErrorBudgetBurnSlow"} <= {a["metric"]["alertname"] for a in result}
        anomalous = {(a["metric"]["model"], a["metric"]["version"]) for a in result
                     if a["metric"]["alertname"] == "VigilAnomalyRateHigh"}  # fmt: skip
        assert anomalous == {("default", "1"), (SENSORS, SENSORS_DEFAULT)}

    eventually(firing)
    for name in sent:
        alert = webhook.wait_for_alert(lambda a, n=name: a["labels"]["alertname"] == n, 30)
        assert alert["status"] == "firing"
        assert alert["annotations"]["runbook_url"].startswith("docs/runbook.md#")
    for model, version in (("default", "1"), (SENSORS, SENSORS_DEFAULT)):
        alert = webhook.wait_for_alert(
            lambda a, m=model: (
                a["labels"]["alertname"] == "VigilAnomalyRateHigh" and a["labels"]["model"] == m
            ),
            30,
        )
        assert alert["labels"]["version"] == version
        assert f"model {model} version {version}" in alert["annotations"]["summary"]
    model_less = f"127.0.0.1:{not_ready_server.port}"
    webhook.wait_for_alert(
        lambda a: (
            a["labels"]["alertname"] == "VigilNotReady" and a["labels"]["instance"] == model_less
        ),
        30,
    )
    r = requests.get(
        monitor_stack.backend_url("alertmanager") + "/api/v2/alerts",
        headers=monitor_stack.backend_auth("alertmanager"),
        timeout=10,
    )
    slow = [a for a in r.json() if a["labels"]["alertname"] == "VigilErrorBudgetBurnSlow"]
    assert slow and slow[0]["status"]["state"] == "suppressed"
    assert slow[0]["status"]["inhibitedBy"]
    assert "VigilErrorBudgetBurnSlow" not in {a["labels"]["alertname"] for a in webhook.alerts()}
    # The service is up and fast: these stay quiet.
    result = prom_query(monitor_stack, "ALERTS")
    assert not {"VigilDown", "VigilLatencyP99High"} & {a["metric"]["alertname"] for a in result}


@pytest.mark.slow
def test_every_rule_evaluates_without_error_and_records_data(monitor_stack, not_ready_server):
    drive_traffic(monitor_stack.backend_url("vigil"), not_ready_server.url, rounds=2)
    url = monitor_stack.backend_url("prometheus") + "/api/v1/rules"
    deadline = time.monotonic() + 30
    while True:
        auth = monitor_stack.backend_auth("prometheus")
        groups = requests.get(url, headers=auth, timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        records = [r["name"] for r in rules if r["type"] == "recording"]
        empty = [name for name in records if not prom_query(monitor_stack, name)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1)
    in_files = [
        r
        for path in sorted(localstack.RULES_DIR.glob("*.yml"))
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
    ]
    assert len(rules) == len(in_files)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad
    assert not empty, f"recording rules without data: {empty}"
