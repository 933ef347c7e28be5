"""One-row requests read in the same turn of the event loop are scored in one call.

Scoring one row costs a scorer mostly its fixed per-call work (for the compiled forest, a few
dozen numpy calls on arrays of one element per tree: 20-35 µs), and scoring the rows of
the requests that a busy server reads in one turn of its event loop (up to one per open
connection) together costs far less than one by one (ten rows: about 3 times one row's cost,
``make bench``'s cost-growth table). This is what model servers call dynamic
batching, without its timer: a request never waits for company. The first row of a turn
schedules the batch with ``loop.call_soon``, which runs once the requests already started in
this turn have added their rows; a lone request is scored one turn later.

Only kinds whose batch scores equal their one-row scores bit for bit use it
(``DetectorKind.rows_independent``, property-tested in tests/detectors/test_exactness.py), so
an answer never depends on which other requests arrived with it. The batch is counted in the
model metrics as its requests would be one by one (each request's row, with the duration of
the call that scored it), in one increment per series touched (``telemetry.record_rows``).
"""

from __future__ import annotations

import asyncio
from time import perf_counter

import numpy as np

from service.models.loaded import Model
from service.serving import telemetry

Scored = tuple[bool, float]
"""(is_anomaly, anomaly_score)"""


class RowBatcher:
    """Scores single rows (1 x d arrays) with ``model``, batched by event-loop turn."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self._rows: list[np.ndarray] = []
        self._endpoints: list[str] = []
        self._waiting: list[asyncio.Future[Scored]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the pending batch's

    def score(self, row: np.ndarray, endpoint: str) -> asyncio.Future[Scored]:
        """A future of ``row``'s result, set in the next turn of the running loop; the row is
        counted in the model metrics under ``endpoint`` once scored."""
        if not self._rows:  # the first row of this turn: the batch runs on the running loop
            # Looked up once a batch: get_running_loop() makes a getpid() system call each time.
            loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._run)
        else:
            loop = self._loop
        future: asyncio.Future[Scored] = loop.create_future()
        self._rows.append(row)
        self._endpoints.append(endpoint)
        self._waiting.append(future)
        return future

    def _run(self) -> None:
        rows, endpoints, waiting = self._rows, self._endpoints, self._waiting
        self._rows, self._endpoints, self._waiting = [], [], []
        model = self._model
        X = rows[0] if len(rows) == 1 else np.concatenate(rows)
        try:
            start = perf_counter()
            scores = model.score(X)
            seconds = perf_counter() - start
            flags, values = scores.is_anomaly.tolist(), scores.anomaly_score.tolist()
            percentiles = [model.percentile_one(v) for v in values]
            telemetry.record_rows(model.metrics, endpoints, X, values, flags, percentiles, seconds)
        except Exception as exc:  # each request answers it as a scoring error of its own
            for future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, flag, score in zip(waiting, flags, values, strict=True):
            if not future.done():  # a request cancelled meanwhile is not answered
                future.set_result((flag, score))
