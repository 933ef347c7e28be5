"""Exactness tests for the compiled forest against sklearn's IsolationForest.

Every check compares the compiled fast path with ``est.score_samples`` / ``est.predict`` of
the original estimator (never with itself): scores within 1e-12 (the contract) and, in fact,
bitwise equal; ``anomaly_mask`` identical to ``est.predict(X) == -1`` on every row.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest

from service.detectors.compiled_forest import CompiledForest, anomaly_mask

F32_MAX = float(np.finfo(np.float32).max)
# Smallest float64 that rounds to +inf in float32 (the tie at 2**128 - 2**103 rounds to even,
# i.e. to inf).
F32_OVERFLOW = 2.0**128 - 2.0**103
HUGE = [
    1e30,
    -1e30,
    1e300,
    -1e300,
    F32_MAX,
    -F32_MAX,
    F32_OVERFLOW,
    -F32_OVERFLOW,
    float(np.nextafter(F32_OVERFLOW, 0.0)),
    float(-np.nextafter(F32_OVERFLOW, 0.0)),
    1e-45,
    -1e-45,
    5e-324,
    0.0,
    -0.0,
]


# --------------------------------------------------------------------------------------------
# helpers


def _sk(est: IsolationForest, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's scores and is_anomaly (its float32 cast may warn about overflow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.score_samples(X), est.predict(X) == -1


def _fit(X: np.ndarray, **params) -> IsolationForest:
    with warnings.catch_warnings():
        # "max_samples greater than n_samples" and "low number of bootstrap samples".
        warnings.simplefilter("ignore", UserWarning)
        return IsolationForest(n_jobs=1, **params).fit(X)


def assert_matches(est: IsolationForest, cf: CompiledForest, X: np.ndarray) -> None:
    X = np.ascontiguousarray(X, dtype=np.float64)
    expected, expected_anomaly = _sk(est, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fast path must not warn, even for 1e300
        got = cf.score_samples(X)
    assert got.dtype == np.float64
    assert got.shape == (X.shape[0],)
    diff = np.abs(got - expected)
    worst = int(np.argmax(diff))
    assert diff[worst] <= 1e-12, (
        f"row {worst}: fast {got[worst]!r} vs sklearn {expected[worst]!r}, x={X[worst]!r}"
    )
    np.testing.assert_array_equal(got, expected, err_msg="scores are not bitwise identical")
    for offset in (est.offset_, cf.offset):
        mask = anomaly_mask(got, offset)
        assert mask.dtype == np.bool_
        bad = np.flatnonzero(mask != expected_anomaly)
        assert bad.size == 0, f"is_anomaly differs on rows {bad[:10]} (offset {offset!r})"


def _round_thresholds_to_float32(est: IsolationForest) -> None:
    """Make every split threshold float32-representable, in place (``tree_.threshold`` is a
    writable view of the tree's nodes).

    Fitted thresholds are random float64 values, so a float32 input essentially never equals
    one exactly; with float32 thresholds, ties (``float32(x) == threshold``) and float64
    inputs that *round* onto the threshold do occur, and must go left as in ``Tree.apply``.
    """
    for tree in est.estimators_:
        threshold = tree.tree_.threshold
        threshold[:] = threshold.astype(np.float32).astype(np.float64)


def _tree_features(est: IsolationForest, t: int) -> np.ndarray:
    """Columns of X seen by tree t (sklearn ignores estimators_features_ without subsampling)."""
    features = np.asarray(est.estimators_features_[t])
    if features.shape[0] == est.n_features_in_:
        return np.arange(est.n_features_in_)
    return features


def _value_variants(thr: float) -> list[float]:
    """The threshold itself and values whose float32 rounding lands on/around it."""
    t32 = np.float32(np.clip(thr, -F32_MAX, F32_MAX))
    up32 = np.nextafter(t32, np.float32(np.inf))
    down32 = np.nextafter(t32, np.float32(-np.inf))
    values = [
        thr,
        np.nextafter(thr, np.inf),
        np.nextafter(thr, -np.inf),
        float(t32),
        float(up32),
        float(down32),
    ]
    # float64 values exactly halfway between float32 neighbours (ties-to-even) and next to them
    for a, b in ((down32, t32), (t32, up32)):
        if np.isfinite(a) and np.isfinite(b):
            mid = (float(a) + float(b)) / 2.0
            values += [mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf)]
    return [float(v) for v in values]


def threshold_rows(est: IsolationForest, X: np.ndarray, rng: np.random.Generator, n: int):
    """Rows that reach an internal node and then sit exactly on (or around) its threshold.

    Take a training row, follow its path in a random tree and overwrite the split feature of
    one node on that path with its threshold (and float32-rounding neighbours).  Thresholds
    lie inside the interval allowed by the node's ancestors, so the row still reaches it.
    """
    rows = []
    for _ in range(n):
        t = int(rng.integers(len(est.estimators_)))
        tree = est.estimators_[t]
        features = _tree_features(est, t)
        row = X[int(rng.integers(X.shape[0]))].copy()
        path = tree.decision_path(row[features].astype(np.float32)[None, :]).indices
        internal = [node for node in path if tree.tree_.children_left[node] != -1]
        if not internal:
            continue
        node = int(rng.choice(internal))
        column = int(features[tree.tree_.feature[node]])
        for value in _value_variants(float(tree.tree_.threshold[node])):
            new = row.copy()
            new[column] = value
            rows.append(new)
    return np.array(rows).reshape(-1, X.shape[1])


def threshold_grid_rows(est: IsolationForest, rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows whose every coordinate is a split threshold (or neighbour) of that column."""
    n_features = est.n_features_in_
    per_column: list[list[float]] = [[] for _ in range(n_features)]
    for t, tree in enumerate(est.estimators_):
        internal = tree.tree_.children_left != -1
        features = _tree_features(est, t)
        columns = features[tree.tree_.feature[internal]]
        for column, thr in zip(columns, tree.tree_.threshold[internal], strict=True):
            per_column[int(column)].append(float(thr))
    rows = np.empty((n, n_features))
    for c in range(n_features):
        pool = per_column[c] or [0.0]
        picks = rng.choice(np.asarray(pool), size=n)
        rows[:, c] = [rng.choice(_value_variants(float(v))) for v in picks]
    return rows


def huge_rows(n_features: int, rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.normal(size=(n, n_features))
    mask = rng.random((n, n_features)) < 0.5
    rows[mask] = rng.choice(np.asarray(HUGE), size=int(mask.sum()))
    return rows


# --------------------------------------------------------------------------------------------
# property-based test over random forests


@st.composite
def forests(draw):
    n_features = draw(st.integers(1, 50))
    n_train = draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    data_kind = draw(st.sampled_from(["normal", "tiny_set", "constant", "mixed_scale"]))
    if data_kind == "normal":
        X = rng.normal(size=(n_train, n_features))
    elif data_kind == "tiny_set":  # duplicate heavy: leaves with many samples
        X = rng.choice([0.0, 1.0, 2.5], size=(n_train, n_features))
    elif data_kind == "constant":  # every tree is a single leaf
        X = np.full((n_train, n_features), 3.0)
    else:
        X = rng.normal(size=(n_train, n_features)) * 10.0 ** rng.integers(-8, 9, n_features)

    max_samples = draw(
        st.one_of(
            st.just("auto"),
            st.integers(1, n_train + 5),
            st.floats(min(1.0, 1.0 / n_train + 1e-9), 1.0),
        )
    )
    contamination = draw(st.one_of(st.just("auto"), st.floats(1e-3, 0.5)))
    max_features = draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0), st.integers(1, n_features)))
    n_estimators = draw(st.one_of(st.integers(1, 30), st.integers(31, 300)))
    float32_thresholds = draw(st.booleans())
    params = dict(
        n_estimators=n_estimators,
        max_samples=max_samples,
        contamination=contamination,
        max_features=max_features,
        bootstrap=draw(st.booleans()),
        random_state=draw(st.integers(0, 2**31 - 1)),
    )
    return X, params, float32_thresholds, seed


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(forests())
def test_matches_sklearn_on_random_forests(case):
    X, params, float32_thresholds, seed = case
    est = _fit(X, **params)
    if float32_thresholds:
        _round_thresholds_to_float32(est)
    cf = CompiledForest.from_estimator(est)
    assert cf.n_features == X.shape[1]
    rng = np.random.default_rng(seed + 1)
    n_features = X.shape[1]

    scale = np.abs(X).max() + 1.0
    queries = np.vstack(
        [
            rng.normal(size=(20, n_features)) * scale,
            X,
            threshold_rows(est, X, rng, 15),
            threshold_grid_rows(est, rng, 15),
            huge_rows(n_features, rng, 10),
        ]
    )
    assert_matches(est, cf, queries)
    # single rows and small batches take the same path as in the service
    for i in rng.choice(queries.shape[0], size=3, replace=False):
        assert_matches(est, cf, queries[i : i + 1])
    assert_matches(est, cf, queries[:7])


