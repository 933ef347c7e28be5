"""Webhook delivery (Standard Webhooks) off the request path, and the anomaly batcher.

Every event is first recorded in the job store (``deliveries``), then sent by a background
thread: so a delivery survives a restart, and the thread of any process sharing the store may
send it (each attempt holds a lease, so never two at once). Each attempt is signed afresh
(``webhook-timestamp`` is the attempt's time) over the same body under the same
``webhook-id``; a non-2xx answer or a network error is retried on the schedule, with jitter,
and no sooner than the receiver's ``Retry-After``. Attempts and outcomes are recorded.

Events: ``training_job.succeeded``, ``training_job.failed`` (recorded with the job's end, by
the runner), ``model.promoted`` and ``anomaly.detected`` (batched by ``AnomalyBatcher``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from service.jobs.signing import (
    DEFAULT_SCHEDULE,
    event_body,
    parse_retry_after,
    parse_schedule,
    parse_secret,
    retry_delay,
    sign,
)
from service.jobs.store import Delivery, Job, JobStore, NewDelivery, iso_from_epoch

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("vigil.webhooks")

TRAINING_SUCCEEDED = "training_job.succeeded"
TRAINING_FAILED = "training_job.failed"
MODEL_PROMOTED = "model.promoted"
ANOMALY_DETECTED = "anomaly.detected"
EVENTS = (TRAINING_SUCCEEDED, TRAINING_FAILED, MODEL_PROMOTED, ANOMALY_DETECTED)

REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
LEASE_MARGIN_S = 30.0
USER_AGENT = "vigil-webhooks"

OnAttempt = Callable[[str, str], None]
"""``on_attempt(event, result)``, result ``succeeded``, ``retrying`` or ``failed`` (given up)."""


class WebhookSender:
    """Records events and delivers them to ``url`` from a background thread (``start``)."""

    def __init__(
        self,
        store: JobStore,
        url: str,
        secret: str,
        *,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        timeout: float = REQUEST_TIMEOUT_S,
        poll_interval: float = 1.0,
        on_attempt: OnAttempt | None = None,
    ) -> None:
        if not schedule:
            raise ValueError("the retry schedule needs at least one attempt")
        self.store = store
        self.url = url
        self._key = parse_secret(secret)
        self.schedule = tuple(schedule)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.on_attempt = on_attempt
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings, store: JobStore, **kw: Any) -> WebhookSender | None:
        """The sender ``VIGIL_WEBHOOK_*`` describe; None when no URL is set."""
        if not settings.webhook_url or settings.webhook_secret is None:
            return None
        return cls(
            store,
            settings.webhook_url,
            settings.webhook_secret.get_secret_value(),
            schedule=parse_schedule(settings.webhook_retry_schedule),
            **kw,
        )

    # --- recording events -----------------------------------------------------------------

    def message(
        self, event: str, data: dict[str, Any], *, job_id: str | None = None, model: str | None
    ) -> NewDelivery:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; events: {', '.join(EVENTS)}")
        body = event_body(event, data)
        return NewDelivery(event, body, job_id=job_id, model=model, delay=self.schedule[0])

    def job_events(self, job: Job) -> list[NewDelivery]:
        """The messages a finished job sends (pass as the runner's ``events``): succeeded or
        failed, and model.promoted when it registered a promoted version. None if canceled."""
        if job.status == "succeeded":
            out = [self.message(TRAINING_SUCCEEDED, job.public(), job_id=job.id, model=job.model)]
            if job.promote:
                data = promoted_data(
                    job.model, job.version, previous=job.previous_version, job_id=job.id
                )
                out.append(self.message(MODEL_PROMOTED, data, job_id=job.id, model=job.model))
            return out
        if job.status == "failed":
            return [self.message(TRAINING_FAILED, job.public(), job_id=job.id, model=job.model)]
        return []

    def enqueue(
        self, event: str, data: dict[str, Any], *, job_id: str | None = None, model: str | None
    ) -> Delivery:
        """Record an event for delivery and wake the sender; returns at once (one small
        SQLite write; the HTTP request happens on the sender's thread)."""
        delivery = self.store.add_delivery(self.message(event, data, job_id=job_id, model=model))
        self.wake()
        return delivery

    def redeliver(self, delivery_id: str) -> Delivery:
        """Send a delivery again, from the start of the schedule, under the same webhook-id."""
        delivery = self.store.redeliver(delivery_id)
        self.wake()
        return delivery

    # --- sending --------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Attempt every delivery that is due now; returns how many attempts were made."""
        made = 0
        while not self._stop.is_set():
            delivery = self.store.claim_delivery(self.timeout + CONNECT_TIMEOUT_S + LEASE_MARGIN_S)
            if delivery is None:
                break
            self.attempt(delivery)
            made += 1
        return made

    def attempt(self, delivery: Delivery) -> Delivery:
        """One signed POST of ``delivery``, its outcome recorded."""
        body = delivery.body.encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, delivery.id, timestamp, body),
        }
        started = time.perf_counter()
        status_code: int | None = None
        retry_after: float | None = None
        try:
            response = self._session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=(CONNECT_TIMEOUT_S, self.timeout),
                allow_redirects=False,
            )
            status_code = response.status_code
            ok = 200 <= status_code < 300
            error = None if ok else f"HTTP {status_code}"
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            response.close()
        except requests.RequestException as exc:
            ok = False
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        duration_ms = (time.perf_counter() - started) * 1000
        next_at = None
        if not ok:
            delay = retry_delay(self.schedule, delivery.round_attempts + 1, retry_after)
            next_at = None if delay is None else time.time() + delay
        recorded = self.store.record_attempt(
            delivery.id,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            next_attempt_at=next_at,
            succeeded=ok,
        )
        result = "succeeded" if ok else ("retrying" if next_at is not None else "failed")
        if not ok:
            log.warning("webhook %s %s: %s (%s)", delivery.event, delivery.id, error, result)
        if self.on_attempt is not None:
            self.on_attempt(delivery.event, result)
        return recorded

    # --- the background thread ------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vigil-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.deliver_due()
                due = self.store.next_delivery_at()
            except Exception:  # a locked or broken store must not end the thread
                log.exception("webhook delivery pass failed")
                due = None
            wait = self.poll_interval
            if due is not None:
                wait = min(wait, max(0.0, due - time.time()))
            self._wake.wait(wait)


