"""NAB-style scoring of a detector's per-row anomaly scores against labelled windows.

The rules of the Numenta Anomaly Benchmark, as summarised in its README:

- The first ``min(floor(0.15 N), 750)`` rows of a series of N rows (the probation) are not scored.
- For a threshold t, a row is a detection when its score is >= t.
- Inside a labelled window (rows with start <= timestamp <= end) only the earliest detection
  counts: at row i, with the window's right edge at row R and width W rows, p = -(R - i + 1) / W
  and it earns ``A_tp * S(p) / S(-1)`` with ``S(x) = 2 / (1 + exp(5x)) - 1`` (-1 beyond x > 3).
  A window with no detection costs ``A_fn``. A window whose rows all lie in the probation is not
  scored (no reward, no miss).
- A detection outside windows adds ``A_fp * S(q)`` (negative), q = |R_prev - i| / (W_prev - 1)
  from the previous window's right edge and width; ``-A_fp`` with no previous window.
- One threshold for the whole corpus, chosen per profile to maximise that profile's total.
- The total maps to ``100 (raw - null) / (perfect - null)``: null never detects (every window
  missed), perfect detects every window at its left edge with no false positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("standard", 1.0, 0.11, 1.0),
        Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
        Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
    )
}


def scaled_sigmoid(x: float) -> float:
    """NAB's S(x): about 0.987 at x = -1 (a window's left edge), 0 at 0, -1 beyond 3."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass(frozen=True)
class LabelledSeries:
    """One series' rows as NAB scores them: which window each row is in and what it is worth."""

    name: str
    n: int
    probation: int
    window: np.ndarray
    """Index of the row's window, -1 outside windows."""
    weight: np.ndarray
    """Inside a window: S(p) / S(-1), the share of A_tp a first detection there earns.
    Outside: S(q), the (negative) share of A_fp a detection there costs."""
    windows: tuple[tuple[int, int], ...]
    """(left, right) row indices of each window, in time order."""
    scored_windows: tuple[int, ...]
    """The windows with at least one row after the probation."""


def probation_rows(n: int) -> int:
    return min(math.floor(0.15 * n), 750)


def label(
    name: str, timestamps: np.ndarray, windows: Sequence[tuple[float, float]]
) -> LabelledSeries:
    """Place ``windows`` (start, end in the timestamps' unit, inclusive) on a series' rows."""
    ts = np.asarray(timestamps, dtype=float)
    n = ts.size
    bounds: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        left = int(np.searchsorted(ts, start, side="left"))
        right = int(np.searchsorted(ts, end, side="right")) - 1
        if right >= left:
            bounds.append((left, right))
    window = np.full(n, -1, dtype=int)
    weight = np.full(n, -1.0)
    top = scaled_sigmoid(-1.0)
    prev: tuple[int, int] | None = None
    cursor = 0
    for w, (left, right) in enumerate(bounds):
        width = right - left + 1
        if prev is not None:
            prev_right, prev_width = prev
            idx = np.arange(cursor, left)
            weight[cursor:left] = [
                scaled_sigmoid(abs(prev_right - i) / max(prev_width - 1, 1)) for i in idx
            ]
        idx = np.arange(left, right + 1)
        window[left : right + 1] = w
        weight[left : right + 1] = [scaled_sigmoid(-(right - i + 1) / width) / top for i in idx]
        prev = (right, width)
        cursor = right + 1
    if prev is not None:
        prev_right, prev_width = prev
        weight[cursor:] = [
            scaled_sigmoid(abs(prev_right - i) / max(prev_width - 1, 1)) for i in range(cursor, n)
        ]
    probation = probation_rows(n)
    scored = tuple(w for w, (_, right) in enumerate(bounds) if right >= probation)
    return LabelledSeries(name, n, probation, window, weight, tuple(bounds), scored)


