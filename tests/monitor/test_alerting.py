"""End to end: stop the service under a running stack; VigilDown goes from Prometheus through
the real Alertmanager to a webhook receiver started here. A refused model reload, likewise. And
a registered model whose default version cannot load: VigilNotReady for that model only, while
the instance's other models serve."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
import requests

from monitor import localstack
from tests.monitor.conftest import (
    BROKEN,
    NORMAL,
    SENSORS,
    eventually,
    fast_options,
    prom_query,
)

pytestmark = pytest.mark.slow


def test_service_down_alert_reaches_the_webhook(stack, receiver, credentials):
    vigil = stack.components["vigil"]
    instance = f"127.0.0.1:{stack.ports['vigil']}"

    # First the service is up and scraped, and nothing has been sent.
    localstack.wait_until(
        lambda: any(
            s["value"][1] == "1" for s in prom_query(stack, f'up{{instance="{instance}"}}')
        ),
        30,
        "Prometheus to scrape the service",
    )
    assert receiver.alerts() == []

    vigil.stop()
    assert not vigil.alive()

    alert = receiver.wait_for_alert(
        lambda a: a["labels"]["alertname"] == "VigilDown" and a["status"] == "firing", timeout=60
    )
    assert alert["labels"] == {
        "alertname": "VigilDown",
        "severity": "critical",
        "job": "vigil",
        "instance": instance,
    }
    assert alert["annotations"]["summary"] == f"Vigil {instance} is down"
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigildown"
    # Links in the notification point at Prometheus through Caddy.
    assert alert["generatorURL"].startswith(stack.front_url("prometheus") + "/graph")
    (notification,) = [n for n in receiver.notifications if alert in n["alerts"]]
    assert notification["receiver"] == "webhook"
    assert notification["groupLabels"] == {"alertname": "VigilDown", "job": "vigil"}

    # Alertmanager, through Caddy, shows it too.
    r = requests.get(
        stack.front_url("alertmanager") + "/api/v2/alerts", auth=credentials.auth, timeout=10
    )
    assert r.status_code == 200
    assert "VigilDown" in {a["labels"]["alertname"] for a in r.json()}


def test_refused_model_reload_alert_reaches_the_webhook(
    stack_programs, tmp_path, model_path, sensors_registry, credentials, receiver
):
    model_dir = tmp_path / "model"
    shutil.copytree(model_path.parent, model_dir)
    model = model_dir / model_path.name
    opts = fast_options(
        tmp_path / "stack", model, credentials, receiver.url, registry=sensors_registry
    )
    stack = localstack.up(opts)
    try:
        vigil = stack.components["vigil"]
        # A truncated file replaces the model, and the service is asked to reload it.
        model.write_bytes(model.read_bytes()[:1000])
        os.kill(vigil.pid, signal.SIGHUP)

        alert = receiver.wait_for_alert(
            lambda a: a["labels"]["alertname"] == "VigilModelReloadRefused", timeout=60
        )
        assert alert["status"] == "firing"
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["instance"] == f"127.0.0.1:{stack.ports['vigil']}"
        assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigilmodelreloadrefused"
        # The old models keep serving: nothing else fires.
        assert requests.get(vigil.url + "/health/ready", timeout=5).status_code == 200
        for path in ("/prediction", f"/models/{SENSORS}/prediction"):
            assert requests.post(vigil.url + path, json=NORMAL, timeout=5).status_code == 200
        assert {a["labels"]["alertname"] for a in receiver.alerts()} == {"VigilModelReloadRefused"}
        assert "reload refused" in vigil.log.read_text()
    finally:
        stack.stop()


def test_a_model_that_cannot_load_alerts_for_that_model_only(
    monitor_stack, not_ready_server, webhook
):
    """The stack's service has a registered model, `pumps`, whose default version is a
    truncated file: VigilNotReady names that instance and that model, not the instance's
    other models, which keep answering."""
    vigil = monitor_stack.components["vigil"]
    main = f"127.0.0.1:{monitor_stack.ports['vigil']}"
    alert = webhook.wait_for_alert(
        lambda a: (
            a["labels"]["alertname"] == "VigilNotReady" and a["labels"].get("model") == BROKEN
        ),
        timeout=60,
    )
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "VigilNotReady",
        "severity": "critical",
        "job": "vigil",
        "instance": main,
        "model": BROKEN,
    }
    assert alert["annotations"]["summary"] == f"Vigil {main} is not serving model {BROKEN}"
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#vigilnotready"

    # `pumps` is refused by name; the others on the same instance answer.
    r = requests.post(f"{vigil.url}/models/{BROKEN}/prediction", json=NORMAL, timeout=5)
    assert r.status_code == 503 and BROKEN in r.json()["detail"], r.text
    for path in ("/prediction", f"/models/{SENSORS}/prediction"):
        assert requests.post(vigil.url + path, json=NORMAL, timeout=5).status_code == 200

    # Not ready: `pumps` here and the model-less instance's `default`, nothing else.
    model_less = f"127.0.0.1:{not_ready_server.port}"

    def not_ready() -> None:
        result = prom_query(monitor_stack, 'ALERTS{alertname="VigilNotReady"}')
        shown = {(a["metric"]["instance"], a["metric"]["model"]) for a in result}
        assert shown == {(main, BROKEN), (model_less, "default")}

    eventually(not_ready)
    sent = {
        (a["labels"]["instance"], a["labels"]["model"])
        for a in webhook.alerts()
        if a["labels"]["alertname"] == "VigilNotReady"
    }
    assert sent <= {(main, BROKEN), (model_less, "default")}
