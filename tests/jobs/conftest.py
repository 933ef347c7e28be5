from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs.store import JobStore
from tests.support import wait_for


@pytest.fixture
def store(tmp_path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "registry" / ".jobs" / "jobs.sqlite3")
    yield s
    s.close()


@pytest.fixture
def csv_bytes(data_dir) -> bytes:
    return (data_dir / "train.csv").read_bytes()


def wait_status(store: JobStore, job_id: str, *statuses: str, timeout: float = 90):
    """Poll until the job is in one of ``statuses``; returns it."""
    found = {}

    def check() -> bool:
        found["job"] = store.get(job_id)
        return found["job"].status in statuses

    try:
        wait_for(check, timeout, f"job {job_id} to be {'/'.join(statuses)}")
    except TimeoutError:
        raise AssertionError(f"job {job_id}: {found.get('job')}") from None
    return found["job"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 20) -> None:
    wait_for(lambda: not pid_alive(pid), timeout, f"process {pid} to end")


def wait_file(path: Path, timeout: float = 60) -> str:
    wait_for(lambda: path.exists() and path.read_text() != "", timeout, f"{path}")
    return path.read_text()
