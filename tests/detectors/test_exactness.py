"""Every kind's served score against its library's own, over random data and parameters.

For each kind, hypothesis draws the training rows (shape, duplicated rows, a constant column,
coarse lattice values where the kind's reference is tie-free), valid parameters (the kind's
own, contamination, scaler) and query batches of 1..n rows (training rows and new ones). The
detector is fitted through ``service.detectors.detector.fit``, saved state is pickled and
loaded back, and its scores must equal the library's (``references.py``) to 1e-9 relative,
its threshold must be the library's exactly and ``is_anomaly`` must be ``score > threshold``.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.detectors import detector, table
from service.detectors.base import FitError
from tests.detectors.references import reference

# Kinds whose reference depends on which of two equidistant training rows is a neighbour or
# nearest centre: their data is drawn without lattice ties.
TIE_SENSITIVE = {"lof", "cblof"}
# Kinds whose library cannot fit a constant column (singular covariance) get none.
NO_CONSTANT_COLUMN = {"mcd"}

EXAMPLES = {"autoencoder": 8, "ocsvm": 15, "iforest": 15}


@st.composite
def training_data(draw, kind: str) -> np.ndarray:
    n = draw(st.integers(12, 60))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n, d)) * draw(st.sampled_from([1e-3, 1.0, 50.0]))
    X += draw(st.sampled_from([0.0, 3.0, -1e3]))
    if kind not in TIE_SENSITIVE and draw(st.booleans()):
        X = np.round(X, 1)  # lattice: many ties
    if draw(st.booleans()):  # duplicated rows
        k = draw(st.integers(1, n // 3))
        X[rng.integers(0, n, k)] = X[rng.integers(0, n, k)]
    if kind not in NO_CONSTANT_COLUMN and d > 1 and draw(st.booleans()):
        X[:, draw(st.integers(0, d - 1))] = draw(st.sampled_from([0.0, 0.1, -7.25]))
    return X


def own_params(draw, kind: str, X: np.ndarray) -> dict:
    n, d = X.shape
    if kind == "iforest":
        return {
            "n_estimators": draw(st.integers(1, 30)),
            "max_samples": draw(st.one_of(st.just("auto"), st.integers(2, n), st.floats(0.2, 1.0))),
            "max_features": draw(st.one_of(st.just(1.0), st.integers(1, d))),
            "bootstrap": draw(st.booleans()),
        }
    if kind == "hbos":
        return {
            "n_bins": draw(st.one_of(st.just("auto"), st.integers(3, 20))),
            "alpha": draw(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)),
            "tol": draw(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)),
        }
    if kind == "knn":
        return {
            "n_neighbors": draw(st.integers(1, min(10, n - 1))),
            "method": draw(st.sampled_from(["largest", "mean", "median"])),
            "p": draw(st.sampled_from([1.0, 2.0, 3.0])),
        }
    if kind == "lof":
        return {
            "n_neighbors": draw(st.integers(1, min(25, n - 1))),
            "p": draw(st.sampled_from([1.0, 2.0])),
        }
    if kind == "pca":
        nc = draw(st.one_of(st.none(), st.integers(1, d)))
        return {
            "n_components": nc,
            "n_selected_components": draw(st.one_of(st.none(), st.integers(1, nc or d))),
            "weighted": draw(st.booleans()),
            "standardization": draw(st.booleans()),
        }
    if kind == "ocsvm":
        return {
            "kernel": draw(st.sampled_from(["rbf", "linear", "poly", "sigmoid"])),
            "nu": draw(st.floats(0.05, 0.9)),
            "gamma": draw(st.one_of(st.sampled_from(["auto", "scale"]), st.floats(0.01, 2.0))),
            "degree": draw(st.integers(1, 3)),
            "coef0": draw(st.floats(-1.0, 1.0)),
        }
    if kind == "mcd":
        return {
            "support_fraction": draw(st.one_of(st.none(), st.floats(0.6, 1.0))),
            "assume_centered": draw(st.booleans()),
        }
    if kind == "cblof":
        return {
            "n_clusters": draw(st.integers(2, 6)),
            "alpha": draw(st.floats(0.5, 0.95)),
            "beta": draw(st.floats(1.5, 8.0)),
            "use_weights": draw(st.booleans()),
        }
    if kind == "autoencoder":
        return {
            "hidden_layer_sizes": draw(
                st.one_of(st.just("auto"), st.lists(st.integers(1, 6), min_size=1, max_size=3))
            ),
            "activation": draw(st.sampled_from(["tanh", "relu", "logistic", "identity"])),
            "max_iter": draw(st.integers(2, 20)),
        }
    return {}


def check_kind(kind: str, data) -> None:
    X = data.draw(training_data(kind), label="X")
    given = own_params(data.draw, kind, X)
    given["contamination"] = data.draw(st.floats(0.01, 0.5), label="contamination")
    given["scaler"] = data.draw(st.sampled_from(["none", "standard", "minmax", "robust"]))
    seed = data.draw(st.integers(0, 1000), label="seed")
    params = detector.resolve_params(kind, given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            state = detector.fit(kind, X, params, seed=seed)
        except FitError:
            # The library refuses too (e.g. CBLOF cannot split large from small clusters), or
            # its threshold is not a number (e.g. PCA on all-constant features).
            try:
                _, threshold = reference(kind, X, params, seed)
            except ValueError:
                threshold = float("nan")
            assert not np.isfinite(threshold)
            assume(False)
        ref_scores, ref_threshold = reference(kind, X, params, seed)
    served = detector.load(pickle.loads(pickle.dumps(state)))  # state is plain data

    rng = np.random.default_rng(seed)
    n_new = data.draw(st.integers(0, 8), label="new rows")
    picks = data.draw(st.lists(st.integers(0, len(X) - 1), min_size=0, max_size=8))
    spread = X.std(axis=0) + 1.0
    new = X.mean(axis=0) + rng.normal(size=(n_new, X.shape[1])) * spread * 3
    Q = np.ascontiguousarray(np.vstack([X[picks], new]))
    assume(len(Q) >= 1)

    assert served.threshold == ref_threshold
    got = served.score(Q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref_scores(Q)
    assert got.shape == (len(Q),) and got.dtype == np.float64
    scale = max(1.0, float(np.abs(expected).max()), abs(ref_threshold))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10 * scale)
    flags = served.is_anomaly(got)
    np.testing.assert_array_equal(flags, got > ref_threshold)
    clear = np.abs(expected - ref_threshold) > 1e-9 * scale
    np.testing.assert_array_equal(flags[clear], (expected > ref_threshold)[clear])
    # A row's score never depends on its batch-mates: each row alone scores the same, within
    # the same tolerance (BLAS may sum a one-row product in another order than a batch's), and
    # bit for bit for a kind whose one-row requests the server scores together
    # (rows_independent, service/serving/row_batcher.py).
    alone = np.array([served.score(Q[i : i + 1])[0] for i in range(len(Q))])
    np.testing.assert_allclose(alone, got, rtol=1e-9, atol=1e-10 * scale)
    if served.rows_independent:
        np.testing.assert_array_equal(alone, got)


@pytest.mark.parametrize("kind", table.names())
def test_served_scores_match_the_library(kind: str) -> None:
    @settings(
        max_examples=EXAMPLES.get(kind, 25),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(data=st.data())
    def run(data) -> None:
        check_kind(kind, data)

    run()


@pytest.mark.parametrize("kind", [k for k in table.names() if table.get(k).rows_independent])
def test_batched_rows_score_as_alone_bit_for_bit(kind: str) -> None:
    """The kinds whose concurrent one-row requests the server scores in one call: wide rows
    too (reductions over many features), and batches of up to 40 rows."""

    @settings(max_examples=10, deadline=None, database=None)
    @given(
        d=st.integers(1, 40),
        n_rows=st.integers(2, 40),
        seed=st.integers(0, 2**32 - 1),
        scaler=st.sampled_from(["none", "standard", "minmax", "robust"]),
    )
    def run(d: int, n_rows: int, seed: int, scaler: str) -> None:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(60, d)) * rng.uniform(0.01, 50, size=d)
        params = detector.resolve_params(kind, {"scaler": scaler})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            served = detector.load(detector.fit(kind, X, params, seed=seed % 1000))
        Q = np.ascontiguousarray(
            np.vstack([X[: n_rows // 2], rng.normal(size=(n_rows - n_rows // 2, d)) * 10])
        )
        batch = served.score(Q)
        alone = np.array([served.score(Q[i : i + 1])[0] for i in range(len(Q))])
        np.testing.assert_array_equal(alone, batch)

    run()
