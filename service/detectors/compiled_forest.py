"""Fast, exact scoring for a fitted ``sklearn.ensemble.IsolationForest``.

``IsolationForest.score_samples`` carries a fixed cost of a few milliseconds per call
(input validation, joblib dispatch, one ``tree.apply`` per tree).  For the small batches the
service scores, that overhead dominates.  :class:`CompiledForest` flattens every tree into
stacked numpy arrays once, at load time, and then walks all trees for all rows in lockstep,
one tree level per iteration, with a handful of vectorised numpy operations per level.

Exactness
---------
The result is meant to be *bitwise identical* to ``est.score_samples(X)`` (the contract is
``<= 1e-12`` absolute).  To get there, the floating-point order of operations of
scikit-learn 1.9.1 (``sklearn/ensemble/_iforest.py``) is replicated:

* ``X`` is cast to float32 first; a split test is ``float32(x) <= threshold`` with the
  float64 threshold (``float32`` values beyond the float32 range become ``+-inf``, exactly as
  in sklearn; the cast's overflow warning is silenced here).
* NaN follows the tree's per-node ``missing_go_to_left`` flag, as ``Tree.apply`` does.
* Per tree, the leaf value ``decision_path_length + average_path_length - 1.0`` is computed
  with the same expression (int64 depth + float64 path length, then ``- 1.0``) and the values
  are accumulated sequentially in tree order (``np.add.accumulate``, not the pairwise
  summation of ``np.sum``), starting from 0.0 as sklearn's ``depths += ...`` does.
* The final ``2 ** (-depths / denominator)`` uses sklearn's exact expression, including the
  ``denominator == 0`` case (``max_samples_ == 1``: every score is ``-0.5``), and is applied
  to the whole batch in one call.

Attributes used
---------------
Only public state is read: ``estimators_[i].tree_`` (``children_left``, ``children_right``,
``feature``, ``threshold``, ``n_node_samples``, ``missing_go_to_left``,
``compute_node_depths()``), ``estimators_features_``, ``max_samples_``, ``max_features``,
``n_features_in_`` and ``offset_``.  sklearn's private caches (``_decision_path_lengths``,
``_average_path_length_per_tree``, ``_max_samples``, ``_max_features``) are recomputed from
those; when they exist they are compared with the recomputed values and
:meth:`CompiledForest.from_estimator` raises ``ValueError`` on any difference, so a future
sklearn change in these internals fails loudly at load time instead of scoring wrongly.

The float32 cast, the sequential accumulation and the final power mirror sklearn 1.9.1;
re-run ``tests/detectors/test_compiled_forest.py`` whenever the pinned sklearn or numpy
version changes.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # scikit-learn is only needed to compile, not to score
    from sklearn.ensemble import IsolationForest

__all__ = ["CompiledForest", "anomaly_mask"]

# Arrays of a compiled forest's state, with their dtypes: see to_state / from_state.
_STATE_ARRAYS = {
    "roots": np.intp,
    "feature": np.intp,
    "threshold": np.float64,
    "left": np.intp,
    "missing_left": np.bool_,
    "value": np.float64,
    "denominator": np.float64,
}

_TREE_LEAF = -1

# Upper bound on (trees x rows) handled per traversal chunk: keeps the per-level temporaries
# in cache for large batches.  Chunking rows does not change any per-row result.
_MAX_CHUNK_CELLS = 1 << 16
# Batches of up to this many rows keep their walk's starting arrays (see _walk_start).
_KEPT_WALK_STARTS = 64


def _average_path_length(n_samples_leaf: np.ndarray) -> np.ndarray:
    """Copy of ``sklearn.ensemble._iforest._average_path_length`` (same operation order).

    ``n_samples_leaf`` must be a 1-D integer array, like ``tree_.n_node_samples``.
    """
    n_samples_leaf = np.asarray(n_samples_leaf)
    shape = n_samples_leaf.shape
    n_samples_leaf = n_samples_leaf.reshape((1, -1))
    average_path_length = np.zeros(n_samples_leaf.shape)

    mask_1 = n_samples_leaf <= 1
    mask_2 = n_samples_leaf == 2
    not_mask = ~np.logical_or(mask_1, mask_2)

    average_path_length[mask_1] = 0.0
    average_path_length[mask_2] = 1.0
    average_path_length[not_mask] = (
        2.0 * (np.log(n_samples_leaf[not_mask] - 1.0) + np.euler_gamma)
        - 2.0 * (n_samples_leaf[not_mask] - 1.0) / n_samples_leaf[not_mask]
    )
    return average_path_length.reshape(shape)


def _effective_max_features(est: IsolationForest) -> int:
    """Recompute ``est._max_features`` (see ``BaseBagging._fit``) from public attributes."""
    n_features = est.n_features_in_
    if isinstance(est.max_features, numbers.Integral):
        max_features = est.max_features
    else:
        max_features = int(est.max_features * n_features)
    return max(1, int(max_features))


def _level_order(children_left: np.ndarray, children_right: np.ndarray) -> np.ndarray:
    """Old node ids in breadth-first order, children of a node stored as a (left, right) pair.

    In that order the right child of every internal node directly follows its left child, so
    the traversal step is ``node = left[node] + went_right``.
    """
    order = []
    frontier = np.zeros(1, dtype=np.intp)
    while frontier.size:
        order.append(frontier)
        internal = frontier[children_left[frontier] != _TREE_LEAF]
        frontier = np.stack([children_left[internal], children_right[internal]], axis=1).ravel()
    return np.concatenate(order)


def _mismatch(cached, recomputed) -> bool:
    return not all(np.array_equal(a, b) for a, b in zip(cached, recomputed, strict=True))


class CompiledForest:
    """An ``IsolationForest`` flattened into stacked node arrays for fast exact scoring.

    Build it with :meth:`from_estimator`.  The object is immutable after construction (but for
    a cache of read-only arrays) and ``score_samples`` writes only local temporaries, so one
    instance can be shared by concurrent requests/threads.
    """

    n_features: int
    n_estimators: int
    offset: float

    def __init__(
        self,
        *,
        n_features: int,
        roots: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        missing_left: np.ndarray,
        value: np.ndarray,
        n_levels: int,
        denominator: np.ndarray,
        offset: float,
    ) -> None:
        self.n_features = int(n_features)
        self.n_estimators = int(roots.shape[0])
        self.offset = offset
        self._roots = roots
        self._feature = feature
        self._threshold = threshold
        self._left = left
        self._missing_left = missing_left
        self._value = value
        self._n_levels = int(n_levels)
        self._denominator = denominator
        self._denominator_nonzero = bool(np.all(denominator != 0))
        self._walk_starts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for arr in (roots, feature, threshold, left, missing_left, value, denominator):
            arr.flags.writeable = False

    @classmethod
    def from_estimator(cls, est: IsolationForest) -> CompiledForest:
        """Compile a fitted ``IsolationForest`` (dense input, scikit-learn 1.9.x)."""
        from sklearn.ensemble import IsolationForest

        if not isinstance(est, IsolationForest):
            raise TypeError(f"expected a fitted IsolationForest, got {type(est).__name__}")
        if not hasattr(est, "estimators_"):
            raise ValueError("the IsolationForest is not fitted")

        n_features = int(est.n_features_in_)
        max_features = _effective_max_features(est)
        subsample_features = max_features != n_features
        max_samples = est.max_samples_

        cached_max_features = getattr(est, "_max_features", max_features)
        cached_max_samples = getattr(est, "_max_samples", max_samples)
        if cached_max_features != max_features or cached_max_samples != max_samples:
            raise ValueError(
                "IsolationForest internals changed: recomputed max_features/max_samples "
                f"({max_features}, {max_samples}) differ from sklearn's "
                f"({cached_max_features}, {cached_max_samples})"
            )

        depths_per_tree = []
        avg_path_per_tree = []
        roots, features, thresholds, lefts, missing_lefts, values = [], [], [], [], [], []
        n_levels = 0
        offset = 0
        for tree_est, tree_features in zip(est.estimators_, est.estimators_features_, strict=True):
            tree = tree_est.tree_
            children_left = np.asarray(tree.children_left, dtype=np.intp)
            children_right = np.asarray(tree.children_right, dtype=np.intp)

            # Same expressions as IsolationForest.fit / _parallel_compute_tree_depths.
            node_depths = tree.compute_node_depths()
            avg_path = _average_path_length(tree.n_node_samples)
            depths_per_tree.append(node_depths)
            avg_path_per_tree.append(avg_path)
            node_value = node_depths + avg_path - 1.0

            order = _level_order(children_left, children_right)
            n_nodes = order.shape[0]
            new_id = np.empty(tree.node_count, dtype=np.intp)
            new_id[order] = np.arange(n_nodes, dtype=np.intp)

            left_old = children_left[order]
            is_leaf = left_old == _TREE_LEAF
            feat = np.where(is_leaf, 0, np.asarray(tree.feature, dtype=np.intp)[order])
            if subsample_features:
                # The tree was fit on X[:, tree_features]; map to columns of the full X.
                feat = np.asarray(tree_features, dtype=np.intp)[feat]
            thr = np.asarray(tree.threshold, dtype=np.float64)[order]
            mgl = np.asarray(tree.missing_go_to_left, dtype=bool)[order]
            new_left = np.where(is_leaf, 0, new_id[np.where(is_leaf, 0, left_old)])
            if not np.all(new_id[children_right[order][~is_leaf]] == new_left[~is_leaf] + 1):
                raise AssertionError("level order must store siblings next to each other")

            # Leaves loop onto themselves: feature 0, threshold +inf (``x > inf`` is never
            # true) and NaN goes "left", i.e. stays put.
            local_ids = np.arange(n_nodes, dtype=np.intp)
            roots.append(offset)
            features.append(feat)
            thresholds.append(np.where(is_leaf, np.inf, thr))
            lefts.append(offset + np.where(is_leaf, local_ids, new_left))
            missing_lefts.append(np.where(is_leaf, True, mgl))
            values.append(node_value[order])
            n_levels = max(n_levels, int(tree.max_depth))
            offset += n_nodes

        cached_depths = getattr(est, "_decision_path_lengths", None)
        cached_avg = getattr(est, "_average_path_length_per_tree", None)
        if (cached_depths is not None and _mismatch(cached_depths, depths_per_tree)) or (
            cached_avg is not None and _mismatch(cached_avg, avg_path_per_tree)
        ):
            raise ValueError(
                "IsolationForest internals changed: recomputed per-node path lengths differ "
                "from sklearn's cached _decision_path_lengths/_average_path_length_per_tree"
            )

        # As in _compute_score_samples: ``len(estimators_) * _average_path_length([n])``.
        denominator = len(est.estimators_) * _average_path_length(np.asarray([max_samples]))

        return cls(
            n_features=n_features,
            roots=np.asarray(roots, dtype=np.intp),
            feature=np.concatenate(features).astype(np.intp),
            threshold=np.concatenate(thresholds).astype(np.float64),
            left=np.concatenate(lefts).astype(np.intp),
            missing_left=np.concatenate(missing_lefts).astype(bool),
            value=np.concatenate(values).astype(np.float64),
            n_levels=n_levels,
            denominator=denominator,
            offset=est.offset_,
        )

    def to_state(self) -> dict[str, Any]:
        """Plain numbers and numpy arrays: loadable without scikit-learn (see from_state)."""
        state: dict[str, Any] = {
            "n_features": self.n_features,
            "n_levels": self._n_levels,
            "offset": float(self.offset),
        }
        for name in _STATE_ARRAYS:
            state[name] = np.array(getattr(self, f"_{name}"))
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CompiledForest:
        """Rebuild from :meth:`to_state`, checking every index so that no state can make
        scoring read outside its arrays. Raises ValueError on any inconsistency."""
        if not isinstance(state, dict) or set(state) != {
            "n_features", "n_levels", "offset", *_STATE_ARRAYS
        }:  # fmt: skip
            raise ValueError("compiled forest state has the wrong fields")
        arrays = {}
        for name, dtype in _STATE_ARRAYS.items():
            arr = state[name]
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != dtype:
                raise ValueError(f"compiled forest state: {name} is not a 1-D {dtype} array")
            arrays[name] = arr.copy()
        n_features, n_levels = state["n_features"], state["n_levels"]
        if not (isinstance(n_features, int) and n_features >= 1):
            raise ValueError("compiled forest state: bad n_features")
        if not (isinstance(n_levels, int) and 0 <= n_levels <= 10_000):
            raise ValueError("compiled forest state: bad n_levels")
        n_nodes = arrays["feature"].shape[0]
        if not (
            arrays["roots"].shape[0] >= 1
            and arrays["denominator"].shape == (1,)
            and all(arrays[k].shape[0] == n_nodes for k in ("threshold", "left",
                                                            "missing_left", "value"))
            and np.all((arrays["roots"] >= 0) & (arrays["roots"] < n_nodes))
            and np.all((arrays["feature"] >= 0) & (arrays["feature"] < n_features))
            and np.all((arrays["left"] >= 0) & (arrays["left"] < n_nodes))
        ):  # fmt: skip
            raise ValueError("compiled forest state: node indices out of range")
        # A node may step to left + 1 unless it is a leaf (threshold +inf, NaN stays left).
        may_go_right = (arrays["threshold"] != np.inf) | ~arrays["missing_left"]
        if np.any(may_go_right & (arrays["left"] + 1 >= n_nodes)):
            raise ValueError("compiled forest state: a right child is out of range")
        return cls(n_features=n_features, n_levels=n_levels, offset=float(state["offset"]),
                   **arrays)  # fmt: skip

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Same as est.score_samples(X): float64 array of shape (n_rows,). X is a 2-D float64 array (n_rows, n_features)."""  # noqa: E501
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must be 2-D with {self.n_features} columns, got shape {X.shape}")
        n_rows = X.shape[0]
        if n_rows == 0:
            raise ValueError("X has 0 rows; at least 1 is required")

        # sklearn validates with dtype=np.float32; values beyond float32 range become +-inf.
        # The second cast is exact and lets every comparison run float64 vs float64.
        with np.errstate(over="ignore"):
            x32 = X.astype(np.float32)
        x = x32.astype(np.float64).ravel()
        has_nan = bool(np.isnan(x).any())

        chunk = max(1, _MAX_CHUNK_CELLS // self.n_estimators)
        if n_rows <= chunk:
            depths = self._depths(x, n_rows, has_nan)
        else:
            nf = self.n_features
            depths = np.empty(n_rows)
            for start in range(0, n_rows, chunk):
                stop = min(start + chunk, n_rows)
                depths[start:stop] = self._depths(x[start * nf : stop * nf], stop - start, has_nan)

        # sklearn: ``2 ** (-np.divide(depths, denominator, out=np.ones_like(depths),
        # where=denominator != 0))``; the branch on the (constant) denominator gives the same
        # bits: one IEEE division per element, or exactly 1.0 when denominator == 0.
        if self._denominator_nonzero:
            scores = 2 ** (-(depths / self._denominator))
        else:
            scores = 2 ** (-np.ones_like(depths))
        # _score_samples returns the opposite of the paper's anomaly score.
        return -scores

    def _walk_start(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Each (tree, row)'s root node, and each row's offset in ``x``: the same arrays for
        every batch of ``n_rows`` rows, kept (read-only) for small batches, which the server
        scores many times a second (service/serving/row_batcher.py)."""
        node = np.repeat(self._roots, n_rows)
        row_offset = np.tile(
            np.arange(0, n_rows * self.n_features, self.n_features), len(self._roots)
        )
        if n_rows <= _KEPT_WALK_STARTS:
            node.flags.writeable = row_offset.flags.writeable = False
            self._walk_starts[n_rows] = (node, row_offset)
        return node, row_offset

    def _depths(self, x: np.ndarray, n_rows: int, has_nan: bool) -> np.ndarray:
        """Sum over trees (sequential, tree order) of the leaf values reached by each row.

        ``x`` is the row-major flattening of the float32-rounded rows, as float64.
        Node ids are laid out as (tree, row): ``node[t * n_rows + r]``.
        """
        feature, threshold, left = self._feature, self._threshold, self._left
        if n_rows == 1:
            node = self._roots
            for _ in range(self._n_levels):
                xv = x[feature[node]]
                went_right = xv > threshold[node]
                if has_nan:
                    went_right |= np.isnan(xv) & ~self._missing_left[node]
                node = left[node] + went_right
            return np.add.accumulate(self._value[node])[-1:]

        start = self._walk_starts.get(n_rows)
        if start is None:
            start = self._walk_start(n_rows)
        node, row_offset = start
        for _ in range(self._n_levels):
            xv = x[row_offset + feature[node]]
            went_right = xv > threshold[node]
            if has_nan:
                went_right |= np.isnan(xv) & ~self._missing_left[node]
            node = left[node] + went_right
        return np.add.accumulate(self._value[node].reshape(-1, n_rows), axis=0)[-1]


def anomaly_mask(scores: np.ndarray, offset: float) -> np.ndarray:
    """Boolean mask equal to ``est.predict(X) == -1`` given ``scores = est.score_samples(X)``.

    Same arithmetic as ``IsolationForest.decision_function`` (``score_samples - offset_``)
    followed by ``predict``'s ``decision < 0``.
    """
    return (np.asarray(scores, dtype=np.float64) - offset) < 0
