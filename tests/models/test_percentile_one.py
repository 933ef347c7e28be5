"""``Model.percentile_one`` (the single-row hot path's metric) is exactly the vectorised
``Model.percentile`` of that one score, for scores inside, at the edges of and far beyond the
training scores, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.data.dataset import load_csv
from service.models import artifact
from service.models.loaded import Model
from service.training.trainer import train


@pytest.fixture(scope="module")
def models(model_path, data_dir) -> dict[str, Model]:
    """The session's iforest, and an HBOS whose histogram scores repeat (runs of equal
    training-score quantiles: the tie branch)."""
    X = load_csv(data_dir / "train.csv").X
    hbos = Model(train(X, ["mean", "sd"], kind="hbos", params={"n_bins": 5}, seed=1))
    return {"iforest": Model(artifact.load(model_path)), "hbos": hbos}


def scores_for(model: Model) -> st.SearchStrategy[float]:
    q = np.asarray(model.detector.calibration.quantiles)
    lo, hi = float(q[0]), float(q[-1])
    span = hi - lo or 1.0
    quantile = st.sampled_from(q.tolist())
    return st.one_of(
        st.floats(lo - span, hi + span),  # around the training range
        st.floats(lo - 1e6 * span, hi + 1e6 * span),  # far beyond it
        st.floats(allow_nan=False),  # anything, infinities included
        quantile,  # exactly a stored quantile
        quantile.map(lambda v: float(np.nextafter(v, np.inf))),  # just above one
        quantile.map(lambda v: float(np.nextafter(v, -np.inf))),  # just below one
    )


@pytest.mark.parametrize("kind", ["iforest", "hbos"])
def test_percentile_one_is_the_vectorised_percentile(models, kind):
    model = models[kind]
    q = np.asarray(model.detector.calibration.quantiles)
    if kind == "hbos":
        assert len(np.unique(q)) < len(q) / 2  # the ties this kind is here for

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(scores_for(model))
    def check(score: float) -> None:
        expected = model.percentile(np.array([score]))[0]
        assert model.percentile_one(score) == expected, (score, expected)
        assert 0.0 <= expected <= 1.0

    check()
    # The edges, by hand: below, at and above the training scores.
    for score in (q[0] - 1, q[0], q[-1], q[-1] + 1, -np.inf, np.inf):
        assert model.percentile_one(float(score)) == model.percentile(np.array([score]))[0]
