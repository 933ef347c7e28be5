#!/usr/bin/env python3
"""Benchmark: Vigil against the server's own limit (an empty ASGI app), a bare FastAPI no-op
endpoint and the seed's approach.

    python bench/bench.py [--quick] [--out DIR]

Trains the default model (``sample-data`` + ``train``) in a temporary folder, then starts
these servers with the same uvicorn settings (one worker, uvloop, httptools, access log off
unless said), pinned to core 0, and drives each with wrk pinned to core 1 (``-t1 -c16``,
``POST /prediction?score=true``, body ``[0.1, 0.1]``) in alternating rounds:

- Vigil as shipped (``python -m service serve``, every metric on), on ``/prediction`` and on
  the named route ``/models/default/prediction``;
- ``bench/servers/empty_asgi.py``: a framework-free ASGI app that reads the body and answers
  the bytes a prediction answers: the server's own limit (the ceiling);
- ``bench/servers/noop.py``: a FastAPI endpoint with a ``list[float]`` body returning a constant;
- ``bench/servers/baseline.py``: the seed's way, scikit-learn ``predict`` and ``score_samples``
  on every request;
- Vigil and the empty app again with their access logs on (uvicorn's, to a file).

It prints requests/s, p50 and p99 of each with the ratios and whether each target is met; then
``POST /predictions`` with 10,000 rows (one request at a time) against back-to-back in-process
scikit-learn ``score_samples``, the Vigil worker's resident memory, and how the cost grows with
batch size, number of trees and number of features (tables, and a PNG plot). Everything
printed also goes to ``--out`` (default ``bench/results/``, git-ignored). Timings are not part
of the test suite; the smoke test runs ``--quick`` and checks only that the tables come out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import kinds
import numpy as np
import requests
from harness import (
    CLIENT_CORE,
    CONNECTIONS,
    NAMED_PATH,
    REPO,
    SERVER_CORE,
    SINGLE_PATH,
    Server,
    WrkResult,
    alternating_rounds,
    fmt_ms,
    fmt_s,
    free_port,
    median_result,
    on_core,
    pinned,
    post_script,
    rows_like_the_sample_data,
    rows_per_second,
    run_wrk,
    seconds_per_call,
    table,
    uvicorn_server,
    vigil_server,
)

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BATCH_ROWS = kinds.BATCH_ROWS
BATCH_CONNECTIONS = 1  # one batch at a time, like the back-to-back in-process calls
BATCH_PATH = "/predictions?score=true"

# The targets: each a ratio measured in one run. Against the empty ASGI app (issue #16), access
# log off on both, and on on both:
MIN_SHARE_OF_EMPTY = 0.50
MIN_SHARE_OF_EMPTY_LOGGED = 0.40
MAX_P99_OVER_EMPTY = 1.5
# Against the FastAPI no-op, the seed's way and scikit-learn (issues #1-#9):
MIN_SHARE_OF_NOOP = 0.80
MAX_P99_OVER_NOOP = 1.30
MIN_TIMES_BASELINE = 30.0
MIN_BATCH_SHARE_OF_SKLEARN = 0.60
MAX_RSS_MB = 150.0


@dataclass(frozen=True)
class Mode:
    rounds: int  # alternating wrk rounds per server; the median round is reported
    seconds: int  # wrk duration per round
    warmup: int  # wrk seconds per server before the rounds
    batch_seconds: int
    latency_seconds: int  # wrk seconds per batch size (cost growth, over HTTP)
    timing_budget: float  # seconds spent timing each in-process cell
    batch_sizes: tuple[int, ...]
    trees: tuple[int, ...]
    features: tuple[int, ...]


FULL = Mode(
    rounds=3,
    seconds=5,
    warmup=2,
    batch_seconds=8,
    latency_seconds=3,
    timing_budget=0.3,
    batch_sizes=(1, 10, 100, 1000, 2000, 5000, 10_000),
    trees=(100, 200, 500, 1000),
    features=(2, 5, 10, 20, 50, 100),
)
QUICK = Mode(
    rounds=1,
    seconds=1,
    warmup=1,
    batch_seconds=1,
    latency_seconds=1,
    timing_budget=0.03,
    batch_sizes=(1, 100, 10_000),
    trees=(100, 300),
    features=(2, 20),
)


# ----------------------------------------------------------------------------------- the run


def make_model(tmp: Path) -> tuple[Path, Path, np.ndarray]:
    """The default model, as ``make train`` makes it; the same IsolationForest fitted by
    scikit-learn itself (the artifact holds only the compiled forest), for the baseline; and
    the training rows."""
    train_csv = tmp / "data" / "train.csv"
    for args in (
        ["sample-data", "--out-dir", str(tmp / "data")],
        ["train", "--data", str(train_csv), "--out", str(tmp / "model.joblib")],
    ):
        subprocess.run(
            [sys.executable, "-m", "service", *args], cwd=REPO, check=True, capture_output=True
        )
    import joblib
    from sklearn.ensemble import IsolationForest

    from service.data.dataset import load_csv

    meta = json.loads((tmp / "model.joblib.json").read_text())["metadata"]
    X_train = load_csv(train_csv).X
    p = meta["params"]
    estimator = IsolationForest(
        n_estimators=p["n_estimators"],
        max_samples=p["max_samples"],
        contamination=p["contamination"],
        max_features=p["max_features"],
        bootstrap=p["bootstrap"],
        random_state=meta["seed"],
        n_jobs=1,
    ).fit(X_train)
    probe = meta["probe"]
    if list(-estimator.score_samples(np.array(probe["rows"]))) != probe["scores"]:
        raise AssertionError("the baseline's IsolationForest is not the served model")
    estimator_path = tmp / "estimator.joblib"
    joblib.dump(estimator, estimator_path)
    return tmp / "model.joblib", estimator_path, X_train


def batch_over_http(vigil: Server, X: np.ndarray, tmp: Path, mode: Mode) -> WrkResult:
    """wrk posting the same ``len(X)``-row body to ``/predictions`` (its answer checked first)."""
    body = json.dumps(X.tolist()).encode()
    answer = requests.post(
        vigil.url + BATCH_PATH,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    answer.raise_for_status()
    if len(answer.json()["predictions"]) != len(X):
        raise AssertionError("the batch answer does not have one result per row")
    script = post_script(tmp, "batch", body)
    run_wrk(vigil.url + BATCH_PATH, script, mode.warmup, BATCH_CONNECTIONS)
    return run_wrk(vigil.url + BATCH_PATH, script, mode.batch_seconds, BATCH_CONNECTIONS)


def http_batch_latency(url: str, sizes: tuple[int, ...], tmp: Path, seconds: int) -> dict:
    """Median latency (s) of ``POST /predictions`` by batch size, wrk sending one at a time."""
    out = {}
    for n in sizes:
        script = post_script(
            tmp, f"rows-{n}", json.dumps(rows_like_the_sample_data(n).tolist()).encode()
        )
        out[n] = run_wrk(url + BATCH_PATH, script, seconds, connections=1).p50_ms / 1e3
    return out


def cost_growth(mode: Mode, model_path: Path, estimator_path: Path) -> dict[str, dict]:
    """In-process seconds per call, on one core: by batch size on the default model (Vigil's
    scoring path, the compiled forest alone, scikit-learn); by number of trees and of features
    on forests fitted here (compiled forest and scikit-learn, 1 and 100 rows)."""
    import joblib
    from sklearn.ensemble import IsolationForest

    from service.detectors.compiled_forest import CompiledForest
    from service.models import artifact
    from service.models.loaded import Model

    model, estimator = Model(artifact.load(model_path), model_path), joblib.load(estimator_path)
    forest = model.detector.scorer.forest
    budget = mode.timing_budget
    growth: dict[str, dict] = {"batch": {}, "trees": {}, "features": {}}

    def forest_cells(n_trees: int, n_features: int) -> dict[str, float]:
        rng = np.random.default_rng(n_trees * 1000 + n_features)
        fitted = IsolationForest(n_estimators=n_trees, random_state=0)
        fitted.fit(rng.normal(size=(2000, n_features)))
        compiled = CompiledForest.from_estimator(fitted)
        cells = {}
        for rows in (1, 100):
            X = rng.normal(size=(rows, n_features))
            if not np.array_equal(compiled.score_samples(X), fitted.score_samples(X)):
                raise AssertionError(f"the compiled forest differs ({n_trees}, {n_features})")
            cells[f"compiled_{rows}"] = seconds_per_call(
                lambda X=X: compiled.score_samples(X), budget
            )
            cells[f"sklearn_{rows}"] = seconds_per_call(lambda X=X: fitted.score_samples(X), budget)
        return cells

    with on_core(SERVER_CORE):
        for n in mode.batch_sizes:
            X = rows_like_the_sample_data(n)
            growth["batch"][n] = {
                "vigil": seconds_per_call(lambda X=X: model.score(X), budget),
                "compiled": seconds_per_call(lambda X=X: forest.score_samples(X), budget),
                "sklearn": seconds_per_call(lambda X=X: estimator.score_samples(X), budget),
            }
        for n_trees in mode.trees:
            growth["trees"][n_trees] = forest_cells(n_trees, 2)
        for n_features in mode.features:
            growth["features"][n_features] = forest_cells(100, n_features)
    return growth


def measure(mode: Mode, kind_names: list[str], kinds_mode: kinds.KindsMode) -> dict:
    """Everything the report shows, as plain numbers."""
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    servers: list[Server] = []
    try:
        model_path, estimator_path, X_train = make_model(tmp)
        print(f"training {len(kind_names)} detector kinds ...", flush=True)
        registry = tmp / "registry"
        kinds.train(kind_names, tmp / "data" / "train.csv", registry)
        env = {"BENCH_ESTIMATOR": str(estimator_path)}
        model_env = {"VIGIL_MODEL_PATH": str(model_path)}
        servers = [
            uvicorn_server("no-op", "noop:app", free_port(), tmp),
            vigil_server("Vigil", free_port(), tmp, model_env),
            uvicorn_server("baseline", "baseline:app", free_port(), tmp, env),
            vigil_server("Vigil+log", free_port(), tmp, model_env, access_log=True),
            uvicorn_server("empty ASGI", "empty_asgi:app", free_port(), tmp),
            uvicorn_server("empty ASGI+log", "empty_asgi:app", free_port(), tmp, access_log=True),
        ]
        kinds_vigil = kinds.server(registry, kind_names, free_port(), tmp)
        for s in [*servers, kinds_vigil]:
            s.start()
        answers = {s.name: s.wait_ready() for s in servers}
        kinds_vigil.wait_ready()
        if answers["Vigil"]["anomaly_score"] != answers["baseline"]["anomaly_score"]:
            raise AssertionError(f"Vigil and the baseline disagree: {answers}")
        noop, vigil, vigil_logged = servers[0], servers[1], servers[3]

        print("single row, default model:", flush=True)
        rounds = alternating_rounds(
            [
                *((s.name, s.url + SINGLE_PATH) for s in servers),
                ("Vigil /models", vigil.url + NAMED_PATH),
                ("Vigil+log /models", vigil_logged.url + NAMED_PATH),
            ],
            mode.rounds,
            mode.seconds,
            mode.warmup,
        )
        rss_single_rows = vigil.rss_mb()
        X_batch = rows_like_the_sample_data(BATCH_ROWS)
        batch = batch_over_http(vigil, X_batch, tmp, mode)
        http_latency = http_batch_latency(vigil.url, mode.batch_sizes, tmp, mode.latency_seconds)
        rss = {s.name: s.rss_mb() for s in servers}
        vigil_peak = vigil.peak_rss_mb()
        for s in servers:
            if s is not noop:  # the kinds are measured against it next
                s.stop()

        print("every detector kind:", flush=True)
        per_kind = kinds.measure(
            kinds_vigil, noop, registry, kind_names, X_train, X_batch, tmp, kinds_mode
        )
        for s in (noop, kinds_vigil):
            s.stop()

        import joblib

        estimator = joblib.load(estimator_path)
        with on_core(SERVER_CORE):
            sklearn_rows_s = rows_per_second(
                lambda: estimator.score_samples(X_batch), BATCH_ROWS, max(1.0, mode.seconds / 2)
            )
        growth = cost_growth(mode, model_path, estimator_path)
    finally:
        for s in servers:
            s.stop()
        if "kinds_vigil" in locals():
            kinds_vigil.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "single": {name: asdict(median_result(rs)) for name, rs in rounds.items()},
        "rounds": {name: [asdict(r) for r in rs] for name, rs in rounds.items()},
        "batch": {
            **asdict(batch),
            "rows_per_s": batch.rps * BATCH_ROWS,
            "sklearn_rows_per_s": sklearn_rows_s,
        },
        "rss_mb": {"vigil_single_rows": rss_single_rows, "vigil_peak": vigil_peak, **rss},
        "growth": growth,
        "http_batch_seconds": http_latency,
        "kinds": per_kind,
    }


# ------------------------------------------------------------------------------------ report


def ceiling_targets(r: dict) -> list[tuple[bool, str]]:
    """Issue #16: each Vigil route against the empty ASGI app, access log off and on."""
    single = {name: WrkResult(**v) for name, v in r["single"].items()}
    out = []
    for logged, share in (("", MIN_SHARE_OF_EMPTY), ("+log", MIN_SHARE_OF_EMPTY_LOGGED)):
        empty = single[f"empty ASGI{logged}"]
        for route in ("", " /models"):
            name = f"Vigil{logged}{route}"
            vigil = single[name]
            out.append(
                (
                    vigil.rps >= share * empty.rps,
                    f"{name} req/s >= {share:.0%} of the empty ASGI app's{logged and ' (logs on)'}:"
                    f" {vigil.rps / empty.rps:.0%} ({vigil.rps:,.0f} vs {empty.rps:,.0f})",
                )
            )
        if not logged:
            for route in ("", " /models"):
                vigil = single[f"Vigil{route}"]
                out.append(
                    (
                        vigil.p99_ms <= MAX_P99_OVER_EMPTY * empty.p99_ms,
                        f"Vigil{route} p99 <= {MAX_P99_OVER_EMPTY}x the empty ASGI app's:"
                        f" {vigil.p99_ms / empty.p99_ms:.2f}x ({fmt_ms(vigil.p99_ms)} vs"
                        f" {fmt_ms(empty.p99_ms)})",
                    )
                )
    return out


