"""``seasonal``: expected = level + season, with robust k-sigma bands.

During warm-up (``warmup`` points; by default two days of history) the detector only listens.
At its end it picks the period (``period`` seconds if given, else daily or weekly when the
warm-up's autocorrelation at that lag is at least ``min_acf``; else none), sets each phase's
seasonal offset to the median of that phase's values minus the overall median, and the level to
the median of what is left. From then on each point is answered *before* it is learned from:
the expected value is level + season at the point's phase (its timestamp modulo the period, in
bins of the step), the scale is 1.4826 x the median absolute residual over the last ``window``
points (a MAD around the expected value, or 1.2533 x the mean absolute residual when that is
larger, which keeps mostly-flat series with spikes from a zero scale), and the band is
expected +- k x scale. The point is an anomaly when it lies outside the band; its score says how
unusual the recent rate of such points is for this series (``service.series.likelihood``). The
level and the season then move towards the point (Holt-Winters updates with ``alpha`` and
``gamma``), the residual clipped to +- ``clip`` x scale so a spike barely moves them while a
level shift is followed within a few dozen points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
    Param(
        "k",
        5.0,
        "band half-width in robust sigmas; outside it is an anomaly",
        minimum=0,
        exclusive_minimum=True,
    ),
    Param(
        "period",
        0.0,
        "season length in seconds; 0 detects daily or weekly, -1 means none",
        minimum=-1,
    ),
    Param(
        "warmup",
        0,
        "points learned before scoring; 0 means two days (30 to 2,000 points)",
        type=int,
        minimum=0,
    ),
    Param("alpha", 0.05, "how fast the level follows (0 to 1)", minimum=0, maximum=1),
    Param(
        "gamma",
        0.03,
        "how fast each phase's seasonal offset follows (0 to 1)",
        minimum=0,
        maximum=1,
    ),
    Param("window", 500, "residuals the scale (MAD) is taken over", type=int, minimum=10),
    Param(
        "clip",
        2.0,
        "residuals are clipped to this many scales before updating the level",
        minimum=0,
        exclusive_minimum=True,
    ),
    Param("min_acf", 0.3, "autocorrelation a detected period needs", minimum=-1, maximum=1),
    Param(
        "range_tolerance", 0.05, "a value this share of the range beyond it scores 0.99", minimum=0
    ),
)


def acf_at(values: np.ndarray, lag: int) -> float:
    """Autocorrelation of ``values`` at ``lag`` points (NaN when undefined)."""
    if lag <= 0 or lag >= values.size - 1:
        return math.nan
    x = values - values.mean()
    denom = float(np.dot(x, x))
    if denom == 0.0:
        return math.nan
    return float(np.dot(x[:-lag], x[lag:]) / denom)


def detect_period(times: np.ndarray, values: np.ndarray, step: float, min_acf: float) -> float:
    """Daily or weekly if the history spans two of them with ACF >= ``min_acf`` there, else 0."""
    best, best_acf = 0.0, min_acf
    span = times[-1] - times[0]
    for period in (DAY, WEEK):
        if span < 2 * period or step <= 0:
            continue
        r = acf_at(values, round(period / step))
        if math.isfinite(r) and r >= best_acf:
            best, best_acf = period, r
    return best


class SeasonalDetector:
    def __init__(self, params: dict[str, float | int]) -> None:
        self.k = float(params["k"])
        self.period_param = float(params["period"])
        self.warmup = int(params["warmup"])
        self.alpha = float(params["alpha"])
        self.gamma = float(params["gamma"])
        self.clip = float(params["clip"])
        self.min_acf = float(params["min_acf"])
        self.resid = RollingAbsMedian(int(params["window"]))
        self._times: list[float] | None = []
        self._values: list[float] = []
        self.period = 0.0
        self.bin_width = 1.0
        self.season: list[float] = [0.0]
        self.level = 0.0
        self.floor = 1e-9
        self.scorer = AnomalyScore(float(params["range_tolerance"]))

    def _bin(self, t: float) -> int:
        if self.period <= 0:
            return 0
        return round((t % self.period) / self.bin_width) % len(self.season)

    def _start(self, step: float) -> None:
        times = np.asarray(self._times)
        values = np.asarray(self._values)
        if self.period_param > 0:
            self.period = self.period_param
        elif self.period_param == 0:
            self.period = detect_period(times, values, step, self.min_acf)
        nbins = max(1, round(self.period / step)) if self.period > 0 and step > 0 else 1
        if nbins < 2:
            self.period = 0.0
            nbins = 1
        self.bin_width = self.period / nbins if self.period > 0 else 1.0
        self.season = [0.0] * nbins
        centre = float(np.median(values))
        if nbins > 1:
            bins = np.array([self._bin(t) for t in times])
            for b in np.unique(bins):
                self.season[b] = float(np.median(values[bins == b])) - centre
        seasonal = np.array([self.season[self._bin(t)] for t in times])
        self.level = float(np.median(values - seasonal))
        resid = values - seasonal - self.level
        for r in resid[-self.resid.size :]:
            self.resid.push(float(r))
        self.floor = max(1e-9, 1e-6 * float(np.median(np.abs(values))))
        self._times = None
        self._values = []

    def _scale(self) -> float:
        return robust_scale(self.resid, self.floor)

    def update(self, t: float, x: float, step: float) -> Point:
        if self._times is not None:
            if math.isnan(x):
                return WARMING_UP
            self._times.append(t)
            self._values.append(x)
            self.scorer.observe(x)
            if auto_warmup(self._times, self.warmup):
                self._start(step)
            return WARMING_UP
        b = self._bin(t)
        expected = self.level + self.season[b]
        scale = self._scale()
        half = self.k * scale
        if math.isnan(x):
            return Point(0.0, False, expected, expected - half, expected + half)
        r = x - expected
        z = abs(r) / scale
        outside = z > self.k
        score = self.scorer.update(x, outside)
        point = Point(score, outside, expected, expected - half, expected + half)
        limit = self.clip * scale
        rc = -limit if r < -limit else (limit if r > limit else r)
        self.level += self.alpha * rc
        self.season[b] += self.gamma * (1 - self.alpha) * rc
        self.resid.push(r)
        return point

    def forecast(self, times: Sequence[float]) -> list[tuple[float | None, ...]]:
        if self._times is not None:
            return [(None, None, None) for _ in times]
        half = self.k * self._scale()
        out: list[tuple[float | None, ...]] = []
        for t in times:
            e = self.level + self.season[self._bin(t)]
            out.append((e, e - half, e + half))
        return out


KIND = SeriesKind(
    name="seasonal",
    summary="level + detected season, robust k-sigma bands (MAD of residuals)",
    params=PARAMS,
    make=SeasonalDetector,
)
