"""Offline drift: PSI on the reference bins, KS and Wasserstein equal to scipy.stats, the flags
and the plot."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from service.drift import offline, reference
from service.drift.binning import SCORE, counts
from service.drift.psi import psi_of_counts


@pytest.fixture(scope="module")
def ref() -> dict:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(0, 1, 3000), rng.uniform(0, 10, 3000)])
    return reference.build(X, ["a", "b"], np.abs(X[:, 0]))


def current(shift_b: float, n: int = 2000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(0, 1, n), rng.uniform(0, 10, n) + shift_b])


def test_ks_and_wasserstein_are_scipy_s_on_the_same_data(ref):
    Y = current(shift_b=1.5)
    report = offline.compare(ref, Y, ["a", "b"], np.abs(Y[:, 0]))
    sample = np.asarray(ref["sample"]["rows"])
    ref_scores = np.asarray(ref["sample"]["scores"])
    pairs = [(Y[:, 0], sample[:, 0]), (Y[:, 1], sample[:, 1]), (np.abs(Y[:, 0]), ref_scores)]
    assert [c.name for c in report.columns] == ["a", "b", SCORE]
    for col, (new, old) in zip(report.columns, pairs, strict=True):
        ks = stats.ks_2samp(new, old)
        assert col.ks_statistic == ks.statistic and col.ks_pvalue == ks.pvalue
        assert col.wasserstein == stats.wasserstein_distance(new, old)


def test_psi_uses_the_reference_bins_and_the_one_formula(ref):
    Y = current(shift_b=1.5)
    report = offline.compare(ref, Y, ["a", "b"])
    for col, sketch, j in zip(report.columns, ref["features"], (0, 1), strict=True):
        c = counts(sketch["edges"], Y[:, j])
        assert col.counts == c.tolist()
        assert col.psi == psi_of_counts(c, sketch["shares"])


def test_only_the_shifted_feature_is_flagged(ref):
    report = offline.compare(ref, current(shift_b=3.0), ["a", "b"])
    assert report.drifted == ["b"]
    a, b = report.columns
    assert a.psi < 0.1 < 0.2 < b.psi
    table = report.table()
    assert "drifted: b" in table and table.count("DRIFT") == 1
    same = offline.compare(ref, current(shift_b=0.0), ["a", "b"])
    assert same.drifted == [] and same.table().endswith("no drift")


def test_columns_are_matched_by_name_and_a_missing_one_is_named(ref):
    Y = current(shift_b=3.0)
    swapped = offline.compare(ref, Y[:, ::-1], ["b", "a"])
    assert [c.psi for c in swapped.columns] == [
        c.psi for c in offline.compare(ref, Y, ["a", "b"]).columns
    ]
    with pytest.raises(ValueError, match=r"no column for features \['b'\]"):
        offline.compare(ref, Y[:, :1], ["a"])


def test_the_plot_is_written(ref, tmp_path):
    report = offline.compare(ref, current(shift_b=3.0), ["a", "b"], np.ones(2000))
    out = tmp_path / "drift.png"
    fig = offline.plot(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()][1].startswith("b: PSI")