def targets(r: dict) -> list[tuple[bool, str]]:
    noop, vigil, base = (WrkResult(**r["single"][k]) for k in ("no-op", "Vigil", "baseline"))
    batch, sklearn_rows = r["batch"]["rows_per_s"], r["batch"]["sklearn_rows_per_s"]
    rss = max(r["rss_mb"]["vigil_single_rows"], r["rss_mb"]["Vigil"])
    return [
        *ceiling_targets(r),
        (
            vigil.rps >= MIN_SHARE_OF_NOOP * noop.rps,
            f"Vigil req/s >= {MIN_SHARE_OF_NOOP:.0%} of the no-op's: {vigil.rps / noop.rps:.0%}"
            f" ({vigil.rps:,.0f} vs {noop.rps:,.0f})",
        ),
        (
            vigil.p99_ms <= MAX_P99_OVER_NOOP * noop.p99_ms,
            f"Vigil p99 <= {MAX_P99_OVER_NOOP}x the no-op's: {vigil.p99_ms / noop.p99_ms:.2f}x"
            f" ({fmt_ms(vigil.p99_ms)} vs {fmt_ms(noop.p99_ms)})",
        ),
        (
            vigil.rps >= MIN_TIMES_BASELINE * base.rps,
            f"Vigil req/s >= {MIN_TIMES_BASELINE:.0f}x the baseline's: {vigil.rps / base.rps:.1f}x"
            f" ({vigil.rps:,.0f} vs {base.rps:,.0f})",
        ),
        (
            batch >= MIN_BATCH_SHARE_OF_SKLEARN * sklearn_rows,
            f"{BATCH_ROWS:,}-row batches >= {MIN_BATCH_SHARE_OF_SKLEARN:.0%} of in-process"
            f" scikit-learn rows/s: {batch / sklearn_rows:.0%}"
            f" ({batch:,.0f} vs {sklearn_rows:,.0f})",
        ),
        (rss <= MAX_RSS_MB, f"RSS per worker <= {MAX_RSS_MB:.0f} MB: {rss:.0f} MB"),
    ]


