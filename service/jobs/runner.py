"""The job runner: claims queued jobs from the store and trains each in its own process.

Training never runs on the serving event loop or in a serving worker: every job is a fresh
(spawned) process at a lower CPU priority (``os.nice``), in its own process group, that dies
with its runner (``PR_SET_PDEATHSIG``). The runner enforces the timeout and cancels by killing
that group, and records the outcome. At most ``concurrency`` jobs run at once across every
runner sharing the store (the limit is checked in the same transaction that claims a job).

What training does is a callable passed in, ``train_fn(job, data_path, progress) -> result``,
run in the job process; it must be picklable (a module-level function). ``progress(fraction,
rows=None)`` reports progress. The result is a ``TrainResult`` or a registry version number.
Data errors (``DataError``, ``ValueError``) fail the job with their one-line message, the
upload's server path replaced by the uploaded file's name.

``python -m service.jobs --train module:function`` runs one from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from service.jobs.store import INTERRUPTED, Job, JobStore, NewDelivery, new_id

log = logging.getLogger("vigil.jobs")

JOB_NICENESS = 10
"""How much lower the job processes' CPU priority is than the runner's (``os.nice``)."""
RECOVER_EVERY_S = 2.0
"""How often a runner looks for jobs whose runner died."""
PROGRESS_STEP = 0.01
"""Smallest progress change written to the store (fewer writes, same picture)."""
_PR_SET_PDEATHSIG = 1

Progress = Callable[..., None]
TrainFn = Callable[[Job, Path, Progress], Any]
Events = Callable[[Job], Iterable[NewDelivery]]


@dataclass(frozen=True)
class TrainResult:
    version: int
    """The registry version number the job registered."""
    model_version: str | None = None
    """The artifact's content hash."""
    rows: int | None = None
    previous_version: int | None = None
    """The version the model's default alias pointed to before the job promoted its own."""


def public_error(exc: BaseException, data_path: Path, job: Job) -> str:
    """A job's one-line error: the message, with the server's upload path replaced by the
    name the client uploaded (the API never shows server paths)."""
    from service.data.dataset import DataError

    message = str(exc).replace(str(data_path), str(job.options.get("filename") or "data"))
    message = " ".join(message.split())
    if isinstance(exc, DataError | ValueError):
        return message
    return f"training failed: {type(exc).__name__}: {message}"


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a ``kill -9``'d runner must
    not leave its jobs training); elsewhere, a thread that watches the parent id."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)


def _job_main(
    train_fn: TrainFn, job: Job, data_path: Path, conn: Connection, niceness: int, parent: int
) -> None:
    """The job process: its own process group, lower priority, report back over ``conn``."""
    os.setpgrp()
    _die_with_parent(parent)
    with contextlib.suppress(OSError):
        os.nice(niceness)

    def progress(fraction: float, rows: int | None = None) -> None:
        conn.send(("progress", float(fraction), rows))

    try:
        result = train_fn(job, data_path, progress)
        if isinstance(result, int):
            result = TrainResult(result)
        conn.send(("ok", result))
    except Exception as exc:
        conn.send(("error", public_error(exc, data_path, job)))
    finally:
        conn.close()


@dataclass
class _Active:
    job: Job
    proc: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    started: float
    progress: float = 0.0
    rows: int | None = None
    outcome: tuple[str, Any] | None = None


