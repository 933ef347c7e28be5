"""``rolling``: a reference baseline with no season: the rolling median and robust k-sigma bands.

The expected value is the median of the last ``window`` values before the point, the scale the
robust scale of the last ``window`` residuals (as in ``seasonal``), the band expected +- k x
scale, and the score the shared ``AnomalyScore``. Warm-up: the first ``warmup`` points.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

from service.series.base import WARMING_UP, Param, Point, RollingAbsMedian, SeriesKind, robust_scale
from service.series.likelihood import AnomalyScore

PARAMS = (
    Param("k", 5.0, "band half-width in robust sigmas", minimum=0, exclusive_minimum=True),
    Param("window", 288, "values the median and the scale are taken over", type=int, minimum=3),
    Param("warmup", 30, "points learned before scoring", type=int, minimum=3),
    Param(
        "range_tolerance", 0.05, "a value this share of the range beyond it scores 0.99", minimum=0
    ),
)


class RollingDetector:
    def __init__(self, params: dict[str, float | int]) -> None:
        self.k = float(params["k"])
        self.size = int(params["window"])
        self.warmup = int(params["warmup"])
        self.scorer = AnomalyScore(float(params["range_tolerance"]))
        self.resid = RollingAbsMedian(self.size)
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self.seen = 0
        self.floor = 1e-9

    def _expected(self) -> float:
        s = self._sorted
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])

    def _learn(self, x: float) -> None:
        self._fifo.append(x)
        bisect.insort(self._sorted, x)
        if len(self._fifo) > self.size:
            del self._sorted[bisect.bisect_left(self._sorted, self._fifo.popleft())]
        self.seen += 1

    def update(self, t: float, x: float, step: float) -> Point:
        if self.seen < self.warmup:
            if not math.isnan(x):
                if self.seen:
                    self.resid.push(x - self._expected())
                self._learn(x)
                self.scorer.observe(x)
                self.floor = max(1e-9, 1e-6 * abs(self._expected()))
            return WARMING_UP
        expected = self._expected()
        scale = robust_scale(self.resid, self.floor)
        half = self.k * scale
        if math.isnan(x):
            return Point(0.0, False, expected, expected - half, expected + half)
        r = x - expected
        outside = abs(r) > half
        point = Point(
            self.scorer.update(x, outside), outside, expected, expected - half, expected + half
        )
        self.resid.push(r)
        self._learn(x)
        return point

    def forecast(self, times: Sequence[float]) -> list[tuple[float | None, ...]]:
        if self.seen < self.warmup:
            return [(None, None, None) for _ in times]
        e = self._expected()
        half = self.k * robust_scale(self.resid, self.floor)
        return [(e, e - half, e + half) for _ in times]


KIND = SeriesKind(
    name="rolling",
    summary="rolling median, robust k-sigma bands, no season (a reference baseline)",
    params=PARAMS,
    make=RollingDetector,
)