def render(r: dict, mode_name: str, stamp: dt.datetime) -> list[str]:
    pin = (
        f"servers pinned to core {SERVER_CORE} and wrk to core {CLIENT_CORE} (taskset)"
        if pinned(SERVER_CORE)
        else "NOT pinned (no taskset, or a single core)"
    )
    mode = QUICK if mode_name == "quick" else FULL
    out = [
        f"Vigil benchmark ({mode_name}), {stamp:%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()},"
        f" Python {platform.python_version()}; {pin}",
        "servers: uvicorn, 1 worker, uvloop, httptools, access log off unless +log (Vigil:"
        " python -m service serve; the others: python -m uvicorn)",
        f"load: wrk -t1 -c{CONNECTIONS} -d{mode.seconds}s --latency -s bench/post.lua, POST"
        f" {SINGLE_PATH}, body [0.1, 0.1]; median of {mode.rounds} alternating round(s)",
        "",
    ]
    single = {name: WrkResult(**v) for name, v in r["single"].items()}
    noop, base = single["no-op"], single["baseline"]
    labels = {
        "empty ASGI": "empty ASGI app (the server's limit)",
        "empty ASGI+log": "empty ASGI app, access log on",
        "no-op": "no-op FastAPI endpoint",
        "Vigil": "Vigil, all metrics on",
        "Vigil /models": "Vigil, /models/default/prediction",
        "Vigil+log": "Vigil, access log on",
        "Vigil+log /models": "Vigil, access log on, /models/...",
        "baseline": "baseline: sklearn per request",
    }

    def empty_of(name: str) -> WrkResult:
        return single["empty ASGI+log" if "+log" in name else "empty ASGI"]

    out += table(
        ["single row", "req/s", "p50", "p99", "vs empty ASGI", "vs no-op", "vs baseline"],
        [
            [
                labels[name],
                f"{s.rps:,.0f}",
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                f"{s.rps / empty_of(name).rps:.0%}",
                f"{s.rps / noop.rps:.0%}",
                f"{s.rps / base.rps:.1f}x",
            ]
            for name, s in sorted(single.items(), key=lambda item: list(labels).index(item[0]))
        ],
    )
    out.append("  vs empty ASGI: against the empty app with the same access-log setting")
    for vigil, ceiling in (("Vigil", "empty ASGI"), ("Vigil", "no-op")):
        per_round = [
            f"{v['rps'] / n['rps']:.0%}"
            for v, n in zip(r["rounds"][vigil], r["rounds"][ceiling], strict=True)
        ]
        out.append(f"  {vigil} / {ceiling} req/s in each round: {', '.join(per_round)}")
    errors = sum(s.errors for s in single.values()) + r["batch"]["errors"]
    if errors:
        out.append(f"  WARNING: {errors} failed or non-2xx responses")
    b, rss = r["batch"], r["rss_mb"]
    out += [
        "",
        f"batch: POST {BATCH_PATH} with {BATCH_ROWS:,} rows (wrk -c{BATCH_CONNECTIONS}):"
        f" {b['rps']:.1f} req/s = {b['rows_per_s']:,.0f} rows/s (p50 {fmt_ms(b['p50_ms'])});"
        f" in-process scikit-learn score_samples: {b['sklearn_rows_per_s']:,.0f} rows/s",
        f"RSS (VmRSS): Vigil worker {rss['vigil_single_rows']:.0f} MB after the single-row runs,"
        f" {rss['Vigil']:.0f} MB after the batches (peak {rss['vigil_peak']:.0f} MB);"
        f" no-op {rss['no-op']:.0f} MB, baseline {rss['baseline']:.0f} MB",
        "",
        "targets",
        *(f"  [{'met' if ok else 'NOT met':>7}] {text}" for ok, text in targets(r)),
        "",
        *kinds.render(r["kinds"], kinds.QUICK if mode_name == "quick" else kinds.FULL),
        "",
        "cost growth: median time per call, in-process on one core; HTTP: p50 of POST"
        " /predictions?score=true, one request at a time (wrk -c1)",
    ]
    g, http = r["growth"], r["http_batch_seconds"]
    out += table(
        ["rows", "Vigil path", "compiled", "scikit-learn", "HTTP", "Vigil rows/s"],
        [
            [
                f"{n:,}",
                fmt_s(c["vigil"]),
                fmt_s(c["compiled"]),
                fmt_s(c["sklearn"]),
                fmt_s(http[n]),
                f"{n / c['vigil']:,.0f}",
            ]
            for n, c in sorted(g["batch"].items())
        ],
    )
    out.append("  Vigil path: Model.score (scaler, compiled forest, threshold), at every size")
    for key, what in (("trees", "trees (2 features)"), ("features", "features (100 trees)")):
        out += table(
            [what, "compiled 1", "sklearn 1", "compiled 100", "sklearn 100"],
            [
                [
                    str(x),
                    *(
                        fmt_s(c[k])
                        for k in ("compiled_1", "sklearn_1", "compiled_100", "sklearn_100")
                    ),
                ]
                for x, c in sorted(g[key].items())
            ],
        )
    return out


