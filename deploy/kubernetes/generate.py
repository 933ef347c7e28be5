"""Write the Kubernetes copies of the monitoring config that lives in monitor/.

The rule files (monitor/prometheus/rules/*.yml) and the dashboard
(monitor/grafana/dashboards/vigil.json) stay the one source; this writes them as a
prometheus-operator PrometheusRule and a ConfigMap for Grafana's dashboard sidecar, into
deploy/kubernetes/base/generated/. Kustomize cannot read files outside its folder, hence
committed copies, and tests/deploy/test_kubernetes.py fails when a copy is stale.

    python -m deploy.kubernetes.generate          # (re)write the generated files
    python -m deploy.kubernetes.generate --check  # exit 1, naming the stale files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = Path("monitor/prometheus/rules")
DASHBOARD = Path("monitor/grafana/dashboards/vigil.json")
OUT_DIR = Path("deploy/kubernetes/base/generated")
RULE_FILE = "prometheusrule.yaml"
DASHBOARD_FILE = "grafana-dashboard.yaml"
LABELS = {"app.kubernetes.io/name": "vigil", "app.kubernetes.io/component": "monitoring"}
# Grafana's sidecar (kube-prometheus-stack's default) loads ConfigMaps with this label.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


def _header(source: str) -> str:
    return (
        f"# Generated from {source} by `python -m deploy.kubernetes.generate`\n"
        "# (make k8s-generate): edit the source, not this file; tests/deploy fails when stale.\n"
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, the dashboard JSON) as literal blocks, as a person writes."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def rule_groups(rules_dir: Path) -> list[dict[str, Any]]:
    """Every group of every rule file, files in name order, as Prometheus loads them."""
    groups: list[dict[str, Any]] = []
    for path in sorted(rules_dir.glob("*.yml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not isinstance(loaded.get("groups"), list):
            raise ValueError(f"{path}: no `groups:` list")
        groups.extend(loaded["groups"])
    names = [group["name"] for group in groups]
    if not groups or len(set(names)) != len(names):
        raise ValueError(f"{rules_dir}: need rule groups with unique names, got {names}")
    return groups


def prometheus_rule(rules_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "vigil", "labels": dict(LABELS)},
        "spec": {"groups": rule_groups(rules_dir)},
    }


def dashboard_configmap(dashboard: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "vigil-grafana-dashboard", "labels": LABELS | DASHBOARD_LABEL},
        # The file's text as it is: Grafana reads it as the provisioned dashboard does.
        "data": {dashboard.name: dashboard.read_text(encoding="utf-8")},
    }


def render(repo: Path = REPO) -> dict[Path, str]:
    """The generated files' contents, keyed by their path relative to ``repo``."""
    return {
        OUT_DIR / RULE_FILE: _header(f"{RULES_DIR}/*.yml")
        + _dump(prometheus_rule(repo / RULES_DIR)),
        OUT_DIR / DASHBOARD_FILE: _header(str(DASHBOARD))
        + _dump(dashboard_configmap(repo / DASHBOARD)),
    }


def stale(repo: Path = REPO) -> list[Path]:
    """The generated files that are missing or differ from what ``render`` gives."""
    out = []
    for path, text in render(repo).items():
        target = repo / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kubernetes.generate")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        behind = stale()
        for path in behind:
            print(f"stale: {path} (run `make k8s-generate`)", file=sys.stderr)
        return 1 if behind else 0
    for path, text in render().items():
        (REPO / path).parent.mkdir(parents=True, exist_ok=True)
        (REPO / path).write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