# --------------------------------------------------------------------------------------------
# targeted cases


@pytest.fixture(scope="module")
def forest_2d():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    est = _fit(X, n_estimators=100, random_state=0, contamination=0.05)
    return X, est, CompiledForest.from_estimator(est)


def test_large_batch_is_chunked_exactly(forest_2d):
    X, est, cf = forest_2d
    rng = np.random.default_rng(1)
    queries = np.vstack([rng.normal(size=(3000, 2)) * 3, X, threshold_rows(est, X, rng, 200)])
    assert_matches(est, cf, queries)


def test_huge_magnitudes_and_signed_zero(forest_2d):
    _, est, cf = forest_2d
    values = np.array(HUGE)
    grid = np.array(np.meshgrid(values, values)).reshape(2, -1).T
    assert_matches(est, cf, grid)
    for row in grid[::17]:
        assert_matches(est, cf, row[None, :])


def test_float32_rounding_onto_threshold(forest_2d):
    X, est, cf = forest_2d
    rng = np.random.default_rng(2)
    rows = threshold_rows(est, X, rng, 300)
    assert rows.shape[0] > 1000
    assert_matches(est, cf, rows)


def test_exact_ties_on_float32_thresholds():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3))
    est = _fit(X, n_estimators=60, random_state=2, contamination=0.1)
    _round_thresholds_to_float32(est)
    cf = CompiledForest.from_estimator(est)
    rows = threshold_rows(est, X, rng, 300)
    # the rows really contain exact float32 ties with thresholds
    thresholds = np.concatenate([e.tree_.threshold for e in est.estimators_])
    assert np.isin(rows.astype(np.float32).astype(np.float64), thresholds).any(axis=1).mean() > 0.5
    assert_matches(est, cf, rows)
    for row in rows[:40]:
        assert_matches(est, cf, row[None, :])


