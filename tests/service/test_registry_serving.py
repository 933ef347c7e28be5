"""Issue #10 through a real server: a registry of named models served by name, version and alias,
404s that list what exists, bounded metric labels, aliases and rollback through the CLI, registry
reloads under load with no failed request, and a refused registry change."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from service.data.dataset import load_csv
from service.models import artifact
from service.models.loaded import Model
from service.models.registry import Registry
from service.training.trainer import train
from tests.detectors.references import reference
from tests.support import REPO, LiveServer, metric, scrape, start_server, wait_for

pytestmark = pytest.mark.slow
TOKEN = "test-admin-token-registry"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = ["mean", "sd"]
FILLERS = [f"f{i:02d}" for i in range(27)]  # with sensors, lofs and ecods: 30 models


def register(root: Path, name: str, X: np.ndarray, *, promote: bool = False, **kw) -> int:
    """Train in-process and register; returns the new version number."""
    model = train(X, FEATURES, **kw)
    return Registry(root).register(name, lambda p: artifact.save(model, p), promote=promote).number


def serve(root: Path, log_dir: Path, default_model: str, **env: str) -> LiveServer:
    return start_server(
        log_dir / "no-such-model.joblib",  # no lone VIGIL_MODEL_PATH file: the registry only
        log_dir,
        env={
            "VIGIL_REGISTRY": str(root),
            "VIGIL_DEFAULT_MODEL": default_model,
            "VIGIL_ADMIN_TOKEN": TOKEN,
            **env,
        },
    )


def loaded(root: Path, name: str, number: int) -> Model:
    """The in-process model of one registered version: what the server must answer."""
    path = root / name / str(number) / "model.joblib"
    return Model(artifact.load(path), source=path, name=name, number=number)


def reload(url: str) -> requests.Response:
    return requests.post(f"{url}/admin/reload", headers=AUTH, timeout=60)


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def train_X(data_dir) -> np.ndarray:
    return load_csv(data_dir / "train.csv").X


@pytest.fixture(scope="module")
def queries(data_dir) -> np.ndarray:
    """Test rows (with their anomalies) and rows far outside the training data."""
    X = load_csv(data_dir / "test.csv", label_column="label").X[:60]
    far = np.array([[3.0, 0.1], [-2.0, 5.0], [0.0, 0.0], [1e6, -1e6]])
    return np.vstack([X, far])


@pytest.fixture(scope="module")
def registry(tmp_path_factory, train_X) -> Path:
    """sensors (iforest: v1 default, v2 challenger), lofs (PyOD LOF), ecods (PyOD ECOD), and
    27 more copies of an iforest so that listings must be bounded."""
    root = tmp_path_factory.mktemp("registry") / "models"
    register(root, "sensors", train_X, params={"n_estimators": 30}, seed=1)
    register(root, "sensors", train_X, params={"n_estimators": 30}, seed=2)
    Registry(root).promote("sensors", 2, "challenger")
    register(root, "lofs", train_X[:400], kind="lof", params={"n_neighbors": 10}, seed=3)
    register(root, "ecods", train_X[:300], kind="ecod", seed=4)
    filler = train(train_X[:200], FEATURES, params={"n_estimators": 5}, seed=5)
    reg = Registry(root)
    for name in FILLERS:
        reg.register(name, lambda p: artifact.save(filler, p))
    return root


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory) -> LiveServer:
    live = serve(registry, tmp_path_factory.mktemp("registry-logs"), "sensors")
    yield live
    live.stop()


def post(url: str, path: str, body: object) -> requests.Response:
    return requests.post(f"{url}{path}?score=true", json=body, timeout=30)


# --- routes ----------------------------------------------------------------------------------


def test_models_lists_every_model_with_versions_aliases_and_features(server, registry):
    body = requests.get(f"{server.url}/models", timeout=5).json()
    assert body["default_model"] == "sensors"
    by_name = {m["name"]: m for m in body["models"]}
    assert sorted(by_name) == sorted(["sensors", "lofs", "ecods", *FILLERS])
    sensors = by_name["sensors"]
    assert sensors["kind"] == "iforest"
    assert sensors["default_version"] == 1
    assert sensors["versions"] == [1, 2]
    assert sensors["aliases"] == {"challenger": 2, "default": 1}
    assert sensors["feature_names"] == FEATURES
    assert (by_name["lofs"]["kind"], by_name["ecods"]["kind"]) == ("lof", "ecod")

    info = requests.get(f"{server.url}/models/sensors", timeout=5).json()
    v1 = loaded(registry, "sensors", 1)
    assert (info["model"], info["version"], info["kind"]) == ("sensors", 1, "iforest")
    assert info["model_version"] == v1.version
    assert info["threshold"] == v1.threshold
    assert info["feature_names"] == FEATURES
    assert (info["aliases"], info["versions"]) == ({"challenger": 2, "default": 1}, [1, 2])
    v2 = requests.get(f"{server.url}/models/sensors/versions/2", timeout=5).json()
    assert (v2["version"], v2["model_version"]) == (2, loaded(registry, "sensors", 2).version)
    lof = requests.get(f"{server.url}/models/lofs", timeout=5).json()
    assert (lof["kind"], lof["params"]["n_neighbors"]) == ("lof", 10)
    # The unnamed routes answer for VIGIL_DEFAULT_MODEL.
    default = requests.get(f"{server.url}/model_information", timeout=5).json()
    assert (default["model"], default["version"], default["model_version"]) == (
        "sensors",
        1,
        v1.version,
    )


@pytest.mark.parametrize(
    ("route", "number"),
    [
        ("/models/sensors", 1),
        ("/models/sensors/versions/1", 1),
        ("/models/sensors/versions/2", 2),
        ("/models/sensors/aliases/default", 1),
        ("/models/sensors/aliases/challenger", 2),
        ("", 1),  # /prediction(s): the default model
    ],
)
def test_each_route_answers_with_its_version_exactly(server, registry, queries, route, number):
    model = loaded(registry, "sensors", number)
    expected = model.score(queries)
    names = {"model": "sensors", "version": number, "model_version": model.version}
    names["kind"] = "iforest"
    with requests.Session() as s:
        singles = [
            s.post(f"{server.url}{route}/prediction?score=true", json=row, timeout=5)
            for row in queries.tolist()
        ]
    assert {r.status_code for r in singles} == {200}
    for r in singles:
        assert {k: r.json()[k] for k in names} == names
    assert [r.json()["anomaly_score"] for r in singles] == expected.anomaly_score.tolist()
    assert [r.json()["is_anomaly"] for r in singles] == expected.is_anomaly.tolist()
    assert [r.json()["prediction"] for r in singles] == np.where(
        expected.is_anomaly, -1, 1
    ).tolist()

    batch = post(server.url, f"{route}/predictions", queries.tolist())
    assert batch.status_code == 200
    body = batch.json()
    assert {k: body[k] for k in names} == names
    assert [p["anomaly_score"] for p in body["predictions"]] == expected.anomaly_score.tolist()
    assert [p["is_anomaly"] for p in body["predictions"]] == expected.is_anomaly.tolist()


@pytest.mark.parametrize(("name", "rows"), [("lofs", 400), ("ecods", 300)])
def test_a_pyod_kind_answers_as_pyod(server, registry, train_X, queries, name, rows):
    """The served score is PyOD's decision_function of the same detector fitted on the same
    rows (ECOD: of each row alone), whatever the row's batch-mates."""
    meta = artifact.load(registry / name / "1" / "model.joblib").metadata
    ref_scores, ref_threshold = reference(
        meta["kind"], train_X[:rows], meta["params"], meta["seed"]
    )
    expected = ref_scores(queries)
    batch = post(server.url, f"/models/{name}/predictions", queries.tolist()).json()
    scores = np.array([p["anomaly_score"] for p in batch["predictions"]])
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    threshold = requests.get(f"{server.url}/models/{name}", timeout=5).json()["threshold"]
    assert threshold == pytest.approx(ref_threshold, rel=1e-9)
    assert [p["is_anomaly"] for p in batch["predictions"]] == (scores > threshold).tolist()
    # Alone, in its batch, or in the batch reversed: the same score for the same row.
    with requests.Session() as s:
        singles = [
            s.post(f"{server.url}/models/{name}/prediction?score=true", json=row, timeout=5)
            for row in queries[:20].tolist()
        ]
    assert [r.json()["anomaly_score"] for r in singles] == scores[:20].tolist()
    reverse = post(server.url, f"/models/{name}/predictions", queries[::-1].tolist()).json()
    assert [p["anomaly_score"] for p in reverse["predictions"]][::-1] == scores.tolist()
    assert (batch["kind"], batch["model"], batch["version"]) == (meta["kind"], name, 1)


