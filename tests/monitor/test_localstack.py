"""monitor/localstack.py: its rendering of the shared configs, monitor/.env, and the command
line that `make monitor-env`, `monitor-up`, `monitor-status` and `monitor-down` run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from monitor import localstack
from tests.monitor.conftest import FAST

OPTS = {"user": "u", "password_hash": "h", "webhook_url": "http://x/"}
PORTS = {"vigil": 1001, "prometheus": 1002, "alertmanager": 1003}


def test_parse_duration():
    assert localstack.parse_duration("2m") == 120
    assert localstack.parse_duration("1h30m") == 5400
    assert localstack.parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        localstack.parse_duration("2 minutes")


def test_env_file_values_are_read_as_compose_reads_them(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# comment\nMONITOR_USER=admin\nMONITOR_PASSWORD_HASH='$2a$14$abc$def'\n"
        'ALERT_WEBHOOK_URL="http://h/x?a=1"\nEMPTY=\nAPI_ACCESS=open # inline comment\n'
    )
    assert localstack.load_env_file(path) == {
        "MONITOR_USER": "admin",
        "MONITOR_PASSWORD_HASH": "$2a$14$abc$def",
        "ALERT_WEBHOOK_URL": "http://h/x?a=1",
        "EMPTY": "",
        "API_ACCESS": "open",
    }


def test_options_need_the_credentials(tmp_path):
    with pytest.raises(localstack.StackError, match="make monitor-env"):
        localstack.StackOptions.from_env_file(tmp_path / "absent.env")
    path = tmp_path / ".env"
    path.write_text("MONITOR_USER=admin\nMONITOR_PASSWORD_HASH=''\nALERT_WEBHOOK_URL=\n")
    with pytest.raises(localstack.StackError, match="MONITOR_PASSWORD_HASH, ALERT_WEBHOOK_URL"):
        localstack.StackOptions.from_env_file(path)
    with pytest.raises(localstack.StackError, match="API_ACCESS"):
        localstack.StackOptions(**OPTS, api_access="public").check()


def test_prometheus_config_keeps_everything_but_addresses(tmp_path):
    opts = localstack.StackOptions(**OPTS, extra_vigil_targets=["127.0.0.1:9999"])
    rule_files = localstack.render_rules(opts, tmp_path / "rules")
    secrets = tmp_path / "secrets"
    out = localstack.render_prometheus_config(opts, PORTS, rule_files, tmp_path / "p.yml", secrets)
    rendered = yaml.safe_load(out.read_text())
    source = yaml.safe_load(localstack.PROMETHEUS_CONFIG.read_text())
    assert rendered["global"] == source["global"]
    assert rendered["rule_files"] == [str(localstack.RULES_DIR / "*.yml")]
    jobs = {j["job_name"]: j for j in rendered["scrape_configs"]}
    assert set(jobs) == {j["job_name"] for j in source["scrape_configs"]}
    # The replicas by file discovery (the targets file next to the config), extras static.
    (sd,) = jobs["vigil"]["file_sd_configs"]
    files = [json.loads(Path(f).read_text()) for f in sd["files"]]
    assert [t for f in files for group in f for t in group["targets"]] == ["127.0.0.1:1001"]
    assert "dns_sd_configs" not in jobs["vigil"]
    assert jobs["vigil"]["static_configs"] == [{"targets": ["127.0.0.1:9999"]}]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:1002"]
    am = rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["127.0.0.1:1003"]
    # The credentials Prometheus sends to itself and to Alertmanager: this stack's files.
    am_auth = rendered["alerting"]["alertmanagers"][0]["basic_auth"]
    assert am_auth == {
        "username": localstack.BACKEND_USER,
        "password_file": str(secrets / "alertmanager.password"),
    }
    assert jobs["prometheus"]["basic_auth"]["password_file"] == str(secrets / "prometheus.password")
    assert jobs["alertmanager"]["basic_auth"]["password_file"] == str(
        secrets / "alertmanager.password"
    )
    assert "basic_auth" not in jobs["vigil"]


def test_test_settings_shorten_intervals_and_for_only(tmp_path):
    opts = localstack.StackOptions(**OPTS, **FAST)
    rule_files = localstack.render_rules(opts, tmp_path / "rules")
    out = localstack.render_prometheus_config(opts, PORTS, rule_files, tmp_path / "p.yml")
    glob = yaml.safe_load(out.read_text())["global"]
    assert glob["scrape_interval"] == glob["evaluation_interval"] == glob["scrape_timeout"] == "1s"
    for source in sorted(localstack.RULES_DIR.glob("*.yml")):
        original = yaml.safe_load(source.read_text())
        rendered = yaml.safe_load((tmp_path / "rules" / source.name).read_text())
        for g0, g1 in zip(original["groups"], rendered["groups"], strict=True):
            for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
                assert {k: v for k, v in r1.items() if k != "for"} == {
                    k: v for k, v in r0.items() if k != "for"
                }
                assert ("for" in r0) == ("for" in r1)
                if "for" in r1:
                    assert r1["for"] == "2s"
    template = localstack.render_alertmanager_template(opts, tmp_path)
    route = yaml.safe_load(template.read_text())["route"]
    assert route["group_wait"] == route["routes"][0]["group_wait"] == "1s"
    assert route["group_interval"] == "1s"


def test_an_unknown_target_in_prometheus_yml_is_an_error(tmp_path, monkeypatch):
    config = tmp_path / "prometheus.yml"
    config.write_text(
        localstack.PROMETHEUS_CONFIG.read_text().replace(
            '"alertmanager:9093"', '"alertmanager:9094"'
        )
    )
    monkeypatch.setattr(localstack, "PROMETHEUS_CONFIG", config)
    opts = localstack.StackOptions(**OPTS)
    with pytest.raises(localstack.StackError, match="alertmanager:9094"):
        localstack.render_prometheus_config(opts, PORTS, [], tmp_path / "p.yml")


def test_stopping_by_pid_spares_a_reused_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _, start = localstack._proc_stat(proc.pid)
        assert localstack.pid_alive(proc.pid, start)
        # Another start time: not the process the state file recorded. Left alone.
        assert not localstack.stop_pid(proc.pid, str(int(start) + 1))
        assert proc.poll() is None
        assert localstack.stop_pid(proc.pid, start)
        assert proc.wait(10) == -15
    finally:
        proc.kill()
        proc.wait()


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(localstack.MONITOR / "localstack.py"), *args],
        capture_output=True,
        text=True,
        cwd=localstack.REPO,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_command_line_env_up_status_down(stack_programs, tmp_path, model_path):
    env_file = tmp_path / ".env"
    state = tmp_path / "state"
    r = cli("env", "--env-file", str(env_file), "--webhook-url", "http://127.0.0.1:9/hook")
    assert r.returncode == 0, r.stderr
    (password,) = re.findall(r"^    (\S+)$", r.stdout, re.M)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    values = localstack.load_env_file(env_file)
    assert values["MONITOR_USER"] == "admin"
    assert values["MONITOR_PASSWORD_HASH"].startswith("$2a$")
    assert password not in env_file.read_text()
    # Not twice: the password would be lost.
    r = cli("env", "--env-file", str(env_file))
    assert r.returncode == 1 and "exists" in r.stderr

    base = ["--state-dir", str(state)]
    r = cli(*base, "up", "--env-file", str(env_file), "--model", str(model_path), "--free-ports")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        urls = dict(
            re.findall(r"^  (Prometheus|Alertmanager|Prediction API)\s+(\S+)", r.stdout, re.M)
        )
        assert set(urls) == {"Prometheus", "Alertmanager", "Prediction API"}
        if localstack.find_binary("grafana-server") is None:
            assert "grafana-server is not on PATH" in r.stdout
        # The printed password opens the printed URLs.
        for url in urls.values():
            assert requests.get(url, timeout=10).status_code == 401
            assert requests.get(url, auth=("admin", password), timeout=10).status_code in (200, 404)
        ready = urls["Prediction API"] + "health/ready"
        assert requests.get(ready, auth=("admin", password), timeout=10).status_code == 200

        # A second stack from the same state dir is refused.
        again = cli(*base, "up", "--env-file", str(env_file), "--free-ports")
        assert again.returncode == 1 and "already running" in again.stderr

        status = cli(*base, "status")
        assert status.returncode == 0, status.stdout
        pids = [int(p) for p in re.findall(r"pid (\d+) running", status.stdout)]
        assert len(pids) >= 4
    finally:
        down = cli(*base, "down")
    assert down.returncode == 0
    assert "stopped: caddy, prometheus, alertmanager, vigil" in down.stdout
    assert not any(localstack.pid_alive(pid) for pid in pids)
    assert cli(*base, "status").returncode == 1
    assert "nothing was running" in cli(*base, "down").stdout
    assert (state / "logs" / "prometheus.log").is_file()


def test_up_refuses_busy_ports(stack_programs, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        opts = localstack.StackOptions(
            **OPTS,
            state_dir=tmp_path,
            front_ports={
                "grafana": port,
                "prometheus": 1,
                "alertmanager": 2,
                "api": 3,
            },
        )
        with pytest.raises(localstack.StackError, match=f"grafana:{port}"):
            localstack.up(opts)
    assert not (tmp_path / "state.json").exists()


def test_base_env_does_not_leak_the_callers_settings(monkeypatch):
    monkeypatch.setenv("VIGIL_PORT", "1")
    monkeypatch.setenv("MONITOR_PASSWORD_HASH", "x")
    env = localstack._base_env()
    assert "VIGIL_PORT" not in env and "MONITOR_PASSWORD_HASH" not in env
    assert env["PATH"] == os.environ["PATH"]
