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

log = logging.getLogger("vigil.jobs")

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
ATTEMPT_RESULTS = ("succeeded", "failed")


class JobsCollector:
    """A prometheus_client collector over ``get_store()`` (None: the store is not open, and
    there are no job series)."""

    def __init__(self, get_store: Callable[[], JobStore | None]) -> None:
        self.get_store = get_store

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time (no store is opened at registration)

    def collect(self) -> Iterator[Metric]:
        store = self.get_store()
        if store is None:
            return
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
            "Wall time of finished training jobs, from start to end, by detector and status.",
            labels=["detector", "status"],
        )
        for detector, status, count, total, within in durations:
            buckets = [(_le(b), n) for b, n in zip(DURATION_BUCKETS, within, strict=True)]
            buckets.append(("+Inf", count))
            histogram.add_metric([detector, status], buckets, total)
        yield histogram
        states = GaugeMetricFamily(
            "vigil_webhook_deliveries",
            "Webhook deliveries by event and state: pending (being retried), succeeded, failed"
            " (retry schedule used up).",
            labels=["event", "status"],
        )
        events = sorted({e for e, _ in deliveries} | {e for e, _ in attempts})
        for event in events:
            for status in DELIVERY_STATUSES:
                states.add_metric([event, status], deliveries.get((event, status), 0))
        yield states
        tries = CounterMetricFamily(
            "vigil_webhook_delivery_attempts",
            "Webhook delivery attempts by event and result (succeeded: a 2xx answer).",
            labels=["event", "result"],
        )
        for event in events:
            for result in ATTEMPT_RESULTS:
                tries.add_metric([event, result], attempts.get((event, result), 0))
        yield tries


def _le(bound: float) -> str:
    return floatToGoString(bound)  # as prometheus_client writes a histogram's ``le``
