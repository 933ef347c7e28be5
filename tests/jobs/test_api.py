"""Training jobs through the real service: its runner process trains, registers and promotes;
a real local receiver gets the signed webhooks; the CLI drives it as a user would."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from service.jobs.store import INTERRUPTED
from tests.jobs.conftest import pid_alive, wait_gone
from tests.jobs.receiver import start_receiver
from tests.support import REPO, LiveServer, metric, scrape, start_server, wait_for

pytestmark = pytest.mark.slow
TOKEN = "jobs-admin-token-5678"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec_" + base64.b64encode(b"abcdef0123456789abcdef0123456789").decode()


def get_job(server: LiveServer, job_id: str) -> dict:
    r = requests.get(f"{server.url}/training-jobs/{job_id}", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(server: LiveServer, job_id: str, *statuses: str, timeout: float = 120) -> dict:
    seen = {}

    def done() -> bool:
        seen["job"] = get_job(server, job_id)
        return seen["job"]["status"] in statuses

    try:
        wait_for(done, timeout, f"job {job_id} to be {'/'.join(statuses)}", interval=0.2)
    except TimeoutError:
        raise AssertionError(f"{seen.get('job')}\n{server.log()[-3000:]}") from None
    return seen["job"]


def submit(
    server: LiveServer, name: str, csv: bytes, *, headers=None, **fields
) -> requests.Response:
    form = {k: (json.dumps(v) if k == "params" else str(v).lower() if isinstance(v, bool) else v)
            for k, v in fields.items()}  # fmt: skip
    return requests.post(
        f"{server.url}/models/{name}/training-jobs",
        headers={**AUTH, **(headers or {})},
        data=form,
        files={"data": ("train.csv", csv, "text/csv")},
        timeout=30,
    )


def events(receiver, event: str) -> list[dict]:
    """Every delivery of ``event`` the receiver got, verified as a real receiver does."""
    out = []
    for got in list(receiver.got):
        payload = Webhook(SECRET).verify(got.body, got.headers)  # raises on a bad signature
        if payload["type"] == event:
            out.append({"id": got.headers["webhook-id"], **payload})
    return out


class SingleRows:
    """A client posting single rows to one model until stopped; counts failures and the
    versions that answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.versions: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        with requests.Session() as s:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    r = s.post(self.url, json=[0.1, 0.1], timeout=10)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                else:
                    self.versions[r.json()["version"]] += 1

    def __enter__(self) -> SingleRows:
        self._thread.start()
        wait_for(lambda: sum(self.versions.values()) > 20 or self.failures, 30, "rows to flow")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture(scope="module")
def receiver():
    state, server = start_receiver()
    yield state
    server.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_path, receiver):
    """The service with its runner, a registry of its own and webhooks to the receiver."""
    root = tmp_path_factory.mktemp("jobs-service")
    server = start_server(
        model_path,
        root / "logs",
        env={
            "VIGIL_ADMIN_TOKEN": TOKEN,
            "VIGIL_REGISTRY": str(root / "registry"),
            "VIGIL_WEBHOOK_URL": receiver.url,
            "VIGIL_WEBHOOK_SECRET": SECRET,
        },
    )
    server.registry = root / "registry"
    yield server
    server.stop()


