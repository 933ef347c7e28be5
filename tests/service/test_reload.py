"""Hot reload under load, through the admin endpoint and SIGHUP, with several workers; SIGTERM."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from service.models import artifact
from service.training.trainer import TrainingParams, train
from tests.service.hostile import Swapper, make_unreadable
from tests.support import metric, scrape, start_server, wait_for, write_format_1

pytestmark = pytest.mark.slow
TOKEN = "test-admin-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_model(path: Path, *, seed: int, n_features: int = 2, trees: int = 30) -> str:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 0.05, (500, n_features))
    names = ["mean", "sd", "skew", "kurt"][:n_features]
    model = train(X, names, TrainingParams(n_estimators=trees, random_state=seed))
    artifact.save(model, path)
    return model.version


class Load:
    """A client thread posting single rows until stopped; counts failures and versions seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded even if a test forgets to stop it
        with requests.Session() as s:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.sent += 1
                try:
                    r = s.post(f"{self.url}/prediction?score=true", json=[0.1, 0.1], timeout=5)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                else:
                    self.versions[r.json()["model_version"]] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        wait_for(lambda: self.sent > 20, 10, "load to start")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest_version(self) -> str:
        with requests.Session() as s:
            return s.post(f"{self.url}/prediction", json=[0.1, 0.1], timeout=5).json()[
                "model_version"
            ]


def served_version(url: str) -> str:
    return requests.get(f"{url}/health/ready", timeout=5).json()["model_version"]


def reload(url: str) -> requests.Response:
    return requests.post(f"{url}/admin/reload", headers=AUTH, timeout=30)


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:2000])


def three_features(path: Path) -> None:
    make_model(path, seed=99, n_features=3)


BAD = {
    "missing": (lambda p: p.unlink(), "model file not found"),
    "truncated": (truncate, "does not match its manifest"),
    "tampered": (tamper, "does not match its manifest"),
    "other feature count": (three_features, "takes features (mean, sd, skew)"),
    "format 1": (write_format_1, "re-train it"),
}


@pytest.fixture
def served(tmp_path):
    """A server on a model file the test may replace; reload through the admin endpoint."""
    model = tmp_path / "models" / "model.joblib"
    first = make_model(model, seed=1)
    server = start_server(model, tmp_path, env={"VIGIL_ADMIN_TOKEN": TOKEN})
    yield server, model, first
    server.stop()


def test_admin_reload_under_load(served):
    server, model, first = served
    with Load(server.url) as load:
        second = make_model(model, seed=2)
        r = reload(server.url)
        assert r.status_code == 200
        assert r.json() == {
            "result": "reloaded",
            "model_version": second,
            "previous_version": first,
            "reason": None,
            "changes": [f"default@1 replaced ({first} -> {second})"],
        }
        assert load.latest_version() == second
        assert reload(server.url).json()["result"] == "unchanged"

        good = model.read_bytes(), artifact.manifest_path(model).read_bytes()
        for name, (spoil, reason) in BAD.items():
            spoil(model)
            r = reload(server.url)
            assert r.status_code == 409, name
            assert r.json()["result"] == "refused"
            assert reason in r.json()["reason"], (name, r.json())
            assert str(model.parent) not in r.json()["reason"]
            assert r.json()["model_version"] == second
            assert served_version(server.url) == second
            model.write_bytes(good[0])
            artifact.manifest_path(model).write_bytes(good[1])
    assert load.failures == []
    assert load.versions[first] > 0 and load.versions[second] > 0
    m = scrape(server.url)
    assert metric(m, "vigil_model_reloads_total", result="reloaded") == 1
    assert metric(m, "vigil_model_reloads_total", result="refused") == len(BAD)
    # The file is version 1 of the model "default" whatever its content: one series at 1, whose
    # model_version is the file's content hash now (the replaced one's is dropped).
    info = [dict(k[1]) for k in m if k[0] == "vigil_model_info" and m[k] == 1]
    assert info == [
        {"model": "default", "version": "1", "kind": "iforest", "model_version": second}
    ]
    print(
        f"reload under load: {load.sent} requests, {len(load.failures)} failed, "
        f"versions served {dict(load.versions)}"
    )


def test_sighup_reload_under_load(served):
    server, model, first = served
    with Load(server.url) as load:
        for n, (name, (spoil, _)) in enumerate(BAD.items(), start=1):
            good = model.read_bytes(), artifact.manifest_path(model).read_bytes()
            spoil(model)
            server.proc.send_signal(signal.SIGHUP)

            def refused(n: int = n) -> bool:
                m = scrape(server.url)
                return metric(m, "vigil_model_reloads_total", result="refused") == n

            wait_for(refused, 10, f"SIGHUP refusal of {name}")
            assert served_version(server.url) == first
            model.write_bytes(good[0])
            artifact.manifest_path(model).write_bytes(good[1])
        second = make_model(model, seed=3)
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_version(server.url) == second, 10, "SIGHUP reload")
    assert load.failures == []
    assert server.proc.poll() is None
    assert "reload refused, still serving" in server.log()