# --- 404s and labels ---------------------------------------------------------------------------

LISTED = "ecods, " + ", ".join(FILLERS[:19]) + " and 10 more"  # 20 of the 30, sorted


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("POST", "/models/nope/prediction", f"no model 'nope'; models: {LISTED}"),
        ("POST", "/models/nope/predictions", f"no model 'nope'; models: {LISTED}"),
        ("GET", "/models/nope", f"no model 'nope'; models: {LISTED}"),
        ("GET", "/models/nope/versions/1", f"no model 'nope'; models: {LISTED}"),
        (
            "POST",
            "/models/sensors/versions/9/prediction",
            "model 'sensors' has no loaded version 9; versions: 1, 2",
        ),
        (
            "POST",
            "/models/sensors/versions/latest/predictions",
            "model 'sensors' has no version 'latest'; versions: 1, 2",
        ),
        ("GET", "/models/sensors/versions/0", "model 'sensors' has no version '0'; versions: 1, 2"),
        (
            "POST",
            "/models/sensors/aliases/champion/prediction",
            "model 'sensors' has no alias 'champion'; aliases: challenger, default",
        ),
    ],
)
def test_unknown_names_are_404_listing_what_exists(server, method, path, detail):
    r = requests.request(method, f"{server.url}{path}", json=[0.1, 0.1], timeout=5)
    assert r.status_code == 404
    assert r.json() == {"detail": detail}


