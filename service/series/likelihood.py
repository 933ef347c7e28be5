"""Scores in [0, 1]: how unusual a series' recent behaviour is for that series.

``AnomalyScore`` is what every kind reports as ``score``: the anomaly likelihood of the recent
share of points outside the band, raised to at least ``RANGE_SCORE`` (0.99) for a value beyond
the range seen so far by more than ``range_tolerance`` of that range (as Numenta's NAB detector
does; after a flatline, any other value). So a routine spike in a spiky series scores low
though it is outside its band, while a burst of them, a sustained shift or a value never seen
before scores high.

The likelihood is Numenta's HTM post-processing (its NAB results owe much to it), applied to
out-of-band flags: average the last ``short`` (10) flags, compare that average with the mean and
standard deviation of the same averages over the last ``history`` (8,640) points, after
``learn`` (300) of them, as a Gaussian tail, and report ``L / (L + 11.51)`` with
``L = -ln(tail)``: 0.03 at the mean, 0.5 for a tail of 1e-5 (HTM's usual alarm level), nearing 1
without saturating so a threshold can still tell large deviations apart. Floors on the mean
(0.03) and variance (0.0003), as in HTM, keep a series that is almost never outside its band from
calling one such point a certainty. Running sums: O(1) per point.
"""

from __future__ import annotations

import math
from collections import deque

HALF_AT = -math.log(1e-5)
"""-ln(tail) at which the score is 0.5."""


def neg_log_tail(z: float) -> float:
    """-ln P(Z > z) for a standard normal, accurate far into the tail (no underflow)."""
    if z < 30.0:
        return -math.log(0.5 * math.erfc(z / math.sqrt(2.0)))
    return 0.5 * z * z + math.log(z * math.sqrt(2.0 * math.pi))


class Likelihood:
    def __init__(self, short: int = 10, history: int = 8640, learn: int = 300) -> None:
        self.short = short
        self.history = history
        self.learn = learn
        self._recent: deque[float] = deque()
        self._recent_sum = 0.0
        self._avgs: deque[float] = deque()
        self._sum = 0.0
        self._sum2 = 0.0
        self._since_reset = 0

    def update(self, raw: float) -> float:
        """The score, in [0, 1], of the point whose raw score is ``raw``; 0 while learning."""
        self._recent.append(raw)
        self._recent_sum += raw
        if len(self._recent) > self.short:
            self._recent_sum -= self._recent.popleft()
        avg = self._recent_sum / len(self._recent)
        n = len(self._avgs)
        score = 0.0
        if n >= self.learn:
            mean = max(self._sum / n, 0.03)
            var = max(self._sum2 / n - (self._sum / n) ** 2, 0.0003)
            z = (avg - mean) / math.sqrt(var)
            nl = neg_log_tail(max(z, 0.0))
            score = nl / (nl + HALF_AT)
        self._avgs.append(avg)
        self._sum += avg
        self._sum2 += avg * avg
        if len(self._avgs) > self.history:
            old = self._avgs.popleft()
            self._sum -= old
            self._sum2 -= old * old
        self._since_reset += 1
        if self._since_reset >= 10_000:  # re-add from scratch so rounding never accumulates
            self._sum = math.fsum(self._avgs)
            self._sum2 = math.fsum(a * a for a in self._avgs)
            self._since_reset = 0
        return score


RANGE_SCORE = 0.99


class AnomalyScore:
    """A detector's score from its out-of-band flags and the values' range."""

    def __init__(self, range_tolerance: float) -> None:
        self.tolerance = range_tolerance
        self.likelihood = Likelihood()
        self.low = math.inf
        self.high = -math.inf

    def observe(self, x: float) -> bool:
        """Learn ``x`` into the range; True when it lies beyond the range seen before."""
        margin = (self.high - self.low) * self.tolerance
        beyond = x > self.high + margin or x < self.low - margin  # after a flatline: any change
        self.low = min(self.low, x)
        self.high = max(self.high, x)
        return beyond

    def update(self, x: float, outside: bool) -> float:
        """The score of a measured point ``x`` that is (or is not) outside its band."""
        score = self.likelihood.update(1.0 if outside else 0.0)
        return max(score, RANGE_SCORE) if self.observe(x) else score
