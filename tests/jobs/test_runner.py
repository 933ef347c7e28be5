"""The runner: real job processes train, time out, are canceled, and a kill -9'd runner's
job fails as interrupted while the queue survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from service.jobs.runner import Runner
from service.jobs.store import INTERRUPTED, JobStore
from service.models.artifact import load
from service.models.registry import Registry
from tests.jobs import trainers
from tests.jobs.conftest import pid_alive, wait_file, wait_gone, wait_status
from tests.support import REPO, wait_for


@pytest.fixture
def registry_root(store, monkeypatch):
    root = store.dir.parent  # the default layout: <registry>/.jobs/jobs.sqlite3
    monkeypatch.setenv("VIGIL_REGISTRY", str(root))  # the job processes inherit it
    return root


@pytest.fixture
def start_runner(store, registry_root) -> Iterator:
    started = []

    def start(train_fn, **kw) -> Runner:
        runner = Runner(store, train_fn, poll_interval=0.05, **kw)
        thread, stop = runner.start()
        started.append((thread, stop))
        return runner

    yield start
    for thread, stop in started:
        stop.set()
        thread.join(30)


def test_a_job_trains_registers_a_version_and_reports_progress(
    store, start_runner, registry_root, csv_bytes
):
    ended = []
    start_runner(trainers.train_iforest, on_job_end=lambda job, s: ended.append((job, s)))
    job, _ = store.submit(
        "fraud", "iforest", {"n_estimators": 20}, csv_bytes, options={"filename": "train.csv"}
    )
    done = wait_status(store, job.id, "succeeded", "failed")
    assert done.status == "succeeded", done.error
    assert done.version == 1 and done.rows == 2000 and done.progress == 1.0
    version = Registry(registry_root).model("fraud").version(1)
    assert version.model_version == done.model_version
    assert load(version.path).metadata["params"]["n_estimators"] == 20
    assert list(store.uploads.iterdir()) == []  # the upload went with the job
    assert [(j.id, j.status, j.detector) for j, _ in ended] == [(job.id, "succeeded", "iforest")]
    assert ended[0][1] > 0


def test_a_bad_csv_fails_the_job_with_line_and_column_and_no_server_path(
    store, start_runner, tmp_path
):
    start_runner(trainers.train_iforest)
    rows = ["mean,sd"] + [f"{i},{i}" for i in range(20)]
    rows[5] = "0.5,oops"
    job, _ = store.submit(
        "fraud",
        "iforest",
        {},
        "\n".join(rows).encode(),
        options={"filename": "mine.csv"},
    )
    failed = wait_status(store, job.id, "succeeded", "failed")
    assert failed.status == "failed"
    assert failed.error == "mine.csv, line 6, column 'sd': 'oops' is not numeric"
    assert str(store.dir) not in failed.error


def test_a_job_over_the_timeout_is_killed_and_failed(store, start_runner, tmp_path):
    start_runner(trainers.train_blocking, timeout=3)
    pidfile = tmp_path / "pid"
    options = {"pidfile": str(pidfile), "release": str(tmp_path / "never")}
    job, _ = store.submit("slow", "iforest", {}, b"a\n1\n", options=options)
    pid = int(wait_file(pidfile))
    failed = wait_status(store, job.id, "failed", "succeeded", timeout=60)
    assert failed.error == "timed out after 3 s (VIGIL_TRAINING_TIMEOUT)"
    wait_gone(pid)


def test_cancel_kills_a_running_job(store, start_runner, tmp_path):
    start_runner(trainers.train_blocking)
    pidfile = tmp_path / "pid"
    options = {"pidfile": str(pidfile), "release": str(tmp_path / "never")}
    job, _ = store.submit("slow", "iforest", {}, b"a\n1\n", options=options)
    pid = int(wait_file(pidfile))
    assert pid_alive(pid) and store.get(job.id).status == "running"
    wait_for(lambda: store.get(job.id).progress == 0.5, 30, "progress 0.5")
    store.cancel(job.id)
    canceled = wait_status(store, job.id, "canceled", "failed", "succeeded", timeout=30)
    assert canceled.status == "canceled"
    wait_gone(pid)


def test_the_job_process_runs_at_lower_priority(store, start_runner, tmp_path):
    start_runner(trainers.train_blocking, niceness=7)
    pidfile, release = tmp_path / "pid", tmp_path / "release"
    options = {"pidfile": str(pidfile), "release": str(release)}
    job, _ = store.submit("slow", "iforest", {}, b"a\n1\n", options=options)
    pid = int(wait_file(pidfile))
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
    assert pid != os.getpid()
    release.touch()
    assert wait_status(store, job.id, "succeeded", "failed").version == 7


def _runner_process(store: JobStore) -> subprocess.Popen:
    env = {**os.environ, "VIGIL_JOBS_DB": str(store.path), "VIGIL_TRAINING_CONCURRENCY": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.jobs", "--train", "tests.jobs.trainers:train_blocking"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout.readline().startswith("runner ")
    return proc


def test_kill_9_of_the_runner_fails_its_job_as_interrupted_and_keeps_the_queue(store, tmp_path):
    first_pid, second_pid = tmp_path / "pid1", tmp_path / "pid2"
    released = tmp_path / "released"
    released.touch()
    first, _ = store.submit(
        "m",
        "iforest",
        {},
        b"a\n1\n",
        options={"pidfile": str(first_pid), "release": str(tmp_path / "never")},
    )
    second, _ = store.submit(
        "m",
        "iforest",
        {},
        b"a\n2\n",
        options={"pidfile": str(second_pid), "release": str(released)},
    )
    runner = _runner_process(store)
    try:
        job_pid = int(wait_file(first_pid))
        assert store.get(first.id).status == "running"
        assert store.get(second.id).status == "queued"  # concurrency 1
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        wait_gone(job_pid)  # the job process died with its runner
        assert store.get(first.id).status == "running"  # nobody has looked yet
    finally:
        runner.kill()
        runner.wait(10)
    restarted = _runner_process(store)
    try:
        failed = wait_status(store, first.id, "failed", "succeeded", timeout=30)
        assert failed.error == INTERRUPTED
        done = wait_status(store, second.id, "succeeded", "failed", timeout=60)
        assert done.status == "succeeded" and done.version == 7
        assert list(store.uploads.iterdir()) == []
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(30) == 0