def test_admin_endpoint_needs_the_token(served, model_path, tmp_path):
    server, _, _ = served
    r = requests.post(f"{server.url}/admin/reload", timeout=5)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "admin token required" in r.json()["detail"]
    r = requests.post(
        f"{server.url}/admin/reload", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert r.status_code == 403
    assert r.json()["detail"] == "wrong admin token"
    r = requests.post(
        f"{server.url}/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}, timeout=5
    )
    assert r.status_code == 401

    plain = start_server(model_path, tmp_path / "plain")
    try:
        assert (
            requests.post(f"{plain.url}/admin/reload", headers=AUTH, timeout=5).status_code == 404
        )
    finally:
        plain.stop()


def test_sighup_reaches_every_worker(tmp_path):
    model = tmp_path / "models" / "model.joblib"
    first = make_model(model, seed=1)
    server = start_server(model, tmp_path, env={"VIGIL_WORKERS": "2", "VIGIL_ADMIN_TOKEN": TOKEN})
    try:
        wait_for(lambda: server.log().count("Application startup complete") == 2, 15, "2 workers")
        assert {served_version(server.url) for _ in range(20)} == {first}
        with Load(server.url) as load:
            second = make_model(model, seed=2)
            server.proc.send_signal(signal.SIGHUP)

            wait_for(
                lambda: {served_version(server.url) for _ in range(40)} == {second},
                15,
                "both workers on the new model",
            )

            # The endpoint answers on one worker and has the supervisor move the others.
            third = make_model(model, seed=3)
            r = reload(server.url)
            assert (r.status_code, r.json()["model_version"]) == (200, third)
            wait_for(
                lambda: {served_version(server.url) for _ in range(20)} == {third},
                15,
                "both workers on the third model",
            )
        assert load.failures == []
        # One worker reloads and counts; the others follow without counting a reload.
        m = scrape(server.url)
        assert metric(m, "vigil_model_reloads_total", result="reloaded") == 2
        assert metric(m, "vigil_model_reloads_total", result="unchanged") == 0
        assert "died" not in server.log()
    finally:
        server.stop()


def test_sigterm_lets_a_large_batch_finish(tmp_path, data_dir):
    model = tmp_path / "models" / "model.joblib"
    make_model(model, seed=5, trees=1000)
    server = start_server(model, tmp_path)
    rows = np.random.default_rng(0).normal(0, 0.1, (10_000, 2)).tolist()
    result: dict = {}

    def send() -> None:
        r = requests.post(f"{server.url}/predictions", json=rows, timeout=60)
        result["status"] = r.status_code
        result["rows"] = len(r.json()["predictions"])

    client = threading.Thread(target=send)
    client.start()
    wait_for(
        lambda: (
            metric(
                scrape(server.url),
                "http_requests_inprogress",
                handler="/predictions",
                method="POST",
            )
            == 1
        ),
        10,
        "the batch to be in flight",
        interval=0.005,
    )
    server.proc.send_signal(signal.SIGTERM)
    client.join(60)
    assert result == {"status": 200, "rows": 10_000}
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Waiting for application shutdown" in server.log() or "Shutting down" in server.log()


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_tampered_artifact_at_start_is_never_unpickled(tmp_path, model_path):
    model = tmp_path / "model.joblib"
    shutil.copy(model_path, model)
    shutil.copy(artifact.manifest_path(model_path), artifact.manifest_path(model))
    marker = tmp_path / "code-ran"
    evil = pickle.dumps(_Marker(marker))  # padded to the size the manifest says: only the hash
    model.write_bytes(evil + b"\0" * (model.stat().st_size - len(evil)))  # can refuse it
    server = start_server(model, tmp_path, ready=False)
    try:
        r = requests.get(f"{server.url}/health/ready", timeout=5)
        assert r.status_code == 503
        assert "does not match its manifest" in r.json()["reason"]
        assert not marker.exists()
        assert artifact.file_sha256(model) in server.log()  # both hashes are logged
    finally:
        server.stop()


def test_admin_reload_never_unpickles_a_file_swapped_after_its_hash_check(served, tmp_path):
    """The race of issue #9 through the live server: reloads while the file is swapped."""
    server, model, first = served
    marker = tmp_path / "code-ran"
    results: Counter[str] = Counter()
    deadline = time.monotonic() + 4
    with Swapper(model, marker, tmp_path / "stage"):
        while time.monotonic() < deadline and not marker.exists():
            r = reload(server.url)
            results[r.json()["result"]] += 1
            assert str(model.parent) not in r.text
    assert not marker.exists(), f"the pickle ran after {dict(results)}"
    assert results["refused"] > 0 and results["unchanged"] > 0, results
    assert served_version(server.url) == first


def test_no_client_sees_a_server_path(tmp_path):
    """An unreadable model file (an OSError names the full path): at start and on reload, the
    answers name the file by its base name only."""
    model = tmp_path / "private" / "models" / "model.joblib"
    make_model(model, seed=1)
    make_unreadable(model)
    server = start_server(model, tmp_path, env={"VIGIL_ADMIN_TOKEN": TOKEN}, ready=False)
    try:
        answers = [
            requests.get(f"{server.url}/health/ready", timeout=5),
            requests.post(f"{server.url}/prediction", json=[0.1, 0.1], timeout=5),
            requests.post(f"{server.url}/predictions", json=[[0.1, 0.1]], timeout=5),
            reload(server.url),
            requests.get(f"{server.url}/health/ready", timeout=5),
        ]
        assert [r.status_code for r in answers] == [503, 503, 503, 409, 503]
        for r in answers:
            assert "model.joblib: model file cannot be read (Permission denied)" in r.text
            assert str(tmp_path) not in r.text, r.text
        assert str(model) in server.log()  # the operator's log names the file
    finally:
        server.stop()
