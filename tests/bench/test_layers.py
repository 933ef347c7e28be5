"""``bench/layers.py``: the per-layer breakdown of a one-row prediction runs end to end, and
``bench/http_profile.py`` puts each py-spy sample in the layer its innermost frame names."""

import re
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO

# bench/ scripts import each other as top-level modules: on the path for this import only.
sys.path.insert(0, str(REPO / "bench"))
try:
    import http_profile
finally:
    sys.path.remove(str(REPO / "bench"))

FOREST = "score_samples (/repo/service/detectors/compiled_forest.py:320)"
BATCHER = "RowBatcher._run (/repo/service/serving/row_batcher.py:60)"
SERVE = "FastLane.serve (/repo/service/api/fast_lane.py:190)"
SEND = "RequestResponseCycle.send (/venv/uvicorn/protocols/http/httptools_impl.py:520)"
LOOP = "Runner.run (/python/asyncio/runners.py:118)"


def raw(*samples: tuple[list[str], int]) -> str:
    return "\n".join(";".join(stack) + f" {n}" for stack, n in samples)


def test_a_sample_counts_for_the_innermost_frame_that_names_a_layer():
    shares = http_profile.shares(
        raw(
            ([LOOP, BATCHER, FOREST, "mapiter_trivial_get (numpy.so)"], 6),
            ([LOOP, BATCHER], 2),
            ([LOOP, SERVE, SEND, "write (libc.so.6)"], 1),
            ([LOOP, "data_received (uvloop/loop.c:100)"], 1),
            ([LOOP, "epoll_pwait (libc.so.6)"], 30),  # idle: not counted
            (["Thread._bootstrap (threading.py:1)", "Condition.wait (threading.py:2)"], 50),
        )
    )
    assert shares == {
        "scoring: the forest walk": 0.6,
        "scoring: the row batcher": 0.2,
        "server: sending the response": 0.1,
        http_profile.SERVER: 0.1,
    }


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed: apt-get install wrk")
@pytest.mark.skipif(
    http_profile.available() is None, reason="py-spy is not installed: pip install py-spy"
)
def test_quick_layers_prints_every_variant_the_http_figures_and_the_profile(tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/layers.py", "--quick", "--py-spy", "3", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for variant in ("shipped", "framework", "no-batching", "no-model-metrics", "empty-asgi"):
        assert re.search(rf"^  {variant} +\d+\.\d", out, re.M), variant
    assert re.search(r"empty ASGI app +[\d,]+ req/s +[\d.]+ µs \(user [\d.]+, system", out)
    assert re.search(r"Vigil +[\d,]+ req/s +[\d.]+ µs .*% of the empty app's req/s", out)
    profile = out.split("where Vigil's CPU goes over HTTP")[1]
    shares = [float(s) for s in re.findall(r" ([\d.]+)% +[\d.]+ µs", profile)]
    assert abs(sum(shares) - 100) < 1  # every busy sample is in one layer
    assert "scoring: the forest walk" in profile and http_profile.SERVER in profile
    assert (tmp_path / "layers.txt").read_text() == out
