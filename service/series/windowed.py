"""``windowed``: windowed features fed to an IsolationForest (the ancestor's "shallow model").

Each point becomes a feature vector: its value, its deviation from an exponentially weighted
mean of the values before it (``alpha``), that deviation's smoothed absolute size (the smoothed
error, ``beta``), and the time of day as a sine/cosine pair; with ``day_of_week`` 1, the day of
the week too (only worth it once the history spans weeks: a forest fitted on two days sees
every later weekday as new). The forest is
fitted on the warm-up's vectors (``warmup`` points; by default two days) and refitted every
``refit`` points on the last ``history`` vectors, always before the point it scores, so the
answer stays causal. Scoring uses the project's compiled forest (exact to scikit-learn's
``score_samples``, and fast on one row). A point is an anomaly when its s(x) is above the
forest's threshold for ``contamination`` or outside the band: the weighted mean +- k x the
robust scale of recent deviations (a forest fitted on a flat feature cannot see it move). The
score is the shared ``AnomalyScore``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from service.detectors.compiled_forest import CompiledForest
from service.series.base import (
    DAY,
    WARMING_UP,
    WEEK,
    Param,
    Point,
    RollingAbsMedian,
    SeriesKind,
    auto_warmup,
    robust_scale,
)
from service.series.likelihood import AnomalyScore

PARAMS = (
    Param("k", 5.0, "band half-width in robust sigmas", minimum=0, exclusive_minimum=True),
    Param(
        "contamination",
        0.01,
        "share of training vectors the forest flags",
        minimum=0.0001,
        maximum=0.5,
    ),
    Param("n_estimators", 50, "trees in the forest", type=int, minimum=1, maximum=1000),
    Param(
        "warmup",
        0,
        "points before the first fit; 0 means two days (30 to 2,000 points)",
        type=int,
        minimum=0,
    ),
    Param("refit", 2000, "points between refits; 0 never refits", type=int, minimum=0),
    Param("history", 4000, "most recent vectors a refit learns from", type=int, minimum=30),
    Param(
        "alpha",
        0.05,
        "weight of the newest value in the mean",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    ),
    Param(
        "beta",
        0.1,
        "weight of the newest error in the smoothed error",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    ),
    Param("day_of_week", 0, "1 adds day-of-week features", type=int, minimum=0, maximum=1),
    Param("seed", 0, "random state of the forest", type=int, minimum=0),
    Param(
        "range_tolerance", 0.05, "a value this share of the range beyond it scores 0.99", minimum=0
    ),
)

TWO_PI = 2.0 * math.pi


class WindowedDetector:
    def __init__(self, params: dict[str, float | int]) -> None:
        self.p = params
        self.k = float(params["k"])
        self.alpha = float(params["alpha"])
        self.beta = float(params["beta"])
        self.weekly = bool(params["day_of_week"])
        self.scorer = AnomalyScore(float(params["range_tolerance"]))
        self.resid = RollingAbsMedian(500)
        self.history: deque[list[float]] = deque(maxlen=int(params["history"]))
        self.times: list[float] = []
        self.mean: float | None = None
        self.err = 0.0
        self.forest: CompiledForest | None = None
        self.threshold = math.inf
        self.since_fit = 0
        self.floor = 1e-9

    def _features(self, t: float, x: float) -> list[float]:
        dev = x - self.mean if self.mean is not None else 0.0
        err = (1 - self.beta) * self.err + self.beta * abs(dev)
        day = (t % DAY) / DAY * TWO_PI
        vec = [x, dev, err, math.sin(day), math.cos(day)]
        if self.weekly:
            week = (t % WEEK) / WEEK * TWO_PI
            vec += [math.sin(week), math.cos(week)]
        return vec

    def _learn(self, x: float, vec: list[float]) -> None:
        self.err = vec[2]
        if self.mean is not None:
            self.resid.push(vec[1])
        self.mean = x if self.mean is None else self.mean + self.alpha * (x - self.mean)
        self.history.append(vec)
        self.scorer.observe(x)

    def _fit(self) -> None:
        # scikit-learn only when a windowed series is fitted: importing it costs a serving
        # worker about 100 MB, which every worker would pay for the series route alone.
        from sklearn.ensemble import IsolationForest

        X = np.asarray(self.history)
        est = IsolationForest(
            n_estimators=int(self.p["n_estimators"]),
            contamination=float(self.p["contamination"]),
            random_state=int(self.p["seed"]),
        ).fit(X)
        self.forest = CompiledForest.from_estimator(est)
        self.threshold = -float(est.offset_)
        self.floor = max(1e-9, 1e-6 * float(np.median(np.abs(X[:, 0]))))
        self.since_fit = 0

    def update(self, t: float, x: float, step: float) -> Point:
        if self.forest is None:
            if not math.isnan(x):
                self._learn(x, self._features(t, x))
                self.times.append(t)
                if auto_warmup(self.times, int(self.p["warmup"])):
                    self.times = []
                    self._fit()
            return WARMING_UP
        expected = float(self.mean)
        half = self.k * robust_scale(self.resid, self.floor)
        if math.isnan(x):
            return Point(0.0, False, expected, expected - half, expected + half)
        vec = self._features(t, x)
        s = -float(self.forest.score_samples(np.asarray([vec]))[0])
        outside = s > self.threshold or abs(x - expected) > half
        point = Point(
            self.scorer.update(x, outside), outside, expected, expected - half, expected + half
        )
        self._learn(x, vec)
        self.since_fit += 1
        refit = int(self.p["refit"])
        if refit and self.since_fit >= refit:
            self._fit()
        return point

    def forecast(self, times: Sequence[float]) -> list[tuple[float | None, ...]]:
        if self.forest is None:
            return [(None, None, None) for _ in times]
        e = float(self.mean)
        half = self.k * robust_scale(self.resid, self.floor)
        return [(e, e - half, e + half) for _ in times]


KIND = SeriesKind(
    name="windowed",
    summary="value, smoothed error and time encodings fed to an IsolationForest",
    params=PARAMS,
    make=WindowedDetector,
)
