"""The serving model: exact on both paths, and light (no scikit-learn import to serve)."""

import subprocess
import sys

import numpy as np
import pytest

from service.detectors.compiled_forest import CompiledForest
from service.models import artifact
from service.models.loaded import FAST_PATH_MAX_ROWS, Model
from tests.support import REPO


def test_both_paths_match_predict_and_score_samples(model_path):
    art = artifact.load(model_path)
    model = Model(art)
    est = art.estimator()
    X = np.random.default_rng(3).normal(0, 0.2, (FAST_PATH_MAX_ROWS + 500, 2))
    for rows in (X[:1], X[:100], X):  # the last one goes through scikit-learn
        scores = model.score(rows)
        np.testing.assert_array_equal(scores.anomaly_score, -est.score_samples(rows))
        np.testing.assert_array_equal(scores.is_anomaly, est.predict(rows) == -1)


def test_serving_small_batches_never_imports_sklearn(model_path):
    code = f"""
import sys
import numpy as np
from service.models.store import ModelStore
store = ModelStore()
store.load({str(model_path)!r})
store.model.score(np.zeros((100, 2)))
assert "sklearn" not in sys.modules and "scipy" not in sys.modules, "imported too early"
store.model.score(np.zeros(({FAST_PATH_MAX_ROWS} + 1, 2)))
assert "sklearn" in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("feature", lambda a: a + 1000, "node indices out of range"),
        ("left", lambda a: a * 0 + len(a) + 5, "node indices out of range"),
        ("threshold", lambda a: np.full_like(a, -np.inf), "right child is out of range"),
        ("left", lambda a: a.astype(np.int32), "is not a 1-D"),
    ],
)
def test_a_crafted_forest_state_is_refused(model_path, field, value, message):
    state = artifact.load(model_path).forest.to_state()
    state[field] = value(state[field])
    with pytest.raises(ValueError, match=message):
        CompiledForest.from_state(state)
