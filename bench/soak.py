#!/usr/bin/env python3
"""Soak run: Vigil at ~70% of its measured maximum rate for a while; failures and RSS growth.

    python bench/soak.py [--duration 60] [--share 0.7]

Starts the service (one worker, pinned to core 0) on a freshly trained default model, finds the
maximum rate with wrk (pinned to core 1), then holds `share` of it for `duration` seconds, paced
per connection with wrk's delay(). Prints failed requests (target 0) and resident memory at start
and end (target: growth under 5%). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CONNECTIONS = 16

POST_LUA = """
wrk.method = "POST"
wrk.body = "[0.1, 0.1]"
wrk.headers["Content-Type"] = "application/json"
"""
# wrk's delay() is whole milliseconds; dithering between floor and ceil gives the exact mean.
PACED_LUA = (
    POST_LUA
    + """
function delay()
  if math.random() < {frac} then return {base} + 1 end
  return {base}
end
"""
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def run_wrk(url: str, script: Path, seconds: int) -> dict[str, float]:
    cmd = [
        *pinned(1),
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests_ = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests": requests_,
        "rps": rps,
        "errors": errors,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=60, help="seconds at the paced rate")
    ap.add_argument("--share", type=float, default=0.7, help="share of the maximum rate")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    py = sys.executable
    subprocess.run(
        [py, "-m", "service", "sample-data", "--out-dir", str(tmp)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    model = tmp / "model.joblib"
    subprocess.run(
        [py, "-m", "service", "train", "--data", str(tmp / "train.csv"), "--out", str(model)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "VIGIL_MODEL_PATH": str(model),
        "VIGIL_PORT": str(port),
        "VIGIL_ACCESS_LOG": "false",
        "VIGIL_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen([*pinned(0), py, "-m", "service", "serve"], cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        url = f"{base}/prediction?score=true"
        post = tmp / "post.lua"
        post.write_text(POST_LUA)
        run_wrk(url, post, 3)  # warm up
        peak = run_wrk(url, post, 10)
        target = peak["rps"] * args.share
        # A connection's period is its delay plus the request's own latency: start from the
        # delay alone, then correct it once from a short paced run.
        delay_ms = CONNECTIONS * 1000 / target
        paced = tmp / "paced.lua"
        for _ in range(2):
            base = max(1, int(delay_ms))
            paced.write_text(PACED_LUA.format(base=base, frac=max(0.0, delay_ms - base)))
            probe = run_wrk(url, paced, 5)
            delay_ms *= probe["rps"] / target
        rss_start = rss_mb(server.pid)
        soak = run_wrk(url, paced, args.duration)
        rss_end = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    growth = (rss_end - rss_start) / rss_start * 100
    lines = [
        f"cores: {os.cpu_count()} (server on core 0, wrk on core 1, {CONNECTIONS} connections)",
        f"maximum rate: {peak['rps']:.0f} req/s (p99 {peak['p99_ms']:.2f} ms)",
        f"soak: {args.duration} s at {soak['rps']:.0f} req/s "
        f"({soak['rps'] / peak['rps']:.0%} of max; target {args.share:.0%}),"
        f" p99 {soak['p99_ms']:.2f} ms",
        f"requests: {soak['requests']}  failed: {soak['errors']}  "
        f"[{'met' if soak['errors'] == 0 else 'NOT met'}: 0]",
        f"RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at end, growth {growth:+.2f}%  "
        f"[{'met' if growth < 5 else 'NOT met'}: < 5%]",
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.txt").write_text(report + "\n")
    return 0 if soak["errors"] == 0 and growth < 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
