"""The benchmark runs end to end (``--quick``). Timings are not checked: only that it runs."""

import shutil
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed: apt-get install wrk")
def test_quick_bench_prints_the_table_with_all_three_servers(tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/bench.py", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("no-op FastAPI endpoint", "Vigil, all metrics on", "baseline: sklearn"):
        assert row in out
    assert "req/s" in out and "p99" in out
    assert out.count("[    met]") + out.count("[NOT met]") == 5
    assert "rows/s" in out and "RSS" in out
    assert (tmp_path / "latest.txt").read_text() in out
    assert (tmp_path / "cost_growth.png").stat().st_size > 10_000