@dataclass(frozen=True)
class SeriesScore:
    name: str
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    false_positives: int
    detections: int

    @property
    def normalised(self) -> float:
        """100 (raw - null) / (perfect - null); NaN for a series without windows."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else math.nan


def score_series(
    s: LabelledSeries, scores: np.ndarray, threshold: float, profile: Profile
) -> SeriesScore:
    """One series' NAB score at ``threshold`` under ``profile``."""
    det = np.asarray(scores, dtype=float) >= threshold
    det[: s.probation] = False
    raw = 0.0
    detected = 0
    scored = set(s.scored_windows)
    for w in scored:
        left, right = s.windows[w]
        hits = np.flatnonzero(det[max(left, s.probation) : right + 1])
        if hits.size:
            first = max(left, s.probation) + int(hits[0])
            raw += profile.a_tp * float(s.weight[first])
            detected += 1
        else:
            raw -= profile.a_fn
    outside = det & (s.window < 0)
    raw += profile.a_fp * float(s.weight[outside].sum())
    n_windows = len(scored)
    return SeriesScore(
        name=s.name,
        raw=raw,
        null=-profile.a_fn * n_windows,
        perfect=profile.a_tp * n_windows,
        windows=n_windows,
        detected=detected,
        false_positives=int(outside.sum()),
        detections=int(det.sum()),
    )


def best_threshold(
    corpus: Sequence[tuple[LabelledSeries, np.ndarray]], profile: Profile
) -> tuple[float, float]:
    """The threshold that maximises the corpus total, and that total.

    Sweeps every distinct score from the highest down, adding each row's effect as it becomes a
    detection: a false positive adds its cost, a window's reward moves to its earliest detection.
    """
    rows_score: list[np.ndarray] = []
    rows_id: list[np.ndarray] = []
    offsets = []
    offset = 0
    win_offset = 0
    gain = []
    win_global = []
    n_windows = 0
    for s, scores in corpus:
        sc = np.nan_to_num(np.asarray(scores, dtype=float), nan=-math.inf)
        keep = np.arange(s.probation, s.n)
        scored = set(s.scored_windows)
        w = s.window[keep]
        in_scored = np.array([x in scored for x in w.tolist()], dtype=bool)
        outside = w < 0
        use = outside | in_scored
        keep = keep[use]
        rows_score.append(sc[keep])
        rows_id.append(keep + offset)
        gain.append(
            np.where(
                s.window[keep] < 0, profile.a_fp * s.weight[keep], profile.a_tp * s.weight[keep]
            )
        )
        win_global.append(np.where(s.window[keep] < 0, -1, s.window[keep] + win_offset))
        offsets.append(offset)
        offset += s.n
        win_offset += len(s.windows)
        n_windows += len(scored)
    all_score = np.concatenate(rows_score) if rows_score else np.empty(0)
    all_gain = np.concatenate(gain) if gain else np.empty(0)
    all_win = np.concatenate(win_global) if win_global else np.empty(0, dtype=int)
    all_row = np.concatenate(rows_id) if rows_id else np.empty(0, dtype=int)
    order = np.lexsort((all_row, -all_score))
    null = -profile.a_fn * n_windows
    total = null
    best_total, best_thr = total, math.inf
    first_row: dict[int, tuple[int, float]] = {}
    sc_sorted = all_score[order].tolist()
    gain_sorted = all_gain[order].tolist()
    win_sorted = all_win[order].tolist()
    row_sorted = all_row[order].tolist()
    i = 0
    n = len(sc_sorted)
    while i < n:
        thr = sc_sorted[i]
        if thr == -math.inf:
            break
        while i < n and sc_sorted[i] == thr:
            w = win_sorted[i]
            if w < 0:
                total += gain_sorted[i]
            else:
                cur = first_row.get(w)
                if cur is None:
                    total += profile.a_fn + gain_sorted[i]
                    first_row[w] = (row_sorted[i], gain_sorted[i])
                elif row_sorted[i] < cur[0]:
                    total += gain_sorted[i] - cur[1]
                    first_row[w] = (row_sorted[i], gain_sorted[i])
            i += 1
        if total > best_total + 1e-12:
            best_total, best_thr = total, thr
    return best_thr, best_total


@dataclass(frozen=True)
class CorpusScore:
    profile: Profile
    threshold: float
    score: float
    """Normalised: 0 for no detections, 100 for perfect."""
    series: tuple[SeriesScore, ...]


def evaluate(
    corpus: Sequence[tuple[LabelledSeries, np.ndarray]],
    profiles: Sequence[Profile] = tuple(PROFILES.values()),
) -> list[CorpusScore]:
    """Each profile's normalised corpus score at its best threshold, with per-series scores."""
    out = []
    for profile in profiles:
        threshold, _ = best_threshold(corpus, profile)
        per = tuple(score_series(s, sc, threshold, profile) for s, sc in corpus)
        raw = sum(p.raw for p in per)
        null = sum(p.null for p in per)
        perfect = sum(p.perfect for p in per)
        score = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
        out.append(CorpusScore(profile, threshold, score, per))
    return out
