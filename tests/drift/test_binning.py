"""Serving-side binning: right-closed bins, one row and a batch agreeing on every input."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from service.drift import binning, reference

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def test_bins_are_right_closed_like_prometheus_le():
    edges = [1.0, 2.0, 3.0]
    values = [-10.0, 1.0, 1.0000001, 2.0, 2.5, 3.0, 3.5]
    expected = [0, 0, 1, 1, 2, 2, 3]
    assert [binning.bin_of(edges, v) for v in values] == expected
    assert binning.bins_of(edges, np.array(values)).tolist() == expected
    assert binning.counts(edges, np.array(values)).tolist() == [2, 2, 2, 1]
    # No edges (a constant training column): one bin for everything.
    assert binning.bin_of([], 5.0) == 0
    assert binning.counts([], np.array([1.0, 2.0])).tolist() == [2]


@given(
    st.lists(finite, max_size=12, unique=True).map(sorted),
    st.lists(finite, min_size=1, max_size=50),
)
def test_one_value_and_a_batch_agree(edges, values):
    batch = binning.bins_of(edges, np.array(values, dtype=np.float64))
    assert batch.tolist() == [binning.bin_of(edges, v) for v in values]


def test_model_bins_row_and_batch_counts_agree():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 3))
    scores = rng.uniform(size=2000)
    ref = reference.build(X, ["a", "b", "c"], scores)
    bins = binning.ModelBins(ref)
    assert bins.feature_names == ["a", "b", "c"] and bins.n_bins == [10, 10, 10]
    Y = rng.normal(0.5, 1.0, size=(300, 3))
    per_row = np.zeros((3, 10), dtype=int)
    for x in Y.tolist():
        for j, b in enumerate(bins.row(x)):
            per_row[j, b] += 1
    assert [c.tolist() for c in bins.batch_counts(Y)] == per_row.tolist()
    s = rng.uniform(size=300)
    assert (
        bins.score_counts(s).tolist()
        == np.bincount([bins.score(v) for v in s.tolist()], minlength=bins.score_n_bins).tolist()
    )
    # The training rows themselves fall in the bins in the reference shares.
    for j, c in enumerate(bins.batch_counts(X)):
        assert (c / 2000).tolist() == ref["features"][j]["shares"]
    assert (bins.score_counts(scores) / 2000).tolist() == ref["score"]["shares"]
