"""Benchmark: every series detector kind on NAB's labelled series, scored NAB's way.

    python bench/bench_series.py --nab ../shared/nab [--kinds seasonal rolling] [--per-series]
                                 [--url http://127.0.0.1:8000 | --in-process]

Prints, per kind with its default parameters (no per-series tuning), the standard /
reward_low_FP / reward_low_FN scores on the series the folder holds, beside the published
whole-corpus numbers (58 series: not comparable, shown for scale), then each series' numbers
under the standard profile, and the detection time. Every series is detected through HTTP,
``POST /series/detect``, by a Vigil this script starts on a free port (``python -m service
serve``; it needs no model), or by the one at ``--url``; ``--in-process`` calls
``service.series.detect`` directly instead (the same numbers: detection is deterministic).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.cli.series import report  # noqa: E402
from service.series.benchmark import DetectFn, detect_in_process, run_corpus  # noqa: E402
from service.series.corpus import CorpusSeries, read_corpus  # noqa: E402
from service.series.input import parse_timestamp  # noqa: E402
from service.series.stream import SeriesResult  # noqa: E402
from service.series.table import DEFAULT_KIND, KINDS  # noqa: E402

PUBLISHED = [  # NAB's scoreboard: standard, reward_low_FP, reward_low_FN; whole corpus (58 series)
    ("ARTime", 74.9, 65.2, 80.4),
    ("Numenta HTM", 70.1, 63.1, 74.3),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("windowed Gaussian", 39.6, 20.9, 47.4),
    ("random", 16.8, 5.8, 25.9),
    ("null", 0.0, 0.0, 0.0),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def vigil() -> Iterator[str]:
    """``python -m service serve`` on a free port, with no model (series need none)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-series-") as tmp:
        env = {
            **os.environ,
            "VIGIL_MODEL_PATH": f"{tmp}/none.joblib",
            "VIGIL_REGISTRY": tmp,
            "VIGIL_PORT": str(port),
            "VIGIL_HOST": "127.0.0.1",
            "VIGIL_ACCESS_LOG": "false",
            "VIGIL_LOG_LEVEL": "warning",
        }
        env.pop("VIGIL_WATCHES", None)
        log = open(f"{tmp}/vigil.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/health/live", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Vigil did not start: {Path(tmp, 'vigil.log').read_text()}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()


def detect_over_http(url: str) -> DetectFn:
    """A ``detect_fn`` that asks ``POST /series/detect`` and rebuilds the library's result."""
    session = requests.Session()

    def detect(series: CorpusSeries, detector: str, params) -> SeriesResult:
        body = {"detector": detector, "params": dict(params), "timestamps": series.timestamps,
                "values": series.values, "horizon": 0}  # fmt: skip
        r = session.post(url + "/series/detect", json=body, timeout=300)
        if r.status_code != 200:
            raise SystemExit(f"{series.name}: {r.status_code} {r.text[:300]}")
        answer = r.json()
        points = answer["points"]

        def column(key: str) -> np.ndarray:
            return np.array([np.nan if p[key] is None else p[key] for p in points], dtype=float)

        return SeriesResult(
            detector=answer["detector"],
            params=answer["params"],
            timestamps=np.array([parse_timestamp(p["timestamp"], i) for i, p in enumerate(points)]),
            values=column("value"),
            score=column("score"),
            is_anomaly=np.array([p["is_anomaly"] for p in points], dtype=bool),
            expected=column("expected"),
            lower=column("lower"),
            upper=column("upper"),
            forecast=[],
            iso=True,
            notes=tuple(answer["notes"]),
        )

    return detect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nab",
        type=Path,
        default=ROOT.parent / "shared" / "nab",
        help="folder with data/ and combined_windows.json",
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument(
        "--per-series",
        action="store_true",
        help="per-series numbers for every kind, not only the default",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running Vigil to detect through (default: start one)")
    where.add_argument("--in-process", action="store_true", help="detect without HTTP")
    args = parser.parse_args(argv)

    corpus = read_corpus(args.nab / "data", args.nab / "combined_windows.json")
    points = sum(len(c.values) for c in corpus)
    print(f"NAB: {len(corpus)} series, {points:,} points, from {args.nab}")
    if args.in_process:
        print("detection: in-process (service.series.detect)")
        return report_all(args, corpus, points, detect_in_process)
    if args.url:
        print(f"detection: POST {args.url}/series/detect")
        return report_all(args, corpus, points, detect_over_http(args.url))
    with vigil() as url:
        print(f"detection: POST {url}/series/detect (a Vigil started for this run)")
        return report_all(args, corpus, points, detect_over_http(url))


def report_all(args, corpus: list[CorpusSeries], points: int, detect_fn: DetectFn) -> int:
    runs = []
    for kind in args.kinds:
        started = time.perf_counter()
        run = run_corpus(corpus, kind, detect_fn=detect_fn)
        runs.append(run)
        print(
            f"  {kind}: detected in {run.seconds:.1f} s "
            f"({run.seconds / points * 1e6:.0f} us/point), "
            f"scored in {time.perf_counter() - started - run.seconds:.1f} s",
            flush=True,
        )

    header = f"  {'detector':<44} {'standard':>8} {'low FP':>7} {'low FN':>7}"
    print(f"\nVigil, these {len(corpus)} series, default parameters:")
    print(header)
    for run in runs:
        name = run.detector + (" (default)" if run.detector == DEFAULT_KIND else "")
        s = [cs.score for cs in run.scores]
        print(f"  {name:<44} {s[0]:>8.1f} {s[1]:>7.1f} {s[2]:>7.1f}")
    print("\npublished, whole corpus, 58 series: not comparable")
    print(header)
    for name, *s in PUBLISHED:
        print(f"  {name:<44} {s[0]:>8.1f} {s[1]:>7.1f} {s[2]:>7.1f}")
    for run in runs:
        if run.detector == DEFAULT_KIND or args.per_series:
            print("\n" + report(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
