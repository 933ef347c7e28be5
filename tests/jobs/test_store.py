"""The job store: transitions, idempotency, paging, cancel, uploads, concurrent claims."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.jobs.store import (
    INTERRUPTED,
    IdempotencyConflict,
    JobError,
    JobNotFound,
    JobStateError,
    JobStore,
    NewDelivery,
    UploadTooLarge,
    new_id,
    rows_csv,
)
from tests.support import REPO

DATA = b"a,b\n1,2\n3,4\n"


def submit(store: JobStore, model: str = "m", **kw):
    kw.setdefault("params", {"n_estimators": 10})
    data = kw.pop("data", DATA)
    return store.submit(model, "iforest", kw.pop("params"), data, **kw)


def uploads(store: JobStore) -> list[str]:
    return sorted(p.name for p in store.uploads.iterdir())


def test_a_job_goes_queued_running_succeeded_and_its_upload_is_removed(store):
    job, created = submit(store, options={"filename": "train.csv"}, promote=True)
    assert created and job.status == "queued" and job.started_at is None
    assert job.created_at.endswith("Z") and job.promote
    assert (store.uploads / f"{job.id}.csv").read_bytes() == DATA
    assert store.get(job.id) == job
    assert store.counts()["queued"] == 1

    runner = new_id()
    with store.runner_lease(runner):
        claimed = store.claim(runner, limit=1)
        assert claimed.id == job.id and claimed.status == "running" and claimed.started_at
        assert store.claim(runner, limit=5) is None  # nothing else queued
        assert store.set_progress(job.id, runner, 0.4, rows=2)
        assert store.get(job.id).progress == 0.4 and store.get(job.id).rows == 2
        assert not store.set_progress(job.id, "another-runner", 0.9)  # not its job
        done = store.finish(job.id, runner, "succeeded", version=3, model_version="abc")
    assert done.status == "succeeded" and done.version == 3 and done.progress == 1.0
    assert done.finished_at >= done.started_at >= done.created_at
    assert uploads(store) == []
    # a finished job cannot be finished again, nor go back to running
    assert store.finish(job.id, runner, "failed", error="late") is None
    assert store.get(job.id).status == "succeeded"
    public = done.public()
    assert public["version"] == 3 and "error" not in public and "runner" not in public


def test_a_failed_job_shows_its_error_and_no_version(store):
    job, _ = submit(store)
    runner = new_id()
    store.claim(runner, limit=1)
    failed = store.finish(job.id, runner, "failed", error="train.csv, line 3: bad")
    assert failed.public()["error"] == "train.csv, line 3: bad"
    assert "version" not in failed.public()


def test_same_idempotency_key_and_body_give_the_same_job(store):
    first, created = submit(store, idempotency_key="k-1")
    again, created_again = submit(store, idempotency_key="k-1")
    assert created and not created_again
    assert again.id == first.id
    assert uploads(store) == [f"{first.id}.csv"]  # the retry's copy was not kept
    other, created_other = submit(store, idempotency_key="k-2")
    assert created_other and other.id != first.id


@pytest.mark.parametrize(
    "change",
    [{"params": {"n_estimators": 11}}, {"data": b"a,b\n1,2\n"}, {"promote": True}],
    ids=["params", "data", "promote"],
)
def test_same_idempotency_key_with_another_body_is_a_conflict(store, change):
    first, _ = submit(store, idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match=f"'k' was used .*job {first.id}"):
        submit(store, idempotency_key="k", **change)
    assert [j.id for j in store.list().jobs] == [first.id]
    assert uploads(store) == [f"{first.id}.csv"]


def test_list_pages_newest_first_with_filters(store):
    ids = [submit(store, model="a" if i % 2 else "b")[0].id for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = store.list(limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and seen == ids[::-1]
    assert [j.id for j in store.list(model="a").jobs] == ids[1::2][::-1]
    runner = new_id()
    store.claim(runner, limit=1)
    assert [j.id for j in store.list(status="running").jobs] == [ids[0]]
    assert [j.id for j in store.list(status="queued", model="b").jobs] == ids[2::2][::-1]
    assert store.counts() == {
        "queued": 6,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
    }


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"status": "done"}, "status must be one of queued, running"),
        ({"limit": 0}, "limit must be a whole number from 1 to 500"),
        ({"cursor": "nope"}, "cursor 'nope' is not a job id"),
        ({"cursor": new_id()}, "is not a job id"),
        ({"model": "../etc"}, "invalid model name"),
    ],
)
def test_bad_list_arguments_are_refused_by_name(store, kw, message):
    with pytest.raises((JobError, ValueError), match=message):
        store.list(**kw)


def test_unknown_and_malformed_job_ids_are_not_found(store):
    with pytest.raises(JobNotFound, match="no job"):
        store.get(new_id())
    with pytest.raises(JobNotFound, match="26 characters"):
        store.get("1; DROP TABLE jobs")


def test_cancel_a_queued_job_at_once_and_it_is_never_claimed(store):
    job, _ = submit(store)
    canceled = store.cancel(job.id)
    assert canceled.status == "canceled" and canceled.finished_at
    assert uploads(store) == []
    assert store.claim(new_id(), limit=1) is None
    assert store.cancel(job.id).status == "canceled"  # again: a no-op


def test_cancel_a_running_job_asks_its_runner(store):
    job, _ = submit(store)
    runner = new_id()
    store.claim(runner, limit=1)
    asked = store.cancel(job.id)
    assert asked.status == "running" and asked.public()["cancel_requested"] is True
    assert store.cancel_requested(runner) == {job.id}
    assert store.finish(job.id, runner, "canceled").status == "canceled"


def test_cancel_a_finished_job_is_refused(store):
    job, _ = submit(store)
    runner = new_id()
    store.claim(runner, limit=1)
    store.finish(job.id, runner, "succeeded", version=1)
    with pytest.raises(JobStateError, match=f"job {job.id} already succeeded"):
        store.cancel(job.id)


def test_an_upload_over_the_limit_is_refused_and_nothing_is_stored(store):
    chunks = (b"x" * 1000 for _ in range(100))
    with pytest.raises(UploadTooLarge, match=r"over 50000 bytes \(VIGIL_MAX_UPLOAD_BYTES\)"):
        submit(store, data=chunks, max_bytes=50_000)
    assert uploads(store) == [] and store.list().jobs == []
    job, _ = submit(store, data=b"y" * 50_000, max_bytes=50_000)  # exactly the limit is fine
    assert job.status == "queued"


def test_bad_submissions_name_the_field(store):
    with pytest.raises(ValueError, match="invalid model name"):
        submit(store, model="Bad Name")
    with pytest.raises(JobError, match="not representable as JSON"):
        submit(store, params={"x": float("nan")})
    with pytest.raises(JobError, match="Idempotency-Key must be"):
        submit(store, idempotency_key="")
    assert uploads(store) == []


def test_jobs_of_a_dead_runner_fail_as_interrupted_and_live_ones_stay(store):
    dead, live = submit(store)[0], submit(store)[0]
    gone, alive = new_id(), new_id()
    store.claim(gone, limit=2)  # never held its lease: like a runner that died
    with store.runner_lease(alive):
        store.claim(alive, limit=2)
        queued = submit(store)[0]
        recovered = store.recover()
        assert [j.id for j in recovered] == [dead.id]
        assert store.get(dead.id).error == INTERRUPTED
        assert store.get(dead.id).status == "failed"
        assert store.get(live.id).status == "running"
        assert store.get(queued.id).status == "queued"  # nothing queued is lost
        assert uploads(store) == sorted(f"{j.id}.csv" for j in (live, queued))
    assert [j.id for j in store.recover()] == [live.id]  # its runner let go of the lease


def test_recover_removes_uploads_no_job_needs(store):
    job, _ = submit(store)
    (store.uploads / "orphan.csv").write_bytes(b"left by a crash")
    store.recover()
    assert uploads(store) == [f"{job.id}.csv"]


def test_two_processes_claiming_never_take_the_same_job(store, tmp_path):
    ids = {submit(store)[0].id for _ in range(500)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.claimer", str(store.path), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 2
    go.touch()  # both start claiming together
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    print("claimed per process:", [len(o) for o in outputs])
    claimed = outputs[0] + outputs[1]
    assert len(claimed) == len(set(claimed)) == 500
    assert set(claimed) == ids
    assert store.counts()["running"] == 500


def test_the_concurrency_limit_holds_across_runners(store):
    submit(store), submit(store)
    a, b = new_id(), new_id()
    assert store.claim(a, limit=1) is not None
    assert store.claim(b, limit=1) is None
    assert store.claim(b, limit=2) is not None


def test_deliveries_are_recorded_with_the_job_end_and_redelivered(store):
    job, _ = submit(store)
    runner = new_id()
    store.claim(runner, limit=1)
    store.finish(
        job.id,
        runner,
        "succeeded",
        version=1,
        events=lambda j: [NewDelivery("training_job.succeeded", '{"x":1}', j.id, j.model)],
    )
    (delivery,) = store.deliveries(job_id=job.id)
    assert delivery.status == "pending" and delivery.id.startswith("msg_")
    claimed = store.claim_delivery(lease=60)
    assert claimed.id == delivery.id
    assert store.claim_delivery(lease=60) is None  # leased: no second sender takes it
    failed = store.record_attempt(
        delivery.id,
        status_code=500,
        error="HTTP 500",
        duration_ms=1.5,
        next_attempt_at=None,
        succeeded=False,
    )
    assert failed.status == "failed" and [a.status_code for a in failed.attempts] == [500]
    again = store.redeliver(delivery.id)
    assert again.status == "pending" and again.round_attempts == 0 and again.id == delivery.id
    with pytest.raises(JobNotFound):
        store.redeliver("msg_nope")


def test_json_rows_become_the_csv_a_job_reads(tmp_path):
    from service.data.dataset import load_csv

    path = tmp_path / "rows.csv"
    path.write_bytes(rows_csv(["mean", "sd"], [[0.1, 2], [3, -4.5]]))
    ds = load_csv(path)
    assert ds.feature_names == ["mean", "sd"] and ds.X.tolist() == [[0.1, 2.0], [3.0, -4.5]]
    with pytest.raises(ValueError, match=r"rows\[1\]: expected 2 numbers \(mean, sd\)"):
        rows_csv(["mean", "sd"], [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"rows\[0\]\[1\] \(sd\): expected a number"):
        rows_csv(["mean", "sd"], [[1, "x"]])


def test_a_store_made_before_previous_version_existed_gains_the_column(tmp_path):
    """Job stores written by an earlier Vigil keep working: the column is added on open, the
    old jobs read back, and a promoting job records the default it replaced."""
    import sqlite3

    from service.jobs import store as store_module

    path = tmp_path / ".jobs" / "jobs.sqlite3"
    path.parent.mkdir(parents=True)
    old_schema = store_module._SCHEMA.replace("    previous_version INTEGER,\n", "")
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
    assert "previous_version" not in {
        r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")
    }

    s = JobStore(path)
    try:
        job, _ = s.submit("m", "iforest", {}, b"a,b\n1,2\n", promote=True)
        claimed = s.claim("runner-1", 1)
        assert claimed is not None and claimed.id == job.id
        done = s.finish(job.id, "runner-1", "succeeded", version=3, previous_version=2)
        assert (done.version, done.previous_version) == (3, 2)
        assert s.get(job.id).previous_version == 2
    finally:
        s.close()
