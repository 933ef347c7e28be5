"""Helpers for tests that run real processes: free ports, a live Vigil server, polling."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import requests

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class LiveServer:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_server(
    model_path: Path | str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout: float = 30,
    preexec_fn: Callable[[], None] | None = None,
) -> LiveServer:
    """Start ``python -m service serve`` on a free port; wait until live (and ready if asked).

    It serves ``model_path`` and, only when ``env`` names one, ``VIGIL_REGISTRY`` (by default a
    folder that does not exist, so that a ``models/`` folder in the checkout is never served).
    """
    port = free_port()
    full_env = {
        **os.environ,
        "VIGIL_MODEL_PATH": str(model_path),
        "VIGIL_REGISTRY": str(log_dir / "no-registry"),
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_ACCESS_LOG": "false",
        **(env or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"vigil-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    path = "/health/ready" if ready else "/health/live"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        return requests.get(server.url + path, timeout=2).status_code == 200

    try:
        wait_for(up, timeout, f"{server.url}{path}")
    except BaseException:
        server.stop()
        raise
    return server


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Parse a /metrics page into {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=5).text
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def run_tester(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run tester.py as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(REPO / "tester.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_REFERENCES: dict[tuple[str, str], IsolationForest] = {}


def reference_forest(model_path: Path | str, X: np.ndarray) -> IsolationForest:
    """scikit-learn's IsolationForest fitted on ``X`` exactly as the ``iforest`` kind fitted the
    artifact at ``model_path``: its manifest's ``params``, ``random_state`` its ``seed``,
    ``n_jobs=1``. It is what the served scores must equal.

    Fitted independently of ``service.detectors``, then checked to be the same forest: its
    ``score_samples`` on the artifact's probe rows equal the stored ``probe.scores`` negated,
    and its ``offset_`` the stored threshold negated. So a wrong ``X`` or a change in how the
    kind fits fails here, not silently in the tests that compare with it.
    """
    import warnings

    from sklearn.ensemble import IsolationForest

    from service.models import artifact

    art = artifact.load(model_path)
    X = np.ascontiguousarray(X, dtype=np.float64)
    key = (art.sha256 or "", hashlib.sha256(X.tobytes()).hexdigest())
    if key in _REFERENCES:
        return _REFERENCES[key]
    meta = art.metadata
    params = meta["params"]
    assert meta["kind"] == "iforest", meta["kind"]
    # A scaler or a subsample would make X not what the forest was fitted on.
    assert params["scaler"] == "none" and params["max_train_rows"] is None, params
    assert X.shape == (meta["n_training_rows"], meta["n_features"]), X.shape
    est = IsolationForest(
        n_estimators=params["n_estimators"],
        max_samples=params["max_samples"],
        contamination=params["contamination"],
        max_features=params["max_features"],
        bootstrap=params["bootstrap"],
        random_state=meta["seed"],
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # max_samples > rows: clipped, as in training
        est.fit(X)
    probe = meta["probe"]
    np.testing.assert_array_equal(
        est.score_samples(np.asarray(probe["rows"], dtype=np.float64)),
        -np.asarray(probe["scores"], dtype=np.float64),
        err_msg="the reference forest is not the artifact's forest",
    )
    assert -est.offset_ == meta["threshold"], (est.offset_, meta["threshold"])
    _REFERENCES[key] = est
    return est


def write_format_1(path: Path) -> None:
    """Write at ``path`` an artifact as Vigil wrote it before detector kinds and the registry
    (format 1): a pickled scikit-learn IsolationForest beside its compiled forest, and a
    manifest of format 1 whose hash and size match."""
    import json
    import pickle

    import joblib
    import sklearn
    from sklearn.ensemble import IsolationForest

    from service.detectors.compiled_forest import CompiledForest

    X = np.random.default_rng(0).normal(0, 0.05, (200, 2))
    est = IsolationForest(n_estimators=5, random_state=0).fit(X)
    meta = {
        "version": "0123456789ab",
        "feature_names": ["mean", "sd"],
        "n_features": 2,
        "n_training_rows": 200,
        "sklearn_version": sklearn.__version__,
        "offset": float(est.offset_),
        "threshold": float(-est.offset_),
    }
    payload = {
        "format": 1,
        "metadata": meta,
        "forest": CompiledForest.from_estimator(est).to_state(),
        "estimator": pickle.dumps(est),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(payload, path)
    data = path.read_bytes()
    manifest = {
        "format": 1,
        "artifact": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "metadata": meta,
    }
    path.with_name(path.name + ".json").write_text(json.dumps(manifest, indent=2))
