"""Webhooks to a real local receiver, verified with the standardwebhooks package."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from service.jobs import signing
from service.jobs.runner import Runner
from service.jobs.store import JobStore, new_id
from service.jobs.webhooks import (
    ANOMALY_DETECTED,
    TRAINING_SUCCEEDED,
    AnomalyBatcher,
    WebhookSender,
)
from service.settings import Settings
from tests.jobs import trainers
from tests.jobs.conftest import wait_status
from tests.jobs.receiver import start_receiver
from tests.support import wait_for

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
FAST = (0.0, 0.2, 0.2)


@pytest.fixture
def receiver(request) -> Iterator:
    script = getattr(request, "param", [])
    state, server = start_receiver(script)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def sender(store, receiver) -> Iterator[WebhookSender]:
    results: list[tuple[str, str]] = []
    s = WebhookSender(
        store,
        receiver.url,
        SECRET,
        schedule=FAST,
        poll_interval=0.05,
        on_attempt=lambda event, result: results.append((event, result)),
    )
    s.results = results
    s.start()
    yield s
    s.stop()


def verified(received) -> dict:
    """What a real receiver does: verify the signature, then read the body."""
    return Webhook(SECRET).verify(received.body, received.headers)


def wait_delivery(store: JobStore, delivery_id: str, *statuses: str, timeout: float = 30):
    wait_for(lambda: store.delivery(delivery_id).status in statuses, timeout, delivery_id)
    return store.delivery(delivery_id)


@pytest.mark.parametrize(
    "receiver", [[(500, {}), (429, {"Retry-After": "1"})]], indirect=True, ids=["500-429-200"]
)
def test_a_receiver_failing_twice_gets_three_signed_attempts_with_one_id(store, sender, receiver):
    job, _ = store.submit("m", "iforest", {}, b"a\n1\n")
    delivery = sender.enqueue(TRAINING_SUCCEEDED, job.public(), job_id=job.id, model="m")
    done = wait_delivery(store, delivery.id, "succeeded", "failed")
    assert done.status == "succeeded"
    assert [a.status_code for a in done.attempts] == [500, 429, 200]
    assert [a.error for a in done.attempts] == ["HTTP 500", "HTTP 429", None]
    assert len(receiver.got) == 3
    assert {r.headers["webhook-id"] for r in receiver.got} == {delivery.id}
    bodies = [verified(r) for r in receiver.got]  # raises if any signature is wrong
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["type"] == TRAINING_SUCCEEDED and bodies[0]["data"]["id"] == job.id
    assert receiver.got[2].at - receiver.got[1].at >= 1.0  # Retry-After: 1 was honoured
    assert [d.id for d in store.deliveries(job_id=job.id)] == [delivery.id]
    assert sender.results == [(TRAINING_SUCCEEDED, r) for r in ("retrying",) * 2 + ("succeeded",)]


@pytest.mark.parametrize("receiver", [[(503, {})] * 3], indirect=True, ids=["always-503"])
def test_a_delivery_fails_when_the_schedule_is_used_up_and_redeliver_sends_it_again(
    store, sender, receiver
):
    delivery = sender.enqueue(TRAINING_SUCCEEDED, {"id": "x"}, model="m")
    failed = wait_delivery(store, delivery.id, "failed", "succeeded")
    assert failed.status == "failed" and len(failed.attempts) == len(FAST) == 3
    assert failed.last_error == "HTTP 503"
    assert sender.results[-1] == (TRAINING_SUCCEEDED, "failed")
    again = sender.redeliver(delivery.id)  # the receiver now answers 200
    assert again.status == "pending"
    done = wait_delivery(store, delivery.id, "succeeded")
    assert [a.n for a in done.attempts] == [1, 2, 3, 4]
    assert receiver.got[-1].headers["webhook-id"] == delivery.id
    verified(receiver.got[-1])


def test_a_finished_job_sends_its_signed_event(store, receiver, sender, monkeypatch, csv_bytes):
    monkeypatch.setenv("VIGIL_REGISTRY", str(store.dir.parent))
    runner = Runner(store, trainers.train_iforest, poll_interval=0.05, events=sender.job_events)
    thread, stop = runner.start()
    try:
        good, _ = store.submit("m", "iforest", {"n_estimators": 5}, csv_bytes, promote=True)
        bad, _ = store.submit("m", "iforest", {}, b"x,y\n1,2\n", options={"filename": "b.csv"})
        wait_status(store, good.id, "succeeded")
        wait_status(store, bad.id, "failed")
    finally:
        stop.set()
        thread.join(30)
    wait_for(lambda: len(receiver.got) == 3, 30, "three deliveries")
    events = [verified(r) for r in receiver.got]
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["training_job.succeeded"]["version"] == 1
    assert by_type["training_job.succeeded"]["status"] == "succeeded"
    assert by_type["model.promoted"] == {
        "model": "m",
        "alias": "default",
        "version": 1,
        "previous_version": None,
        "job_id": good.id,
    }
    assert (
        by_type["training_job.failed"]["error"] == "b.csv has 1 data rows; at least 10 are needed"
    )
    assert [d.event for d in store.deliveries(job_id=bad.id)] == ["training_job.failed"]


def test_pending_deliveries_survive_a_restart(store, receiver):
    # recorded by a process whose sender never ran (it died before sending) ...
    first = WebhookSender(store, receiver.url, SECRET, schedule=FAST)
    delivery = first.enqueue(TRAINING_SUCCEEDED, {"id": "x"}, model="m")
    store.close()
    assert receiver.got == []
    # ... and sent by the next one, opened afresh on the same file
    reopened = JobStore(store.path)
    second = WebhookSender(reopened, receiver.url, SECRET, schedule=FAST, poll_interval=0.05)
    second.start()
    try:
        assert wait_delivery(reopened, delivery.id, "succeeded").status == "succeeded"
    finally:
        second.stop()
    assert verified(receiver.got[0])["data"] == {"id": "x"}


def test_anomalies_are_batched_per_model_per_interval(store, receiver):
    sender = WebhookSender(store, receiver.url, SECRET, schedule=FAST, poll_interval=0.05)
    batcher = AnomalyBatcher(sender, interval=1.0, max_rows=3, tick=0.05)
    sender.start()
    batcher.start()
    try:
        for i in range(500):
            batcher.record("fraud", [[i, 0.5], [i, 0.6]])
        batcher.record("other", [[9.0, 9.0]])
        wait_for(lambda: len(receiver.got) == 2, 30, "one delivery per model")
        batcher.record("fraud", [[7.0, 7.0]], count=4)  # a new window
        wait_for(lambda: len(receiver.got) == 3, 30, "the next window")
    finally:
        batcher.stop()
        sender.stop()
    data = [verified(r)["data"] for r in receiver.got]
    assert all(verified(r)["type"] == ANOMALY_DETECTED for r in receiver.got)
    fraud = [d for d in data if d["model"] == "fraud"]
    assert fraud[0]["count"] == 1000
    assert fraud[0]["rows"] == [[0, 0.5], [0, 0.6], [1, 0.5]]
    assert fraud[1]["count"] == 4 and fraud[1]["rows"] == [[7.0, 7.0]]
    assert [d["count"] for d in data if d["model"] == "other"] == [1]
    # at most one per model per interval, even across processes: the store keeps the window
    sent = [r.at for r, d in zip(receiver.got, data, strict=True) if d["model"] == "fraud"]
    assert sent[1] - sent[0] >= 1.0 * 0.9
    blocked = store.add_windowed_delivery(
        "fraud", 60, sender.message(ANOMALY_DETECTED, {}, model="fraud")
    )
    assert blocked is None


def test_the_signature_is_what_standardwebhooks_computes():
    msg_id, ts, body = "msg_" + new_id(), 1_700_000_000, b'{"type":"x"}'
    expected = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    assert signing.sign(signing.parse_secret(SECRET), msg_id, ts, body) == expected


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("abc", "must start with 'whsec_'"),
        ("whsec_!!!", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes, got 5"),
    ],
)
def test_a_bad_secret_is_refused_without_showing_it(secret, message):
    with pytest.raises(ValueError, match=message) as err:
        signing.parse_secret(secret)
    assert secret not in str(err.value) or secret == "abc"


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert signing.parse_retry_after("7") == 7.0
    assert signing.parse_retry_after(format_datetime(now + timedelta(seconds=90)), now) == 90.0
    assert signing.parse_retry_after(format_datetime(now - timedelta(seconds=5)), now) == 0.0
    assert signing.parse_retry_after("soon") is None
    assert signing.parse_retry_after(None) is None
    assert signing.parse_retry_after("999999999") == signing.MAX_RETRY_AFTER_S


def test_the_schedule_has_jitter_and_an_end():
    schedule = signing.parse_schedule("0, 5,300")
    assert schedule == (0.0, 5.0, 300.0)
    delays = {signing.retry_delay(schedule, 1) for _ in range(20)}
    assert all(5.0 <= d <= 5.0 * (1 + signing.JITTER) for d in delays) and len(delays) > 1
    assert signing.retry_delay(schedule, 1, retry_after=60) >= 60
    assert signing.retry_delay(schedule, 3) is None
    assert signing.parse_schedule(Settings().webhook_retry_schedule) == signing.DEFAULT_SCHEDULE
    with pytest.raises(ValueError, match="item 'x' is not a number"):
        signing.parse_schedule("0,x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIGIL_WEBHOOK_URL": "http://127.0.0.1:9/h"}, "VIGIL_WEBHOOK_SECRET is not"),
        ({"VIGIL_WEBHOOK_SECRET": "nope"}, "must start with 'whsec_'"),
        ({"VIGIL_WEBHOOK_RETRY_SCHEDULE": "1,-2"}, "item '-2' must be from 0"),
        ({"VIGIL_WEBHOOK_URL": "ftp://x"}, "webhook_url"),
    ],
)
def test_bad_webhook_settings_are_refused_at_start(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_webhook_settings_build_a_sender(monkeypatch, store):
    monkeypatch.setenv("VIGIL_WEBHOOK_URL", "http://127.0.0.1:9/h")
    monkeypatch.setenv("VIGIL_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("VIGIL_WEBHOOK_RETRY_SCHEDULE", "0,1")
    sender = WebhookSender.from_settings(Settings(), store)
    assert sender.schedule == (0.0, 1.0) and sender.url == "http://127.0.0.1:9/h"
    assert SECRET not in repr(Settings())
    monkeypatch.delenv("VIGIL_WEBHOOK_URL")
    assert WebhookSender.from_settings(Settings(), store) is None
    assert json.loads(sender.message(TRAINING_SUCCEEDED, {"a": 1}, model="m").body)["data"] == {
        "a": 1
    }
