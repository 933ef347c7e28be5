"""docker-compose.yml, validated by the real Compose v2 binary (no engine needed), and the
Alertmanager entrypoint that renders the webhook URL into its config."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor import localstack

COMPOSE_FILE = localstack.MONITOR / "docker-compose.yml"
REQUIRED = ("MONITOR_USER", "MONITOR_PASSWORD_HASH", "GRAFANA_ADMIN_PASSWORD", "ALERT_WEBHOOK_URL")
HASH = "$2a$14$2NcA3.ttJb1wB9OZOnsqZOpcpXeOzpPmG1IXivxp5KaMHHuir8Xfy"

pytestmark = pytest.mark.slow


def env_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "test.env"
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    return path


def full_env(tmp_path: Path, **changes: str) -> Path:
    values = {
        "MONITOR_USER": "admin",
        "MONITOR_PASSWORD_HASH": HASH,
        "GRAFANA_ADMIN_PASSWORD": "s3cret$notavar",
        "ALERT_WEBHOOK_URL": "http://receiver.example:5001/alerts",
        **changes,
    }
    return env_file(tmp_path, **{k: v for k, v in values.items() if v is not None})


def compose_run(compose: str, env: Path, *args: str) -> subprocess.CompletedProcess:
    # --env-file replaces monitor/.env, which may exist on a developer's machine; nothing of
    # the caller's environment may stand in for a missing value either.
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "--env-file", str(env), *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


def config(compose: str, env: Path) -> dict:
    r = compose_run(compose, env, "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compose_file_validates_with_credentials(compose, tmp_path):
    r = compose_run(compose, full_env(tmp_path), "config", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("missing", REQUIRED)
def test_compose_refuses_to_start_without_each_required_value(compose, tmp_path, missing):
    r = compose_run(compose, full_env(tmp_path, **{missing: None}), "config", "-q")
    assert r.returncode != 0
    assert f"required variable {missing} is missing a value" in r.stderr
    assert "make monitor-env" in r.stderr


def test_compose_refuses_an_empty_value_and_the_unfilled_example(compose, tmp_path):
    r = compose_run(compose, full_env(tmp_path, MONITOR_PASSWORD_HASH=""), "config", "-q")
    assert r.returncode != 0 and "MONITOR_PASSWORD_HASH" in r.stderr
    r = compose_run(compose, localstack.MONITOR / ".env.example", "config", "-q")
    assert r.returncode != 0


def test_only_caddy_publishes_ports_on_loopback_by_default(compose, tmp_path):
    services = config(compose, full_env(tmp_path))["services"]
    assert set(services) == {
        "backend-auth", "vigil", "prometheus", "alertmanager", "grafana", "caddy"
    }  # fmt: skip
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"caddy"}
    ports = services["caddy"]["ports"]
    assert sorted(int(p["target"]) for p in ports) == [3000, 8000, 9090, 9093]
    assert {p["host_ip"] for p in ports} == {"127.0.0.1"}


def test_images_are_pinned_and_every_service_has_a_healthcheck(compose, tmp_path):
    services = config(compose, full_env(tmp_path))["services"]
    for name, service in services.items():
        if name != "backend-auth":  # one-shot: the others wait for it to complete
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        if name == "vigil":
            assert service["build"]["dockerfile"] == "Dockerfile"
            assert Path(service["build"]["context"]) == localstack.REPO
            continue
        tag = service["image"].partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{service['image']}: pin a full version"
    images = {s["image"].split(":")[0] for s in services.values()}
    assert {"prom/prometheus", "prom/alertmanager", "grafana/grafana-oss", "caddy"} <= images


def test_dependencies_wait_for_health_but_not_for_the_model(compose, tmp_path):
    services = config(compose, full_env(tmp_path))["services"]
    caddy = services["caddy"]["depends_on"]
    for name in ("prometheus", "alertmanager", "grafana"):
        assert caddy[name]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # A service without a model must still be scraped and its dashboards reachable.
    assert services["prometheus"]["depends_on"]["vigil"]["condition"] == "service_started"
    assert caddy["vigil"]["condition"] == "service_started"


def test_named_volumes_and_config_mounts(compose, tmp_path):
    cfg = config(compose, full_env(tmp_path))
    services = cfg["services"]

    def mounts(name: str) -> dict[str, dict]:
        return {v["target"]: v for v in services[name]["volumes"]}

    prometheus, grafana = mounts("prometheus"), mounts("grafana")
    assert prometheus["/prometheus"]["type"] == "volume"
    assert grafana["/var/lib/grafana"]["type"] == "volume"
    assert {"prometheus-data", "grafana-data"} <= set(cfg["volumes"])
    # Every bind mount is of a file in the repo (or models/, which `make train` writes),
    # read-only.
    generated = {localstack.REPO / "models"}
    for service in services.values():
        for v in service.get("volumes", []):
            if v["type"] == "bind":
                source = Path(v["source"])
                assert source.exists() or source in generated, v["source"]
                assert v.get("read_only"), v
    assert Path(prometheus["/etc/prometheus"]["source"]) == localstack.MONITOR / "prometheus"
    # Grafana's provisioning points at the paths compose mounts.
    env = services["grafana"]["environment"]
    assert grafana[env["VIGIL_DASHBOARDS_DIR"]]["source"] == str(
        localstack.MONITOR / "grafana" / "dashboards"
    )
    assert Path(grafana["/etc/grafana/provisioning"]["source"]) == (
        localstack.MONITOR / "grafana" / "provisioning"
    )
    assert env["VIGIL_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(env["VIGIL_DASHBOARDS_DIR"])


def test_secrets_pass_through_unchanged_and_grafana_trusts_only_caddy(compose, tmp_path):
    services = config(compose, full_env(tmp_path))["services"]
    # `config` escapes $ as $$ in its output; the container sees the value as written.
    caddy_env = services["caddy"]["environment"]
    assert caddy_env["MONITOR_PASSWORD_HASH"].replace("$$", "$") == HASH
    assert caddy_env["API_ACCESS"] == "auth"
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].replace("$$", "$") == "s3cret$notavar"
    assert grafana["GF_SECURITY_ADMIN_USER"] == "admin"
    # From grafana/grafana.env: no anonymous access, no sign-up, the auth proxy.
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert grafana["GF_AUTH_PROXY_ENABLED"] == "true"
    assert grafana["GF_AUTH_PROXY_AUTO_SIGN_UP"] == "false"
    caddy_ip = services["caddy"]["networks"]["default"]["ipv4_address"]
    assert grafana["GF_AUTH_PROXY_WHITELIST"] == caddy_ip


SECRETS = "/run/vigil-secrets"  # where compose mounts the backend-secrets volume


def test_backends_ask_for_a_credential_only_caddy_and_the_stack_are_given(compose, caddy, tmp_path):
    """The compose network is reachable from the Docker host: Prometheus and Alertmanager
    ask for the credential the one-shot backend-auth service generates (as without Docker),
    which only the services that need it mount."""
    cfg = config(compose, full_env(tmp_path))
    services = cfg["services"]
    assert "backend-secrets" in cfg["volumes"]
    assert localstack.COMPOSE_SECRETS_DIR == SECRETS  # what localstack rewrites
    gen = services["backend-auth"]
    assert gen["entrypoint"] == ["/bin/sh", "/etc/backend-auth/generate.sh"]
    (script,) = [v for v in gen["volumes"] if v["target"] == "/etc/backend-auth"]
    assert Path(script["source"]) == localstack.BACKEND_AUTH_SCRIPT.parent
    assert gen["environment"]["BACKEND_SECRETS"] == SECRETS
    assert gen["network_mode"] == "none"

    mounted = {}
    for name, service in services.items():
        for v in service.get("volumes", []):
            if v["source"] == "backend-secrets":
                assert v["target"] == SECRETS
                mounted[name] = bool(v.get("read_only"))
    assert mounted == {
        "backend-auth": False, "prometheus": True, "alertmanager": True, "grafana": True,
        "caddy": True,
    }  # fmt: skip
    for name in ("prometheus", "alertmanager", "grafana", "caddy"):
        after = services[name]["depends_on"]["backend-auth"]["condition"]
        assert after == "service_completed_successfully"

    for name in localstack.AUTH_BACKENDS:
        service = services[name]
        assert f"--web.config.file={SECRETS}/{name}-web.yml" in service["command"]
        # Its healthcheck sends the credential too (`config` writes $ as $$).
        kind, check = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert f"Authorization: $$(cat {SECRETS}/{name}.authorization)" in check

    # Prometheus sends the credentials from the mount ...
    prom = yaml.safe_load(localstack.PROMETHEUS_CONFIG.read_text())
    clients = [*prom["alerting"]["alertmanagers"], *prom["scrape_configs"]]
    files = {c["basic_auth"]["password_file"] for c in clients if "basic_auth" in c}
    assert files == {f"{SECRETS}/{n}.password" for n in localstack.AUTH_BACKENDS}
    # ... Grafana's datasource gets Prometheus' ...
    grafana = services["grafana"]
    assert f"$$(cat {SECRETS}/prometheus.password)" in grafana["entrypoint"][-1]
    assert grafana["entrypoint"][-1].endswith("exec /run.sh")
    # ... and Caddy adds them, from the mount, for the users it authenticated.
    env = {**os.environ, "MONITOR_USER": "u", "MONITOR_PASSWORD_HASH": HASH}
    env.pop("BACKEND_SECRETS", None)
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(localstack.CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    )  # fmt: skip
    servers = json.loads(adapted.stdout)["apps"]["http"]["servers"]
    for name, port in (("prometheus", 9090), ("alertmanager", 9093)):
        (server,) = [s for s in servers.values() if s["listen"] == [f"0.0.0.0:{port}"]]
        auth, proxy = server["routes"][0]["handle"]
        assert auth["handler"] == "authentication"
        assert proxy["upstreams"] == [{"dial": f"{name}:{port}"}]
        header = proxy["headers"]["request"]["set"]["Authorization"]
        assert header == [f"{{file.{SECRETS}/{name}.authorization}}"]


def test_alertmanager_runs_the_entrypoint_with_the_webhook_url(compose, tmp_path):
    am = config(compose, full_env(tmp_path))["services"]["alertmanager"]
    assert am["entrypoint"] == ["/bin/sh", "/etc/alertmanager/entrypoint.sh"]
    assert am["environment"]["ALERT_WEBHOOK_URL"] == "http://receiver.example:5001/alerts"
    assert "--cluster.listen-address=" in am["command"]


# ---------------------------------------------------------------------------- the entrypoint


def render_alertmanager(tmp_path: Path, url: str | None) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_TEMPLATE": str(localstack.ALERTMANAGER_TEMPLATE),
        "ALERTMANAGER_CONFIG": str(tmp_path / "alertmanager.yml"),
        "ALERTMANAGER_BIN": "/bin/echo",  # stands in for Alertmanager: prints its arguments
    }
    if url is not None:
        env["ALERT_WEBHOOK_URL"] = url
    return subprocess.run(
        ["/bin/sh", str(localstack.ALERTMANAGER_ENTRYPOINT), "--storage.path=/x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_entrypoint_renders_a_valid_config(amtool, tmp_path):
    url = "https://hooks.example.com/vigil?team=a&key=b|c\\d"
    r = render_alertmanager(tmp_path, url)
    assert r.returncode == 0, r.stderr
    rendered = tmp_path / "alertmanager.yml"
    assert r.stdout.strip() == f"--config.file={rendered} --storage.path=/x"
    config = yaml.safe_load(rendered.read_text())
    assert config["receivers"][0]["webhook_configs"][0]["url"] == url
    check = subprocess.run(
        [amtool, "check-config", str(rendered)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


@pytest.mark.parametrize("url", [None, "", "ftp://example.com/", "http://a/'x"])
def test_entrypoint_refuses_a_missing_or_bad_url(tmp_path, url):
    r = render_alertmanager(tmp_path, url)
    assert r.returncode != 0
    assert "ALERT_WEBHOOK_URL" in r.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


def test_the_unrendered_template_is_not_a_usable_config(amtool):
    """The placeholder must be replaced: Alertmanager would not accept it as a URL."""
    r = subprocess.run(
        [amtool, "check-config", str(localstack.ALERTMANAGER_TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0
