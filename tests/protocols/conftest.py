"""A live Vigil serving a registry of two models, for the protocol routes' tests.

``sensors`` (the default model, 2 features): version 1 (``default``), version 2
(``champion``, another seed, so other scores) and version 3 (no alias, so not loaded with
``VIGIL_REGISTRY_LOAD=aliased``); ``wide``: an ECOD model of 3 features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from service.models import artifact
from service.models.registry import Registry
from service.training.trainer import train
from tests.support import LiveServer, start_server

ADMIN_TOKEN = "protocol-admin-token"
BODY_LIMIT = 1024 * 1024  # VIGIL_MAX_BODY_BYTES: 10,000 rows of 2 features fit, as JSON too


@dataclass
class Served:
    server: LiveServer
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        """What tritonclient takes: host:port, no scheme."""
        return self.url.removeprefix("http://")

    def predictions(self, rows, path: str = "/predictions") -> dict:
        """Vigil's own JSON answer for ``rows``, with the scores."""
        answer = requests.post(f"{self.url}{path}?score=true", json=rows, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


def build_registry(root: Path, model_path: Path) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(0.1, 0.1, (400, 2))
    registry = Registry(root)
    registry.register("sensors", lambda p: artifact.save(artifact.load(model_path), p))
    for seed in (7, 8):
        other = train(X, ["mean", "sd"], {"n_estimators": 40}, kind="iforest", seed=seed)
        registry.register("sensors", lambda p, a=other: artifact.save(a, p))
    registry.promote("sensors", 2, "champion")
    wide = train(rng.normal(0, 1, (300, 3)), ["a", "b", "c"], None, kind="ecod", seed=0)
    registry.register("wide", lambda p: artifact.save(wide, p))


def serve_registry(root: Path, logs: Path) -> LiveServer:
    return start_server(
        root / "no-lone-model.joblib",
        logs,
        env={
            "VIGIL_REGISTRY": str(root),
            "VIGIL_DEFAULT_MODEL": "sensors",
            "VIGIL_ADMIN_TOKEN": ADMIN_TOKEN,
            "VIGIL_MAX_BODY_BYTES": str(BODY_LIMIT),
        },
    )


@pytest.fixture(scope="session")
def served(tmp_path_factory, model_path) -> Served:
    root = tmp_path_factory.mktemp("protocol-registry")
    build_registry(root, model_path)
    server = serve_registry(root, tmp_path_factory.mktemp("protocol-logs"))
    yield Served(server, root)
    server.stop()