def test_duplicate_rows_single_node_trees():
    X = np.ones((50, 3))
    est = _fit(X, n_estimators=20, random_state=0)
    assert all(e.tree_.node_count == 1 for e in est.estimators_)
    cf = CompiledForest.from_estimator(est)
    assert_matches(est, cf, np.vstack([X[:2], [[0.0, -0.0, 1e300]], [[2.0, 1.0, 1.0]]]))


def test_mostly_duplicate_rows():
    rng = np.random.default_rng(3)
    X = np.vstack([np.zeros((300, 2)), rng.normal(size=(5, 2))])
    est = _fit(X, n_estimators=50, random_state=1, contamination=0.01)
    cf = CompiledForest.from_estimator(est)
    assert_matches(est, cf, np.vstack([X, rng.normal(size=(50, 2)), [[0.0, -0.0]]]))


def test_max_samples_one_zero_denominator():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 2))
    est = _fit(X, n_estimators=10, max_samples=1, random_state=0)
    cf = CompiledForest.from_estimator(est)
    assert_matches(est, cf, np.vstack([X, [[1e300, 0.0]]]))
    np.testing.assert_array_equal(cf.score_samples(X[:3]), -0.5)


def test_feature_subsampling_uses_estimators_features():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 6)) * np.arange(1, 7)
    est = _fit(X, n_estimators=40, max_features=2, random_state=0)
    cf = CompiledForest.from_estimator(est)
    assert_matches(est, cf, np.vstack([X, rng.normal(size=(100, 6)) * 5]))


def test_full_features_do_not_use_estimators_features():
    # sklearn only indexes X with estimators_features_ when max_features < n_features; when
    # all features are used it scores X as-is.  sklearn 1.9 stores arange(n) there, so
    # reverse them to check that the fast path ignores them too, like sklearn does.
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 4)) * [1.0, 10.0, 100.0, 1000.0]
    est = _fit(X, n_estimators=30, random_state=0)
    est.estimators_features_ = [np.asarray(f)[::-1].copy() for f in est.estimators_features_]
    cf = CompiledForest.from_estimator(est)
    assert_matches(est, cf, np.vstack([X, rng.normal(size=(50, 4)) * 500]))


def test_nan_follows_missing_go_to_left(forest_2d):
    # The service rejects NaN, but the fast path still mirrors Tree.apply.
    X, est, cf = forest_2d
    rows = np.vstack([X[:50], [[np.nan, np.nan], [np.nan, 0.0], [0.0, np.nan]]])
    rows[::3, 0] = np.nan
    assert_matches(est, cf, rows)
    assert_matches(est, cf, np.array([[np.nan, 1.0]]))


def test_non_contiguous_and_float32_input(forest_2d):
    X, est, cf = forest_2d
    wide = np.asfortranarray(np.hstack([X, X])[:, ::2])
    np.testing.assert_array_equal(cf.score_samples(wide), _sk(est, np.ascontiguousarray(wide))[0])
    x32 = X.astype(np.float32)
    np.testing.assert_array_equal(cf.score_samples(x32), _sk(est, x32)[0])


def test_anomaly_mask_matches_predict_on_boundary(forest_2d):
    X, est, cf = forest_2d
    scores = cf.score_samples(X)
    # offset_ is an interpolated percentile; also use exact training scores as offsets
    for offset in (est.offset_, float(scores[0]), float(np.median(scores))):
        expected = (est.score_samples(X) - offset) < 0
        np.testing.assert_array_equal(anomaly_mask(scores, offset), expected)
    np.testing.assert_array_equal(anomaly_mask(scores, est.offset_), est.predict(X) == -1)
    assert anomaly_mask(scores, float(scores[0]))[0] is np.False_


def test_rejects_bad_shapes(forest_2d):
    _, _, cf = forest_2d
    with pytest.raises(ValueError):
        cf.score_samples(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        cf.score_samples(np.zeros(2))
    with pytest.raises(ValueError):
        cf.score_samples(np.zeros((0, 2)))


def test_from_estimator_rejects_unfitted():
    with pytest.raises(ValueError):
        CompiledForest.from_estimator(IsolationForest())
