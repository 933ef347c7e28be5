"""Running the app under uvicorn from the settings, with one or several worker processes."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.http_protocol import HttpLimits, LimitedHttpToolsProtocol
from service.settings import Settings

log = logging.getLogger("vigil")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "VIGIL_SUPERVISOR_PID"


@contextmanager
def _sighup_ignored() -> Iterator[None]:
    """Ignore SIGHUP meanwhile. Workers started now inherit the ignore through exec, so a
    SIGHUP that arrives before a worker's own handler is in place cannot kill it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with two changes.

    SIGHUP is passed on to every worker, each of which reloads its model in place and keeps
    the old one if the new file fails a check (uvicorn's default would restart the workers,
    and a worker restarted onto a bad file would serve nothing). And a dead worker's live
    gauges are dropped: its counters stay in the files (they are totals), but a crashed
    worker must not report a model forever.
    """

    def init_processes(self) -> None:
        with _sighup_ignored():
            super().init_processes()

    def handle_hup(self) -> None:
        log.info("SIGHUP: asking %d workers to reload the model", len(self.processes))
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        with _sighup_ignored():
            super().keep_subprocess_alive()
        from prometheus_client import multiprocess

        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                multiprocess.mark_process_dead(pid)


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
        "service.app:create_app",
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
    if settings.workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        sock = config.bind_socket()
        Supervisor(config, sockets=[sock]).run()
    else:
        # Until the app installs its SIGHUP handler at startup, SIGHUP must not kill us.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        uvicorn.Server(config).run()
