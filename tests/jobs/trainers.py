"""Train functions the runner's job processes call (module-level, so spawn can pickle them).
Heavy imports stay inside ``train_iforest`` so a job process of ``train_blocking`` starts fast."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service.jobs.runner import Progress, TrainResult
from service.jobs.store import Job


def train_iforest(job: Job, data_path: Path, progress: Progress) -> TrainResult:
    """Read the upload as the CLI does, fit an IsolationForest, register it in
    ``VIGIL_REGISTRY`` (what the integration's train function will do for this kind)."""
    from service.data.dataset import load_csv
    from service.models import artifact
    from service.models.registry import Registry
    from service.settings import get_settings
    from service.training.trainer import MIN_TRAINING_ROWS, TrainingParams, train

    ds = load_csv(
        data_path, exclude=tuple(job.options.get("exclude", ())), min_rows=MIN_TRAINING_ROWS
    )
    progress(0.3, ds.n_rows)
    model = train(ds.X, ds.feature_names, TrainingParams(**job.params))
    progress(0.8)
    version = Registry(get_settings().registry).register(
        job.model, lambda path: artifact.save(model, path), promote=job.promote
    )
    return TrainResult(
        version.number, model.version, ds.n_rows, previous_version=version.previous_default
    )


def train_blocking(job: Job, data_path: Path, progress: Progress) -> int:
    """Write this process's pid to ``options["pidfile"]``, then wait (up to a minute) for
    ``options["release"]`` to exist: a job that runs until the test lets it end."""
    Path(job.options["pidfile"]).write_text(str(os.getpid()))
    progress(0.5)
    release = Path(job.options["release"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 7
