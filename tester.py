#!/usr/bin/env python3
"""Drive a Vigil service with the rows of a CSV file and summarise what came back.

    python tester.py --url http://127.0.0.1:8000 --data data/test.csv

Rows are sent one by one to POST /prediction in the model's feature order (read from
GET /model_information, matched to the CSV header by name); every Nth asks for the score.
Needs only ``requests``. Exit status: 0 if every request succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

LABEL_COLUMNS = ("label", "is_anomaly")


@dataclass
class Summary:
    requests: int = 0
    anomalies: int = 0
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def report(self) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        rate = self.requests / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"requests: {self.requests}  anomalies: {self.anomalies}  errors: {self.n_errors}"
            f" ({errors})\n"
            f"latency p50: {self.percentile(50):.2f} ms  p99: {self.percentile(99):.2f} ms"
            f"  throughput: {rate:.0f} req/s over {self.elapsed_s:.1f} s"
        )


def read_rows(path: str, feature_names: list[str]) -> list[list[float]]:
    """The CSV's rows as lists in the model's feature order; other columns are ignored."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [n for n in feature_names if n not in header]
        if missing:
            raise SystemExit(f"error: {path} lacks the model's features {missing} (has {header})")
        rows = []
        for line_no, record in enumerate(reader, start=2):
            try:
                rows.append([float(record[n]) for n in feature_names])
            except (TypeError, ValueError):
                raise SystemExit(f"error: {path}, line {line_no}: non-numeric feature") from None
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("VIGIL_URL", "http://127.0.0.1:8000"))
    p.add_argument("--data", default="data/test.csv", help="CSV with the model's feature columns")
    p.add_argument(
        "--score-every",
        type=int,
        default=10,
        metavar="N",
        help="ask for the score on every Nth row (0: never)",
    )
    p.add_argument("--limit", type=int, default=0, help="send at most this many rows (0: all)")
    p.add_argument(
        "--user", default=os.environ.get("VIGIL_USER"), help="basic-auth user (env VIGIL_USER)"
    )
    p.add_argument(
        "--password",
        default=os.environ.get("VIGIL_PASSWORD"),
        help="basic-auth password (env VIGIL_PASSWORD)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.url.rstrip("/")
    session = requests.Session()
    if args.user:
        session.auth = (args.user, args.password or "")
    try:
        info = session.get(f"{base}/model_information", timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"error: cannot reach {base}: {exc}", file=sys.stderr)
        return 2
    if info.status_code != 200:
        print(
            f"error: {base}/model_information answered {info.status_code}: {info.text[:200]}",
            file=sys.stderr,
        )
        return 2
    features = info.json()["feature_names"]
    rows = read_rows(args.data, features)
    if args.limit:
        rows = rows[: args.limit]
    version = info.json()["model_version"]
    print(f"sending {len(rows)} rows from {args.data} to {base} (model {version})")

    summary = Summary()
    progress_every = max(1, len(rows) // 10)
    start = time.perf_counter()
    for i, row in enumerate(rows, start=1):
        with_score = args.score_every > 0 and i % args.score_every == 0
        t0 = time.perf_counter()
        try:
            # json.dumps writes inf/nan as Infinity/NaN: the service, not the client, judges them.
            resp = session.post(
                f"{base}/prediction",
                params={"score": str(with_score).lower()},
                data=json.dumps(row),
                headers={"Content-Type": "application/json"},
                timeout=args.timeout,
            )
        except requests.RequestException as exc:
            summary.requests += 1
            summary.errors[type(exc).__name__] += 1
            print(f"row {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        summary.latencies_ms.append((time.perf_counter() - t0) * 1000)
        summary.requests += 1
        if resp.status_code != 200:
            summary.errors[str(resp.status_code)] += 1
            print(f"row {i}: {resp.status_code} {resp.text[:200]}", file=sys.stderr)
            continue
        answer = resp.json()
        summary.anomalies += bool(answer["is_anomaly"])
        if args.verbose:
            print(f"row {i} {row}: {answer}")
        elif i % progress_every == 0 or i == len(rows):
            done = f"{i}/{len(rows)} sent"
            print(f"  {done}, {summary.anomalies} anomalies, {summary.n_errors} errors")
    summary.elapsed_s = time.perf_counter() - start
    print(summary.report())
    return 0 if summary.n_errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
