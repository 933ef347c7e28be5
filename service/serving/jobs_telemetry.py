"""Training-job and webhook metrics, read from the job store at scrape time.

The store is the one source of truth that every process shares (serving workers, the runner,
its job processes, the webhook sender): reading it when Prometheus scrapes gives the same
answer from any worker, survives restarts, and needs no multiprocess bookkeeping. Finished
jobs and delivery attempts are never removed, so their counts are counters.

Label values are bounded: ``status`` and ``result`` are fixed sets, ``detector`` a known kind
(checked before a job is queued), ``event`` one of the four webhook events.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from service.jobs.store import STATUSES, JobStore
from service.jobs.webhooks import EVENTS

log = logging.getLogger("vigil.jobs")

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
ATTEMPT_RESULTS = ("succeeded", "failed")


class JobsCollector:
    """A prometheus_client collector over ``get_store()``: None while there is no job store
    (no job was ever submitted, or the jobs API is off), which reads as zero jobs and zero
    deliveries. Every status, event and result, and every detector kind's duration
    histogram, is exported from the start, at zero: a first failure is then an increase, and
    the dashboard's panels have data before the first job."""

    def __init__(self, get_store: Callable[[], JobStore | None]) -> None:
        self.get_store = get_store

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time (no store is opened at registration)

    def collect(self) -> Iterator[Metric]:
        from service.detectors import table

        counts: dict[str, int] = {}
        durations: list[tuple[str, int, float, list[int]]] = []
        deliveries: dict[tuple[str, str], int] = {}
        attempts: dict[tuple[str, str], int] = {}
        store = self.get_store()
        if store is not None:
            try:
                counts = store.counts()
                durations = store.durations(DURATION_BUCKETS)
                deliveries, attempts = store.delivery_counts()
            except (sqlite3.Error, OSError) as exc:
                log.warning("job metrics unavailable: %s", exc)
                return
        jobs = GaugeMetricFamily(
            "vigil_training_jobs", "Training jobs by status.", labels=["status"]
        )
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "vigil_training_queue_depth",
            "Training jobs queued and not yet started.",
            value=counts.get("queued", 0),
        )
        histogram = HistogramMetricFamily(
            "vigil_training_duration_seconds",
            "Wall time of succeeded training jobs, from start to end, by detector kind.",
            labels=["detector"],
        )
        by_kind = {d: (count, total, within) for d, count, total, within in durations}
        for detector in [*table.names(), *sorted(set(by_kind) - set(table.names()))]:
            count, total, within = by_kind.get(detector, (0, 0.0, [0] * len(DURATION_BUCKETS)))
            buckets = [(_le(b), n) for b, n in zip(DURATION_BUCKETS, within, strict=True)]
            buckets.append(("+Inf", count))
            histogram.add_metric([detector], buckets, total)
        yield histogram
        states = GaugeMetricFamily(
            "vigil_webhook_deliveries",
            "Webhook deliveries by event and state: pending (being retried), succeeded, failed"
            " (retry schedule used up).",
            labels=["event", "status"],
        )
        tries = CounterMetricFamily(
            "vigil_webhook_delivery_attempts",
            "Webhook delivery attempts by event and result (succeeded: a 2xx answer).",
            labels=["event", "result"],
        )
        for event in EVENTS:
            for status in DELIVERY_STATUSES:
                states.add_metric([event, status], deliveries.get((event, status), 0))
            for result in ATTEMPT_RESULTS:
                tries.add_metric([event, result], attempts.get((event, result), 0))
        yield states
        yield tries


def _le(bound: float) -> str:
    return floatToGoString(bound)  # as prometheus_client writes a histogram's ``le``
