from __future__ import annotations

from pathlib import Path

import pytest

from service.data import sample_data
from service.data.dataset import load_csv
from service.training.trainer import TrainingParams, train_from_csv
from tests.support import LiveServer, reference_forest, start_server


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    sample_data.generate(out, train_rows=2000, test_rows=500, anomaly_share=0.04, seed=11)
    return out


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, data_dir) -> Path:
    path = tmp_path_factory.mktemp("models") / "model.joblib"
    train_from_csv(data_dir / "train.csv", path, TrainingParams(n_estimators=100))
    return path


@pytest.fixture(scope="session")
def reference(model_path, data_dir):
    """scikit-learn's IsolationForest that the session model's scores must equal."""
    return reference_forest(model_path, load_csv(data_dir / "train.csv").X)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, model_path) -> LiveServer:
    server = start_server(model_path, tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()
