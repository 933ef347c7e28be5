"""Every detector kind over HTTP: one Vigil serving a model of each kind, against the no-op.

For every kind in ``service.detectors.table.names()`` (or a chosen few), ``python -m service
train --name K --detector K --registry DIR`` on the sample data with default parameters; then
ONE ``python -m service serve`` with ``VIGIL_REGISTRY=DIR`` (one worker, pinned like the other
servers) serves them all, and for each kind:

- single row: wrk ``POST /models/K/prediction?score=true`` (body ``[0.1, 0.1]``) in rounds
  alternating with the bare FastAPI no-op; target >= 50% of the no-op's requests/s;
- 10,000-row batches: wrk ``-c1`` ``POST /models/K/predictions?score=true``, in rows/s, against
  the library's own in-process rows/s on the same core (PyOD ``decision_function``,
  scikit-learn ``score_samples`` for iforest, ``MLPRegressor.predict`` and the error for the
  autoencoder; ECOD/COPOD: their whole-batch call), fitted on the same rows with the parameters
  and seed in the model's manifest; target >= 60%;
- exactness: the served scores of the batch's first rows against the library's reference
  (``tests/detectors/references.py``: ECOD/COPOD one row at a time), 1e-9 relative;
- the worker's RSS with every kind loaded.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import requests
from harness import (
    BENCH,
    REPO,
    SERVER_CORE,
    SINGLE_PATH,
    Server,
    WrkResult,
    fmt_ms,
    median_result,
    on_core,
    post_script,
    rows_per_second,
    run_wrk,
    table,
    vigil_server,
)

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIN_SHARE_OF_NOOP = 0.50
MIN_BATCH_SHARE_OF_LIBRARY = 0.60
BATCH_ROWS = 10_000
EXACT_ROWS = 64  # batch rows checked against the library (ECOD/COPOD: one call per row)
RTOL, ATOL_SCALE = 1e-9, 1e-10  # as tests/detectors/test_exactness.py
TRAIN_JOBS = 2  # trainings at a time (the machine has 2 cores)


@dataclass(frozen=True)
class KindsMode:
    rounds: int
    seconds: int  # wrk seconds per kind (and per no-op run between kinds) per round
    warmup: int
    batch_seconds: int
    library_budget: float  # seconds of back-to-back in-process library calls per kind


FULL = KindsMode(rounds=3, seconds=2, warmup=1, batch_seconds=3, library_budget=1.0)
QUICK = KindsMode(rounds=1, seconds=1, warmup=1, batch_seconds=1, library_budget=0.2)


def single_path(kind: str) -> str:
    return f"/models/{kind}/prediction?score=true"


def batch_path(kind: str) -> str:
    return f"/models/{kind}/predictions?score=true"


def default_kinds() -> list[str]:
    from service.detectors import table as kinds_table

    return kinds_table.names()


def train(kinds: list[str], train_csv: Path, registry: Path) -> None:
    """Register one model per kind, named after it, with the CLI (default parameters)."""

    def one(kind: str) -> None:
        cmd = [sys.executable, "-m", "service", "train", "--data", str(train_csv)]
        cmd += ["--name", kind, "--detector", kind, "--registry", str(registry)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training {kind} failed:\n{proc.stderr[-2000:]}")

    with ThreadPoolExecutor(TRAIN_JOBS) as pool:
        list(pool.map(one, kinds))


def server(registry: Path, kinds: list[str], port: int, tmp: Path) -> Server:
    """One Vigil serving the whole registry (every kind's model, default alias loaded)."""
    s = vigil_server(
        "Vigil-kinds",
        port,
        tmp,
        {"VIGIL_REGISTRY": str(registry), "VIGIL_DEFAULT_MODEL": kinds[0]},
    )
    s.ready_path = single_path(kinds[-1])
    return s


def manifest(registry: Path, kind: str) -> dict:
    """The metadata of the model's only version (a fresh registry: version 1)."""
    return json.loads((registry / kind / "1" / "model.joblib.json").read_text())["metadata"]


def libraries(registry: Path, kinds: list[str], X_train: np.ndarray) -> dict[str, tuple]:
    """Per kind: the library's batch scorer and its exact reference, as the manifest says."""
    from bench_detectors import library_scorer

    from tests.detectors.references import reference

    out = {}
    for kind in kinds:
        meta = manifest(registry, kind)
        params, seed = meta["params"], meta["seed"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[kind] = (
                library_scorer(kind, X_train, params, seed),
                reference(kind, X_train, params, seed)[0],
            )
    return out


def exactness(served: np.ndarray, expected: np.ndarray) -> float:
    """The worst error as a share of the tolerance (<= 1: exact to 1e-9 relative)."""
    scale = max(1.0, float(np.abs(expected).max()))
    tolerance = RTOL * np.abs(expected) + ATOL_SCALE * scale
    return float((np.abs(served - expected) / tolerance).max())


def batch(vigil: Server, kind: str, body: bytes, tmp: Path, mode: KindsMode) -> tuple:
    """wrk posting the same batch to the kind's ``/predictions``; and the answer's scores."""
    url = vigil.url + batch_path(kind)
    answer = requests.post(
        url, data=body, headers={"Content-Type": "application/json"}, timeout=120
    )
    answer.raise_for_status()
    scores = np.array([p["anomaly_score"] for p in answer.json()["predictions"]])
    script = post_script(tmp, "kinds-batch", body)
    run_wrk(url, script, mode.warmup, connections=1)
    return run_wrk(url, script, mode.batch_seconds, connections=1), scores


def bracketed_rounds(
    noop_url: str, targets: dict[str, str], mode: KindsMode
) -> tuple[dict[str, list[WrkResult]], dict[str, list[float]], list[WrkResult]]:
    """wrk on every kind's one-row route, each run between two runs of the no-op.

    A kind's share of the no-op in a round is its req/s over the mean of the no-op runs just
    before and after it, so load that other programs put on the machine falls on both sides of
    the ratio; the kinds take turns in rotating order, and the median round counts.
    """
    post = BENCH / "post.lua"
    for url in (noop_url, *targets.values()):
        run_wrk(url, post, mode.warmup)
    names = list(targets)
    runs: dict[str, list[WrkResult]] = {k: [] for k in names}
    shares: dict[str, list[float]] = {k: [] for k in names}
    noops: list[WrkResult] = []
    for r in range(mode.rounds):
        shift = r % len(names)
        before = run_wrk(noop_url, post, mode.seconds)
        noops.append(before)
        for kind in names[shift:] + names[:shift]:
            result = run_wrk(targets[kind], post, mode.seconds)
            after = run_wrk(noop_url, post, mode.seconds)
            noops.append(after)
            runs[kind].append(result)
            shares[kind].append(result.rps / ((before.rps + after.rps) / 2))
            before = after
        done = "  ".join(f"{k} {shares[k][-1]:.0%}" for k in names)
        print(f"  round {r + 1}/{mode.rounds}, share of the no-op: {done}", flush=True)
    return runs, shares, noops


def measure(
    vigil: Server,
    noop: Server,
    registry: Path,
    kinds: list[str],
    X_train: np.ndarray,
    X_batch: np.ndarray,
    tmp: Path,
    mode: KindsMode,
) -> dict:
    """Everything the per-kind table shows, as plain numbers."""
    for kind in kinds:
        a = requests.post(vigil.url + single_path(kind), json=[0.1, 0.1], timeout=10).json()
        if a.get("kind") != kind or a.get("model") != kind:
            raise AssertionError(f"/models/{kind}/prediction answered {a}")
    runs, single_shares, noops = bracketed_rounds(
        noop.url + SINGLE_PATH, {k: vigil.url + single_path(k) for k in kinds}, mode
    )
    rss_single = vigil.rss_mb()

    libs = libraries(registry, kinds, X_train)
    body = json.dumps(X_batch.tolist()).encode()
    rows: dict[str, dict] = {}
    for kind in kinds:
        http, served = batch(vigil, kind, body, tmp, mode)
        lib_batch, lib_reference = libs[kind]
        with warnings.catch_warnings(), on_core(SERVER_CORE):  # right after, on the same core
            warnings.simplefilter("ignore")
            lib_rows_s = rows_per_second(
                lambda f=lib_batch: f(X_batch), BATCH_ROWS, mode.library_budget
            )
            exact = exactness(served[:EXACT_ROWS], lib_reference(X_batch[:EXACT_ROWS]))
        rows[kind] = {
            "single": asdict(median_result(runs[kind])),
            "share_of_noop": statistics.median(single_shares[kind]),
            "shares_of_noop": single_shares[kind],
            "batch": asdict(http),
            "http_rows_per_s": http.rps * BATCH_ROWS,
            "library_rows_per_s": lib_rows_s,
            "exact_error_over_tolerance": exact,
        }
        print(
            f"  batch {kind}: {rows[kind]['http_rows_per_s']:,.0f} rows/s over HTTP,"
            f" library {lib_rows_s:,.0f}",
            flush=True,
        )
    return {
        "noop": asdict(median_result(noops)),
        "kinds": rows,
        "rss_mb": {
            "after_single_rows": rss_single,
            "after_batches": vigil.rss_mb(),
            "peak": vigil.peak_rss_mb(),
        },
    }


# ------------------------------------------------------------------------------------ report


def shares(r: dict) -> dict[str, tuple[float, float]]:
    """Per kind: (req/s share of the no-op, HTTP batch rows/s share of the library)."""
    return {
        kind: (k["share_of_noop"], k["http_rows_per_s"] / k["library_rows_per_s"])
        for kind, k in r["kinds"].items()
    }


def met(r: dict) -> dict[str, tuple[bool, bool]]:
    return {
        kind: (single >= MIN_SHARE_OF_NOOP, batch_share >= MIN_BATCH_SHARE_OF_LIBRARY)
        for kind, (single, batch_share) in shares(r).items()
    }


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render(r: dict, mode: KindsMode) -> list[str]:
    noop = WrkResult(**r["noop"])
    out = [
        f"every detector kind: one Vigil serving all {len(r['kinds'])} (VIGIL_REGISTRY, 1 worker)",
        f"  one row: wrk -c16 -d{mode.seconds}s POST /models/KIND/prediction?score=true, each run"
        f" between two no-op runs (no-op median {noop.rps:,.0f} req/s, p99"
        f" {fmt_ms(noop.p99_ms)}); vs no-op: median over {mode.rounds} round(s) of req/s over the"
        " mean of the two no-op runs around it",
        f"  batch: {BATCH_ROWS:,} rows, wrk -c1 -d{mode.batch_seconds}s POST"
        " /models/KIND/predictions?score=true, then the library in-process on core"
        f" {SERVER_CORE} (its own batch call); exact: served scores of the first {EXACT_ROWS}"
        " rows = the library's to 1e-9",
    ]
    flags = met(r)
    rows = []
    for kind, (single_share, batch_share) in shares(r).items():
        k = r["kinds"][kind]
        s = WrkResult(**k["single"])
        exact = k["exact_error_over_tolerance"]
        rows.append(
            [
                kind,
                f"{s.rps:,.0f}",
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                f"{single_share:.0%}",
                _mark(flags[kind][0]),
                f"{k['http_rows_per_s']:,.0f}",
                f"{k['library_rows_per_s']:,.0f}",
                f"{batch_share:.0%}",
                _mark(flags[kind][1]),
                "yes" if exact <= 1 else f"NO ({exact:.1e}x tol)",
            ]
        )
    out += table(
        [
            "kind",
            "req/s",
            "p50",
            "p99",
            "vs no-op",
            f">= {MIN_SHARE_OF_NOOP:.0%}",
            "batch rows/s",
            "library rows/s",
            "HTTP/lib",
            f">= {MIN_BATCH_SHARE_OF_LIBRARY:.0%}",
            "exact",
        ],
        rows,
    )
    n = len(flags)
    singles = sum(a for a, _ in flags.values())
    batches = sum(b for _, b in flags.values())
    errors = sum(k["single"]["errors"] + k["batch"]["errors"] for k in r["kinds"].values())
    rss = r["rss_mb"]
    out += [
        f"  targets: single row >= {MIN_SHARE_OF_NOOP:.0%} of the no-op met by {singles}/{n}"
        f" kinds; batches >= {MIN_BATCH_SHARE_OF_LIBRARY:.0%} of the library met by"
        f" {batches}/{n}; exact:"
        f" {sum(k['exact_error_over_tolerance'] <= 1 for k in r['kinds'].values())}/{n}",
        f"  RSS (VmRSS) of the worker with all {n} kinds loaded: {rss['after_single_rows']:.0f} MB"
        f" after the single-row runs, {rss['after_batches']:.0f} MB after the batches"
        f" (peak {rss['peak']:.0f} MB)",
    ]
    if errors:
        out.append(f"  WARNING: {errors} failed or non-2xx responses")
    return out


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(r["kinds"])
    share = shares(r)
    x = np.arange(len(kinds))
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8))
    ax = axes[0]
    ax.bar(x, [share[k][0] * 100 for k in kinds], color="tab:blue")
    ax.axhline(MIN_SHARE_OF_NOOP * 100, color="tab:red", ls="--", label="target")
    ax.set(ylabel="% of the no-op's req/s", title="One row: POST /models/KIND/prediction")
    ax2 = axes[1]
    width = 0.4
    http = [r["kinds"][k]["http_rows_per_s"] for k in kinds]
    lib = [r["kinds"][k]["library_rows_per_s"] for k in kinds]
    ax2.bar(x - width / 2, http, width, label="Vigil over HTTP")
    ax2.bar(x + width / 2, lib, width, label="library in-process")
    for i, k in enumerate(kinds):
        ax2.annotate(f"{share[k][1]:.0%}", (x[i], max(http[i], lib[i])), ha="center", va="bottom")
    ax2.set(
        yscale="log",
        ylabel="rows/s",
        title=f"{BATCH_ROWS:,}-row batches (label: HTTP/library; target"
        f" {MIN_BATCH_SHARE_OF_LIBRARY:.0%})",
    )
    for a in axes:
        a.set_xticks(x, kinds, rotation=30)
        a.grid(True, axis="y", alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle("Every detector kind in one Vigil worker (pinned to one core)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
