"""Run the training notebook headless on small data and check it matches the CLI and serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import requests
from nbclient import NotebookClient

from service.data.dataset import load_csv
from service.models import artifact
from service.models.loaded import Model
from service.models.registry import Registry
from tests.support import REPO, start_server

NOTEBOOK = REPO / "notebooks" / "anomaly_training.ipynb"
KERNEL_NAME = "vigil-notebook-test"
N_ESTIMATORS = 50
KINDS = ("iforest", "lof")


def _kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec for *this* interpreter, in a temp JUPYTER_PATH.

    No user-wide or venv kernel install is needed, and a user's own ``python3`` kernelspec
    (which may point at another Python) cannot be picked up by mistake.
    """
    jupyter = tmp_path / "jupyter"
    spec_dir = jupyter / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Vigil test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no user profile/startup files
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def _with_parameters(nb: nbformat.NotebookNode, **params: object) -> None:
    """Insert a cell after the ``parameters`` cell that overrides it (as papermill does)."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)


@pytest.mark.slow
def test_notebook_trains_the_cli_model_and_it_serves(tmp_path, monkeypatch):
    data_dir, model_path = tmp_path / "data", tmp_path / "models" / "model.joblib"
    registry_dir = tmp_path / "registry"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    _with_parameters(
        nb,
        DATA_DIR=str(data_dir),
        MODEL_PATH=str(model_path),
        TRAIN_ROWS=500,
        TEST_ROWS=200,
        N_ESTIMATORS=N_ESTIMATORS,
        KINDS=KINDS,
        REGISTRY_DIR=str(registry_dir),
    )
    _kernel_env(tmp_path, monkeypatch)
    client = NotebookClient(
        nb,
        timeout=120,
        startup_timeout=60,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # cwd, as in Jupyter
    )
    client.execute()

    # The notebook ran cleanly and drew both figures.
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5, (
        "expected 5 figures (boundary, histogram, evaluation, the two kinds' score maps and"
        f" their score distributions): {len(images)}"
    )
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")

    # It wrote a valid artifact that the service's loader accepts.
    assert (data_dir / "train.csv").is_file() and (data_dir / "test.csv").is_file()
    assert model_path.is_file() and artifact.manifest_path(model_path).is_file()
    model = artifact.load(model_path)
    assert model.metadata["n_features"] == 2
    assert model.metadata["feature_names"] == ["mean", "sd"]
    assert model.metadata["params"]["n_estimators"] == N_ESTIMATORS
    assert model.metadata["n_training_rows"] == 500

    # The CLI trains the same model from the same data and parameters.
    cli_path = tmp_path / "cli" / "model.joblib"
    subprocess.run(
        [
            sys.executable, "-m", "service", "train",
            "--data", str(data_dir / "train.csv"), "--out", str(cli_path),
            "--n-estimators", str(N_ESTIMATORS), "--contamination", "0.02",
            "--random-state", "42",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    cli = artifact.load(cli_path)
    assert cli.metadata["version"] == model.metadata["version"]
    assert cli.metadata["threshold"] == model.metadata["threshold"]
    assert cli.metadata["params"] == model.metadata["params"]
    assert cli.metadata["training_data"] == model.metadata["training_data"] == "train.csv"

    # Both kinds were registered, once each, as the default of their own model; each loads
    # from the registry as the service loads it, flags its contamination of the training rows
    # and the labelled anomalies. The iforest is the very model the notebook saved (same
    # data, parameters and seed).
    registry = Registry(registry_dir)
    assert sorted(m.name for m in registry.snapshot()) == [f"notebook-{k}" for k in KINDS]
    test = load_csv(data_dir / "test.csv", label_column="label")
    registered = {}
    for kind in KINDS:
        info = registry.model(f"notebook-{kind}")
        assert info.numbers == (1,) and dict(info.aliases) == {"default": 1}
        version = info.default
        assert version.kind == kind
        served = Model(artifact.load(version.path), source=version.path, name=info.name)
        assert served.kind == kind and served.metadata["n_training_rows"] == 500
        assert served.metadata["params"]["contamination"] == 0.02
        assert served.metadata["training_anomaly_ratio"] == pytest.approx(0.02, abs=0.005)
        scores = served.score(test.X)
        assert scores.is_anomaly[test.labels].all()  # the sample data's anomalies are far out
        assert scores.is_anomaly[~test.labels].mean() < 0.1
        assert f"{info.name}@1 ({kind}) loads from" in text
        registered[kind] = served
    assert text.count("scores the test rows exactly as in memory") == len(KINDS)
    assert registered["iforest"].version == model.version
    assert registered["lof"].version != model.version

    # The real service loads the notebook's artifact and answers with its version, and serves
    # the registered models by name beside it.
    server = start_server(model_path, tmp_path / "logs", env={"VIGIL_REGISTRY": str(registry_dir)})
    try:
        resp = requests.post(f"{server.url}/prediction?score=true", json=[0.1, 0.1], timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_version"] == model.version
        for kind, served in registered.items():
            url = f"{server.url}/models/notebook-{kind}/prediction?score=true"
            resp = requests.post(url, json=[0.1, 0.1], timeout=10)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert (body["model"], body["kind"]) == (f"notebook-{kind}", kind)
            assert body["model_version"] == served.version
            assert body["anomaly_score"] == served.score(np.array([[0.1, 0.1]])).anomaly_score[0]
    finally:
        server.stop()
