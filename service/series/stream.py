"""A series detector fed one point at a time, and batch detection as exactly that.

``SeriesStream.update(timestamp, value)`` answers a point from what came before; ``detect``
normalises a whole series (see ``service.series.input``) and feeds it through a stream, so a
batch and a stream always give the same answers and the answer at point i never depends on a
later point. The step (the spacing used for the forecast and the season's bins) is the median
spacing of the first ``STEP_SAMPLE`` + 1 points.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.series.base import Point
from service.series.errors import SeriesInputError
from service.series.input import format_timestamp, normalise, parse_timestamp, parse_value
from service.series.table import DEFAULT_KIND, get_kind

STEP_SAMPLE = 100
DEFAULT_HORIZON = 10
MAX_HORIZON = 10_000


class SeriesStream:
    """Causal detection state for one series: ``update`` answers each new point."""

    def __init__(self, detector: str = DEFAULT_KIND, params: Mapping[str, object] | None = None):
        self.kind = get_kind(detector)
        self.params = self.kind.resolve(params)
        self.detector = self.kind.make(self.params)
        self.last_t: float | None = None
        self.count = 0
        self._spacings: list[float] = []
        self.step = 0.0

    def _advance(self, t: float) -> None:
        if self.last_t is not None:
            if t <= self.last_t:
                raise SeriesInputError(
                    f"timestamp {t!r} of point {self.count} is not after the previous one "
                    f"({self.last_t!r}): a stream takes points in time order"
                )
            if len(self._spacings) < STEP_SAMPLE:
                self._spacings.append(t - self.last_t)
                self.step = statistics.median(self._spacings)
        self.last_t = t
        self.count += 1

    def push(self, t: float, x: float) -> Point:
        """One point as Unix seconds and a float (NaN when missing), already validated."""
        self._advance(t)
        return self.detector.update(t, x, self.step)

    def update(self, timestamp: object, value: object) -> dict[str, Any]:
        """Validate and answer one point: timestamp, value, score, is_anomaly, expected, bounds."""
        t = parse_timestamp(timestamp, self.count, "timestamp")
        x = parse_value(value, self.count, "value")
        p = self.push(t, x)
        return {
            "timestamp": timestamp,
            "value": None if math.isnan(x) else x,
            "score": p.score,
            "is_anomaly": p.is_anomaly,
            "expected": p.expected,
            "lower": p.lower,
            "upper": p.upper,
        }

    def forecast_times(self, horizon: int) -> list[float]:
        if self.last_t is None or self.step <= 0:
            return []
        return [self.last_t + (i + 1) * self.step for i in range(horizon)]

    def forecast(self, horizon: int = DEFAULT_HORIZON) -> list[tuple[float, Any, Any, Any]]:
        """(timestamp, expected, lower, upper) for the next ``horizon`` steps."""
        times = self.forecast_times(horizon)
        return [(t, *band) for t, band in zip(times, self.detector.forecast(times), strict=True)]


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass
class SeriesResult:
    """Every point's answer (arrays in time order; NaN where there is no value or band yet)."""

    detector: str
    params: dict[str, float | int]
    timestamps: np.ndarray
    values: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    forecast: list[tuple[float, Any, Any, Any]]
    iso: bool = False
    notes: tuple[str, ...] = field(default=())

    def points(self) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": format_timestamp(float(t), self.iso),
                "value": _nan_to_none(x),
                "score": float(s),
                "is_anomaly": bool(a),
                "expected": _nan_to_none(e),
                "lower": _nan_to_none(lo),
                "upper": _nan_to_none(hi),
            }
            for t, x, s, a, e, lo, hi in zip(
                self.timestamps.tolist(),
                self.values.tolist(),
                self.score.tolist(),
                self.is_anomaly.tolist(),
                self.expected.tolist(),
                self.lower.tolist(),
                self.upper.tolist(),
                strict=True,
            )
        ]

    def anomalies(self) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": format_timestamp(float(self.timestamps[i]), self.iso),
                "value": float(self.values[i]),
                "expected": _nan_to_none(self.expected[i]),
                "score": float(self.score[i]),
            }
            for i in np.flatnonzero(self.is_anomaly)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The answer's JSON shape: points, anomalies, forecast, notes."""
        return {
            "detector": self.detector,
            "params": self.params,
            "points": self.points(),
            "anomalies": self.anomalies(),
            "forecast": [
                {
                    "timestamp": format_timestamp(t, self.iso),
                    "expected": e,
                    "lower": lo,
                    "upper": hi,
                }
                for t, e, lo, hi in self.forecast
            ],
            "notes": list(self.notes),
        }


def detect(
    timestamps: Sequence[object],
    values: Sequence[object],
    detector: str = DEFAULT_KIND,
    params: Mapping[str, object] | None = None,
    horizon: int = DEFAULT_HORIZON,
    max_points: int | None = None,
) -> SeriesResult:
    """Detect anomalies in one series, causally; raise SeriesInputError for unusable input."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 0 <= horizon <= MAX_HORIZON:
        raise SeriesInputError(
            f"horizon must be an integer from 0 to {MAX_HORIZON}, got {horizon!r}"
        )
    stream = SeriesStream(detector, params)
    series = normalise(timestamps, values, max_points)
    n = series.values.size
    out = np.full((5, n), np.nan)
    ts, xs = series.timestamps.tolist(), series.values.tolist()
    for i in range(n):
        p = stream.push(ts[i], xs[i])
        out[0, i] = p.score
        out[1, i] = p.is_anomaly
        if p.expected is not None:
            out[2, i], out[3, i], out[4, i] = p.expected, p.lower, p.upper
    return SeriesResult(
        detector=stream.kind.name,
        params=stream.params,
        timestamps=series.timestamps,
        values=series.values,
        score=out[0],
        is_anomaly=out[1].astype(bool),
        expected=out[2],
        lower=out[3],
        upper=out[4],
        forecast=stream.forecast(horizon),
        iso=series.iso,
        notes=series.notes,
    )
