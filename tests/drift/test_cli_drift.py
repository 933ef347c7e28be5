"""python -m service drift: the table, the exit status, a stored or an on-the-fly
reference, and the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.cli import drift as cli_drift
from service.data.dataset import load_csv
from service.drift import reference
from service.models import artifact
from service.models.loaded import Model
from tests.support import REPO


def write_csv(path: Path, names: list[str], X: np.ndarray) -> Path:
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in X]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def train(data_dir):
    return load_csv(data_dir / "train.csv")


@pytest.fixture(scope="module")
def with_reference(model_path, train) -> Path:
    """The session's model: training stores the reference sketch, from its rows and scores."""
    art = artifact.load(model_path)
    scores = Model(art).score(train.X).anomaly_score
    assert art.metadata["drift_reference"] == reference.build(train.X, train.feature_names, scores)
    return model_path


@pytest.fixture(scope="module")
def without_reference(tmp_path_factory, model_path) -> Path:
    """The session's model as a model trained before drift sketches would be stored."""
    art = artifact.load(model_path)
    meta = {k: v for k, v in art.metadata.items() if k != "drift_reference"}
    out = tmp_path_factory.mktemp("no-reference") / "model.joblib"
    artifact.save(artifact.ModelArtifact(meta, art.state_bytes), out)
    return out


@pytest.fixture(scope="module")
def drifted(tmp_path_factory, train) -> Path:
    """The training rows with `sd` moved up by two standard deviations."""
    X = train.X.copy()
    X[:, 1] += 2 * X[:, 1].std()
    return write_csv(tmp_path_factory.mktemp("drifted") / "drifted.csv", train.feature_names, X)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli_drift.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_training_like_data_exits_0(capsys, with_reference, data_dir):
    code, out, _ = run(
        capsys, "--data", data_dir / "test.csv", "--model", with_reference, "--exclude", "label"
    )
    assert code == 0
    assert out.splitlines()[-1] == "no drift"
    assert [line.split()[0] for line in out.splitlines()[3:6]] == ["mean", "sd", "__score__"]


def test_a_drifted_feature_is_flagged_and_exits_1(capsys, with_reference, drifted, tmp_path):
    plot = tmp_path / "drift.png"
    code, out, _ = run(capsys, "--data", drifted, "--model", with_reference, "--plot", plot)
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert rows["sd"].endswith("DRIFT") and not rows["mean"].endswith("DRIFT")
    assert float(rows["sd"].split()[1]) > 0.2 > float(rows["mean"].split()[1])
    assert "drifted: sd" in out and plot.stat().st_size > 0


def test_a_reference_built_from_the_training_csv_matches_the_stored_one(
    capsys, without_reference, with_reference, drifted, data_dir
):
    _, stored, _ = run(capsys, "--data", drifted, "--model", with_reference)
    code, built, _ = run(
        capsys,
        "--data", drifted, "--model", without_reference,
        "--reference-data", data_dir / "train.csv",
    )  # fmt: skip
    assert code == 1
    assert built.splitlines()[1:] == stored.splitlines()[1:]


def test_a_model_without_a_reference_is_refused_with_what_to_do(capsys, without_reference, drifted):
    code, out, err = run(capsys, "--data", drifted, "--model", without_reference)
    assert code == 2 and out == ""
    assert "no drift reference" in err and "--reference-data" in err


def test_unusable_data_or_model_exit_2_naming_the_problem(capsys, with_reference, tmp_path):
    bad = write_csv(tmp_path / "other.csv", ["mean", "other"], np.ones((3, 2)))
    code, _, err = run(capsys, "--data", bad, "--model", with_reference)
    assert code == 2 and "no column for features ['sd']" in err
    code, _, err = run(capsys, "--data", tmp_path / "missing.csv", "--model", with_reference)
    assert code == 2 and "data file not found" in err
    code, _, err = run(capsys, "--data", bad, "--model", tmp_path / "nope.joblib")
    assert code == 2 and "nope.joblib" in err


def test_it_runs_as_a_module(with_reference, drifted):
    proc = subprocess.run(
        [sys.executable, "-m", "service", "drift", "--data", str(drifted), "--model",
         str(with_reference)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "drifted: sd" in proc.stdout
