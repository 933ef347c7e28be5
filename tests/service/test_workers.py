"""Several uvicorn workers: metrics stay exact across them."""

import concurrent.futures

import pytest
import requests

from tests.support import metric, scrape, start_server

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
                metric(m, "vigil_predictions_total", outcome=o) for o in ("anomaly", "normal")
            )
            assert total == n
            assert metric(m, "vigil_rows_per_request_count", endpoint="prediction") == n
            assert metric(m, "vigil_model_ready") == 1
        worker_files = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")}
        assert "99999.db" not in worker_files
        assert len(worker_files) == 2  # both workers served and wrote their own files
    finally:
        server.stop()
