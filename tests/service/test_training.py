import json
import subprocess
import sys

import numpy as np
import pytest
import sklearn

from service.data.dataset import load_csv
from service.models import artifact
from service.training.trainer import TrainingParams, train, train_from_csv
from tests.support import REPO, reference_forest


def test_artifact_metadata_describes_the_model(tmp_path, data_dir):
    out = tmp_path / "m.joblib"
    params = TrainingParams(n_estimators=50, contamination=0.05, random_state=3)
    model = train_from_csv(data_dir / "train.csv", out, params)
    loaded = artifact.load(out)
    meta = loaded.metadata
    est = reference_forest(out, load_csv(data_dir / "train.csv").X)

    assert meta == model.metadata
    assert meta["feature_names"] == ["mean", "sd"]
    assert meta["n_features"] == 2
    assert meta["n_training_rows"] == 2000
    assert meta["params"]["n_estimators"] == 50
    assert meta["params"]["contamination"] == 0.05
    assert meta["kind"] == "iforest"
    assert meta["seed"] == 3
    assert meta["library_versions"]["scikit-learn"] == sklearn.__version__
    assert meta["threshold"] == -est.offset_
    assert meta["info"]["max_samples_effective"] == est.max_samples_
    assert len(meta["version"]) == 12
    # The threshold sits at the contamination quantile of the training scores.
    assert meta["training_anomaly_ratio"] == pytest.approx(0.05, abs=0.002)
    stats = meta["training_scores"]
    assert 0 < stats["min"] <= stats["p50"] <= stats["max"] <= 1
    manifest = json.loads(artifact.manifest_path(out).read_text())
    assert manifest["sha256"] == artifact.file_sha256(out)
    assert manifest["metadata"] == meta


def test_version_is_a_content_hash(data_dir):
    X = np.loadtxt(data_dir / "train.csv", delimiter=",", skiprows=1)
    a = train(X, ["mean", "sd"], TrainingParams(n_estimators=20))
    b = train(X, ["mean", "sd"], TrainingParams(n_estimators=20))
    c = train(X, ["mean", "sd"], TrainingParams(n_estimators=20, random_state=1))
    assert a.version == b.version
    assert a.version != c.version


def test_a_failed_write_leaves_the_old_artifact_in_place(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "m.joblib"
    first = train_from_csv(data_dir / "train.csv", out, TrainingParams(n_estimators=10))
    before = out.read_bytes()
    X = np.loadtxt(data_dir / "train.csv", delimiter=",", skiprows=1)
    second = train(X, ["mean", "sd"], TrainingParams(n_estimators=30))

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"half an artifact")
        raise OSError("disk full")

    monkeypatch.setattr(artifact.joblib, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        artifact.save(second, out)
    assert out.read_bytes() == before
    assert artifact.load(out).version == first.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.joblib", "m.joblib.json"]


def run_train(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "service", "train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_trains_and_reports(tmp_path, data_dir):
    out = tmp_path / "cli.joblib"
    proc = run_train(
        "--data", str(data_dir / "train.csv"), "--out", str(out), "--n-estimators", "20"
    )
    assert proc.returncode == 0, proc.stderr
    meta = artifact.load(out).metadata
    assert (
        f"trained iforest model {meta['version']} on 2000 rows of 2 features (mean, sd)"
        in proc.stdout
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "data file not found"),
        ("a,b\n1,x\n", "column 'b': 'x' is not numeric"),
        ("a,b\n" + "1,2\n" * 12 + "1,nan\n", "NaN is not allowed"),
        ("a,b\n1,2\n2,3\n", "at least 10 are needed"),
    ],
)
def test_cli_explains_bad_data(tmp_path, content, message):
    data = tmp_path / "bad.csv"
    if content is not None:
        data.write_text(content)
    proc = run_train("--data", str(data), "--out", str(tmp_path / "m.joblib"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m.joblib").exists()


def test_cli_rejects_bad_params(tmp_path, data_dir):
    proc = run_train("--data", str(data_dir / "train.csv"), "--contamination", "0.9")
    assert proc.returncode == 2
    assert "contamination" in proc.stderr and "(0, 0.5]" in proc.stderr