def promoted_data(
    model: str, version: int | None, *, previous: int | None = None, job_id: str | None = None
) -> dict[str, Any]:
    """The ``model.promoted`` event's data."""
    return {
        "model": model,
        "alias": "default",
        "version": version,
        "previous_version": previous,
        "job_id": job_id,
    }


# --- anomaly.detected: batched per model ------------------------------------------------------


@dataclass
class _Window:
    opened: float
    first_at: float
    last_at: float
    count: int = 0
    rows: list[Any] = field(default_factory=list)


def _plain(row: Any) -> Any:
    if hasattr(row, "tolist"):
        return row.tolist()
    if isinstance(row, dict):
        return dict(row)
    return list(row)


class AnomalyBatcher:
    """Collects anomalies per model and sends one ``anomaly.detected`` per model per
    ``interval`` seconds: a window opens at a model's first anomaly and is sent when it is
    ``interval`` old, with the count and the first ``max_rows`` rows. The store makes the
    limit hold across processes: a window is sent only if no process sent one for that model
    in the last ``interval`` seconds; otherwise it keeps collecting.

    ``record`` never waits on I/O: it updates a dict under a lock held for microseconds (the
    flusher only swaps entries out). At most ``max_models`` models are held; anomalies of
    others are counted in ``dropped`` and not sent."""

    def __init__(
        self,
        sender: WebhookSender,
        interval: float,
        *,
        max_rows: int = 5,
        max_models: int = 1000,
        tick: float | None = None,
    ) -> None:
        self.sender = sender
        self.interval = interval
        self.max_rows = max_rows
        self.max_models = max_models
        self.tick = tick if tick is not None else min(1.0, interval / 4)
        self.dropped = 0
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, model: str, rows: Sequence[Any], count: int | None = None) -> None:
        """``count`` anomalies of ``model`` (default ``len(rows)``); ``rows`` are examples."""
        n = len(rows) if count is None else count
        if n <= 0:
            return
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            window = self._windows.get(model)
            if window is None:
                if len(self._windows) >= self.max_models:
                    self.dropped += n
                    return
                window = self._windows[model] = _Window(now, wall, wall)
            window.count += n
            window.last_at = wall
            room = self.max_rows - len(window.rows)
            if room > 0:
                window.rows.extend(_plain(r) for r in rows[:room])

    def flush(self, *, force: bool = False) -> list[Delivery]:
        """Send the windows that are ``interval`` old (all with ``force``)."""
        now = time.monotonic()
        with self._lock:
            due = {
                m: w for m, w in self._windows.items() if force or now - w.opened >= self.interval
            }
            for model in due:
                del self._windows[model]
        sent = []
        for model, window in due.items():
            data = {
                "model": model,
                "count": window.count,
                "rows": window.rows,
                "first_at": _iso(window.first_at),
                "last_at": _iso(window.last_at),
            }
            message = self.sender.message(ANOMALY_DETECTED, data, model=model)
            delivery = self.sender.store.add_windowed_delivery(model, self.interval, message)
            if delivery is None:
                self._put_back(model, window)
            else:
                sent.append(delivery)
        if sent:
            self.sender.wake()
        return sent

    def _put_back(self, model: str, window: _Window) -> None:
        with self._lock:
            newer = self._windows.get(model)
            if newer is not None:
                window.count += newer.count
                window.last_at = newer.last_at
                window.rows.extend(newer.rows[: self.max_rows - len(window.rows)])
            self._windows[model] = window

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vigil-anomalies", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and send what was collected (a clean shutdown loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush(force=True)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.flush()
            except Exception:
                log.exception("anomaly webhook flush failed")


def _iso(t: float) -> str:
    return iso_from_epoch(t) or ""
