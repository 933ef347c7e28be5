"""The serving model: exact at every batch size, and light (no scikit-learn import to serve)."""

import subprocess
import sys

import numpy as np
import pytest

from service.detectors.compiled_forest import CompiledForest
from service.models import artifact
from service.models.loaded import Model
from tests.support import REPO


def test_every_batch_size_matches_predict_and_score_samples(model_path, reference):
    model = Model(artifact.load(model_path))
    X = np.random.default_rng(3).normal(0, 0.2, (5000, 2))
    for rows in (X[:1], X[:100], X):
        scores = model.score(rows)
        np.testing.assert_array_equal(scores.anomaly_score, -reference.score_samples(rows))
        np.testing.assert_array_equal(scores.is_anomaly, reference.predict(rows) == -1)
    one = [model.score_one(np.ascontiguousarray(row[None, :])) for row in X[:50]]
    assert [s for _, s in one] == (-reference.score_samples(X[:50])).tolist()
    assert [a for a, _ in one] == (reference.predict(X[:50]) == -1).tolist()


def test_serving_never_imports_sklearn_or_pyod(model_path, tmp_path):
    """A worker (the whole app, every route) serving the iforest imports no scikit-learn,
    PyOD, SciPy or numba: each costs tens of MB per worker."""
    code = f"""
import sys
import numpy as np
from service.api.app import create_app
from service.settings import Settings
app = create_app(Settings(model_path={str(model_path)!r}, registry={str(tmp_path)!r}))
store = app.state.store
store.load()
store.model.score(np.zeros((1, 2)))
store.model.score(np.zeros((20_000, 2)))
heavy = {{"sklearn", "pyod", "scipy", "numba"}} & {{m.split(".")[0] for m in sys.modules}}
assert not heavy, heavy
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
    state = dict(artifact.load(model_path).detector_state()["detector"])
    state[field] = value(state[field])
    with pytest.raises(ValueError, match=message):
        CompiledForest.from_state(state)