def test_requests_for_unknown_models_add_no_metric_series(server, registry):
    def model_series(samples: dict) -> set:
        return {k for k in samples if k[0].startswith("vigil_")}

    # Traffic to real models first, so that their series exist.
    for path in ("/prediction", "/models/lofs/prediction", "/models/sensors/versions/2/prediction"):
        assert post(server.url, path, [0.1, 0.1]).status_code == 200
    before = scrape(server.url)
    junk = [f"ghost{i}" for i in range(20)]
    for name in junk:
        for path in (
            f"/models/{name}/prediction",
            f"/models/{name}/versions/1/predictions",
            f"/models/sensors/versions/{len(name) + 100}/prediction",
            f"/models/sensors/aliases/{name}/prediction",
            f"/models/lofs/versions/{name}/prediction",
        ):
            body = [[0.1, 0.1]] if path.endswith("s") else [0.1, 0.1]
            assert post(server.url, path, body).status_code == 404
    after = scrape(server.url)
    assert model_series(after) == model_series(before)
    # Every model and version label value comes from the registry, never from a request.
    names = {p.name for p in registry.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for _, labels in model_series(after):
        labels = dict(labels)
        assert labels.get("model", "sensors") in names, labels
        assert labels.get("version", "1") in {"1", "2"}, labels
    # Nor any other series (the HTTP metrics name route templates, not paths).
    assert not [k for k in after if any("ghost" in v for _, v in k[1])]
    unchanged = [k for k in before if k[0] == "vigil_predictions_total"]
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


# --- aliases, rollback and reloads ----------------------------------------------------------


def served(url: str, path: str = "/models/pumps/prediction") -> tuple[int, int, str]:
    """(status, version number, model_version) of one single-row answer."""
    r = requests.post(f"{url}{path}", json=[0.1, 0.1], timeout=5)
    body = r.json()
    return r.status_code, body.get("version", -1), body.get("model_version", "")


def test_promote_and_rollback_through_the_cli_then_reload(tmp_path, data_dir):
    root = tmp_path / "registry"
    train_csv = str(data_dir / "train.csv")
    common = ("--data", train_csv, "--name", "pumps", "--registry", str(root))
    cli("train", *common, "--n-estimators", "10", "--seed", "1")
    server = serve(root, tmp_path, "pumps")
    try:
        v1 = loaded(root, "pumps", 1).version
        assert served(server.url) == (200, 1, v1)
        assert served(server.url, "/prediction") == (200, 1, v1)

        out = cli("train", *common, "--n-estimators", "10", "--seed", "2")
        assert "registered pumps version 2" in out
        v2 = loaded(root, "pumps", 2).version
        assert served(server.url) == (200, 1, v1)  # registered, not promoted, not reloaded

        cli("models", "--registry", str(root), "promote", "pumps", "2")
        assert served(server.url) == (200, 1, v1)  # the registry moved; the service on reload
        r = reload(server.url)
        assert r.status_code == 200
        body = r.json()
        assert (body["result"], body["model_version"], body["previous_version"]) == (
            "reloaded",
            v2,
            v1,
        )
        assert "pumps: default 1 -> 2" in body["changes"]
        assert f"pumps@2 loaded (iforest, {v2})" in body["changes"]
        assert served(server.url) == (200, 2, v2)
        assert served(server.url, "/prediction") == (200, 2, v2)
        m = scrape(server.url)
        assert metric(m, "vigil_model_default", model="pumps", version="2") == 1
        assert ("vigil_model_default", frozenset({("model", "pumps"), ("version", "1")})) not in m

        cli("models", "--registry", str(root), "rollback", "pumps")
        r = reload(server.url)
        assert (r.status_code, r.json()["result"]) == (200, "reloaded")
        assert "pumps: default 2 -> 1" in r.json()["changes"]
        assert served(server.url) == (200, 1, v1)
        assert requests.get(f"{server.url}/models/pumps", timeout=5).json()["version"] == 1
        assert reload(server.url).json()["result"] == "unchanged"
    finally:
        server.stop()


class Traffic:
    """A thread sending steady single rows to a model's route and to /prediction, counting
    every answer that is not a 200 and the versions served, in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.seen: list[int] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded even if a test forgets to stop it
        paths = ("/models/pumps/prediction?score=true", "/prediction?score=true")
        with requests.Session() as s:
            while not self._stop.is_set() and time.monotonic() < deadline:
                path = paths[self.sent % 2]
                self.sent += 1
                try:
                    r = s.post(f"{self.url}{path}", json=[0.1, 0.1], timeout=10)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{path}: {r.status_code} {r.text}")
                else:
                    self.seen.append(r.json()["version"])

    def __enter__(self) -> Traffic:
        self._thread.start()
        wait_for(lambda: self.sent > 20, 10, "traffic to start")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


def test_registry_reloads_under_load_fail_no_request(tmp_path, train_X):
    root = tmp_path / "registry"
    small = {"n_estimators": 10}
    register(root, "pumps", train_X, params=small, seed=1)
    server = serve(root, tmp_path, "pumps")
    try:
        reloads: list[dict] = []

        def reload_to(expected: int) -> None:
            r = reload(server.url)
            assert r.status_code == 200, r.text
            reloads.append(r.json())
            # The swap is done when the answer comes: the next request gets the new version.
            assert served(server.url)[:2] == (200, expected)
            assert served(server.url, "/prediction")[:2] == (200, expected)

        with Traffic(server.url) as traffic:
            register(root, "pumps", train_X, params=small, seed=2)  # v2, not promoted
            reload_to(1)
            Registry(root).promote("pumps", 2)
            reload_to(2)
            wait_for(lambda: traffic.seen[-1] == 2, 10, "traffic on version 2")
            register(root, "pumps", train_X, params=small, seed=3, promote=True)  # v3
            reload_to(3)
            wait_for(lambda: traffic.seen[-1] == 3, 10, "traffic on version 3")
            Registry(root).rollback("pumps")
            reload_to(2)
            wait_for(lambda: traffic.seen[-1] == 2, 10, "traffic back on version 2")
            reload_to(2)
        assert traffic.failures == []
        assert [r["result"] for r in reloads] == [
            "unchanged",
            "reloaded",
            "reloaded",
            "reloaded",
            "unchanged",
        ]
        # The versions served follow the promotions, in order, without going back and forth.
        order = [v for i, v in enumerate(traffic.seen) if i == 0 or traffic.seen[i - 1] != v]
        assert order == [1, 2, 3, 2], order
        m = scrape(server.url)
        assert metric(m, "vigil_model_reloads_total", result="reloaded") == 3
        assert metric(m, "vigil_model_reloads_total", result="refused") == 0
        seen = dict(Counter(traffic.seen))
        print(f"registry reloads under load: {traffic.sent} requests, 0 failed, {seen}")
    finally:
        server.stop()


def test_a_refused_registry_change_keeps_the_old_catalog_serving(tmp_path, train_X):
    root = tmp_path / "registry"
    register(root, "pumps", train_X, params={"n_estimators": 10}, seed=1)
    server = serve(root, tmp_path, "pumps")
    try:
        v1 = loaded(root, "pumps", 1).version
        before = metric(scrape(server.url), "vigil_model_reloads_total", result="refused")
        listing = requests.get(f"{server.url}/models", timeout=5).json()

        def truncated(path: Path) -> None:
            artifact.save(train(train_X, FEATURES, params={"n_estimators": 10}, seed=2), path)
            path.write_bytes(path.read_bytes()[:2000])

        Registry(root).register("pumps", truncated, promote=True)
        with Traffic(server.url) as traffic:
            r = reload(server.url)
        assert r.status_code == 409
        body = r.json()
        assert (body["result"], body["model_version"]) == ("refused", v1)
        assert "pumps@2" in body["reason"] and "does not match its manifest" in body["reason"]
        assert str(root) not in r.text
        assert traffic.failures == [] and set(traffic.seen) == {1}
        assert served(server.url) == (200, 1, v1)
        assert requests.get(f"{server.url}/models", timeout=5).json() == listing
        assert requests.get(f"{server.url}/health/ready", timeout=5).status_code == 200
        after = metric(scrape(server.url), "vigil_model_reloads_total", result="refused")
        assert after == before + 1
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["sensors", "lofs", "ecods"])
def test_rows_far_beyond_the_training_data_are_anomalies_not_errors(server, name):
    """Distances between such rows and the training rows overflow float64 (LOF's neighbour
    search then finds no neighbour): still an answer, and an anomaly."""
    rows = [[1e200, 1e200], [-1e308, 1e308], [1.7e308, 0.0]]
    batch = post(server.url, f"/models/{name}/predictions", rows)
    assert batch.status_code == 200, batch.text
    assert [p["is_anomaly"] for p in batch.json()["predictions"]] == [True, True, True]
    for row, answer in zip(rows, batch.json()["predictions"], strict=True):
        single = post(server.url, f"/models/{name}/prediction", row)
        assert single.status_code == 200, single.text
        assert single.json()["is_anomaly"] is True
        assert single.json()["anomaly_score"] == answer["anomaly_score"]
