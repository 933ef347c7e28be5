"""The benchmark runs end to end (``--quick``). Timings are not checked: only that it runs,
that every table comes out, and that the served scores of each kind equal its library's."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

KINDS = ("iforest", "ecod")  # the compiled forest, and a kind scored one row at a time


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed: apt-get install wrk")
def test_quick_bench_prints_every_table_and_the_per_kind_targets(tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/bench.py", "--quick", "--out", str(tmp_path), "--kinds", *KINDS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in (
        "empty ASGI app (the server's limit)",
        "empty ASGI app, access log on",
        "no-op FastAPI endpoint",
        "Vigil, all metrics on",
        "Vigil, /models/default/prediction",
        "baseline: sklearn",
    ):
        assert row in out
    assert "req/s" in out and "p99" in out
    # Against the empty app: 4 req/s shares and 2 p99s; then the no-op, baseline, batch, RSS.
    assert out.count("[    met]") + out.count("[NOT met]") == 11
    assert "rows/s" in out and "RSS" in out
    assert (tmp_path / "latest.txt").read_text() in out
    assert (tmp_path / "cost_growth.png").stat().st_size > 10_000

    # One row per kind: req/s vs the no-op, batch rows/s vs the library, each target marked,
    # and the served scores equal to the library's ("yes" in the exact column).
    for kind in KINDS:
        line = re.search(rf"^  {kind} .*$", out, re.M)
        assert line, f"no row for {kind}"
        cells = re.split(r"\s{2,}", line.group(0).strip())
        assert cells[-1] == "yes", line.group(0)
        assert sum(c in ("met", "NOT met") for c in cells) == 2, line.group(0)
    assert f"all {len(KINDS)} kinds loaded" in out
    assert (tmp_path / "kinds.png").stat().st_size > 10_000
    saved = json.loads(next(tmp_path.glob("bench-*-quick.json")).read_text())
    assert set(saved["kinds"]["targets"]) == set(KINDS)
