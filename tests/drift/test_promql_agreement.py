"""The offline PSI (service/drift/psi.py) and the recording rule's PSI in PromQL
(monitor/prometheus/rules/vigil-drift.yml) agree to 1e-6 on the same rows.

The rows' bin counts and the reference shares become the input series of a promtool unit test
generated here, which evaluates the real rule file and checks |rule - offline| < 1e-6.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor import localstack
from service.drift import offline, reference
from service.drift.binning import SCORE
from tests.monitor.conftest import need

RULES = localstack.RULES_DIR / "vigil-drift.yml"
NAMES = ["steady", "shifted", "wider"]
PSI_1H = "job_model_feature:vigil_feature_psi:1h"


@pytest.fixture(scope="module")
def promtool() -> str:
    return need("promtool")


def drift_report() -> tuple[dict, offline.DriftReport]:
    rng = np.random.default_rng(12)
    X = rng.normal(0, 1, size=(3000, 3))
    ref = reference.build(X, NAMES, np.abs(X).sum(axis=1))
    # 700 rows (over the 500-row floor): one feature as in training, one moved by 3 standard
    # deviations (its low bins empty: the epsilon floor counts), one spread twice as wide.
    Y = np.column_stack([rng.normal(0, 1, 700), rng.normal(3, 1, 700), rng.normal(0, 2, 700)])
    return ref, offline.compare(ref, Y, NAMES, np.abs(Y).sum(axis=1))


def promtool_test(ref: dict, report: offline.DriftReport, expected: dict[str, float]) -> dict:
    """A unit test: every row counted in the first minute, evaluated an hour later, when the
    hourly window holds exactly these counts. Empty bins get no counter series at all (the
    rule must count them as 0 from the reference)."""
    labels = 'job="vigil", instance="a:8000", model="m", version="1"'
    series = []
    sketches = {s["name"]: s for s in [*ref["features"], ref["score"]]}
    for col in report.columns:
        for b, (share, count) in enumerate(
            zip(sketches[col.name]["shares"], col.counts, strict=True)
        ):
            where = f'{labels}, feature="{col.name}", bin="{b}"'
            series.append(
                {"series": f"vigil_feature_reference_share{{{where}}}", "values": f"{share!r}x60"}
            )
            if count:
                series.append(
                    {"series": f"vigil_feature_bin_total{{{where}}}", "values": f"0 {count}x60"}
                )
    cases = [
        {
            "expr": f'abs({PSI_1H}{{feature="{name}"}} - {value!r}) < bool 1e-6',
            "eval_time": "1h",
            "exp_samples": [
                {"labels": f'{{job="vigil", model="m", version="1", feature="{name}"}}', "value": 1}
            ],
        }
        for name, value in expected.items()
    ]
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": cases}],
    }


def run_promtool(promtool: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_offline_psi_equals_the_recording_rule_s(promtool, tmp_path):
    ref, report = drift_report()
    psi = {c.name: c.psi for c in report.columns}
    assert list(psi) == [*NAMES, SCORE]
    # Real cases: no drift, a strong one with empty bins, a moderate one.
    assert psi["steady"] < 0.1 and psi["shifted"] > 2 and psi["wider"] > 0.2
    assert 0 in next(c for c in report.columns if c.name == "shifted").counts

    path = tmp_path / "agree.test.yml"
    path.write_text(yaml.safe_dump(promtool_test(ref, report, psi), sort_keys=False))
    r = run_promtool(promtool, path)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr

    # The check can fail: 2e-6 off is out of tolerance.
    off = {name: value + 2e-6 for name, value in psi.items()}
    path.write_text(yaml.safe_dump(promtool_test(ref, report, off), sort_keys=False))
    r = run_promtool(promtool, path)
    assert r.returncode != 0 and PSI_1H in r.stdout + r.stderr


def test_the_alerts_flag_drift_at_the_offline_threshold():
    from service.drift.psi import DRIFT_THRESHOLD

    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r["expr"].strip() for r in rules if "alert" in r}
    assert alerts == {
        "VigilFeatureDrift": f'{PSI_1H}{{feature!="{SCORE}"}} > {DRIFT_THRESHOLD:g}',
        "VigilScoreDrift": f'{PSI_1H}{{feature="{SCORE}"}} > {DRIFT_THRESHOLD:g}',
    }
