"""Fixtures for the monitoring tests: the real programs, a webhook receiver, running stacks.

The stacks are started by monitor/localstack.py, the machinery behind `make monitor-up`, with
test-only settings: 1 s scrape and evaluation intervals, every alert's `for:` capped at 2 s,
and Alertmanager's waits at 1 s. Their service serves two models of different kinds: the
`default` IsolationForest from VIGIL_MODEL_PATH and `sensors`, an ECOD model with two versions
in a registry (version 2 its default). A test whose program is missing is skipped with an
install hint.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from monitor import localstack
from service.models import artifact
from service.models.artifact import ModelArtifact
from service.models.registry import Registry
from service.training.trainer import train_from_csv
from tests.support import LiveServer, start_server

FAST = {
    "scrape_interval": "1s",
    "evaluation_interval": "1s",
    "max_for": "2s",
    "alertmanager_timing": {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
}


def need(name: str) -> str:
    """The path of a program the test needs, or skip the test with how to install it."""
    if name == "docker-compose":
        found = localstack.compose_binary()
    else:
        found = localstack.find_binary(name)
    if found is None:
        pytest.skip(f"{name} not found; install it: {localstack.INSTALL_HINTS[name]}")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return need("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return need("amtool")


@pytest.fixture(scope="session")
def caddy() -> str:
    return need("caddy")


@pytest.fixture(scope="session")
def compose() -> str:
    return need("docker-compose")


@pytest.fixture(scope="session")
def stack_programs(caddy) -> None:
    need("prometheus")
    need("alertmanager")


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str
    password_hash: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)


@pytest.fixture(scope="session")
def credentials(caddy) -> Credentials:
    password = secrets.token_urlsafe(12)
    return Credentials("vigil-test", password, localstack.hash_password(password))


class Webhook:
    """An Alertmanager webhook receiver: records every POSTed notification."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self) -> list[dict]:
        with self._lock:
            return [a for n in self.notifications for a in n["alerts"]]

    def wait_for_alert(self, match: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.alerts():
                if match(alert):
                    return alert
            time.sleep(0.2)
        raise AssertionError(
            f"no matching alert reached the webhook within {timeout}s; got: {self.alerts()}"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


# The registered model next to `default`; its expected anomaly ratio is that of `default` (the
# contamination in effect), so both are held to the same alert line.
SENSORS = "sensors"
SENSORS_KIND = "ecod"
SENSORS_DEFAULT = "2"
# A model whose only (default) version is a truncated file: it never loads.
BROKEN = "pumps"


@pytest.fixture(scope="session")
def sensors_versions(data_dir) -> list[ModelArtifact]:
    """The two ECOD versions of `sensors`, trained on the same rows as `default`."""
    return [
        train_from_csv(data_dir / "train.csv", None, {"contamination": c}, kind=SENSORS_KIND)
        for c in (0.05, 0.02)
    ]


def build_registry(root: Path, sensors: list[ModelArtifact], *, broken: bool = False) -> Path:
    """A registry holding `sensors` (its last version promoted to default), and `pumps`."""
    registry = Registry(root)
    for number, model in enumerate(sensors, 1):
        registry.register(SENSORS, lambda p, m=model: artifact.save(m, p), promote=True)
        assert registry.model(SENSORS).default.number == number
    if broken:
        info = registry.register(BROKEN, lambda p: artifact.save(sensors[0], p))
        data = info.path.read_bytes()
        info.path.write_bytes(data[: len(data) // 2])
    return root


@pytest.fixture(scope="session")
def sensors_registry(tmp_path_factory, sensors_versions) -> Path:
    return build_registry(tmp_path_factory.mktemp("registry") / "models", sensors_versions)


def fast_options(
    state_dir: Path,
    model_path: Path,
    credentials: Credentials,
    webhook_url: str,
    *,
    registry: Path | None = None,
    service_env: dict[str, str] | None = None,
    **kw,
) -> localstack.StackOptions:
    """Test options; the service reads only ``registry`` (none: a folder that does not
    exist, never the checkout's models/) besides ``model_path``."""
    env = {"VIGIL_REGISTRY": str(registry or state_dir / "no-registry"), **(service_env or {})}
    return localstack.StackOptions(
        user=credentials.user,
        password_hash=credentials.password_hash,
        webhook_url=webhook_url,
        state_dir=state_dir,
        model_path=model_path,
        front_ports=None,
        service_env=env,
        wait_for_first_scrape=True,
        timeout=60,
        **{**FAST, **kw},
    )


@pytest.fixture(scope="session")
def not_ready_server(tmp_path_factory) -> Iterator[LiveServer]:
    """A second service instance with no model: it answers predictions with 503."""
    logs = tmp_path_factory.mktemp("not-ready")
    env = {"VIGIL_REGISTRY": str(logs / "no-registry")}
    server = start_server(logs / "absent.joblib", logs, env=env, ready=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def monitor_stack(
    stack_programs,
    tmp_path_factory,
    model_path,
    sensors_versions,
    credentials,
    webhook,
    not_ready_server,
) -> Iterator[localstack.Stack]:
    """The whole stack, its service serving `default` and both versions of `sensors` (and
    failing to load `pumps`), also scraping the model-less instance (a source of real 5xx)."""
    root = tmp_path_factory.mktemp("stack")
    opts = fast_options(
        root,
        model_path,
        credentials,
        webhook.url,
        registry=build_registry(root / "models", sensors_versions, broken=True),
        service_env={"VIGIL_REGISTRY_LOAD": "all"},
        extra_vigil_targets=[f"127.0.0.1:{not_ready_server.port}"],
    )
    stack = localstack.up(opts)
    yield stack
    stack.stop()


def prom_query(stack: localstack.Stack, expr: str) -> list[dict]:
    r = requests.get(
        stack.backend_url("prometheus") + "/api/v1/query",
        params={"query": expr},
        headers=stack.backend_auth("prometheus"),
        timeout=10,
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def eventually(check: Callable[[], None], timeout: float = 30) -> None:
    """Retry an assertion until it holds (new samples take a scrape and an evaluation)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


NORMAL = [0.0, 0.1]
ANOMALY = [0.5, 0.5]


def drive_traffic(service_url: str, not_ready_url: str, rounds: int = 3) -> None:
    """Real requests to both models (20% anomalies, at least 160 rows a round each): single
    rows, batches, bad input (4xx), an unknown model (404), no model (503)."""
    s = requests.Session()
    sensors = f"{service_url}/models/{SENSORS}"
    batch = [NORMAL] * 40 + [ANOMALY] * 10
    for i in range(rounds):
        if i:
            time.sleep(1.2)  # more than a scrape interval: rates see the counters grow
        for url in (service_url, sensors):
            for _ in range(15):
                assert s.post(f"{url}/prediction?score=true", json=NORMAL).status_code == 200
            for _ in range(5):
                assert s.post(f"{url}/prediction", json=ANOMALY).status_code == 200
            for _ in range(3):
                assert s.post(f"{url}/predictions?score=true", json=batch).status_code == 200
        few = [NORMAL] * 8 + [ANOMALY] * 2  # version 1 stays below the anomaly alert's floor
        assert s.post(f"{sensors}/versions/1/predictions", json=few).status_code == 200
        assert s.get(f"{service_url}/model_information").status_code == 200
        assert s.get(sensors).status_code == 200
        assert s.post(f"{service_url}/models/nope/prediction", json=NORMAL).status_code == 404
        assert s.post(f"{sensors}/prediction", json=[1.0]).status_code == 422
        assert s.post(f"{service_url}/prediction", json=[1.0]).status_code == 422
        assert s.post(f"{service_url}/prediction", data="[0.1,", headers={
            "Content-Type": "application/json"}).status_code == 400  # fmt: skip
        assert s.post(f"{service_url}/prediction", data="x", headers={
            "Content-Type": "text/plain"}).status_code == 415  # fmt: skip
        for _ in range(5):
            assert s.post(f"{not_ready_url}/prediction", json=NORMAL).status_code == 503


@pytest.fixture
def receiver() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def stack(stack_programs, tmp_path, model_path, sensors_registry, credentials, receiver):
    """A stack of the test's own serving `default` and `sensors` (its default version),
    alerting to ``receiver`` (the session's shared stack has seen other tests' traffic)."""
    opts = fast_options(
        tmp_path / "stack", model_path, credentials, receiver.url, registry=sensors_registry
    )
    stack = localstack.up(opts)
    yield stack
    stack.stop()