def test_submit_poll_sign_promote_and_serve_with_zero_failed_requests(service, receiver, csv_bytes):
    r = submit(service, "sensors", csv_bytes, detector="iforest", params={"n_estimators": 20})
    assert r.status_code == 202, r.text
    first = r.json()
    assert r.headers["location"] == f"/training-jobs/{first['id']}"
    assert (first["model"], first["status"], first["detector"]) == ("sensors", "queued", "iforest")
    done = wait_job(service, first["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert (done["version"], done["rows"], done["progress"]) == (1, 2000, 1.0)
    # A model's first version is its default: the runner has the service reload.
    wait_for(
        lambda: requests.get(f"{service.url}/models/sensors", timeout=5).status_code == 200,
        30,
        "sensors to be served",
    )
    # The signed event, verified with the standardwebhooks package.
    wait_for(lambda: events(receiver, "training_job.succeeded"), 30, "the succeeded webhook")
    (event,) = [
        e for e in events(receiver, "training_job.succeeded") if e["data"]["id"] == first["id"]
    ]
    assert event["data"]["version"] == 1 and event["data"]["status"] == "succeeded"
    deliveries = requests.get(
        f"{service.url}/training-jobs/{first['id']}/deliveries", headers=AUTH, timeout=5
    ).json()["deliveries"]
    assert [(d["id"], d["event"], d["status"]) for d in deliveries] == [
        (event["id"], "training_job.succeeded", "succeeded")
    ]

    # A second version, promoted, while a client scores single rows against the model.
    with SingleRows(f"{service.url}/models/sensors/prediction") as load:
        r = submit(
            service,
            "sensors",
            csv_bytes,
            detector="iforest",
            params={"n_estimators": 30},
            promote=True,
        )
        assert r.status_code == 202, r.text
        second = wait_job(service, r.json()["id"], "succeeded", "failed")
        assert (second["status"], second["version"]) == ("succeeded", 2), second
        wait_for(lambda: load.versions[2] > 20, 30, "version 2 to answer")
    assert load.failures == [], load.failures[:5]
    assert load.versions[1] > 0 and load.versions[2] > 0
    wait_for(lambda: events(receiver, "model.promoted"), 30, "the promoted webhook")
    promoted = events(receiver, "model.promoted")[-1]["data"]
    assert (promoted["model"], promoted["version"], promoted["job_id"]) == (
        "sensors", 2, second["id"],
    )  # fmt: skip
    assert promoted["previous_version"] == 1  # the default the promotion replaced

    samples = scrape(service.url)
    assert metric(samples, "vigil_training_jobs", status="succeeded") >= 2
    assert metric(samples, "vigil_training_queue_depth") == 0
    assert metric(samples, "vigil_training_duration_seconds_count", detector="iforest") >= 2
    assert metric(samples, "vigil_training_duration_seconds_count", detector="lof") == 0
    assert (
        metric(
            samples,
            "vigil_webhook_delivery_attempts_total",
            event="training_job.succeeded",
            result="succeeded",
        )
        >= 2
    )


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "jobs", *args],
        cwd=REPO,
        env={**os.environ, "VIGIL_ADMIN_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_cli_submits_waits_and_a_bad_csv_fails_with_line_and_column(
    service, receiver, tmp_path, csv_bytes
):
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes)
    ok = _cli("submit", "--url", service.url, "--name", "cli-model", "--data", str(good),
              "--detector", "hbos", "--param", "n_bins=12", "--wait")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    job_id = ok.stdout.split()[2]
    assert f"job {job_id} succeeded: cli-model version 1" in ok.stdout
    assert "%" in ok.stderr  # progress while waiting
    status = _cli("status", job_id, "--url", service.url)
    assert status.returncode == 0 and json.loads(status.stdout)["params"] == {"n_bins": 12}

    lines = ["mean,sd"] + [f"{i / 100},{i / 50}" for i in range(30)]
    lines[5] = "0.5,oops"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    failed = _cli("submit", "--url", service.url, "--name", "cli-model", "--data", str(bad),
                  "--detector", "iforest", "--wait")  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    bad_id = failed.stdout.split()[2]
    job = get_job(service, bad_id)
    assert job["status"] == "failed"
    assert job["error"] == "bad.csv, line 6, column 'sd': 'oops' is not numeric"  # as train says
    assert f"job {bad_id} failed: bad.csv, line 6, column 'sd'" in failed.stdout
    wait_for(
        lambda: any(e["data"]["id"] == bad_id for e in events(receiver, "training_job.failed")),
        30,
        "the failed webhook",
    )
    listed = _cli("list", "--url", service.url, "--model", "cli-model")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [bad_id, job_id]
    refused = _cli("submit", "--url", service.url, "--name", "x", "--data", str(good),
                   "--detector", "lofx")  # fmt: skip
    assert refused.returncode == 2
    assert "422: unknown detector kind 'lofx'" in refused.stderr


@pytest.fixture(scope="module")
def queue_only(tmp_path_factory, model_path):
    """The service without a runner (VIGIL_TRAINING_RUNNER=false): jobs stay queued. A small
    upload limit."""
    root = tmp_path_factory.mktemp("jobs-queue")
    server = start_server(
        model_path,
        root / "logs",
        env={
            "VIGIL_ADMIN_TOKEN": TOKEN,
            "VIGIL_REGISTRY": str(root / "registry"),
            "VIGIL_TRAINING_RUNNER": "false",
            "VIGIL_MAX_UPLOAD_BYTES": "4096",
        },
    )
    server.uploads = root / "registry" / ".jobs" / "uploads"
    yield server
    server.stop()


SMALL_CSV = ("mean,sd\n" + "".join(f"{i / 10},{i / 20}\n" for i in range(40))).encode()


