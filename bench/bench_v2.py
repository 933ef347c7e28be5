#!/usr/bin/env python3
"""Benchmark: the Open Inference Protocol V2 infer route against Vigil's own JSON routes.

    python bench/bench_v2.py [--quick]

On one Vigil server (started here as ``bench.py`` starts it, or the main bench's own through
:func:`measure`), with wrk pinned to the other core:

- one row: ``POST /v2/models/default/infer`` with a JSON body (one FP64 row, all three
  outputs) against ``POST /prediction?score=true`` with ``[0.1, 0.1]``, ``wrk -c16``, in
  alternating rounds; target: V2 at >= 80% of ``/prediction``'s requests/s;
- 10,000 rows: one binary FP64 tensor (``Inference-Header-Content-Length``, binary outputs, as
  ``tritonclient`` sends it) against the same rows as JSON to ``/predictions?score=true``, one
  request at a time; target: more rows/s than the JSON batch.

Both answers are checked against ``/prediction(s)`` before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

# bench/bench.py and bench/harness.py: a module found on sys.path beats the bench/ folder as a
# namespace package, so this works run as a script, with -m, and imported by bench.py.
from harness import (  # noqa: E402
    BENCH,
    SINGLE_PATH,
    WrkResult,
    free_port,
    median_result,
    model_settings,
    post_script,
    rows_like_the_sample_data,
    run_wrk,
    table,
    vigil_server,
)

from bench import BATCH_PATH, BATCH_ROWS, FULL, QUICK, Mode  # noqa: E402

MIN_SINGLE_SHARE = 0.80  # V2 one-row req/s as a share of /prediction's
SINGLE_ROW = [0.1, 0.1]
HEADER_LENGTH = "Inference-Header-Content-Length"


def train_default_model(tmp: Path) -> Path:
    """The default model, as ``make train`` makes it."""
    for args in (
        ["sample-data", "--out-dir", str(tmp / "data")],
        ["train", "--data", str(tmp / "data" / "train.csv"), "--out", str(tmp / "model.joblib")],
    ):
        subprocess.run(
            [sys.executable, "-m", "service", *args],
            cwd=BENCH_DIR.parent,
            check=True,
            capture_output=True,
        )
    return tmp / "model.joblib"


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def json_infer_body(rows: list[list[float]]) -> bytes:
    tensor = {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64"}
    return json.dumps({"inputs": [{**tensor, "data": rows}]}).encode()


def binary_infer_body(X: np.ndarray) -> tuple[bytes, int]:
    """What ``tritonclient.http`` posts for an FP64 tensor: a JSON header, then the raw tensor
    (and binary outputs asked for)."""
    import tritonclient.http as triton

    tensor = triton.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(np.ascontiguousarray(X, dtype=np.float64), binary_data=True)
    body, header_length = triton.InferenceServerClient.generate_request_body([tensor])
    return body, header_length


def binary_scores(response: requests.Response) -> np.ndarray:
    import tritonclient.http as triton

    length = response.headers.get(HEADER_LENGTH)
    result = triton.InferenceServerClient.parse_response_body(
        response.content, header_length=None if length is None else int(length)
    )
    return result.as_numpy("anomaly_score")


def wrk_script(tmp: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script posting ``body`` (from a file: it may be large and binary) with ``headers``."""
    body_path = tmp / f"{name}.body"
    body_path.write_bytes(body)
    script = tmp / f"{name}.lua"
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += [
        f'local f = assert(io.open("{body_path}", "rb"))',
        'wrk.body = f:read("*a")',
        "f:close()",
    ]
    script.write_text("\n".join(lines) + "\n")
    return script


def check_answers(url: str, model: str, X: np.ndarray, binary_body: bytes, length: int) -> None:
    """V2's answers are /prediction's and /predictions' (else the figures mean nothing)."""
    one = requests.post(url + SINGLE_PATH, json=SINGLE_ROW, timeout=10).json()
    v2 = requests.post(url + infer_path(model), data=json_infer_body([SINGLE_ROW]), timeout=10)
    v2.raise_for_status()
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    if outputs["anomaly_score"] != [one["anomaly_score"]]:
        raise AssertionError(f"V2 and /prediction disagree: {outputs} vs {one}")
    batch = requests.post(url + BATCH_PATH, json=X.tolist(), timeout=60).json()
    expected = np.array([p["anomaly_score"] for p in batch["predictions"]])
    answer = requests.post(
        url + infer_path(model), data=binary_body, headers={HEADER_LENGTH: str(length)}, timeout=60
    )
    answer.raise_for_status()
    if binary_scores(answer).tobytes() != expected.tobytes():
        raise AssertionError("the binary V2 batch and /predictions disagree")


