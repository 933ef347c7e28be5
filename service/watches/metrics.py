"""The watches' metrics: each watched series' latest value, expected value, band and score.

The gauges are labelled by ``watch`` and the series' own labels, so one metric has several
label-name sets (one per watch's query shape). prometheus_client's Gauge has one, so there is a
Gauge object per (metric, label names), none registered: in one process a collector merges
them into one family per metric; with several workers the multiprocess files do (each sample
is stored with its own labels), and the values of a worker that died are dropped ("livemax").
A series label named like one of ours (``watch``) is exported as ``exported_watch``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service.series.base import Point

SERIES_GAUGES = {
    "value": "The watched series' latest value.",
    "expected": "The value the watch's detector expected for it.",
    "lower": "The lower edge of the expected band.",
    "upper": "The upper edge of the expected band.",
    "anomaly_score": "The detector's anomaly score for the latest value, 0 to 1.",
    "anomalous": "1 when the latest value is outside its band (an anomaly), else 0.",
}
WATCH_GAUGES = {
    "last_success_timestamp_seconds": "Unix time of the watch's last successful poll.",
    "series": "Series the watch exports (at most its max_series).",
}
WATCH_COUNTERS = {
    "errors": "Polls that failed: Prometheus down, slow, or refusing the query.",
    "dropped_series": "Series beyond the watch's max_series, counted at every poll, not exported.",
}


class _Family:
    """One metric name; a Gauge or Counter per label-name tuple, created on first use."""

    def __init__(self, name: str, doc: str, counter: bool = False) -> None:
        self.name, self.doc, self.counter = name, doc, counter
        self._by_names: dict[tuple[str, ...], Gauge | Counter] = {}
        self._lock = threading.Lock()

    def child(self, labels: Mapping[str, str]):
        names = tuple(labels)
        with self._lock:
            metric = self._by_names.get(names)
            if metric is None:
                if self.counter:
                    metric = Counter(self.name, self.doc, names, registry=None)
                else:
                    metric = Gauge(
                        self.name, self.doc, names, registry=None, multiprocess_mode="livemax"
                    )
                self._by_names[names] = metric
        return metric.labels(**labels)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            parts = [m for metric in self._by_names.values() for m in metric.collect()]
        if not parts:
            return
        merged = parts[0]
        for part in parts[1:]:
            merged.samples.extend(part.samples)
        yield merged


class WatchMetrics(Collector):
    def __init__(self) -> None:
        self.families = {
            **{k: _Family(f"vigil_watch_{k}", doc) for k, doc in SERIES_GAUGES.items()},
            **{k: _Family(f"vigil_watch_{k}", doc) for k, doc in WATCH_GAUGES.items()},
            **{k: _Family(f"vigil_watch_{k}", doc, True) for k, doc in WATCH_COUNTERS.items()},
        }

    def collect(self) -> Iterator[Metric]:
        for family in self.families.values():
            yield from family.collect()

    @staticmethod
    def series_labels(watch: str, labels: Mapping[str, str]) -> dict[str, str]:
        out = {"watch": watch}
        for k, v in sorted(labels.items()):
            if k == "__name__":
                continue
            out["exported_" + k if k == "watch" else k] = v
        return out

    def point(self, labels: Mapping[str, str], value: float, p: Point) -> None:
        """Export a series' latest answer; the band only once the detector has one."""
        f = self.families
        if not math.isnan(value):
            f["value"].child(labels).set(value)
        if p.expected is not None:
            f["expected"].child(labels).set(p.expected)
            f["lower"].child(labels).set(p.lower)
            f["upper"].child(labels).set(p.upper)
        f["anomaly_score"].child(labels).set(p.score)
        f["anomalous"].child(labels).set(1.0 if p.is_anomaly else 0.0)

    def polled(self, watch: str, when: float, series: int, dropped: int) -> None:
        f = self.families
        f["last_success_timestamp_seconds"].child({"watch": watch}).set(when)
        f["series"].child({"watch": watch}).set(series)
        f["dropped_series"].child({"watch": watch}).inc(dropped)

    def failed(self, watch: str) -> None:
        self.families["errors"].child({"watch": watch}).inc()

    def declare(self, watch: str) -> None:
        """Create a watch's counters at 0, so that rates see their first increase."""
        self.families["errors"].child({"watch": watch})
        self.families["dropped_series"].child({"watch": watch})


METRICS = WatchMetrics()
REGISTRY.register(METRICS)