def test_idempotent_resubmission_and_cancel(queue_only):
    key = {"Idempotency-Key": "retry-me-1"}
    first = submit(
        queue_only, "m", SMALL_CSV, headers=key, detector="lof", params={"n_neighbors": 5}
    )
    again = submit(
        queue_only, "m", SMALL_CSV, headers=key, detector="lof", params={"n_neighbors": 5}
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(
        queue_only, "m", SMALL_CSV, headers=key, detector="lof", params={"n_neighbors": 6}
    )
    assert other.status_code == 422
    assert "was used for a different request" in other.json()["detail"]
    job_id = first.json()["id"]
    assert len(list(queue_only.uploads.glob(f"{job_id}.csv"))) == 1

    r = requests.post(f"{queue_only.url}/training-jobs/{job_id}/cancel", headers=AUTH, timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert get_job(queue_only, job_id)["status"] == "canceled"
    assert not (queue_only.uploads / f"{job_id}.csv").exists()  # its data went with it
    listed = requests.get(
        f"{queue_only.url}/training-jobs", params={"model": "m", "status": "canceled"},
        headers=AUTH, timeout=5,
    ).json()  # fmt: skip
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    missing = requests.get(f"{queue_only.url}/training-jobs/{'0' * 26}", headers=AUTH, timeout=5)
    assert missing.status_code == 404


def test_uploads_over_the_limit_are_refused_before_they_are_stored(queue_only):
    big = ("mean,sd\n" + "0.1,0.2\n" * 1000).encode()  # 8 KB > 4096
    before = sorted(p.name for p in queue_only.uploads.iterdir())
    # From Content-Length, before the body is read.
    r = submit(queue_only, "m", big, detector="iforest")
    assert r.status_code == 413, r.text
    assert "VIGIL_MAX_UPLOAD_BYTES" in r.json()["detail"]
    # Streamed without a length (chunked): cut off once past the limit.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"detector\"\r\n\r\niforest\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"big.csv\""
            "\r\n\r\n").encode()  # fmt: skip

    def chunks():
        yield head
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = requests.post(
        f"{queue_only.url}/models/m/training-jobs",
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        data=chunks(),
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert sorted(p.name for p in queue_only.uploads.iterdir()) == before  # nothing stored
    # The same, as JSON rows.
    rows = {"detector": "iforest", "feature_names": ["a"], "rows": [[0.123456789]] * 500}
    r = requests.post(
        f"{queue_only.url}/models/m/training-jobs", json=rows, headers=AUTH, timeout=30
    )
    assert r.status_code == 413, r.text
    listed = requests.get(f"{queue_only.url}/training-jobs?status=queued", headers=AUTH, timeout=5)
    assert all(j["model"] != "m" or j["status"] != "queued" for j in listed.json()["jobs"])


@pytest.mark.parametrize(
    ("kw", "status", "detail"),
    [
        ({"detector": "lofx"}, 422, "unknown detector kind 'lofx'"),
        ({"detector": "lof", "params": {"n_neighbours": 3}}, 422,
         "lof: unknown parameter 'n_neighbours'"),
        ({"detector": "lof", "params": {"n_neighbors": 0}}, 422, "n_neighbors"),
        ({"detector": "lof", "promote": "maybe"}, 422, "form field 'promote'"),
        ({"detector": "lof", "colour": "red"}, 422, "unknown form field 'colour'"),
    ],
)  # fmt: skip
def test_a_bad_submission_is_refused_before_it_is_queued(queue_only, kw, status, detail):
    before = requests.get(f"{queue_only.url}/training-jobs", headers=AUTH, timeout=5).json()
    r = submit(queue_only, "m", SMALL_CSV, **kw)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    after = requests.get(f"{queue_only.url}/training-jobs", headers=AUTH, timeout=5).json()
    assert after == before


@pytest.mark.parametrize("seed", [{}, [], 1.5, True, "x", -1, 2**32])
def test_a_json_submission_with_a_bad_seed_is_a_422_naming_it(queue_only, seed):
    body = {"detector": "iforest", "feature_names": ["a"], "rows": [[1.0]] * 20, "seed": seed}
    r = requests.post(
        f"{queue_only.url}/models/m/training-jobs", json=body, headers=AUTH, timeout=5
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("seed: expected a whole number")


def test_content_type_token_and_form_are_checked(queue_only):
    url = f"{queue_only.url}/models/m/training-jobs"
    r = requests.post(url, data=SMALL_CSV, headers={**AUTH, "Content-Type": "text/csv"}, timeout=5)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert requests.post(url, files={"data": ("a.csv", SMALL_CSV)}, timeout=5).status_code == 401
    r = requests.post(url, data={"detector": "iforest"}, files={"x": ("a", b"1")}, headers=AUTH,
                      timeout=5)  # fmt: skip
    assert r.status_code == 422 and "the form has no 'data' part" in r.json()["detail"]
    r = requests.post(url, json={"detector": "iforest", "feature_names": ["a"], "rows": [["x"]]},
                      headers=AUTH, timeout=5)  # fmt: skip
    assert r.status_code == 422 and r.json()["detail"] == "rows[0][0] (a): expected a number"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _job_processes(runner: int) -> list[int]:
    """The runner's job processes (spawned; not multiprocessing's resource tracker)."""
    return [
        pid
        for pid in _children(runner)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _runner_pid(server: LiveServer) -> int:
    found = {}

    def look() -> bool:
        for pid in _children(server.proc.pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"service.jobs" in cmdline:
                found["pid"] = pid
                return True
        return False

    wait_for(look, 30, "the runner process")
    return found["pid"]


def test_kill_9_of_the_runner_fails_the_running_job_as_interrupted_and_runs_the_queue(
    tmp_path, model_path, csv_bytes
):
    # A fit that takes long enough to be killed in the middle: OCSVM on 30,000 rows.
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 1, (30_000, 2))
    slow = ("mean,sd\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in rows)).encode()
    server = start_server(
        model_path,
        tmp_path / "logs",
        env={
            "VIGIL_ADMIN_TOKEN": TOKEN,
            "VIGIL_REGISTRY": str(tmp_path / "registry"),
            "VIGIL_MAX_UPLOAD_BYTES": str(10 * 1024 * 1024),
        },
    )
    try:
        runner = _runner_pid(server)
        long = submit(server, "slow", slow, detector="ocsvm", params={"max_train_rows": None})
        queued = submit(server, "quick", csv_bytes, detector="iforest", params={"n_estimators": 10})
        assert long.status_code == queued.status_code == 202
        long_id, queued_id = long.json()["id"], queued.json()["id"]
        wait_job(server, long_id, "running", timeout=60)
        wait_for(lambda: _job_processes(runner), 30, "the job process")
        (job_process,) = _job_processes(runner)
        assert get_job(server, queued_id)["status"] == "queued"  # concurrency 1
        os.kill(runner, signal.SIGKILL)
        wait_gone(job_process)  # the job process died with its runner
        failed = wait_job(server, long_id, "failed", "succeeded", timeout=60)
        assert failed["error"] == INTERRUPTED
        # The service started a new runner, which runs what was queued.
        restarted = _runner_pid(server)
        assert restarted != runner
        done = wait_job(server, queued_id, "succeeded", "failed", timeout=120)
        assert done["status"] == "succeeded", done
        assert requests.get(f"{server.url}/health/ready", timeout=5).status_code == 200
    finally:
        server.stop()
    assert not pid_alive(runner)
    wait_gone(restarted)  # stopped with the service


def test_anomalies_of_an_opted_in_model_reach_the_receiver_batched(tmp_path, model_path, receiver):
    """VIGIL_ANOMALY_WEBHOOK_MODELS: the anomalies that /prediction(s) find for `default` are
    sent as one signed anomaly.detected per interval, with the count and the first rows."""
    server = start_server(
        model_path,
        tmp_path / "logs",
        env={
            "VIGIL_ADMIN_TOKEN": TOKEN,
            "VIGIL_REGISTRY": str(tmp_path / "registry"),
            "VIGIL_WEBHOOK_URL": receiver.url,
            "VIGIL_WEBHOOK_SECRET": SECRET,
            "VIGIL_WEBHOOK_RETRY_SCHEDULE": "0,0.2",
            "VIGIL_ANOMALY_WEBHOOK_MODELS": "default",
            "VIGIL_ANOMALY_WEBHOOK_INTERVAL": "1",
        },
    )
    try:
        before = len(events(receiver, "anomaly.detected"))
        far = [[50.0, 50.0]] * 7  # anomalies for any model of the sample data
        for row in far[:3]:
            r = requests.post(f"{server.url}/prediction", json=row, timeout=5)
            assert r.json()["is_anomaly"] is True
        r = requests.post(f"{server.url}/predictions", json=[*far[3:], [0.1, 0.1]], timeout=5)
        assert sum(p["is_anomaly"] for p in r.json()["predictions"]) == 4
        wait_for(
            lambda: len(events(receiver, "anomaly.detected")) > before,
            30,
            "the anomaly.detected webhook",
        )
        (sent,) = events(receiver, "anomaly.detected")[before:]
        assert sent["data"]["model"] == "default"
        assert sent["data"]["count"] == 7
        assert sent["data"]["rows"][:3] == [[50.0, 50.0]] * 3
    finally:
        server.stop()