def measure(url: str, tmp: Path, mode: Mode, model: str = "default") -> dict:
    """Time V2 against /prediction(s) on the running Vigil at ``url``; plain numbers out."""
    X = rows_like_the_sample_data(BATCH_ROWS)
    binary_body, length = binary_infer_body(X)
    check_answers(url, model, X, binary_body, length)

    single = {
        "/prediction": (url + SINGLE_PATH, BENCH / "post.lua"),
        "V2 infer (JSON)": (
            url + infer_path(model),
            wrk_script(tmp, "v2-one", json_infer_body([SINGLE_ROW]), {}),
        ),
    }
    for target, script in single.values():
        run_wrk(target, script, mode.warmup)
    rounds: dict[str, list[WrkResult]] = {name: [] for name in single}
    names = list(single)
    for r in range(mode.rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            rounds[name].append(run_wrk(*single[name], mode.seconds))

    batches = {
        "/predictions (JSON)": (
            url + BATCH_PATH,
            post_script(tmp, "v2-json-batch", json.dumps(X.tolist()).encode()),
        ),
        "V2 infer (binary FP64)": (
            url + infer_path(model),
            wrk_script(
                tmp,
                "v2-binary-batch",
                binary_body,
                {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(length)},
            ),
        ),
    }
    batch: dict[str, list[WrkResult]] = {name: [] for name in batches}
    for target, script in batches.values():
        run_wrk(target, script, mode.warmup, 1)
    for r in range(mode.rounds):
        order = list(batches)
        for name in order[r % 2 :] + order[: r % 2]:
            batch[name].append(run_wrk(*batches[name], mode.batch_seconds, 1))
    return {
        "single": {n: median_result(rs).__dict__ for n, rs in rounds.items()},
        "single_ratio_rounds": [
            v.rps / p.rps
            for v, p in zip(rounds["V2 infer (JSON)"], rounds["/prediction"], strict=True)
        ],
        "batch": {n: median_result(rs).__dict__ for n, rs in batch.items()},
        "batch_bytes": {"json": len(json.dumps(X.tolist())), "binary": len(binary_body)},
    }


def targets(r: dict) -> list[tuple[bool, str]]:
    one, v2 = r["single"]["/prediction"]["rps"], r["single"]["V2 infer (JSON)"]["rps"]
    js = r["batch"]["/predictions (JSON)"]["rps"] * BATCH_ROWS
    binary = r["batch"]["V2 infer (binary FP64)"]["rps"] * BATCH_ROWS
    return [
        (
            v2 >= MIN_SINGLE_SHARE * one,
            f"V2 one-row infer req/s >= {MIN_SINGLE_SHARE:.0%} of /prediction's:"
            f" {v2 / one:.0%} ({v2:,.0f} vs {one:,.0f})",
        ),
        (
            binary > js,
            f"V2 {BATCH_ROWS:,}-row binary FP64 rows/s > the JSON batch's: {binary / js:.2f}x"
            f" ({binary:,.0f} vs {js:,.0f})",
        ),
    ]


def render(r: dict) -> list[str]:
    """The report's lines: two tables and the targets."""
    single = r["single"]
    out = ["Open Inference Protocol V2 against Vigil's JSON, same server (wrk -c16; batches -c1)"]
    out += table(
        ["one row", "req/s", "p50", "p99", "vs /prediction"],
        [
            [
                name,
                f"{s['rps']:,.0f}",
                f"{s['p50_ms'] * 1000:.0f} µs",
                f"{s['p99_ms'] * 1000:.0f} µs",
                f"{s['rps'] / single['/prediction']['rps']:.0%}",
            ]
            for name, s in single.items()
        ],
    )
    ratios = ", ".join(f"{x:.0%}" for x in r["single_ratio_rounds"])
    out.append(f"  V2 / /prediction req/s in each round: {ratios}")
    json_rows = r["batch"]["/predictions (JSON)"]["rps"] * BATCH_ROWS
    out += table(
        [f"{BATCH_ROWS:,} rows", "body", "req/s", "rows/s", "p50", "vs JSON"],
        [
            [
                name,
                f"{r['batch_bytes']['binary' if 'binary' in name else 'json'] / 1e3:,.0f} kB",
                f"{b['rps']:.1f}",
                f"{b['rps'] * BATCH_ROWS:,.0f}",
                f"{b['p50_ms']:.1f} ms",
                f"{b['rps'] * BATCH_ROWS / json_rows:.2f}x",
            ]
            for name, b in r["batch"].items()
        ],
    )
    errors = sum(s["errors"] for s in [*single.values(), *r["batch"].values()])
    if errors:
        out.append(f"  WARNING: {errors} failed or non-2xx responses")
    out += [f"  [{'met' if ok else 'NOT met':>7}] {text}" for ok, text in targets(r)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    mode = QUICK if args.quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-v2-"))
    server = None
    try:
        model_path = train_default_model(tmp)
        server = vigil_server(
            "Vigil", free_port(), tmp, model_settings(model_path), access_log=False
        )
        server.start()
        server.wait_ready()
        results = measure(server.url, tmp, mode)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(render(results)))
    print(f"  median of {mode.rounds} alternating round(s) of {mode.seconds} s each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
