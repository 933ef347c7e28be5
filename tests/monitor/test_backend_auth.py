"""Only requests that went through Caddy's basic auth reach a monitoring backend, although
every local process can connect to 127.0.0.1: Prometheus and Alertmanager ask for the
credential generated at each start (monitor/backend-auth/generate.sh), which only Caddy,
Prometheus and Grafana are given, and Grafana listens on a private Unix socket.

The tests run as root, which file permissions do not stop: they check the credential by
requests (refused without it), and the socket and the secrets by their modes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from monitor import localstack
from tests.monitor.conftest import Webhook, fast_options

pytestmark = pytest.mark.slow

FAKE_GRAFANA = Path(__file__).with_name("fake_grafana.py")
DATASOURCE = localstack.GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class BackendStack:
    stack: localstack.Stack
    grafana_record: Path

    def grafana_log(self) -> list[dict]:
        return [json.loads(line) for line in self.grafana_record.read_text().splitlines()]


@pytest.fixture(scope="module")
def backend_stack(stack_programs, tmp_path_factory, model_path, credentials) -> Iterator:
    """A stack of its own, with a stand-in grafana-server (tests/monitor/fake_grafana.py)."""
    tmp = tmp_path_factory.mktemp("backend-auth")
    record = tmp / "grafana.jsonl"
    wrapper = tmp / "grafana-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_GRAFANA}" "$@"\n')
    wrapper.chmod(0o755)
    hook = Webhook()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFANA_SERVER_BIN", str(wrapper))
        mp.setenv("FAKE_GRAFANA_RECORD", str(record))
        stack = localstack.up(fast_options(tmp / "stack", model_path, credentials, hook.url))
    try:
        yield BackendStack(stack, record)
    finally:
        stack.stop()
        hook.close()


BACKEND_PATHS = [
    ("prometheus", "/-/ready"),
    ("prometheus", "/api/v1/query?query=up"),
    ("alertmanager", "/-/ready"),
    ("alertmanager", "/api/v2/status"),
]


def test_prometheus_and_alertmanager_answer_only_with_the_stacks_credential(
    backend_stack, credentials
):
    stack = backend_stack.stack
    for name, path in BACKEND_PATHS:
        # Any local process can connect; without the credential it gets nowhere.
        r = requests.get(stack.backend_url(name) + path, timeout=10)
        assert r.status_code == 401, (name, path, r.status_code)
    refused = [
        {"Authorization": basic(localstack.BACKEND_USER, "wrong")},
        # The user's own login is for Caddy; the backends do not take it.
        {"Authorization": basic(credentials.user, credentials.password)},
        {"X-WEBAUTH-USER": "admin"},
    ]
    for name, path in BACKEND_PATHS:
        url = stack.backend_url(name) + path
        for headers in refused:
            r = requests.get(url, headers=headers, timeout=10)
            assert r.status_code == 401, (url, headers, r.status_code)
        assert requests.get(url, headers=stack.backend_auth(name), timeout=10).status_code == 200
        # Through Caddy, the user's login is all it takes.
        r = requests.get(stack.front_url(name) + path, auth=credentials.auth, timeout=10)
        assert r.status_code == 200, (name, path, r.text)

    # The credentials are the stack user's alone.
    assert stat.S_IMODE(stack.secrets_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in stack.secrets_dir.iterdir())
    assert files == sorted(
        f"{n}{suffix}"
        for n in localstack.AUTH_BACKENDS
        for suffix in (".password", ".authorization", "-web.yml")
    )
    for path in stack.secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # Prometheus still scrapes itself and Alertmanager (both with the credential) and the
    # service, and knows the Alertmanager it sends alerts to.
    auth = stack.backend_auth("prometheus")
    r = requests.get(stack.backend_url("prometheus") + "/api/v1/targets", headers=auth, timeout=10)
    targets = r.json()["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == {"vigil", "prometheus", "alertmanager"}
    assert all(t["health"] == "up" for t in targets), targets
    r = requests.get(
        stack.backend_url("prometheus") + "/api/v1/alertmanagers", headers=auth, timeout=10
    )
    (am,) = r.json()["data"]["activeAlertmanagers"]
    assert am["url"].startswith(stack.backend_url("alertmanager"))


def test_a_silence_can_be_created_only_through_caddy(backend_stack, credentials):
    stack = backend_stack.stack
    now = datetime.now(UTC)
    silence = {
        "matchers": [{"name": "alertname", "value": "VigilDown", "isRegex": False}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test",
        "comment": "backend auth test",
    }
    direct = stack.backend_url("alertmanager") + "/api/v2/silences"
    for headers in ({}, {"X-WEBAUTH-USER": "admin"}):
        r = requests.post(direct, json=silence, headers=headers, timeout=10)
        assert r.status_code == 401, r.text
    auth = stack.backend_auth("alertmanager")
    assert requests.get(direct, headers=auth, timeout=10).json() == []

    front = stack.front_url("alertmanager") + "/api/v2/silences"
    assert requests.post(front, json=silence, timeout=10).status_code == 401
    r = requests.post(front, json=silence, auth=credentials.auth, timeout=10)
    assert r.status_code == 200, r.text
    (created,) = requests.get(direct, headers=auth, timeout=10).json()
    assert created["id"] == r.json()["silenceID"] and created["createdBy"] == "test"


def test_grafana_is_reachable_only_through_caddy(backend_stack, credentials):
    stack = backend_stack.stack
    env = backend_stack.grafana_log()[0]["env"]
    # Not on a port any local process can reach: on a Unix socket only its owner may open,
    # in the stack's private state folder ...
    assert env.get("GF_SERVER_PROTOCOL") == "socket"
    assert "GF_SERVER_HTTP_PORT" not in env and "GF_SERVER_HTTP_ADDR" not in env
    sock = Path(env["GF_SERVER_SOCKET"])
    assert sock == stack.grafana_socket and sock.is_relative_to(stack.state_dir)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    # ... and no address is trusted to name the user (every local process is 127.0.0.1).
    assert env["GF_AUTH_PROXY_ENABLED"] == "true"
    assert "127.0.0.1" not in env["GF_AUTH_PROXY_WHITELIST"]

    # Through Caddy: the login is asked for, and Grafana gets the user Caddy authenticated.
    url = stack.front_url("grafana") + "/d/vigil"
    assert requests.get(url, headers={"X-WEBAUTH-USER": "admin"}, timeout=10).status_code == 401
    r = requests.get(url, auth=credentials.auth, headers={"X-WEBAUTH-USER": "admin"}, timeout=10)
    assert r.status_code == 200
    (seen,) = [e for e in backend_stack.grafana_log() if e.get("path") == "/d/vigil"]
    assert seen["headers"]["x-webauth-user"] == credentials.user
    assert "authorization" not in seen["headers"]

    # The provisioned datasource reaches Prometheus with what Grafana was given.
    (ds,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert ds["basicAuth"] is True

    def expand(value: str) -> str:  # as Grafana expands its provisioning files
        return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], value)

    r = requests.get(
        expand(ds["url"]) + "/api/v1/query",
        params={"query": "up"},
        auth=(ds["basicAuthUser"], expand(ds["secureJsonData"]["basicAuthPassword"])),
        timeout=10,
    )
    assert r.status_code == 200, r.text


def run_generate(caddy: str, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", str(localstack.BACKEND_AUTH_SCRIPT)],
        env={"PATH": os.environ["PATH"], "BACKEND_SECRETS": str(out), "CADDY_BIN": caddy, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generated_credentials_are_fresh_valid_and_kept_for_running_containers(
    caddy, promtool, tmp_path
):
    first = localstack.generate_backend_secrets(tmp_path / "a", caddy)
    password = (first / "prometheus.password").read_text()
    assert len(password) >= 32
    assert password != (first / "alertmanager.password").read_text()
    # Each `up` generates new ones.
    again = localstack.generate_backend_secrets(tmp_path / "a", caddy)
    assert (again / "prometheus.password").read_text() != password
    web = [str(again / f"{n}-web.yml") for n in localstack.AUTH_BACKENDS]
    check = subprocess.run([promtool, "check", "web-config", *web], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    users = yaml.safe_load((again / "prometheus-web.yml").read_text())["basic_auth_users"]
    assert list(users) == [localstack.BACKEND_USER]

    # In compose the one-shot service runs at each `up`: files already there are kept, as
    # running containers use them; they are readable by the containers' non-root users.
    out = tmp_path / "compose"
    mode = {"BACKEND_SECRETS_MODE": "0444", "BACKEND_SECRETS_DIR_MODE": "0755"}
    assert run_generate(caddy, out, **mode).returncode == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    r = run_generate(caddy, out, **mode)
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o444}

    r = run_generate("/bin/false", tmp_path / "broken")
    assert r.returncode != 0 and "hash-password failed" in r.stderr
