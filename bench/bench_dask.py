#!/usr/bin/env python3
"""Benchmark: batch scoring of a file of a few million rows, one process against Dask.

    python bench/bench_dask.py [--rows N] [--workers W] [--out DIR]

In a temporary folder it writes sample data (``sample-data --test-rows N``: two features and a
label, 3% anomalies), trains the default IsolationForest, and then scores the test file as a
user would, each run a fresh ``python -m service score`` process:

- ``single``: today's single-process ``score`` (CSV in, CSV out);
- ``dask local``: ``score --engine dask`` on a local cluster of W worker processes (CSV);
- ``dask local, Parquet``: the same rows as Parquet in and out.

It prints wall and CPU seconds (the command's processes together), rows/s over the whole
command (process start, cluster start, scoring, joining the parts) and as the command reports
it (scoring only), checks that both CSV outputs are
byte-identical, and writes the table to ``--out`` (default ``bench/results/``, git-ignored).
Timings depend on the machine's load; they are not part of the test suite.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE = re.compile(r"([\d,]+) rows/s")


def run(*args: str, cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (with its child processes: a local cluster's workers) and stdout of
    ``python -m service ARGS``; exits on a failed command."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, cpu, done.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows to score (default 2M)")
    p.add_argument("--workers", type=int, default=2, help="local cluster processes (default 2)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="vigil-bench-dask-") as tmp:
        work = Path(tmp)
        t, _, _ = run("sample-data", "--out-dir", "data", "--test-rows", str(args.rows), cwd=work)
        data = work / "data" / "test.csv"
        mb = data.stat().st_size / 1e6
        cores, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
        say(f"{args.rows:,} rows, {mb:.0f} MB of CSV (written in {t:.1f} s); {cores} cores,"
            f" load {load:.1f}; local cluster: {args.workers} workers x 1 thread")  # fmt: skip
        run("train", "--data", "data/train.csv", "--out", "model.joblib", cwd=work)

        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        pq.write_table(pacsv.read_csv(data), work / "test.parquet", row_group_size=100_000)
        common = ["--model", "model.joblib", "--no-progress"]
        dask = ["--engine", "dask", "--workers", str(args.workers)]
        runs = [
            ("single", ["data/test.csv", "--out", "single.csv", *common]),
            ("dask local", ["data/test.csv", "--out", "dask.csv", *common, *dask]),
            ("dask local, Parquet", ["test.parquet", "--out", "dask.parquet", *common, *dask]),
        ]
        say()
        say(f"{'engine':22} {'wall s':>7} {'CPU s':>7} {'rows/s (wall)':>14} {'(scoring)':>10}")
        for name, cmd in runs:
            wall, cpu, out = run("score", *cmd, cwd=work)
            found = RATE.search(out)
            reported = found.group(1) if found else "?"
            say(f"{name:22} {wall:7.1f} {cpu:7.1f} {args.rows / wall:14,.0f} {reported:>10}")
        same = filecmp.cmp(work / "single.csv", work / "dask.csv", shallow=False)
        say()
        say(f"single and dask CSV outputs identical: {same}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_dask.txt").write_text("\n".join(lines) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
