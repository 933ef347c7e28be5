#!/usr/bin/env python3
"""Single-row latency while a training job trains: p50/p99 with and without a running job.

    python bench/bench_jobs.py [--quick] [--rounds N] [--seconds S]

Starts Vigil as shipped with the jobs API on (``VIGIL_ADMIN_TOKEN``; the service starts its
job runner), pinned to core 0 as in ``bench/bench.py``, and drives ``POST
/prediction?score=true`` with wrk on core 1 (``-t1 -c16``). Rounds alternate: idle, then with a
job training (an OCSVM fit on 30,000 rows, which keeps one core busy for minutes; canceled
after the round). The runner and its job process inherit the server's core: the job competes
with the server for that one core, at a lower priority (nice), the worst case. The median round
of each is reported. Timings are not part of the test suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as base  # bench/harness.py: servers, wrk, pinning

TOKEN = "bench-jobs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLOW_ROWS = 30_000


@dataclass(frozen=True)
class JobLatency:
    idle: base.WrkResult
    training: base.WrkResult
    job_cpu_s: float
    """CPU seconds the job process used during the training rounds (it did train)."""


def _default_model(tmp: Path) -> Path:
    """The default model, as ``make train`` makes it."""
    for args in (
        ["sample-data", "--out-dir", str(tmp / "data")],
        ["train", "--data", str(tmp / "data" / "train.csv"), "--out", str(tmp / "model.joblib")],
    ):
        subprocess.run(
            [sys.executable, "-m", "service", *args], cwd=base.REPO, check=True, capture_output=True
        )
    return tmp / "model.joblib"


def _slow_csv(path: Path) -> Path:
    rows = np.random.default_rng(5).normal(0.1, 0.1, (SLOW_ROWS, 2))
    path.write_text("mean,sd\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in rows))
    return path


def _start_job(url: str, data: Path) -> str:
    with data.open("rb") as fh:
        r = requests.post(
            f"{url}/models/bench-slow/training-jobs",
            headers=AUTH,
            data={"detector": "ocsvm", "params": '{"max_train_rows": null}'},
            files={"data": (data.name, fh, "text/csv")},
            timeout=60,
        )
    r.raise_for_status()
    job_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # fitting: the CSV is read (progress 0.2) and beyond
        job = requests.get(f"{url}/training-jobs/{job_id}", headers=AUTH, timeout=10).json()
        if job["status"] == "running" and job["progress"] >= 0.2:
            return job_id
        if job["status"] not in ("queued", "running"):
            raise RuntimeError(f"the bench job ended before the round: {job}")
        time.sleep(0.2)
    raise TimeoutError("the bench job did not start fitting within 120 s")


def _job_cpu_s(server_pid: int) -> float:
    """CPU seconds (user + system) of the server's grandchildren: the job processes."""
    total = 0.0
    tick = 100.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent = int(fields[1])
            grand = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(grand[1]) == server_pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measure(rounds: int, seconds: int, warmup: int = 2) -> JobLatency:
    """Alternating wrk rounds, idle and with a job training; medians of each."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-jobs-") as tmp_name:
        tmp = Path(tmp_name)
        model = _default_model(tmp)
        slow = _slow_csv(tmp / "slow.csv")
        server = base.vigil_server(
            "vigil", base.free_port(), tmp, base.model_settings(model), access_log=False
        )
        server.env.update({"VIGIL_ADMIN_TOKEN": TOKEN, "VIGIL_REGISTRY": str(tmp / "registry")})
        post = base.BENCH / "post.lua"
        server.start()
        try:
            server.wait_ready()
            base.run_wrk(server.url + base.SINGLE_PATH, post, warmup)
            idle, training, cpu = [], [], 0.0
            for _ in range(rounds):
                idle.append(base.run_wrk(server.url + base.SINGLE_PATH, post, seconds))
                job_id = _start_job(server.url, slow)
                before = _job_cpu_s(server.proc.pid)
                training.append(base.run_wrk(server.url + base.SINGLE_PATH, post, seconds))
                cpu += _job_cpu_s(server.proc.pid) - before
                job = requests.get(f"{server.url}/training-jobs/{job_id}", headers=AUTH).json()
                if job["status"] != "running":
                    raise RuntimeError(f"the job ended during the round: {job}")
                requests.post(f"{server.url}/training-jobs/{job_id}/cancel", headers=AUTH)
            return JobLatency(base.median_result(idle), base.median_result(training), cpu)
        finally:
            server.stop()


def report(result: JobLatency, seconds: int, rounds: int) -> str:
    lines = [
        f"single-row POST {base.SINGLE_PATH}, wrk -t1 -c{base.CONNECTIONS}, {seconds} s x"
        f" {rounds} rounds (median), server on core {base.SERVER_CORE}",
        f"{'':30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    for name, r in (("no job", result.idle), ("a job training (same core)", result.training)):
        lines.append(f"{name:30} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:7d}")
    ratio = result.training.p99_ms / result.idle.p99_ms
    lines.append(
        f"p99 with a job / without: {ratio:.2f}; the job used {result.job_cpu_s:.1f} CPU s"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (rough figures)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    rounds, seconds = (1, 2) if args.quick else (args.rounds, args.seconds)
    print(report(measure(rounds, seconds), seconds, rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
