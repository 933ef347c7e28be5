"""Holds the model being served, and replaces it safely.

A new model is read once, verified and smoke-tested off to the side; only then is it swapped
in, with one reference assignment. A request that already took the old model finishes with it.
If anything about the new file is wrong, the old model keeps serving. With several workers,
the accepted bytes are also kept in the run's served copy (``service.models.served_copy``), which
is what starting workers load and what the other workers follow after a reload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.models import artifact
from service.models.artifact import ArtifactError, Verified
from service.models.loaded import Model
from service.models.served_copy import ServedCopy
from service.serving import telemetry as metrics

log = logging.getLogger("vigil.model")


@dataclass(frozen=True)
class ReloadOutcome:
    result: Literal["reloaded", "unchanged", "refused"]
    model_version: str | None
    """The version serving after the attempt."""
    previous_version: str | None
    reason: str | None = None


def _build(verified: Verified, source: Path) -> Model:
    """Unpickle and check verified bytes; every failure becomes an ArtifactError whose public
    reason holds no exception text (which may name server paths)."""
    try:
        return Model(artifact.from_verified(verified), source=source)
    except ArtifactError:
        raise
    except Exception as exc:  # e.g. a pickle of another library version
        raise ArtifactError(
            verified.path, f"failed its checks: {type(exc).__name__}", detail=str(exc)
        ) from None


def _read_and_build(path: Path, source: Path) -> tuple[Verified, Model]:
    verified = artifact.read_verified(path)
    return verified, _build(verified, source)


class ModelStore:
    """The serving model. With a :class:`ServedCopy` (several workers), what a worker serves
    comes from the verified copy: a starting worker loads it, :meth:`reload` publishes to it,
    and :meth:`adopt` follows it. ``on_publish`` is called after each publish, to tell the
    other workers."""

    def __init__(
        self, shared: ServedCopy | None = None, on_publish: Callable[[], None] | None = None
    ) -> None:
        self._model: Model | None = None
        self._error: str | None = "no model loaded yet"
        self._lock = threading.Lock()  # one load at a time; serving never waits on it
        self._shared = shared
        self._on_publish = on_publish

    @property
    def model(self) -> Model | None:
        return self._model

    @property
    def not_ready_reason(self) -> str | None:
        return None if self._model is not None else self._error

    @contextmanager
    def _shared_lock(self) -> Iterator[None]:
        if self._shared is None:
            yield
        else:
            with self._shared.lock():
                yield

    def load(self, path: str | Path) -> Model:
        """Load at start: the served copy if there is one, else ``path`` (then publish it).
        On failure the store stays empty (not ready) and it raises."""
        path = Path(path)
        published = False
        with self._lock, self._shared_lock():
            try:
                served = self._shared.current() if self._shared else None
                if served is not None:
                    _, model = _read_and_build(served[1], path)
                else:
                    verified, model = _read_and_build(path, path)
                    published = self._publish(verified)
            except ArtifactError as exc:
                log.error("model load refused: %s", exc)
                if self._model is None:
                    self._error = exc.public
                    metrics.set_not_ready()
                raise
            self._install(model, copy=served is not None)
        if published:
            self._notify()
        return model

    def reload(self, path: str | Path) -> ReloadOutcome:
        """Replace the serving model with ``path`` if it passes every check; never raises.
        With several workers, the worker that reloads is the only one that counts it."""
        path = Path(path)
        with self._lock, self._shared_lock():
            current = self._model
            previous = current.version if current else None
            try:
                # Every check, every time: the manifest may have changed even if the file did not.
                verified, model = _read_and_build(path, path)
                if current is not None and model.feature_names != current.feature_names:
                    raise ArtifactError(
                        path,
                        f"takes features ({', '.join(model.feature_names)}) but the serving model"
                        f" takes ({', '.join(current.feature_names)}); clients would break",
                    )
                unchanged = current is not None and verified.sha256 == current.artifact.sha256
                if not unchanged:
                    self._publish(verified)
            except ArtifactError as exc:
                log.error("reload refused, still serving %s: %s", previous, exc)
                metrics.record_reload("refused")
                if current is None:
                    self._error = exc.public
                return ReloadOutcome("refused", previous, previous, exc.public)
            if unchanged:
                metrics.record_reload("unchanged")
                return ReloadOutcome("unchanged", previous, previous)
            self._install(model)
            metrics.record_reload("reloaded")
        self._notify()
        return ReloadOutcome("reloaded", model.version, previous)

    def adopt(self, path: str | Path) -> None:
        """Serve the served copy if another worker moved it; not counted as a reload.
        ``path`` is the live path, only to name the model's file."""
        if self._shared is None:
            return
        with self._lock, self._shared.lock():
            served = self._shared.current()
            current = self._model
            if served is None or (current is not None and current.artifact.sha256 == served[0]):
                return
            try:
                _, model = _read_and_build(served[1], Path(path))
            except ArtifactError as exc:
                log.error("could not follow the other workers' model, still serving: %s", exc)
                return
            self._install(model, copy=True)

    def _publish(self, verified: Verified) -> bool:
        """Keep the verified bytes for the other and future workers (several workers only)."""
        if self._shared is None:
            return False
        try:
            self._shared.publish(verified)
        except OSError as exc:
            raise ArtifactError(
                verified.path,
                f"could not keep a verified copy for the workers ({artifact.os_reason(exc)})",
                detail=str(exc),
            ) from None
        return True

    def _notify(self) -> None:
        if self._on_publish is not None:
            self._on_publish()

    def _install(self, model: Model, copy: bool = False) -> None:
        self._model = model
        self._error = None
        metrics.set_model(
            model.version, model.loaded_at, float(model.metadata["training_anomaly_ratio"])
        )
        log.info(
            "serving model %s from %s%s (%d features: %s)",
            model.version,
            "the workers' verified copy of " if copy else "",
            model.source,
            model.n_features,
            ", ".join(model.feature_names),
        )
