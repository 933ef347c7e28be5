"""Where a served request's CPU time goes, by layer: py-spy samples of a server under wrk.

Used by ``bench/layers.py --py-spy``. py-spy (``pip install py-spy``; it reads the server's
memory, so it needs ptrace rights: root, or ``CAP_SYS_PTRACE`` in a container) samples the
server's stacks, native frames included, while wrk drives it. A sample of the event-loop thread
counts for the layer of its innermost frame that :data:`LAYERS` names (checked in order); the
rest (uvicorn, httptools, uvloop, the socket calls they make) is the server's. A layer's share
of the samples, times the CPU time per request measured without the profiler, is its µs per
request: in-process figures leave out what running inside a busy server adds (colder caches,
an event-loop wake-up per awaited row), and this does not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from harness import CLIENT_CORE, CONNECTIONS, pinned

SERVER = "server: uvicorn, httptools, uvloop, socket reads and writes"
# (layer, substrings of a py-spy frame "function (file:line)"): the first that matches the
# innermost frame naming any of them wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("HTTP metrics", ("http_metrics.py",)),
    ("model metrics", ("telemetry.py", "binning.py", "percentile_one")),
    (
        "scoring: the forest walk",
        ("compiled_forest.py", "iforest.py", "detector.py", "Model.score "),
    ),
    ("scoring: the row batcher", ("row_batcher.py",)),
    ("JSON decode", ("decode_json", "_check_unique_keys")),
    ("body read", ("read_body_from", "read_json_from", "RequestResponseCycle.receive")),
    ("validation", ("FeatureParser",)),
    ("response: result and JSON", ("single_result", "Reply", "dumps (")),
    ("server: sending the response", ("RequestResponseCycle.send",)),
    (
        "route: model lookup, query",
        ("Prediction.answer", "dataplane.py", "store.py", "query_values"),
    ),
    ("fast lane: match and dispatch", ("fast_lane.py",)),
]
_WAITING_LOOP = ("epoll_pwait", "epoll_wait")  # the event loop's innermost frame, when idle
_WAITING_THREAD = "Condition.wait"  # anywhere in a worker thread's stack, when idle


def available() -> str | None:
    """The py-spy command, or None when it is not installed."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def layer_of(stack: list[str]) -> str | None:
    """The layer of one sample's stack (root first); None for an idle thread."""
    if stack[-1].startswith(_WAITING_LOOP) or any(_WAITING_THREAD in f for f in stack):
        return None
    for frame in reversed(stack):
        for layer, keys in LAYERS:
            if any(key in frame for key in keys):
                return layer
    return SERVER


def shares(raw: str) -> dict[str, float]:
    """Each layer's share of the busy samples in py-spy's ``--format raw`` output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        layer = layer_of(stack.split(";")) if stack else None
        if layer is not None:
            counts[layer] += int(n)
    total = sum(counts.values())
    return {layer: n / total for layer, n in counts.most_common()} if total else {}


def sample(pid: int, url: str, script: Path, seconds: int) -> dict[str, float]:
    """:func:`shares` of the server ``pid`` while wrk posts ``script``'s request to ``url``."""
    spy = available()
    if spy is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="vigil-py-spy-") as tmp:
        out = Path(tmp) / "samples.txt"
        wrk = subprocess.Popen(
            [
                *pinned(CLIENT_CORE),
                "wrk",
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{seconds + 2}s",
                "-s",
                str(script),
                url,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            subprocess.run(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "200",
                    "--native",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                check=True,
                capture_output=True,
            )
        finally:
            wrk.wait()
        return shares(out.read_text())
