"""Three replicas behind the real Caddy, found by the real Prometheus (file discovery).

Under steady traffic through Caddy, a replica killed with SIGKILL and brought back costs no
client request; Prometheus sees its target go down and up, and VigilDown fires for it
alone; ``python -m service rollout`` reaches every replica without a failed request, and
names the replicas it could not reach.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from monitor import localstack
from tests.monitor.conftest import (
    NORMAL,
    SENSORS,
    build_registry,
    eventually,
    fast_options,
    prom_query,
)
from tests.support import REPO, free_port

REPLICAS = 3
# Bounds: the traffic thread stops by itself after this long, whatever happens.
TRAFFIC_LIMIT_S = 300.0


class Traffic:
    """Scoring requests through Caddy, back to back in a thread, until stopped; every
    answer that is not a 200 (or no answer) is kept as a failure."""

    def __init__(self, url: str, auth: tuple[str, str]) -> None:
        self.url = url
        self.auth = auth
        self.failures: list[str] = []
        self.phase = "start"  # named in failures: when they happened
        self.ok = 0
        self.versions: Counter[int] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        session.auth = self.auth
        deadline = time.monotonic() + TRAFFIC_LIMIT_S
        paths = ("/prediction", f"/models/{SENSORS}/prediction")
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            path = paths[i % 2]
            i += 1
            try:
                r = session.post(self.url + path, json=NORMAL, timeout=10)
            except requests.RequestException as exc:
                with self._lock:
                    self.failures.append(f"{self.phase} {path}: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if r.status_code == 200:
                    self.ok += 1
                    if path != "/prediction":
                        self.versions[r.json()["version"]] += 1
                else:
                    self.failures.append(f"{self.phase} {path}: {r.status_code} {r.text[:200]}")

    def count(self) -> int:
        with self._lock:
            return self.ok + len(self.failures)

    def wait_for_more(self, n: int, timeout: float = 60) -> None:
        """Until ``n`` more requests were answered (traffic went on)."""
        target = self.count() + n
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, f"traffic stalled at {self.count()} requests"
            assert self._thread.is_alive(), "the traffic thread ended"
            time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def replicas_stack(
    stack_programs, tmp_path_factory, model_path, sensors_versions, credentials, webhook
):
    """Three replicas serving `default` and `sensors` (version 2 its default)."""
    tmp_path = tmp_path_factory.mktemp("replicas")
    token = secrets.token_urlsafe(16)  # may start with "-": passed as --token=VALUE
    registry = build_registry(tmp_path / "models", sensors_versions)
    opts = fast_options(
        tmp_path / "stack",
        model_path,
        credentials,
        webhook.url,
        registry=registry,
        service_env={"VIGIL_ADMIN_TOKEN": token, "VIGIL_TRAINING_RUNNER": "false"},
        replicas=REPLICAS,
        watches=None,
        grafana=False,
    )
    stack = localstack.up(opts)
    yield stack, registry, token
    stack.stop()


def up_by_instance(stack: localstack.Stack) -> dict[str, float]:
    result = prom_query(stack, 'up{job="vigil"}')
    return {s["metric"]["instance"]: float(s["value"][1]) for s in result}


def firing_vigil_down(stack: localstack.Stack) -> set[str]:
    result = prom_query(stack, 'ALERTS{alertname="VigilDown",alertstate="firing"}')
    return {s["metric"]["instance"] for s in result}


def rollout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "rollout", *args],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_killed_replica_and_a_rollout_cost_no_request(replicas_stack, credentials):
    stack, registry, token = replicas_stack
    assert stack.replicas == ["vigil", "vigil-2", "vigil-3"]
    instance = {name: f"127.0.0.1:{stack.ports[name]}" for name in stack.replicas}
    # A first scrape may time out while three services start on a busy machine.
    eventually(lambda: assert_up(stack, dict.fromkeys(instance.values(), 1.0)), timeout=30)

    with Traffic(stack.front_url("api"), credentials.auth) as traffic:
        traffic.wait_for_more(50)

        # kill -9 one replica mid-traffic: Caddy retries elsewhere.
        traffic.phase = "kill"
        victim = stack.components["vigil-2"]
        os.kill(victim.pid, signal.SIGKILL)
        victim.proc.wait(10)
        eventually(
            lambda: assert_up(stack, {**dict.fromkeys(instance.values(), 1.0),
                                      instance["vigil-2"]: 0.0}),
            timeout=30,
        )  # fmt: skip
        eventually(lambda: assert_firing(stack, {instance["vigil-2"]}), timeout=30)
        traffic.wait_for_more(50)

        # Back on the same port: Prometheus scrapes it again, Caddy sends it traffic.
        traffic.phase = "restart"
        stack.restart("vigil-2")
        eventually(lambda: assert_up(stack, dict.fromkeys(instance.values(), 1.0)), timeout=30)
        eventually(lambda: assert_firing(stack, set()), timeout=30)
        traffic.wait_for_more(50)

        # The rollout: version 1 of sensors becomes the default on every replica.
        traffic.phase = "rollout"
        targets = stack.state_dir / "config" / localstack.VIGIL_TARGETS_FILE
        done = rollout(
            "--name", SENSORS, "--version", "1", "--targets", str(targets),
            "--registry", str(registry), f"--token={token}", "--timeout", "60",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"served by all {REPLICAS} replicas" in done.stdout
        for name in stack.replicas:
            served = requests.get(f"{stack.backend_url(name)}/models/{SENSORS}", timeout=5)
            assert served.json()["version"] == 1, name
        before = traffic.versions[1]
        traffic.wait_for_more(50)
        assert traffic.versions[1] > before  # Caddy's answers come from version 1 now

    assert traffic.failures == [], traffic.failures[:8]
    assert traffic.ok >= 200


def assert_up(stack: localstack.Stack, want: dict[str, float]) -> None:
    assert up_by_instance(stack) == want


def assert_firing(stack: localstack.Stack, want: set[str]) -> None:
    assert firing_vigil_down(stack) == want


def test_a_rollout_names_the_replicas_that_do_not_follow(replicas_stack):
    stack, registry, token = replicas_stack
    dead = f"http://127.0.0.1:{free_port()}"
    live = stack.backend_url("vigil")
    done = rollout(
        "--name", SENSORS, "--version", "2", "--urls", f"{live},{dead}",
        "--registry", str(registry), f"--token={token}", "--timeout", "2",
    )  # fmt: skip
    assert done.returncode == 1
    assert f"1 of 2 replicas do not serve {SENSORS} version 2" in done.stderr
    assert f"{dead}: serves unreachable" in done.stderr
    assert live not in done.stderr
    # The alias moved in the registry, and the replica that answered serves it.
    served = requests.get(f"{live}/models/{SENSORS}", timeout=5).json()
    assert served["version"] == 2
