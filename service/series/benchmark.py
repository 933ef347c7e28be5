"""Scoring a detector kind on a labelled corpus: the code behind ``evaluate-series`` and
``make bench_series``.

``detect_fn`` is how one series gets detected; in-process by default, so a harness can pass a
function that calls ``POST /series/detect`` instead and compare the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from service.series.corpus import CorpusSeries
from service.series.nab import CorpusScore, LabelledSeries, evaluate, label
from service.series.stream import SeriesResult, detect

DetectFn = Callable[[CorpusSeries, str, Mapping[str, object]], SeriesResult]


def detect_in_process(series: CorpusSeries, detector: str, params: Mapping[str, object]):
    return detect(series.timestamps, series.values, detector, params)


@dataclass(frozen=True)
class CorpusRun:
    detector: str
    params: dict[str, float | int]
    results: tuple[SeriesResult, ...]
    labelled: tuple[LabelledSeries, ...]
    scores: tuple[CorpusScore, ...]
    """One per NAB profile: standard, reward_low_FP_rate, reward_low_FN_rate."""
    seconds: float
    """Time spent detecting (not scoring)."""


def run_corpus(
    corpus: Sequence[CorpusSeries],
    detector: str,
    params: Mapping[str, object] | None = None,
    detect_fn: DetectFn = detect_in_process,
) -> CorpusRun:
    """Detect every series of ``corpus`` and score the answers NAB's way."""
    import time

    params = dict(params or {})
    results, labelled = [], []
    started = time.perf_counter()
    for series in corpus:
        result = detect_fn(series, detector, params)
        results.append(result)
    seconds = time.perf_counter() - started
    for series, result in zip(corpus, results, strict=True):
        labelled.append(label(series.name, result.timestamps, series.windows))
    scores = evaluate([(lab, r.score) for lab, r in zip(labelled, results, strict=True)])
    resolved = results[0].params if results else {}
    return CorpusRun(detector, resolved, tuple(results), tuple(labelled), tuple(scores), seconds)
