"""The front door: state is plain data that serves without PyOD or scikit-learn, the scaler is
applied to raw rows, calibration, subsampling and progress."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyod.models.ecod import ECOD
from pyod.models.knn import KNN
from sklearn.preprocessing import MinMaxScaler

from service.detectors import detector, table
from service.detectors.calibration import PERCENTILE_GRID, Calibration

ROOT = Path(__file__).resolve().parents[2]
PLAIN = (np.ndarray, int, float, str, bool, type(None), np.integer, np.floating)


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, PLAIN) and not (
        isinstance(value, np.ndarray) and value.dtype == object
    )


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(300, 3))


@pytest.fixture(scope="module")
def states(X) -> dict:
    params = {"autoencoder": {"max_iter": 20}, "iforest": {"n_estimators": 20}}
    return {k: detector.fit(k, X, params.get(k, {}), seed=1) for k in table.names()}


def test_every_state_is_plain_data(states) -> None:
    for kind, state in states.items():
        assert _plain(state), kind


def test_states_load_and_score_without_pyod_or_sklearn(tmp_path, X, states) -> None:
    """Serving imports neither PyOD nor scikit-learn (nor numba): a child process that cannot
    import them loads every state and reproduces the scores."""
    Q = np.vstack([X[:5], X[:5] * 4])
    expected = {k: detector.load(s).score(Q) for k, s in states.items()}
    blob = tmp_path / "states.pkl"
    blob.write_bytes(pickle.dumps((states, Q, expected)))
    code = f"""
import pickle, sys
for banned in ("pyod", "sklearn", "numba", "fastapi", "prometheus_client"):
    sys.modules[banned] = None
import numpy as np
from service.detectors import detector
states, Q, expected = pickle.load(open({str(blob)!r}, "rb"))
for kind, state in states.items():
    got = detector.load(state).score(Q)
    assert np.array_equal(got, expected[kind]), kind
print("ok", len(states))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {len(states)}"


def test_a_scaler_is_fitted_on_training_rows_and_applied_to_raw_rows(X) -> None:
    raw = X * [1.0, 100.0, 0.01] + [0.0, 5e3, -2.0]
    state = detector.fit("knn", raw, ["scaler=minmax", "n_neighbors=7"])
    served = detector.load(state)
    scaler = MinMaxScaler().fit(raw)
    ref = KNN(n_neighbors=7, algorithm="ball_tree").fit(scaler.transform(raw))
    Q = raw[:20] * 1.5
    np.testing.assert_allclose(
        served.score(Q), ref.decision_function(scaler.transform(Q)), rtol=1e-9, atol=1e-12
    )
    assert served.threshold == ref.threshold_


def test_ecod_scores_a_row_the_same_in_any_batch(X) -> None:
    """PyOD itself gives a row different ECOD scores in different batches; Vigil does not."""
    served = detector.load(detector.fit("ecod", X))
    ref = ECOD().fit(X)
    batch = np.vstack([X[:1] + 0.1, np.full((50, 3), 8.0)])
    alone = served.score(batch[:1])[0]
    assert served.score(batch)[0] == alone
    assert ref.decision_function(batch[:1])[0] == pytest.approx(alone, rel=1e-12)
    assert abs(ref.decision_function(batch)[0] - alone) > 1e-3  # PyOD's batch effect


def test_percentiles_of_scores_among_training_scores() -> None:
    scores = np.random.default_rng(0).exponential(size=1000)
    cal = Calibration.from_training(scores, threshold=2.0)
    probe = np.array([-1.0, scores.min(), np.median(scores), scores.max(), 50.0])
    p = cal.percentile(probe)
    assert p[0] == 0.0 and p[-1] == 100.0
    assert p[2] == pytest.approx(50.0, abs=0.1)
    assert p[3] == 100.0
    grid = np.sort(np.r_[scores, np.linspace(-1, 10, 500)])
    assert np.all(np.diff(cal.percentile(grid)) >= 0)
    share_below = (scores[:, None] <= grid[None]).mean(axis=0) * 100
    assert np.max(np.abs(cal.percentile(grid) - share_below)) < 0.5
    np.testing.assert_array_equal(cal.is_anomaly(np.array([1.9, 2.0, 2.1])), [False, False, True])
    # One training score repeated: its percentile is the middle of its run.
    flat = Calibration.from_training(np.r_[np.zeros(80), np.ones(20)], threshold=0.5)
    assert flat.percentile(np.array([0.0]))[0] == pytest.approx(40.0, abs=0.2)
    assert PERCENTILE_GRID.shape == (1001,)


def test_max_train_rows_fits_a_seeded_subsample_and_says_so() -> None:
    X = np.random.default_rng(5).normal(size=(3000, 2))
    messages: list[str] = []
    state = detector.fit("lof", X, ["max_train_rows=500"], seed=9, progress=messages.append)
    assert state["n_training_rows"] == 3000 and state["n_rows_fitted"] == 500
    assert state["detector"]["X_train"].shape == (500, 2)
    assert (
        messages[0] == "lof: fitting on a random subsample of 500 of 3000 rows (max_train_rows=500)"
    )
    assert messages[1] == "lof: fitting 500 rows x 2 features"
    assert messages[-1].startswith("lof: fitted in ")
    again = detector.fit("lof", X, ["max_train_rows=500"], seed=9)
    np.testing.assert_array_equal(again["detector"]["X_train"], state["detector"]["X_train"])
    other = detector.fit("lof", X, ["max_train_rows=500"], seed=10)
    assert not np.array_equal(other["detector"]["X_train"], state["detector"]["X_train"])
    assert detector.resolve_params("ocsvm", {})["max_train_rows"] == 10_000
    assert detector.resolve_params("ecod", {})["max_train_rows"] is None


def test_load_refuses_a_state_of_another_format(states) -> None:
    bad = dict(states["hbos"], format=99)
    with pytest.raises(ValueError, match="format 99"):
        detector.load(bad)


def test_score_refuses_the_wrong_number_of_features(states) -> None:
    with pytest.raises(ValueError, match="3 columns"):
        detector.load(states["pca"]).score(np.zeros((2, 4)))
