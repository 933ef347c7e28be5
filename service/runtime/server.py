"""Running the app under uvicorn from the settings, with one or several worker processes."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.jobs.launcher import runner_beside
from service.runtime.http_protocol import HttpLimits, LimitedHttpToolsProtocol
from service.settings import Settings

if TYPE_CHECKING:
    from service.models.served_copy import ServedCopy

log = logging.getLogger("vigil")

# How the supervisor tells its workers about the run; process plumbing, not settings.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "VIGIL_SUPERVISOR_PID"
SERVED_COPY_ENV = "VIGIL_SERVED_COPY_DIR"

RELOAD = signal.SIGHUP
"""To a worker: reload from the model path. To the supervisor: have one worker do that."""
FOLLOW = signal.SIGUSR1
"""To the supervisor: a worker accepted a new model. To a worker: serve the served copy."""


@contextmanager
def _reload_signals_ignored() -> Iterator[None]:
    """Ignore RELOAD and FOLLOW meanwhile. Workers started now inherit the ignore through exec,
    so a signal that arrives before a worker's own handlers are in place cannot kill it."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (RELOAD, FOLLOW)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def served_copy() -> ServedCopy | None:
    """In a worker of a multi-worker service, the run's served copy; else None."""
    from service.models.served_copy import ServedCopy

    root = os.environ.get(SERVED_COPY_ENV)
    return ServedCopy(root) if root else None


def tell_supervisor() -> None:
    """From a worker that published a new served copy: have the supervisor tell the others."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if pid and pid.isdigit():
        os.kill(int(pid), FOLLOW)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with these changes.

    A reload is done by one worker, never by a restart (uvicorn's default would restart the
    workers, and a worker restarted onto a bad file would serve nothing). SIGHUP goes to one
    ready worker, which reloads from the model path, counts the attempt and, if it accepted
    the new model, publishes it to the served copy (``service.models.served_copy``) and sends the
    supervisor SIGUSR1; the supervisor passes SIGUSR1 on to every worker, and each one
    serves the copy. Workers that start (at first or to replace a dead one) load the copy
    too, so the whole service serves one version, and only a reload changes it. And a dead
    worker's live gauges are dropped: its counters stay in the files (they are totals), but a
    crashed worker must not report a model forever.
    """

    def init_processes(self) -> None:
        with _reload_signals_ignored():
            super().init_processes()

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.is_ready(timeout=1):
                log.info("SIGHUP: worker %d reloads the model", process.pid)
                os.kill(process.pid, RELOAD)
                return
        log.warning("SIGHUP: no worker is ready to reload the model; send it again")

    def handle_usr1(self) -> None:
        """A worker published a new model: every worker is to serve it."""
        self._tell_workers_to_follow()

    def _tell_workers_to_follow(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, FOLLOW)

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        with _reload_signals_ignored():
            super().keep_subprocess_alive()
        from prometheus_client import multiprocess

        gone = before - {p.pid for p in self.processes}
        for pid in gone:
            if pid is not None:
                multiprocess.mark_process_dead(pid)
        if gone:
            # A SIGUSR1 that came while the signals were ignored is lost: tell them again (a
            # worker already on the served copy does nothing).
            self._tell_workers_to_follow()

    def handle_ttin(self) -> None:
        with _reload_signals_ignored():
            super().handle_ttin()
        self._tell_workers_to_follow()


def prepare_metrics_dir(settings: Settings) -> Path:
    """Point prometheus_client's multiprocess mode at a folder with no metric files left from an
    earlier run (only its ``*.db`` files are removed), before any worker starts."""
    path = settings.metrics_dir or Path(tempfile.mkdtemp(prefix="vigil-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    if settings.workers > 1:
        metrics_dir = prepare_metrics_dir(settings)
        log.info("%d workers; metrics in %s", settings.workers, metrics_dir)
    config = uvicorn.Config(
        "service.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        loop="uvloop",
        # uvicorn's httptools protocol with size, time and connection limits.
        http=partial(LimitedHttpToolsProtocol, limits=HttpLimits.from_settings(settings)),
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    with runner_beside(settings):  # the training-job runner, when the jobs API is on
        _run(config, settings)


def _run(config: uvicorn.Config, settings: Settings) -> None:
    if settings.workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        # Private to this run (mode 0700); only the service's user can write the served copy.
        run_dir = Path(tempfile.mkdtemp(prefix="vigil-run-"))
        os.environ[SERVED_COPY_ENV] = str(run_dir)
        try:
            sock = config.bind_socket()
            Supervisor(config, sockets=[sock]).run()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    else:
        os.environ.pop(SERVED_COPY_ENV, None)  # one process: it loads the model path itself
        # Until the app installs its SIGHUP handler at startup, SIGHUP must not kill us.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        uvicorn.Server(config).run()
