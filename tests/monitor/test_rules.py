"""Prometheus' configuration and rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor import localstack
from tests.monitor.conftest import FAST

PROM_DIR = localstack.MONITOR / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
RUNBOOK = localstack.REPO / "docs" / "runbook.md"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def unit_tests() -> list[dict]:
    return [t for path in TEST_FILES for t in yaml.safe_load(path.read_text())["tests"]]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.mark.slow
def test_promtool_check_config(promtool):
    r = run(promtool, "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    # Its rule_files glob finds every rule file (relative to the config, as in the container).
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["as-is", "test-settings"])
def test_promtool_checks_the_local_stacks_rendered_config(promtool, tmp_path, fast):
    opts = localstack.StackOptions(
        user="u", password_hash="h", webhook_url="http://x/", **(FAST if fast else {})
    )
    ports = {"vigil": 1, "prometheus": 2, "alertmanager": 3, "grafana": 4}
    rule_files = localstack.render_rules(opts, tmp_path / "rules")
    config = localstack.render_prometheus_config(opts, ports, rule_files, tmp_path / "p.yml")
    r = run(promtool, "check", "config", str(config))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in r.stdout + r.stderr


@pytest.mark.slow
def test_promtool_check_rules(promtool):
    r = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.slow
def test_promtool_unit_tests_pass(promtool):
    r = run(promtool, "test", "rules", *map(str, TEST_FILES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(TEST_FILES), r.stdout


EXPECTED = "job_model_version:vigil_model_expected_anomaly_ratio:max"
# Rule mutations the unit tests must catch: the alert, and (text, replacement) pairs.
MUTATIONS = {
    "VigilDown": [('up{job="vigil"} == 0', 'up{job="vigil"} == 1')],
    # The anomaly rate held to one expected ratio per model, not per version.
    "VigilAnomalyRateHigh": [
        ("> on (job, model, version)", "> on (job, model) group_left"),
        (f"3 * {EXPECTED}", f"3 * max by (job, model) ({EXPECTED})"),
    ],
    # Not-ready per instance, whichever model it is.
    "VigilNotReady": [
        ('vigil_model_ready{job="vigil"} == 0', "min by (job, instance) (vigil_model_ready) == 0")
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("alert", MUTATIONS)
def test_promtool_unit_tests_can_fail(promtool, tmp_path, alert):
    """A broken rule makes the same unit tests fail, naming the alert."""
    (tmp_path / "rules").mkdir()
    for path in RULE_FILES:
        text = path.read_text()
        if path.name == "vigil-alerts.yml":
            for old, new in MUTATIONS[alert]:
                assert old in text, f"mutation for {alert} no longer applies: {old}"
                text = text.replace(old, new)
        (tmp_path / "rules" / path.name).write_text(text)
    (tmp_path / "tests").mkdir()
    for path in TEST_FILES:
        (tmp_path / "tests" / path.name).write_text(path.read_text())
    r = run(promtool, "test", "rules", *map(str, sorted((tmp_path / "tests").glob("*.yml"))))
    assert r.returncode != 0
    assert f"alertname: {alert}," in r.stdout + r.stderr


def test_every_alert_has_severity_annotations_and_a_runbook_section():
    anchors = github_anchors(RUNBOOK.read_text())
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"]), name
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/runbook.md", name
        assert anchor in anchors, f"{name}: no heading for #{anchor} in {RUNBOOK}"


def test_the_issue_s_alerts_exist():
    exprs = {a["alert"]: a["expr"] for a in alerts()}
    assert 'up{job="vigil"} == 0' in exprs["VigilDown"]
    assert "vigil_model_ready" in exprs["VigilNotReady"]
    fast, slow = exprs["VigilErrorBudgetBurnFast"], exprs["VigilErrorBudgetBurnSlow"]
    assert "ratio_rate1h > (14.4 * 0.001)" in fast and "ratio_rate5m > (14.4" in fast
    assert "ratio_rate6h > (6 * 0.001)" in slow and "ratio_rate30m > (6" in slow
    assert 'quantile="0.99"' in exprs["VigilLatencyP99High"]
    anomaly = exprs["VigilAnomalyRateHigh"]
    assert "expected_anomaly_ratio" in anomaly and "increase15m" in anomaly
    # Each model version against its own expected ratio.
    assert anomaly.count("on (job, model, version)") == 2


def test_per_model_alerts_name_the_model():
    by_name = {a["alert"]: a for a in alerts()}
    for name, labels in {
        "VigilNotReady": ["model"],
        "VigilAnomalyRateHigh": ["model", "version"],
    }.items():
        for key in ("summary", "description"):
            text = by_name[name]["annotations"][key]
            for label in labels:
                assert f"$labels.{label} }}}}" in text, f"{name} {key} does not name the {label}"


def test_model_recording_rules_keep_the_model_label():
    """A rule that summed models together could hide one model's alert behind another's
    traffic; the per-version ones keep the version too (each has its expected ratio)."""
    model_rules = [
        r
        for r in rules()
        if "record" in r and re.search(r"vigil_predictions|vigil_model_", r["expr"])
    ]
    assert model_rules
    for rule in model_rules:
        groupings = [g.split(", ") for g in re.findall(r"by \(([^)]*)\)", rule["expr"])]
        assert groupings, rule["record"]
        level = rule["record"].split(":")[0].split("_")
        assert "model" in level, f"{rule['record']} sums the models together"
        for grouping in groupings:
            assert sorted(grouping) == sorted(level), rule["record"]


def alert_cases(alertname: str) -> list[tuple[dict, dict]]:
    """(unit test, alert_rule_test case) pairs for one alert."""
    return [
        (test, case)
        for test in unit_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alertname
    ]


def series_labels(test: dict, metric: str, label: str) -> set[str]:
    found = set()
    for s in test.get("input_series", []):
        if s["series"].startswith(metric + "{"):
            m = re.search(label + r'="([^"]*)"', s["series"])
            if m:
                found.add(m.group(1))
    return found


@pytest.mark.parametrize(
    ("alertname", "metric", "label"),
    [
        ("VigilAnomalyRateHigh", "vigil_predictions_total", "model"),
        ("VigilAnomalyRateHigh", "vigil_predictions_total", "version"),
        ("VigilNotReady", "vigil_model_ready", "model"),
    ],
)
def test_unit_tests_fire_per_model_alerts_for_one_of_several(alertname, metric, label):
    """The issue's per-model cases: of two models (or two versions of one), one fires alone."""
    for test, case in alert_cases(alertname):
        fired = {exp["exp_labels"].get(label) for exp in case.get("exp_alerts") or []}
        if len(series_labels(test, metric, label)) >= 2 and len(fired) == 1:
            return
    pytest.fail(f"no unit test where {alertname} fires for one {label} of several")


