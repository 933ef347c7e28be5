"""``anomaly.detected`` webhooks for the models that opted in (VIGIL_ANOMALY_WEBHOOK_MODELS).

A serving worker hands each scored request's anomalies to an :class:`AnomalyBatcher`, whose
``record`` takes microseconds and never waits on I/O; its flusher thread writes one delivery
per model per ``VIGIL_ANOMALY_WEBHOOK_INTERVAL`` into the job store, and the runner's webhook
sender sends it (signed, retried) like every other event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from service.jobs.store import JobStore
from service.jobs.webhooks import AnomalyBatcher, WebhookSender
from service.settings import Settings

log = logging.getLogger("vigil.webhooks")

Hook = Callable[[str, Sequence[Any], int], None]


def opted_in(settings: Settings) -> frozenset[str]:
    return frozenset(n.strip() for n in settings.anomaly_webhook_models.split(",") if n.strip())


class AnomalyEvents:
    """The batcher of one serving process; ``hook(model)`` is what the data plane calls."""

    def __init__(self, settings: Settings, store: Callable[[], JobStore | None]) -> None:
        self.models = opted_in(settings)
        self.settings = settings
        self._store = store
        self._batcher: AnomalyBatcher | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.models) and bool(self.settings.webhook_url)

    def start(self) -> None:
        if not self.enabled:
            return
        store = self._store()
        sender = WebhookSender.from_settings(self.settings, store) if store else None
        if sender is None:
            log.error("anomaly.detected webhooks are off: the job store cannot be opened")
            return
        self._batcher = AnomalyBatcher(sender, self.settings.anomaly_webhook_interval)
        self._batcher.start()

    def stop(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None

    def hook(self, model: str) -> Hook | None:
        """The callable for ``model``'s anomalies, or None when it did not opt in."""
        batcher = self._batcher
        return batcher.record if batcher is not None and model in self.models else None
