"""What every series detector kind provides, and the parameter checks they share.

A kind is one module: a ``SeriesKind`` with its name, a one-line summary, its parameters (with
defaults and limits) and ``make(params) -> Detector``. A ``Detector`` is causal: ``update`` sees
one point at a time, in time order, and answers it from what it saw before (and the point's own
value only for its score), so a stream and a batch get the same answers.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from service.series.errors import SeriesInputError

DAY = 86_400.0
WEEK = 7 * DAY


class Point(NamedTuple):
    """One point's answer; ``expected``/``lower``/``upper`` are None while the detector warms up."""

    score: float
    is_anomaly: bool
    expected: float | None
    lower: float | None
    upper: float | None


WARMING_UP = Point(0.0, False, None, None, None)


class Detector(Protocol):
    def update(self, t: float, x: float, step: float) -> Point:
        """Answer the point at Unix time ``t`` (``x`` NaN when missing); ``step`` is the spacing
        estimated so far."""

    def forecast(self, times: Sequence[float]) -> list[tuple[float | None, ...]]:
        """(expected, lower, upper) at future times, from the state after the last update."""


@dataclass(frozen=True)
class Param:
    """One parameter of a kind: its default and the range it must lie in."""

    name: str
    default: float | int
    help: str
    type: type = float
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def check(self, kind: str, raw: object) -> float | int:
        where = f"{kind}: parameter {self.name}"
        if isinstance(raw, str):
            try:
                raw = float(raw) if self.type is float else int(raw)
            except ValueError:
                raise SeriesInputError(
                    f"{where} must be {'an integer' if self.type is int else 'a number'}, "
                    f"got {raw!r}"
                ) from None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SeriesInputError(f"{where} must be a number, got {raw!r}")
        if self.type is int:
            if float(raw) != int(raw):
                raise SeriesInputError(f"{where} must be an integer, got {raw!r}")
            value: float | int = int(raw)
        else:
            value = float(raw)
            if not math.isfinite(value):
                raise SeriesInputError(f"{where} must be finite, got {raw!r}")
        low = self.minimum
        if low is not None and (value <= low if self.exclusive_minimum else value < low):
            op = ">" if self.exclusive_minimum else ">="
            raise SeriesInputError(f"{where} must be {op} {low:g}, got {raw!r}")
        if self.maximum is not None and value > self.maximum:
            raise SeriesInputError(f"{where} must be <= {self.maximum:g}, got {raw!r}")
        return value


@dataclass(frozen=True)
class SeriesKind:
    """A series detector kind, as listed in ``service.series.table.KINDS``."""

    name: str
    summary: str
    params: tuple[Param, ...]
    make: Callable[[dict[str, float | int]], Detector]

    def resolve(self, given: Mapping[str, object] | None) -> dict[str, float | int]:
        """Defaults overlaid with ``given``, each checked; unknown names are errors."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SeriesInputError(
                f"{self.name}: unknown parameter {unknown[0]!r}; "
                f"known: {', '.join(known) or 'none'}"
            )
        return {
            name: (p.check(self.name, given[name]) if name in given else p.default)
            for name, p in known.items()
        }


class RollingAbsMedian:
    """Median of the absolute values of the last ``size`` numbers, in O(size) memmove per push."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._sum = 0.0
        self._pushes = 0

    def __len__(self) -> int:
        return len(self._sorted)

    def push(self, x: float) -> None:
        a = abs(x)
        self._fifo.append(a)
        self._sum += a
        bisect.insort(self._sorted, a)
        if len(self._fifo) > self.size:
            old = self._fifo.popleft()
            self._sum -= old
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._pushes += 1
        if self._pushes % self.size == 0:  # re-add from scratch so rounding never accumulates
            self._sum = math.fsum(self._fifo)

    def mean(self) -> float:
        return self._sum / len(self._fifo) if self._fifo else 0.0

    def median(self) -> float:
        s = self._sorted
        n = len(s)
        if n == 0:
            return 0.0
        mid = n // 2
        return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


MAD_TO_SIGMA = 1.4826
"""1.4826 x the median absolute deviation estimates a normal distribution's sigma."""
MEAN_AD_TO_SIGMA = 1.2533
"""1.2533 x the mean absolute deviation does too; it stays above 0 when most residuals are 0."""


def robust_scale(resid: RollingAbsMedian, floor: float) -> float:
    """Sigma of recent residuals: from their MAD, or their mean absolute value when most are 0
    (a series that is mostly flat with spikes), never below ``floor``."""
    return max(MAD_TO_SIGMA * resid.median(), MEAN_AD_TO_SIGMA * resid.mean(), floor)


def auto_warmup(times: Sequence[float], warmup: int) -> bool:
    """Whether warm-up is over: ``warmup`` points if given (> 0); else two days of history with
    at least 30 points, or 2,000 points, whichever comes first."""
    n = len(times)
    if warmup > 0:
        return n >= warmup
    return n >= 2000 or (n >= 30 and times[-1] - times[0] >= 2 * DAY)
