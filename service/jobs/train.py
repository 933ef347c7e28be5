"""The service's train function for jobs: read the upload as ``train`` does, fit the job's
detector kind, register the result as a new version of the job's model.

Runs in the runner's job process (``python -m service.jobs --train
service.jobs.train:train_job``); the heavy imports happen there, never in a serving worker.
"""

from __future__ import annotations

from pathlib import Path

from service.jobs.runner import Progress, TrainResult
from service.jobs.store import Job

READ_DONE = 0.2
"""Progress once the CSV is read; fitting takes most of the rest."""
FIT_DONE = 0.9


def job_exclude(options: dict) -> tuple[str, ...]:
    """The columns a job skips: ``exclude`` and the ``label_column``."""
    exclude = [str(c) for c in options.get("exclude") or ()]
    label = options.get("label_column")
    if label and label not in exclude:
        exclude.append(str(label))
    return tuple(exclude)


def train_job(job: Job, data_path: Path, progress: Progress) -> TrainResult:
    """Train ``job`` on the CSV at ``data_path`` and register it in ``VIGIL_REGISTRY``.

    Errors are one line, as the CLI gives them (``DataError``: file, line and column;
    ``ValueError``: the kind and the parameter); the runner fails the job with them.
    """
    from service.data.dataset import load_csv
    from service.models import artifact
    from service.models.registry import Registry
    from service.settings import get_settings
    from service.training.trainer import MIN_TRAINING_ROWS, train

    settings = get_settings()
    progress(0.01)
    ds = load_csv(
        data_path,
        exclude=job_exclude(dict(job.options)),
        min_rows=MIN_TRAINING_ROWS,
        max_line_bytes=settings.max_csv_line_bytes,
    )
    progress(READ_DONE, ds.n_rows)

    def fitting(message: str) -> None:  # the trainer says what it fits, then that it is done
        progress(0.3 if "fitting" in message else 0.8)

    model = train(
        ds.X,
        ds.feature_names,
        dict(job.params),
        kind=job.detector,
        seed=job.options.get("seed"),
        progress=fitting,
    )
    model.metadata["training_data"] = str(job.options.get("filename") or "upload")
    model.metadata["training_job"] = job.id
    progress(FIT_DONE)
    version = Registry(settings.registry).register(
        job.model, lambda path: artifact.save(model, path), promote=job.promote
    )
    return TrainResult(
        version.number, model.version, ds.n_rows, previous_version=version.previous_default
    )
