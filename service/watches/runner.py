"""The watch loop: poll Prometheus every step, score the new points causally, export them.

One daemon thread per service. It never touches the event loop, and a Prometheus that is down
or slow costs it a timeout (``VIGIL_PROMETHEUS_TIMEOUT``), never a request. Each watched
series has its own ``SeriesStream``: the first successful poll feeds it the look-back range
(warm start), later polls only the points after the last one it saw, so every point is scored
once, in time order, as a live stream would score it. After an outage the next poll fetches
what was missed, up to the look-back. A series that first appears later starts from that
poll's points.

With several workers only one runs the loop: the one holding an exclusive lock on a file in
the run's private folder (``leader``). The others try again every second, so if that worker
dies another takes over (from a fresh warm start).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from service.series import SeriesStream
from service.watches.config import Watch
from service.watches.metrics import METRICS, WatchMetrics
from service.watches.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailable,
)

log = logging.getLogger("vigil.watches")

LEADER_RETRY = 1.0
"""Seconds between a follower's attempts to become the one that runs the loop."""


class FileLeader:
    """True once this process holds the lock on ``path``; held until the process exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._held = False

    def __call__(self) -> bool:
        if self._held:
            return True
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = True
        log.info("this worker (pid %d) runs the watches", os.getpid())
        return True


@dataclass
class WatchState:
    watch: Watch
    streams: dict[frozenset, SeriesStream] = field(default_factory=dict)
    last_end: float | None = None
    next_due: float = 0.0
    failing: bool = False


class WatchRunner:
    def __init__(
        self,
        watches: list[Watch],
        client: PrometheusClient,
        metrics: WatchMetrics = METRICS,
        leader: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.states = [WatchState(w) for w in watches]
        self.client = client
        self.metrics = metrics
        self.leader = leader
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def start(self) -> None:
        for s in self.states:
            self.metrics.declare(s.watch.name)
        self._thread = threading.Thread(target=self._loop, name="vigil-watches", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._session.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.leader is not None and not self.leader():
                self._stop.wait(LEADER_RETRY)
                continue
            now = self.clock()
            for state in self.states:
                if now >= state.next_due and not self._stop.is_set():
                    self.poll(state, now)
                    state.next_due = now + state.watch.step
            wake = min(s.next_due for s in self.states) - self.clock()
            self._stop.wait(max(0.05, min(wake, LEADER_RETRY)))

    def poll(self, state: WatchState, now: float) -> None:
        """One poll of one watch: never raises (a failure is counted and logged)."""
        w = state.watch
        end = math.floor(now / w.step) * w.step
        start = end - w.lookback
        if state.last_end is not None:
            start = max(start, state.last_end + w.step)
        if start > end:
            return
        try:
            found = self.client.query_range(w.query, start, end, w.step, self._session)
        except (PrometheusUnavailable, PrometheusQueryError) as e:
            self.metrics.failed(w.name)
            if not state.failing:
                log.warning("watch %s: poll failed (will retry every step): %s", w.name, e)
            state.failing = True
            return
        except Exception:  # never let a surprise end the loop
            self.metrics.failed(w.name)
            log.exception("watch %s: poll failed", w.name)
            return
        if state.failing:
            log.info("watch %s: polling again", w.name)
        state.failing = False
        dropped = 0
        for s in found:
            key = frozenset(s.labels.items())
            stream = state.streams.get(key)
            if stream is None:
                if len(state.streams) >= w.max_series:
                    dropped += 1
                    continue
                stream = state.streams[key] = SeriesStream(w.detector, w.params)
            last = None
            for t, x in zip(s.timestamps, s.values, strict=True):
                if stream.last_t is None or t > stream.last_t:
                    last = (x, stream.push(t, x))
            if last is not None:
                self.metrics.point(WatchMetrics.series_labels(w.name, s.labels), *last)
        state.last_end = end
        self.metrics.polled(w.name, self.clock(), len(state.streams), dropped)


def from_settings(settings, run_dir: Path | None) -> WatchRunner | None:
    """The runner ``VIGIL_WATCHES`` asks for, or None; a bad watch file raises
    ``WatchConfigError``. ``run_dir``: the run's private folder when there are several workers
    (only the worker holding its lock runs the loop)."""
    from service.watches.config import WatchConfigError, load

    if settings.watches is None:
        return None
    watches = load(settings.watches)
    if settings.prometheus_url is None:
        raise WatchConfigError(f"{settings.watches}: watches need VIGIL_PROMETHEUS_URL")
    if not watches:
        return None
    client = PrometheusClient(
        settings.prometheus_url, settings.prometheus_timeout, settings.prometheus_authorization_file
    )
    leader = FileLeader(run_dir / "watches.lock") if run_dir is not None else None
    return WatchRunner(watches, client, leader=leader)