class Runner:
    """Runs the store's queued jobs, at most ``concurrency`` at once, until stopped.

    Hooks (metrics; no Prometheus here): ``on_job_end(job, seconds)`` when a job this runner
    ran ends (status and detector are on the job); ``events(job)`` gives the webhook messages
    recorded with the job's end (``webhooks.job_events``)."""

    def __init__(
        self,
        store: JobStore,
        train_fn: TrainFn,
        *,
        concurrency: int = 1,
        timeout: float = 3600.0,
        niceness: int = JOB_NICENESS,
        poll_interval: float = 0.2,
        events: Events | None = None,
        on_job_end: Callable[[Job, float], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.store = store
        self.train_fn = train_fn
        self.concurrency = concurrency
        self.timeout = timeout
        self.niceness = niceness
        self.poll_interval = poll_interval
        self.events = events
        self.on_job_end = on_job_end
        self.id = new_id()
        self._active: dict[str, _Active] = {}
        self._ctx = multiprocessing.get_context("spawn")  # no inherited threads, locks or fds
        self._last_recover = 0.0

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set. Jobs still running then are killed and failed with
        "interrupted by a restart", as after a crash."""
        with self.store.runner_lease(self.id):
            try:
                while not stop.is_set():
                    try:
                        self.step()
                    except Exception:  # a store busy past its timeout must not end the runner
                        log.exception("job runner pass failed; trying again")
                    waitables = [a.conn for a in self._active.values()]
                    waitables += [a.proc.sentinel for a in self._active.values()]
                    if waitables:
                        wait(waitables, timeout=self.poll_interval)
                    else:
                        stop.wait(self.poll_interval)
            finally:
                for job_id in list(self._active):
                    self._end(job_id, "failed", error=INTERRUPTED, kill=True)

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Run in a background thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="vigil-jobs", daemon=True)
        thread.start()
        return thread, stop

    def step(self) -> None:
        """One pass: read job messages, end finished/timed-out/canceled jobs, start new ones."""
        now = time.monotonic()
        if now - self._last_recover >= RECOVER_EVERY_S:
            self._last_recover = now
            for job in self.store.recover(self.events):
                log.warning("job %s: %s", job.id, job.error)
        for job_id, active in list(self._active.items()):
            self._read(active)
            if active.outcome is None and not active.proc.is_alive():
                self._read(active)  # a message sent just before it exited
            if active.outcome is not None:
                kind, value = active.outcome
                if kind == "ok":
                    self._end(
                        job_id,
                        "succeeded",
                        version=value.version,
                        model_version=value.model_version,
                        previous_version=value.previous_version,
                        rows=value.rows if value.rows is not None else active.rows,
                    )
                else:
                    self._end(job_id, "failed", error=value)
            elif not active.proc.is_alive():
                self._end(job_id, "failed", error=_exit_reason(active.proc.exitcode))
            elif now - active.started > self.timeout:
                error = f"timed out after {self.timeout:g} s (VIGIL_TRAINING_TIMEOUT)"
                self._end(job_id, "failed", error=error, kill=True)
        if self._active:
            for job_id in self.store.cancel_requested(self.id) & set(self._active):
                self._end(job_id, "canceled", kill=True)
        while len(self._active) < self.concurrency:
            job = self.store.claim(self.id, self.concurrency)
            if job is None:
                break
            self._launch(job)

    # --- one job --------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        data_path = self.store.upload_path(job)
        if data_path is None or not data_path.is_file():
            self.store.finish(
                job.id, self.id, "failed", error="the job's data is gone", events=self.events
            )
            return
        receive, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_job_main,
            args=(self.train_fn, job, data_path, send, self.niceness, os.getpid()),
            name=f"vigil-job-{job.id}",
        )
        proc.start()
        send.close()  # the child's end: EOF here when it exits
        self._active[job.id] = _Active(job, proc, receive, time.monotonic())
        log.info("job %s (model %s, %s) started", job.id, job.model, job.detector)

    def _read(self, active: _Active) -> None:
        try:
            while active.conn.poll():
                message = active.conn.recv()
                if message[0] == "progress":
                    _, fraction, rows = message
                    if rows is not None:
                        active.rows = int(rows)
                    if abs(fraction - active.progress) >= PROGRESS_STEP or rows is not None:
                        active.progress = fraction
                        self.store.set_progress(active.job.id, self.id, fraction, rows)
                else:
                    active.outcome = message
        except (EOFError, OSError):
            pass  # the process exited; its exit code says the rest

    def _end(self, job_id: str, status: str, *, kill: bool = False, **fields: Any) -> None:
        active = self._active.pop(job_id)
        if kill:
            _kill_group(active.proc)
        active.proc.join(5)
        active.conn.close()
        job = self.store.finish(job_id, self.id, status, events=self.events, **fields)  # type: ignore[arg-type]
        seconds = time.monotonic() - active.started
        if job is not None:
            log.info("job %s %s after %.1f s%s", job_id, status, seconds, _suffix(job))
            if self.on_job_end is not None:
                self.on_job_end(job, seconds)


def _suffix(job: Job) -> str:
    return f": {job.error}" if job.error else ""


def _kill_group(proc: Any) -> None:
    """SIGKILL the job process and anything it started (its process group)."""
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # not yet its own group leader


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the training process was killed ({name})"
    return f"the training process exited with status {code} without a result"


def reload_on_new_default(
    registry: str | Path, pid: int | None
) -> Callable[[Job, float], None] | None:
    """``on_job_end``: after a job registers a version that is now its model's default (with
    ``promote``, or a model's first version), SIGHUP ``pid`` (the service), which reloads the
    registry with the reload's guarantees (verified off to the side, zero failed requests)."""
    if not pid:
        return None

    def on_job_end(job: Job, _seconds: float) -> None:
        if job.status != "succeeded" or job.version is None:
            return
        from service.models.registry import Registry, RegistryError

        try:
            default = Registry(registry).model(job.model).aliases.get("default")
        except (RegistryError, OSError) as exc:
            log.warning("job %s: cannot read the registry to reload: %s", job.id, exc)
            return
        if default == job.version:
            try:
                os.kill(pid, signal.SIGHUP)
                log.info("job %s: %s version %s is the default; reloading", job.id, job.model,
                         job.version)  # fmt: skip
            except ProcessLookupError:
                log.warning("job %s: the service (pid %d) is gone; not reloaded", job.id, pid)

    return on_job_end


def watch_parent(parent: int, stop: threading.Event, interval: float = 0.5) -> None:
    """Set ``stop`` once ``parent`` is no longer this process's parent (it died, even by
    ``kill -9``): a runner never outlives the service that started it."""

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                log.warning("the service (pid %d) is gone; stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="vigil-parent", daemon=True).start()


def load_callable(ref: str) -> TrainFn:
    """``module:function`` -> the function."""
    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"expected module:function, got {ref!r}")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    """Run a runner in the foreground until SIGTERM or SIGINT."""
    from service.jobs.store import default_db_path
    from service.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m service.jobs")
    parser.add_argument("--train", required=True, help="the train function, module:function")
    parser.add_argument("--db", type=Path, default=None, help="job store (default: settings)")
    parser.add_argument("--concurrency", type=int, default=settings.training_concurrency)
    parser.add_argument("--timeout", type=float, default=settings.training_timeout)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument(
        "--reload-pid",
        type=int,
        help="send this process SIGHUP when a job moves a model's default (the service)",
    )
    parser.add_argument(
        "--parent-pid", type=int, help="stop when this process is no longer the parent"
    )
    parser.add_argument("--nice", type=int, default=0, help="lower this runner's CPU priority")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.nice:
        os.nice(args.nice)
    db = args.db or settings.jobs_db or default_db_path(settings.registry)
    store = JobStore(db)
    from service.jobs.webhooks import WebhookSender

    sender = WebhookSender.from_settings(settings, store)
    runner = Runner(
        store,
        load_callable(args.train),
        concurrency=args.concurrency,
        timeout=args.timeout,
        poll_interval=args.poll_interval,
        events=sender.job_events if sender else None,
        on_job_end=reload_on_new_default(settings.registry, args.reload_pid),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.parent_pid:
        watch_parent(args.parent_pid, stop)
    print(f"runner {runner.id} on {db}", flush=True)
    if sender:
        sender.start()
    try:
        runner.run(stop)
    finally:
        if sender:
            sender.stop()
    return 0