def plot(growth: dict, http: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    sizes = sorted(growth["batch"])
    ax = axes[0]
    ax.plot(sizes, [growth["batch"][n]["vigil"] * 1e3 for n in sizes], "o-", label="Vigil path")
    ax.plot(
        sizes, [growth["batch"][n]["sklearn"] * 1e3 for n in sizes], "o--", label="scikit-learn"
    )
    ax.plot(sizes, [http[n] * 1e3 for n in sizes], "s:", label="Vigil over HTTP")
    ax.set(xlabel="rows per call", title="Batch size (default model: 100 trees, 2 features)")
    for ax, key, title in (
        (axes[1], "trees", "Number of trees (2 features)"),
        (axes[2], "features", "Number of features (100 trees)"),
    ):
        xs = sorted(growth[key])
        for cell, style, label in (
            ("compiled_1", "o-", "compiled, 1 row"),
            ("sklearn_1", "o--", "scikit-learn, 1 row"),
            ("compiled_100", "s-", "compiled, 100 rows"),
            ("sklearn_100", "s--", "scikit-learn, 100 rows"),
        ):
            ax.plot(xs, [growth[key][x][cell] * 1e3 for x in xs], style, label=label)
        ax.set(xlabel=key, title=title)
    for ax in axes:
        ax.set(xscale="log", yscale="log", ylabel="ms per call")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("How Vigil's scoring cost grows (in-process on one core; HTTP end to end)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round of everything")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="results folder"
    )
    parser.add_argument(
        "--kinds", nargs="+", metavar="KIND", help="detector kinds to serve (default: every kind)"
    )
    args = parser.parse_args()
    kind_names = args.kinds or kinds.default_kinds()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    mode_name = "quick" if args.quick else "full"
    stamp = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    results = measure(
        QUICK if args.quick else FULL, kind_names, kinds.QUICK if args.quick else kinds.FULL
    )

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "cost_growth.png"
    plot(results["growth"], results["http_batch_seconds"], png)
    kinds_png = args.out / "kinds.png"
    kinds.plot(results["kinds"], kinds_png)
    lines = render(results, mode_name, stamp)
    lines += ["", f"plots: {png}, {kinds_png}  ({time.monotonic() - started:.0f} s in all)"]
    text = "\n".join(lines) + "\n"
    print("\n" + text, end="")
    name = f"bench-{stamp:%Y%m%d-%H%M%S}-{mode_name}"
    for path in (args.out / f"{name}.txt", args.out / "latest.txt"):
        path.write_text(text)
    results["targets"] = [{"met": ok, "what": what} for ok, what in targets(results)]
    results["kinds"]["targets"] = {
        kind: {"single_row": single, "batch": batch}
        for kind, (single, batch) in kinds.met(results["kinds"]).items()
    }
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
