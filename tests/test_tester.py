"""tester.py against a live server."""

import pytest

from service.data.dataset import load_csv
from tests.support import run_tester

pytestmark = pytest.mark.slow


def test_summary_counts_what_the_model_flags(live_server, data_dir, reference):
    proc = run_tester(
        "--url",
        live_server.url,
        "--data",
        str(data_dir / "test.csv"),
        "--limit",
        "200",
        "--score-every",
        "7",
    )
    assert proc.returncode == 0, proc.stderr
    ds = load_csv(data_dir / "test.csv", label_column="label")
    flagged = int((reference.predict(ds.X[:200]) == -1).sum())
    assert f"requests: 200  anomalies: {flagged}  errors: 0 (none)" in proc.stdout
    assert "latency p50:" in proc.stdout and "p99:" in proc.stdout


def test_errors_are_counted_and_fail_the_run(live_server, tmp_path):
    data = tmp_path / "rows.csv"
    # Columns out of the model's order on purpose; 1e400 is sent as Infinity and refused.
    data.write_text("sd,mean\n0.5,0.5\n1e400,0.0\n0.1,0.0\n")
    proc = run_tester("--url", live_server.url, "--data", str(data), "-v")
    assert proc.returncode == 1
    assert "requests: 3  anomalies: 1  errors: 1 (400: 1)" in proc.stdout
    assert "row 2: 400" in proc.stderr


def test_unreachable_server(tmp_path, data_dir):
    proc = run_tester("--url", "http://127.0.0.1:9", "--data", str(data_dir / "test.csv"))
    assert proc.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in proc.stderr
