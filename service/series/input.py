"""Turning what a user sent into a clean series: the defined answer for each kind of mess.

- **Timestamps** are Unix seconds (int or float) or ISO 8601 strings (``2024-05-01T12:00:00Z``,
  ``2024-05-01 12:00:00``; without an offset, UTC). Anything else is an error naming the index.
- **Values** are numbers; ``None`` or NaN means "no measurement": the point is kept, answered with
  what the detector expected there, and never flagged nor learned from. Infinity, strings and
  booleans are errors naming the index.
- **Unsorted input** is sorted by timestamp (stable); results come back in time order.
- **Duplicate timestamps** become one point whose value is the mean of their measured values.
- **Gaps and irregular spacing** are kept as they are: nothing is filled in. Detectors place a
  point in its season by its own timestamp, and the step (used for the forecast) is the median
  spacing of the first points (see ``service.series.stream``).
- **Too short**: fewer than ``MIN_POINTS`` distinct timestamps with a value is an error.
- **Too long**: more than ``max_points`` points is an error (the caller passes its limit).

Each repair made is reported in ``Series.notes`` so the answer can say what was done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from service.series.errors import SeriesInputError

MIN_POINTS = 3
"""Fewest distinct timestamps with a measured value a series needs."""


@dataclass(frozen=True)
class Series:
    """A series in time order with distinct timestamps (Unix seconds); NaN marks a missing value."""

    timestamps: np.ndarray
    values: np.ndarray
    iso: bool = False
    """True when the input gave ISO 8601 strings, so answers use them too."""
    notes: tuple[str, ...] = field(default=())


def parse_timestamp(raw: object, index: int, name: str = "timestamps") -> float:
    """One timestamp as Unix seconds, or a SeriesInputError naming ``name[index]``."""
    if isinstance(raw, bool) or raw is None:
        raise SeriesInputError(
            f"{name}[{index}] must be Unix seconds or an ISO 8601 string, got {raw!r}"
        )
    if isinstance(raw, int | float):
        t = float(raw)
        if not math.isfinite(t):
            raise SeriesInputError(f"{name}[{index}] must be a finite number, got {raw!r}")
        return t
    if isinstance(raw, str):
        text = raw.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise SeriesInputError(
                f"{name}[{index}] is not an ISO 8601 timestamp: {raw!r}"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    raise SeriesInputError(
        f"{name}[{index}] must be Unix seconds or an ISO 8601 string, got {type(raw).__name__}"
    )


def parse_value(raw: object, index: int, name: str = "values") -> float:
    """One value as a float: ``None`` and NaN are NaN (missing); other non-numbers are errors."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SeriesInputError(f"{name}[{index}] must be a number or null, got {raw!r}")
    x = float(raw)
    if math.isinf(x):
        raise SeriesInputError(f"{name}[{index}] must be finite, got {raw!r}")
    return x


def format_timestamp(t: float, iso: bool) -> str | float:
    """A timestamp the way the input gave them: ISO 8601 UTC or Unix seconds."""
    if not iso:
        return t
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def normalise(
    timestamps: Sequence[object], values: Sequence[object], max_points: int | None = None
) -> Series:
    """Validate and tidy one series (see the module docstring for each defined answer)."""
    if not isinstance(timestamps, Sequence) or isinstance(timestamps, str | bytes):
        raise SeriesInputError("timestamps must be an array")
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise SeriesInputError("values must be an array")
    if len(timestamps) != len(values):
        raise SeriesInputError(
            f"timestamps and values must have the same length, got {len(timestamps)} "
            f"timestamps and {len(values)} values"
        )
    if max_points is not None and len(values) > max_points:
        raise SeriesInputError(f"values has {len(values)} points, more than the limit {max_points}")
    ts = np.fromiter(
        (parse_timestamp(raw, i) for i, raw in enumerate(timestamps)), float, len(timestamps)
    )
    xs = np.fromiter((parse_value(raw, i) for i, raw in enumerate(values)), float, len(values))
    iso = any(isinstance(raw, str) for raw in timestamps)
    notes: list[str] = []

    if ts.size > 1 and np.any(np.diff(ts) < 0):
        order = np.argsort(ts, kind="stable")
        ts, xs = ts[order], xs[order]
        notes.append("timestamps were not in order: points are answered in time order")

    if ts.size > 1 and np.any(np.diff(ts) == 0):
        uniq, first, counts = np.unique(ts, return_index=True, return_counts=True)
        measured = ~np.isnan(xs)
        sums = np.add.reduceat(np.where(measured, xs, 0.0), first)
        n = np.add.reduceat(measured.astype(int), first)
        with np.errstate(invalid="ignore"):
            merged = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        notes.append(
            f"{int(np.sum(counts > 1))} duplicate timestamps: each became one point with the mean"
            " of its values"
        )
        ts, xs = uniq, merged

    missing = int(np.isnan(xs).sum())
    if missing:
        notes.append(f"{missing} points without a value: answered with the expected value only")
    measured_points = int(xs.size - missing)
    if measured_points < MIN_POINTS:
        raise SeriesInputError(
            f"values has {measured_points} measured points at distinct timestamps; "
            f"at least {MIN_POINTS} are needed"
        )
    return Series(timestamps=ts, values=xs, iso=iso, notes=tuple(notes))