def test_unit_tests_cover_every_alert_firing_and_not_firing():
    firing, quiet = set(), set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            for exp in case.get("exp_alerts") or []:
                # Firing cases check the whole notification: labels and every annotation.
                assert "severity" in exp["exp_labels"], case["alertname"]
                assert set(exp["exp_annotations"]) == {"summary", "description", "runbook_url"}


def test_unit_tests_cover_every_recording_rule():
    tested = {
        re.match(r"[\w:]+", case["expr"]).group(0)
        for test in unit_tests()
        for case in test.get("promql_expr_test", [])
    }
    records = {r["record"] for r in rules() if "record" in r}
    assert records - tested == set(), "recording rules without a promql_expr_test"
    # The rules with one name and several quantile labels are tested for every label.
    expected_labels = {
        sample["labels"]
        for test in unit_tests()
        for case in test.get("promql_expr_test", [])
        for sample in case["exp_samples"]
    }
    for rule in rules():
        q = rule.get("labels", {}).get("quantile")
        if q:
            assert any(rule["record"] in s and f'quantile="{q}"' in s for s in expected_labels)


def test_rule_files_are_the_ones_compose_and_the_local_stack_load():
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    assert sorted(Path(p).name for p in (PROM_DIR / "rules").glob("*.yml")) == [
        p.name for p in RULE_FILES
    ]
