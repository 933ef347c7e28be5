"""Several uvicorn workers: metrics stay exact across them; they serve one model version."""

import concurrent.futures
import os
import re
import signal
from pathlib import Path

import pytest
import requests

from tests.service.test_reload import TOKEN, make_model, reload, truncate
from tests.support import LiveServer, metric, scrape, start_server, wait_for

pytestmark = pytest.mark.slow


def test_counters_add_up_across_two_workers(tmp_path, model_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale file from an earlier run")
    server = start_server(
        model_path, tmp_path, env={"VIGIL_WORKERS": "2", "VIGIL_METRICS_DIR": str(metrics_dir)}
    )
    try:
        n = 300

        def send(i: int) -> int:
            with requests.Session() as s:
                return s.post(
                    f"{server.url}/prediction", json=[0.01 * (i % 7), 0.1], timeout=10
                ).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(n)))
        assert statuses == [200] * n
        for _ in range(20):  # either worker may answer a scrape; each must see the whole count
            m = scrape(server.url)
            labels = {"handler": "/prediction", "method": "POST", "status": "200"}
            assert metric(m, "http_requests_total", **labels) == n
            total = sum(
                metric(m, "vigil_predictions_total", model="default", version="1", outcome=o)
                for o in ("anomaly", "normal")
            )
            assert total == n
            assert metric(m, "vigil_rows_per_request_count", endpoint="prediction") == n
            assert metric(m, "vigil_model_ready", model="default") == 1
        worker_files = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")}
        assert "99999.db" not in worker_files
        assert len(worker_files) == 2  # both workers served and wrote their own files
    finally:
        server.stop()


# A worker that replaces a dead one serves what the service was serving (issue #9).


def start_two_workers(model: Path, tmp_path: Path) -> LiveServer:
    server = start_server(model, tmp_path, env={"VIGIL_WORKERS": "2", "VIGIL_ADMIN_TOKEN": TOKEN})
    wait_for(lambda: server.log().count("Application startup complete") == 2, 15, "2 workers")
    return server


def worker_pids(server: LiveServer) -> list[int]:
    """The live workers, from uvicorn's "Started server process [pid]" lines."""
    pids = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", server.log())]
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def kill_a_worker(server: LiveServer) -> None:
    """kill -9 one worker and wait until its replacement has started."""
    started = server.log().count("Application startup complete")
    os.kill(worker_pids(server)[0], signal.SIGKILL)
    wait_for(
        lambda: server.log().count("Application startup complete") == started + 1,
        30,
        "the replacement worker",
    )


def info_labels(model_version: str) -> dict[str, str]:
    """vigil_model_info's labels for the lone VIGIL_MODEL_PATH model with this content hash."""
    return {"model": "default", "version": "1", "kind": "iforest", "model_version": model_version}


def assert_whole_service_serves(server: LiveServer, version: str, others: tuple[str, ...]) -> None:
    """Every worker serves ``version``: the metrics merge all live workers' files, and requests
    on fresh connections land on both workers."""
    m = scrape(server.url)
    assert metric(m, "vigil_model_ready", model="default") == 1  # the minimum over live workers
    assert metric(m, "vigil_model_info", **info_labels(version)) == 1
    for other in others:
        assert metric(m, "vigil_model_info", **info_labels(other)) == 0, other
    answers = [
        requests.post(f"{server.url}/prediction", json=[0.1, 0.1], timeout=5) for _ in range(40)
    ]
    assert {(r.status_code, r.json().get("model_version")) for r in answers} == {(200, version)}


def test_a_replacement_worker_keeps_the_model_a_reload_refused_to_replace(tmp_path):
    model = tmp_path / "models" / "model.joblib"
    first = make_model(model, seed=1)
    server = start_two_workers(model, tmp_path)
    try:
        truncate(model)
        r = reload(server.url)
        assert (r.status_code, r.json()["result"]) == (409, "refused")
        kill_a_worker(server)
        assert_whole_service_serves(server, first, ())
        assert len(worker_pids(server)) == 2
    finally:
        server.stop()


def test_a_replacement_worker_does_not_serve_a_model_nobody_reloaded(tmp_path):
    model = tmp_path / "models" / "model.joblib"
    first = make_model(model, seed=1)
    server = start_two_workers(model, tmp_path)
    try:
        second = make_model(model, seed=2)  # on disk, but never reloaded
        kill_a_worker(server)
        assert_whole_service_serves(server, first, (second,))

        # A reload is what moves the service, every worker at once, and a worker started
        # afterwards serves the new model too.
        r = reload(server.url)
        assert (r.status_code, r.json()["model_version"]) == (200, second)
        wait_for(
            lambda: metric(scrape(server.url), "vigil_model_info", **info_labels(first)) == 0,
            15,
            "both workers on the new model",
        )
        make_model(model, seed=3)  # on disk, never reloaded
        kill_a_worker(server)
        assert_whole_service_serves(server, second, (first,))
    finally:
        server.stop()


def test_one_admin_reload_counts_one_reload_with_two_workers(tmp_path):
    model = tmp_path / "models" / "model.joblib"
    first = make_model(model, seed=1)
    server = start_two_workers(model, tmp_path)
    try:
        second = make_model(model, seed=2)
        r = reload(server.url)
        assert (r.status_code, r.json()["result"]) == (200, "reloaded")
        wait_for(
            lambda: metric(scrape(server.url), "vigil_model_info", **info_labels(first)) == 0,
            15,
            "both workers on the new model",
        )
        assert_whole_service_serves(server, second, (first,))
        m = scrape(server.url)
        assert metric(m, "vigil_model_reloads_total", result="reloaded") == 1
        assert metric(m, "vigil_model_reloads_total", result="unchanged") == 0
        assert metric(m, "vigil_model_reloads_total", result="refused") == 0
    finally:
        server.stop()
