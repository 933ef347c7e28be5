"""The reference sketch: decile edges, shares, ties and constant columns, the sample, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.drift import reference
from service.drift.binning import SCORE, counts


def rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(5, 2, n), rng.exponential(1.0, n)])


def test_continuous_columns_get_ten_bins_of_a_tenth():
    X = rows(5000)
    ref = reference.build(X, ["a", "b"], X.sum(axis=1))
    assert [f["name"] for f in ref["features"]] == ["a", "b"]
    assert ref["score"]["name"] == SCORE
    for col in [*ref["features"], ref["score"]]:
        assert len(col["edges"]) == 9 and len(col["shares"]) == 10
        assert all(b > a for a, b in zip(col["edges"], col["edges"][1:], strict=False))
        assert col["shares"] == pytest.approx([0.1] * 10, abs=1e-3)
        assert sum(col["shares"]) == pytest.approx(1.0)
    stats = ref["features"][0]["stats"]
    assert stats["mean"] == pytest.approx(X[:, 0].mean())
    assert stats["std"] == pytest.approx(X[:, 0].std())
    assert (stats["min"], stats["max"]) == (X[:, 0].min(), X[:, 0].max())
    assert stats["quantiles"]["0.5"] == pytest.approx(np.median(X[:, 0]))


def test_the_shares_are_the_training_rows_in_each_bin():
    X = rows(1234, seed=3)
    ref = reference.build(X, ["a", "b"], X[:, 0])
    for j, col in enumerate(ref["features"]):
        c = counts(col["edges"], X[:, j])
        assert col["shares"] == pytest.approx(list(c / c.sum()), abs=0)


def test_tied_deciles_merge_and_every_bin_holds_training_rows():
    # 70% zeros, then a few values: the deciles tie at 0 and at the top.
    x = np.array([0.0] * 70 + [1.0] * 15 + [2.0] * 10 + [3.0] * 5)
    col = reference.sketch("x", x)
    assert col["edges"] == [0.0, 1.0, 2.0]
    assert col["shares"] == pytest.approx([0.70, 0.15, 0.10, 0.05])
    # An edge at the maximum would leave an empty top bin: it is dropped.
    col = reference.sketch("y", np.array([0.0] * 15 + [1.0] * 85))
    assert col["edges"] == [0.0] and col["shares"] == pytest.approx([0.15, 0.85])


def test_a_constant_column_has_one_bin():
    col = reference.sketch("c", np.full(50, 7.0))
    assert col["edges"] == [] and col["shares"] == [1.0]
    assert col["stats"]["std"] == 0.0


def test_the_sample_is_every_row_up_to_ten_thousand_then_seeded():
    X = rows(300)
    ref = reference.build(X, ["a", "b"], X[:, 1])
    assert ref["sample"]["rows"] == X.tolist() and ref["sample"]["scores"] == X[:, 1].tolist()
    X = rows(25_000, seed=1)
    scores = X[:, 0] * 2
    ref = reference.build(X, ["a", "b"], scores)
    sample = np.asarray(ref["sample"]["rows"])
    assert sample.shape == (10_000, 2) and ref["n_rows"] == 25_000
    # Distinct training rows with their own scores, and the same ones on every build.
    assert len({tuple(r) for r in sample}) == 10_000
    assert ref["sample"]["scores"] == (sample[:, 0] * 2).tolist()
    assert reference.build(X, ["a", "b"], scores)["sample"] == ref["sample"]


def test_the_sketch_survives_json_unchanged():
    X = rows(500)
    ref = reference.build(X, ["a", "b"], X[:, 0])
    assert json.loads(json.dumps(ref)) == ref
    reference.validate(json.loads(json.dumps(ref)), ["a", "b"])


@pytest.mark.parametrize(
    ("X", "names", "scores", "message"),
    [
        (np.ones((3, 2)), ["a"], np.ones(3), "expected"),
        (np.ones((3, 2)), ["a", "b"], np.ones(2), "2 scores for 3 rows"),
        (np.array([[1.0, np.nan]]), ["a", "b"], np.ones(1), "finite"),
        (np.ones((3, 2)), ["a", "a"], np.ones(3), "duplicate"),
        (np.ones((3, 2)), ["a", SCORE], np.ones(3), "may not be named"),
    ],
)
def test_bad_input_is_refused_with_the_reason(X, names, scores, message):
    with pytest.raises(ValueError, match=message):
        reference.build(X, names, scores)


def test_validate_refuses_another_model_s_or_a_damaged_sketch():
    X = rows(200)
    ref = reference.build(X, ["a", "b"], X[:, 0])
    with pytest.raises(ValueError, match="features"):
        reference.validate(ref, ["a", "c"])
    ref["features"][1]["edges"] = list(reversed(ref["features"][1]["edges"]))
    with pytest.raises(ValueError, match="strictly increasing"):
        reference.validate(ref, ["a", "b"])
    with pytest.raises(ValueError, match="format"):
        reference.validate({"format": 99}, ["a", "b"])
