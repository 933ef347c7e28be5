"""The service's one job runner: ``python -m service.jobs`` started beside the serving process.

``serve`` starts it (with ``VIGIL_ADMIN_TOKEN`` set, which turns the jobs API on, and
``VIGIL_TRAINING_RUNNER`` true) before uvicorn, as a child at a lower CPU priority; training
never runs in a serving worker or on its event loop. The runner trains each job in its own
process (``service.jobs.runner``) and, when a job makes a version its model's default, sends
the service SIGHUP: the registry reload, verified, with zero failed requests. A runner that
dies (even ``kill -9``) is started again after a short back-off; the new one fails the job
that was running with "interrupted by a restart" and runs what is queued. On shutdown the
runner is stopped (SIGTERM: its running jobs are failed as interrupted); if the service
itself is killed, the runner notices its parent is gone and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

from service.jobs.store import default_db_path
from service.settings import Settings

log = logging.getLogger("vigil.jobs")

TRAIN_FN = "service.jobs.train:train_job"
RUNNER_NICENESS = 5
"""The runner's own priority below the service's (its jobs go 10 lower still)."""
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Back-off between restarts of a runner that keeps dying; reset once one lives a minute."""
HEALTHY_AFTER_S = 60.0
STOP_TIMEOUT_S = 15.0


class RunnerProcess:
    """One ``python -m service.jobs`` child, kept running until :meth:`stop`."""

    def __init__(self, settings: Settings, *, reload_pid: int, train: str = TRAIN_FN) -> None:
        db = settings.jobs_db or default_db_path(settings.registry)
        self.command = [
            sys.executable, "-m", "service.jobs",
            "--train", train,
            "--db", str(db),
            "--concurrency", str(settings.training_concurrency),
            "--timeout", str(settings.training_timeout),
            "--reload-pid", str(reload_pid),
            "--parent-pid", str(os.getpid()),
            "--nice", str(RUNNER_NICENESS),
        ]  # fmt: skip
        # The job processes read the registry from the settings: the one this service serves.
        self.env = {**os.environ, "VIGIL_REGISTRY": str(settings.registry)}
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="vigil-runner", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self.proc = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL)
            self.starts += 1
        log.info("job runner started (pid %d)", self.proc.pid)

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stop.is_set():
                return
            failures = 0 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1] if failures else 0.0
            log.warning("job runner (pid %d) exited with %s; restarting in %gs", proc.pid, code,
                        delay)  # fmt: skip
            if self._stop.wait(delay):
                return
            try:
                self._spawn()
            except OSError as exc:
                log.error("cannot start the job runner: %s", exc)
                self._stop.wait(RESTART_DELAYS[-1])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the runner (it fails its running jobs as interrupted) and wait for it."""
        with self._lock:
            self._stop.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)


def wanted(settings: Settings) -> bool:
    """The runner starts with the service when the jobs API is on and it is not turned off."""
    return settings.admin_token is not None and settings.training_runner


@contextlib.contextmanager
def runner_beside(settings: Settings) -> Iterator[RunnerProcess | None]:
    """Run the service's job runner for the duration of the block (the serving process's
    pid is where it sends SIGHUP). SIGTERM and SIGINT stop the runner before the process
    ends by them, as uvicorn re-raises them once it has shut down."""
    if not wanted(settings):
        yield None
        return
    runner = RunnerProcess(settings, reload_pid=os.getpid())
    runner.start()
    previous = {}

    def stop_then_default(sig: int, _frame: FrameType | None) -> None:
        runner.stop()
        signal.signal(sig, previous.get(sig, signal.SIG_DFL))
        signal.raise_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, stop_then_default)
    try:
        yield runner
    finally:
        runner.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
