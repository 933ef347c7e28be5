"""Caddy in front of the stack, with caddy/Caddyfile as it is: basic auth on every service."""

from __future__ import annotations

import base64
import os
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from monitor import localstack

pytestmark = pytest.mark.slow

# What each front port proxies to, and a path that answers 200 there.
SERVICES = {
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
    "api": "/health/ready",
    "grafana": "/api/health",
}


def proxied_services(stack: localstack.Stack) -> list[str]:
    return [s for s in SERVICES if s != "grafana" or "grafana" in stack.components]


def validate(caddy: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [caddy, "validate", "--config", str(localstack.CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_caddy_refuses_to_start_without_credentials(caddy):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    r = validate(caddy, env)
    assert r.returncode != 0
    assert "username and password cannot be empty or missing" in r.stderr


def test_caddy_refuses_an_unknown_api_access_mode(caddy, credentials):
    env = {
        **os.environ,
        "MONITOR_USER": credentials.user,
        "MONITOR_PASSWORD_HASH": credentials.password_hash,
        "API_ACCESS": "public",
    }
    r = validate(caddy, env)
    assert r.returncode != 0
    assert "api_public" in r.stderr


def assert_basic_auth(url: str, credentials) -> None:
    assert requests.get(url, timeout=10).status_code == 401
    wrong = (credentials.user, credentials.password + "x")
    assert requests.get(url, auth=wrong, timeout=10).status_code == 401
    other_user = ("someone-else", credentials.password)
    assert requests.get(url, auth=other_user, timeout=10).status_code == 401
    r = requests.get(url, auth=credentials.auth, timeout=10)
    assert r.status_code == 200, r.text
    # The 401 asks for credentials, so browsers show a login dialog.
    challenge = requests.get(url, timeout=10).headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Basic")


@pytest.mark.parametrize("service", list(SERVICES))
def test_basic_auth_on_each_service(monitor_stack, credentials, service, tmp_path, echo):
    if service in proxied_services(monitor_stack):
        assert_basic_auth(monitor_stack.front_url(service) + SERVICES[service], credentials)
        return
    # No grafana-server here: Caddy's Grafana route, in front of a stand-in upstream.
    caddy, front = start_second_caddy(monitor_stack, credentials, tmp_path, "auth", echo.path)
    try:
        assert_basic_auth(f"http://127.0.0.1:{front[service]}/", credentials)
    finally:
        caddy.stop()


def test_predictions_through_caddy(monitor_stack, credentials):
    api = monitor_stack.front_url("api")
    r = requests.post(f"{api}/prediction?score=true", json=[0.0, 0.1], auth=credentials.auth)
    assert r.status_code == 200 and 0 < r.json()["anomaly_score"] <= 1
    assert requests.post(f"{api}/prediction", json=[0.0, 0.1]).status_code == 401


def test_service_metrics_and_admin_routes_are_not_published_through_caddy(
    monitor_stack, credentials
):
    api = monitor_stack.front_url("api")
    assert requests.get(api + "/metrics", auth=credentials.auth).status_code == 404
    assert requests.post(api + "/admin/reload", auth=credentials.auth).status_code == 404
    # ... while Prometheus reads them directly.
    r = requests.get(monitor_stack.backend_url("vigil") + "/metrics")
    assert r.status_code == 200 and "vigil_model_ready" in r.text


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class HeaderEcho:
    """An upstream that records the headers Caddy forwards: on a Unix socket at ``path``
    (stands in for Grafana), or on a TCP port (for Prometheus)."""

    def __init__(self, path: Path | None = None) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.path = path
        if path is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
        else:
            self.server = _UnixHTTPServer(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo(tmp_path) -> Iterator[HeaderEcho]:
    server = HeaderEcho(tmp_path / "grafana.sock")
    yield server
    server.close()


@pytest.fixture
def tcp_echo() -> Iterator[HeaderEcho]:
    server = HeaderEcho()
    yield server
    server.close()


def start_second_caddy(
    stack, credentials, tmp_path, api_access, grafana_socket=None, prometheus_port=None
):
    """Another Caddy, from the same Caddyfile, in front of the running stack's backends (or
    of a stand-in Grafana socket or Prometheus port), with the stack's credentials."""
    opts = localstack.StackOptions(
        user=credentials.user,
        password_hash=credentials.password_hash,
        webhook_url="http://unused/",
        api_access=api_access,
    )
    ports = dict(stack.ports)
    if prometheus_port:
        ports["prometheus"] = prometheus_port
    front = {name: localstack.free_port() for name in localstack.COMPOSE_FRONT_PORTS}
    component = localstack.start_caddy(
        opts,
        ports,
        front,
        tmp_path,
        stack.secrets_dir,
        grafana_socket or stack.grafana_socket,
        name=f"caddy-{api_access}",
    )
    return component, front


def test_grafana_gets_the_authenticated_user_and_never_the_password(
    monitor_stack, credentials, tmp_path, echo
):
    caddy, front = start_second_caddy(monitor_stack, credentials, tmp_path, "auth", echo.path)
    try:
        url = f"http://127.0.0.1:{front['grafana']}/"
        # A client cannot pick its Grafana user: without credentials it gets nowhere ...
        r = requests.get(url, headers={"X-WEBAUTH-USER": "admin"}, timeout=10)
        assert r.status_code == 401 and echo.seen == []
        # ... and with them, Caddy overwrites the header with the user it authenticated.
        r = requests.get(
            url, auth=credentials.auth, headers={"X-WEBAUTH-USER": "admin"}, timeout=10
        )
        assert r.status_code == 200
        (headers,) = echo.seen
        assert headers["x-webauth-user"] == credentials.user
        assert "authorization" not in headers
    finally:
        caddy.stop()


def test_caddy_replaces_the_users_login_with_the_backends_credential(
    monitor_stack, credentials, tmp_path, tcp_echo
):
    """Prometheus (here a stand-in) gets the stack's credential, never the user's login."""
    caddy, front = start_second_caddy(
        monitor_stack, credentials, tmp_path, "auth", prometheus_port=tcp_echo.port
    )
    try:
        url = f"http://127.0.0.1:{front['prometheus']}/api/v1/query"
        assert requests.get(url, timeout=10).status_code == 401 and tcp_echo.seen == []
        r = requests.get(url, auth=credentials.auth, timeout=10)
        assert r.status_code == 200
        (headers,) = tcp_echo.seen
        expected = (monitor_stack.secrets_dir / "prometheus.authorization").read_text()
        assert headers["authorization"] == expected
        decoded = base64.b64decode(expected.removeprefix("Basic ")).decode()
        user, _, password = decoded.partition(":")
        assert user == localstack.BACKEND_USER and password != credentials.password
        assert password == (monitor_stack.secrets_dir / "prometheus.password").read_text()
    finally:
        caddy.stop()


def test_api_access_open_serves_the_api_without_auth(monitor_stack, credentials, tmp_path):
    caddy, front = start_second_caddy(monitor_stack, credentials, tmp_path, "open")
    try:
        api = f"http://127.0.0.1:{front['api']}"
        r = requests.post(f"{api}/prediction", json=[0.0, 0.1], timeout=10)
        assert r.status_code == 200
        assert requests.get(f"{api}/metrics", timeout=10).status_code == 404
        # Everything else still asks for the login.
        prometheus = f"http://127.0.0.1:{front['prometheus']}/-/ready"
        assert requests.get(prometheus, timeout=10).status_code == 401
    finally:
        caddy.stop()


def test_api_access_off_does_not_serve_the_api(monitor_stack, credentials, tmp_path):
    caddy, front = start_second_caddy(monitor_stack, credentials, tmp_path, "off")
    try:
        api = f"http://127.0.0.1:{front['api']}"
        r = requests.get(f"{api}/health/ready", auth=credentials.auth, timeout=10)
        assert r.status_code == 404
        assert "API_ACCESS=off" in r.text
    finally:
        caddy.stop()
