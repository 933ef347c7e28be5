"""The Grafana dashboard's queries, as Grafana would send them (shared by the monitor tests)."""

from __future__ import annotations

import json
import re

from monitor import localstack

GRAFANA = localstack.MONITOR / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "vigil.json").read_text())


def all_panels(panels: list[dict] | None = None) -> list[dict]:
    out = []
    for panel in DASHBOARD["panels"] if panels is None else panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def query_panels() -> list[dict]:
    return [p for p in all_panels() if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in query_panels()
        for target in panel["targets"]
    ]


ALL = ".*"  # the instance, model and feature variables' "All" (their allValue)


def substitute(
    expr: str,
    rate_interval: str = "1m",
    interval: str = "15s",
    model: str = ALL,
    feature: str = ALL,
) -> str:
    """What Grafana sends: its built-in and dashboard variables replaced; ``model`` and
    ``feature`` are those variables' values (one name, as Grafana puts a single selection)."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": "1h",
        "job": "vigil",
        "instance": ALL,
        "model": model,
        "feature": feature,
    }

    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
