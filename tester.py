#!/usr/bin/env python3
"""Drive a Vigil service with the rows of a CSV file and summarise what came back.

    python tester.py --url http://127.0.0.1:8000 --data data/test.csv
    python tester.py --stream --rate 50 --duration 60 --inject step:20:10:8 --seed 1

Rows are sent in the model's feature order (read from GET /model_information, matched to the
CSV header by name): one per POST /prediction, or N per POST /predictions with --batch N;
every Nth request asks for the score.

Without --stream the file is sent once, as fast as one connection allows. With --stream it is
replayed (looping) at --rate requests per second for --duration seconds: request k is due
k/rate seconds after the start, whatever the latency, on a few threads (--threads) that
share that schedule; a request that falls behind is sent at once. A live progress line goes
to stderr.

--inject KIND:START:DURATION:MAGNITUDE (repeatable, stream only) changes the rows of the
requests due between START and START+DURATION seconds into the stream, in the columns of
--inject-columns (default: all features), on a share of those rows (--inject-share), drawn
from --seed. Kinds:
  spike    multiply by a factor drawn between 1 and MAGNITUDE (> 1)
  step     add MAGNITUDE times the column's standard deviation
  drop     subtract MAGNITUDE (in (0, 1]) times the column's range
  offline  set to 0 (MAGNITUDE is optional and ignored)
  scale    multiply by MAGNITUDE (> 0)
  drift    shift by up to MAGNITUDE times the column's standard deviation (not 0): a linear
           ramp from 0 at START to all of it at START+DURATION, then held to the end of the
           stream (drift does not go away by itself), to exercise the drift alerts
The standard deviation and range are those of the column in the data file. Injected rows are
labelled, and the summary gives the precision, recall and F1 of the service's is_anomaly
against those labels, and against the file's own label column when it has one (label or
is_anomaly, or --label-column).

--series CSV replays a timestamp,value file (an optional label column too) as a stream through
POST /series/detect: point i is due i/--rate seconds after the start; once a second the
client sends every point due so far and keeps the answers for the new ones (the detection is
causal, so the earlier points' answers never change: it checks that). --inject applies to the
value, --detector and --param choose the detector. The summary gives precision, recall and
F1 of is_anomaly against the injected and labelled points, and a NAB-style score (standard
profile) of the flags against windows around them.

Needs only ``requests``. Exit status: 0 if every request succeeded, 1 if some failed, 2 if
the service cannot be used at all, 130 if interrupted (the summary is printed all the same).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import requests

LABEL_COLUMNS = ("label", "is_anomaly")
_TRUE = {"1", "true", "yes", "anomaly"}
_FALSE = {"0", "false", "no", "normal"}
MAX_ERROR_LINES = 50
LATE_S = 0.1
"""A request that starts more than this after its due time counts as late."""


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


@dataclass
class Confusion:
    """The service's flags against one kind of truth, counted row by row."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, flagged: bool, truth: bool) -> None:
        if flagged:
            if truth:
                self.tp += 1
            else:
                self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        """Share of flagged rows that are true anomalies; None when nothing was flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """Share of true anomalies that were flagged; None when there were none."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall, 2tp / (2tp + fp + fn)."""
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else None

    def report(self, name: str) -> str:
        def num(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        return (
            f"{name}: precision {num(self.precision)}  recall {num(self.recall)}"
            f"  F1 {num(self.f1)}  (tp {self.tp}, fp {self.fp}, fn {self.fn}, tn {self.tn})"
        )


# ---------------------------------------------------------------------------- data


@dataclass
class Data:
    rows: list[list[float]]
    """In the model's feature order."""
    labels: list[bool] | None = None
    label_column: str | None = None


def parse_label(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a label (use 1/0 or true/false)")


def read_data(path: str, feature_names: list[str], label_column: str | None = None) -> Data:
    """The CSV's rows in the model's feature order, and its labels if it has a label column.

    Without ``label_column``, the first of LABEL_COLUMNS in the header (that is not a
    feature) is the label column. Other columns are ignored.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [n for n in feature_names if n not in header]
        if missing:
            raise SystemExit(f"error: {path} lacks the model's features {missing} (has {header})")
        if label_column is None:
            label_column = next(
                (c for c in LABEL_COLUMNS if c in header and c not in feature_names), None
            )
        elif label_column not in header:
            raise SystemExit(f"error: {path} has no label column {label_column!r} ({header})")
        rows, labels = [], []
        for line_no, record in enumerate(reader, start=2):
            try:
                rows.append([float(record[n]) for n in feature_names])
            except (TypeError, ValueError):
                raise SystemExit(f"error: {path}, line {line_no}: non-numeric feature") from None
            if label_column is not None:
                try:
                    labels.append(parse_label(record[label_column] or ""))
                except ValueError as exc:
                    raise SystemExit(f"error: {path}, line {line_no}: {exc}") from None
    return Data(rows, labels if label_column else None, label_column)


# ---------------------------------------------------------------------------- injection

KINDS = ("spike", "step", "drop", "offline", "scale", "drift")


@dataclass(frozen=True)
class Injection:
    """One anomaly to inject: KIND over [START, START + DURATION) seconds of the stream
    (drift: ramped up over that window, then held from START + DURATION on)."""

    kind: str
    start: float
    duration: float
    magnitude: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Injection:
        parts = text.split(":")
        kind = parts[0].strip().lower()
        if kind not in KINDS:
            raise ValueError(f"{text!r}: the kind must be one of {', '.join(KINDS)}")
        if len(parts) not in (3, 4) or (len(parts) == 3 and kind != "offline"):
            raise ValueError(f"{text!r}: use KIND:START:DURATION:MAGNITUDE")
        try:
            start, duration = float(parts[1]), float(parts[2])
            magnitude = float(parts[3]) if len(parts) == 4 else 0.0
        except ValueError:
            raise ValueError(f"{text!r}: START, DURATION and MAGNITUDE are numbers") from None
        if not all(math.isfinite(v) for v in (start, duration, magnitude)):
            raise ValueError(f"{text!r}: numbers must be finite")
        if start < 0 or duration <= 0:
            raise ValueError(f"{text!r}: START must be >= 0 and DURATION > 0 (seconds)")
        valid = {
            "spike": (magnitude > 1, "MAGNITUDE > 1 (the largest factor)"),
            "step": (magnitude != 0, "a MAGNITUDE other than 0 (standard deviations)"),
            "drop": (0 < magnitude <= 1, "MAGNITUDE in (0, 1] (a share of the range)"),
            "offline": (True, ""),
            "scale": (magnitude > 0 and magnitude != 1, "MAGNITUDE > 0 and not 1 (a factor)"),
            "drift": (magnitude != 0, "a MAGNITUDE other than 0 (standard deviations)"),
        }
        ok, needs = valid[kind]
        if not ok:
            raise ValueError(f"{text!r}: {kind} needs {needs}")
        return cls(kind, start, duration, magnitude)

    def active(self, t: float) -> bool:
        if self.kind == "drift":
            return self.start <= t
        return self.start <= t < self.start + self.duration

    def ramp(self, t: float) -> float:
        """The share of the magnitude applied at ``t``: drift's linear ramp, 1 for the rest."""
        if self.kind != "drift":
            return 1.0
        return min(1.0, (t - self.start) / self.duration)

    def describe(self) -> str:
        m = f"{self.magnitude:g}"
        what = {
            "spike": f"multiply by up to {m}",
            "step": f"add {m} standard deviations",
            "drop": f"subtract {m} of the range",
            "offline": "set to 0",
            "scale": f"multiply by {m}",
            "drift": f"shift by 0 to {m} standard deviations, a linear ramp, then held",
        }[self.kind]
        end = self.start + self.duration
        return f"{self.kind} from {self.start:g} s to {end:g} s: {what}"


@dataclass(frozen=True)
class ColumnStats:
    std: list[float]
    range: list[float]

    @classmethod
    def of(cls, rows: list[list[float]]) -> ColumnStats:
        columns = list(zip(*rows, strict=True))
        return cls(
            std=[statistics.pstdev(c) for c in columns], range=[max(c) - min(c) for c in columns]
        )


class Injector:
    """Applies the active injections to rows; draws from its own seeded generator.

    The draws happen in the order the rows are handed out, so a seed and a schedule give
    the same injected rows and values on every run.
    """

    def __init__(
        self,
        injections: list[Injection],
        columns: list[int],
        share: float,
        stats: ColumnStats,
        seed: int,
    ) -> None:
        self.injections = injections
        self.columns = columns
        self.share = share
        self.stats = stats
        self.seed = seed
        self.rng = random.Random(seed)

    def _change(self, kind: str, magnitude: float, value: float, column: int) -> float:
        if kind in ("step", "drift"):  # drift's magnitude comes ramped
            return value + magnitude * self.stats.std[column]
        if kind == "spike":
            return value * self.rng.uniform(1.0, magnitude)
        if kind == "drop":
            return value - magnitude * self.stats.range[column]
        if kind == "offline":
            return 0.0
        return value * magnitude  # scale

    def apply(self, row: list[float], t: float) -> tuple[list[float], bool]:
        """``row`` with the injections active at ``t`` applied, and whether any was.

        Each active injection picks the row with probability ``share``; ``row`` itself is
        never modified.
        """
        out, injected = row, False
        for inj in self.injections:
            if not inj.active(t) or self.rng.random() >= self.share:
                continue
            if out is row:
                out = list(row)
            magnitude = inj.magnitude * inj.ramp(t)
            for c in self.columns:
                out[c] = self._change(inj.kind, magnitude, out[c], c)
            injected = True
        return out, injected


# ---------------------------------------------------------------------------- the schedule


@dataclass
class Job:
    index: int
    """Request number, from 0."""
    due: float
    """Seconds after the start at which it is to be sent."""
    first: int
    """Number of the request's first row among all rows sent, from 0."""
    rows: list[list[float]]
    injected: list[bool]
    labels: list[bool] | None
    with_score: bool


class Schedule:
    """Hands out the requests in order, to any number of threads.

    With a ``rate``, request k is due ``k / rate`` seconds after the start and the data
    loops until ``duration``; the injections are applied at that scheduled time (not the
    time of sending), which makes a run reproducible. Without one, every request is due at
    once and the data is sent once.
    """

    def __init__(
        self,
        data: Data,
        *,
        batch: int,
        score_every: int,
        rate: float | None = None,
        duration: float = 0.0,
        injector: Injector | None = None,
    ) -> None:
        self.data = data
        self.batch = batch
        self.score_every = score_every
        self.rate = rate
        self.duration = duration
        self.injector = injector
        self.handed_out = 0
        self._lock = threading.Lock()
        n = len(data.rows)
        if rate:
            total = math.ceil(duration * rate)  # then exactly: the k with k / rate < duration
            while total > 0 and (total - 1) / rate >= duration:
                total -= 1
            while total / rate < duration:
                total += 1
        else:
            total = math.ceil(n / batch)
        self.total = total
        """Number of requests in the whole run."""

    def next(self) -> Job | None:
        with self._lock:
            k = self.handed_out
            if k >= self.total:
                return None
            due = k / self.rate if self.rate else 0.0
            self.handed_out += 1
            n = len(self.data.rows)
            first = k * self.batch
            end = first + self.batch if self.rate else min(first + self.batch, n)
            positions = range(first, end)
            rows, injected = [], []
            for p in positions:
                row = self.data.rows[p % n]
                if self.injector is not None:
                    row, hit = self.injector.apply(row, due)
                else:
                    hit = False
                rows.append(row)
                injected.append(hit)
            labels = None
            if self.data.labels is not None:
                labels = [self.data.labels[p % n] for p in positions]
            with_score = self.score_every > 0 and (k + 1) % self.score_every == 0
            return Job(k, due, first, rows, injected, labels, with_score)


# ---------------------------------------------------------------------------- sending


class Stats:
    """What came back, gathered from every thread."""

    def __init__(self, has_labels: bool, injecting: bool) -> None:
        self.lock = threading.Lock()
        self.summary = Summary()
        self.sent = 0
        self.answered = 0
        self.rows_sent = 0
        self.rows_scored = 0
        self.rows_injected = 0
        self.vs_injected = Confusion() if injecting else None
        self.vs_labels = Confusion() if has_labels else None
        self.vs_either = Confusion() if has_labels and injecting else None
        self.max_lag_s = 0.0
        self.late = 0
        self.error_lines = 0

    def sending(self, lag_s: float) -> None:
        """A request is being sent, ``lag_s`` after it was due."""
        with self.lock:
            self.sent += 1
            self.max_lag_s = max(self.max_lag_s, lag_s)
            self.late += lag_s > LATE_S

    def record(self, job: Job, outcome: Outcome, latency_ms: float) -> None:
        """A request is done: count its rows, and its flags against the labels."""
        flags = outcome.flags
        with self.lock:
            s = self.summary
            s.requests += 1
            self.rows_sent += len(job.rows)
            self.rows_injected += sum(job.injected)
            if outcome.answered:
                s.latencies_ms.append(latency_ms)
            if outcome.error is not None:
                s.errors[outcome.error] += 1
                return
            self.answered += 1
            self.rows_scored += len(flags)
            s.anomalies += sum(flags)
            labels = job.labels or [False] * len(flags)
            for flag, injected, label in zip(flags, job.injected, labels, strict=True):
                if self.vs_injected is not None:
                    self.vs_injected.add(flag, injected)
                if self.vs_labels is not None:
                    self.vs_labels.add(flag, label)
                if self.vs_either is not None:
                    self.vs_either.add(flag, injected or label)

    def error_line(self, text: str) -> None:
        with self.lock:
            self.error_lines += 1
            if self.error_lines <= MAX_ERROR_LINES:
                print(text, file=sys.stderr)
            elif self.error_lines == MAX_ERROR_LINES + 1:
                print("further errors are only counted", file=sys.stderr)


def make_session(args: argparse.Namespace) -> requests.Session:
    session = requests.Session()
    if args.user:
        session.auth = (args.user, args.password or "")
    return session


@dataclass
class Outcome:
    flags: list[bool] | None
    """The service's is_anomaly for each row, when it answered 200."""
    error: str | None
    """What went wrong, as counted in the summary: an HTTP status or an exception's name."""
    detail: object
    """The answer, or what went wrong, for -v and the error lines."""
    answered: bool
    """Whether an HTTP answer came back (its latency counts)."""


def send(session: requests.Session, base: str, job: Job, batch: bool, timeout: float) -> Outcome:
    """POST the job's rows to /prediction (one row) or /predictions (a batch)."""
    if batch:
        url, body = f"{base}/predictions", job.rows
    else:
        url, body = f"{base}/prediction", job.rows[0]
    try:
        # json.dumps writes inf/nan as Infinity/NaN: the service, not the client, judges them.
        resp = session.post(
            url,
            params={"score": str(job.with_score).lower()},
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        return Outcome(None, type(exc).__name__, f"{type(exc).__name__}: {exc}", False)
    if resp.status_code != 200:
        return Outcome(None, str(resp.status_code), f"{resp.status_code} {resp.text[:200]}", True)
    try:
        answer = resp.json()
        if batch:
            flags = [bool(p["is_anomaly"]) for p in answer["predictions"]]
            if len(flags) != len(job.rows):
                raise ValueError(f"{len(flags)} answers for {len(job.rows)} rows")
        else:
            flags = [bool(answer["is_anomaly"])]
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome(None, "bad answer", f"bad answer: {exc}: {resp.text[:200]}", True)
    return Outcome(flags, None, answer, True)


def rows_name(job: Job) -> str:
    a, b = job.first + 1, job.first + len(job.rows)
    return f"row {a}" if a == b else f"rows {a}-{b}"


def worker(
    args: argparse.Namespace,
    base: str,
    schedule: Schedule,
    stats: Stats,
    start: float,
    stop: threading.Event,
    on_answer=None,
) -> None:
    session = make_session(args)
    batch = args.batch > 0
    while not stop.is_set():
        job = schedule.next()
        if job is None:
            return
        wait = start + job.due - time.perf_counter()
        if wait > 0 and stop.wait(wait):
            return
        t0 = time.perf_counter()
        stats.sending(lag_s=max(0.0, t0 - start - job.due))
        outcome = send(session, base, job, batch, args.timeout)
        latency_ms = (time.perf_counter() - t0) * 1000
        stats.record(job, outcome, latency_ms)
        if outcome.error is not None:
            stats.error_line(f"{rows_name(job)}: {outcome.detail}")
        elif args.verbose:
            rows = job.rows[0] if len(job.rows) == 1 else job.rows
            print(f"{rows_name(job)} {rows}: {outcome.detail}")
        if on_answer is not None:
            on_answer(job)


# ---------------------------------------------------------------------------- command line


def _positive(kind):
    def parse(value: str):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        if not v > 0 or not math.isfinite(v):
            raise argparse.ArgumentTypeError("must be above 0")
        return v

    return parse


def _injection(text: str) -> Injection:
    try:
        return Injection.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.epilog = "\n\n".join(__doc__.split("\n\n")[2:])
    p.add_argument("--url", default=os.environ.get("VIGIL_URL", "http://127.0.0.1:8000"))
    p.add_argument("--data", default="data/test.csv", help="CSV with the model's feature columns")
    p.add_argument(
        "--score-every",
        type=int,
        default=10,
        metavar="N",
        help="ask for the score on every Nth request (0: never)",
    )
    p.add_argument("--limit", type=int, default=0, help="use at most this many rows (0: all)")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="send N rows per request to /predictions (0: one per request to /prediction)",
    )
    p.add_argument(
        "--label-column",
        help=f"the file's label column (default: the first of {', '.join(LABEL_COLUMNS)})",
    )
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
    s = p.add_argument_group("stream")
    s.add_argument("--stream", action="store_true", help="replay the data at a steady rate")
    s.add_argument(
        "--rate", type=_positive(float), help="requests per second (default 20)", metavar="R"
    )
    s.add_argument("--duration", type=_positive(float), help="seconds (default 60)", metavar="S")
    s.add_argument(
        "--threads", type=_positive(int), help="threads sharing the schedule (default 4)"
    )
    s.add_argument(
        "--inject",
        type=_injection,
        action="append",
        default=[],
        metavar="KIND:START:DURATION:MAGNITUDE",
        help="inject anomalies (repeatable); see below",
    )
    s.add_argument(
        "--inject-columns",
        metavar="A,B",
        help="features the injections change (default: all)",
    )
    s.add_argument(
        "--inject-share",
        type=float,
        default=1.0,
        metavar="P",
        help="share of the rows in a window that are injected (default 1)",
    )
    s.add_argument("--seed", type=int, help="seed of the injections (default: random, printed)")
    t = p.add_argument_group("series")
    t.add_argument("--series", metavar="CSV", help="replay a timestamp,value file as a stream")
    t.add_argument("--detector", help="series detector kind (default: the service's)")
    t.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="detector parameter"
    )
    args = p.parse_args(argv)
    if args.series:
        if args.stream or args.batch:
            p.error("--series replays its own stream: leave out --stream and --batch")
        args.stream = True  # --rate, --duration, --inject and --seed apply
        args.series_duration = args.duration  # None: the whole file
    elif args.detector or args.param:
        p.error("--detector and --param need --series")

    stream_only = {
        "--rate": args.rate,
        "--duration": args.duration,
        "--threads": args.threads,
        "--inject": args.inject or None,
        "--inject-columns": args.inject_columns,
        "--seed": args.seed,
    }
    if not args.stream:
        given = [name for name, value in stream_only.items() if value is not None]
        if given:
            p.error(f"{', '.join(given)} need{'s' * (len(given) == 1)} --stream")
    if not 0 < args.inject_share <= 1:
        p.error("--inject-share must be in (0, 1]")
    if args.batch < 0 or args.limit < 0:
        p.error("--batch and --limit cannot be negative")
    args.rate = args.rate or 20.0
    args.duration = args.duration or 60.0
    args.threads = args.threads or (4 if args.stream else 1)
    return args


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


def make_injector(args: argparse.Namespace, features: list[str], data: Data) -> Injector:
    names = args.inject_columns.split(",") if args.inject_columns else features
    unknown = [n for n in names if n not in features]
    if unknown:
        print(f"error: --inject-columns {unknown} are not features {features}", file=sys.stderr)
        raise SystemExit(2)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    columns = [features.index(n) for n in names]
    return Injector(args.inject, columns, args.inject_share, ColumnStats.of(data.rows), seed)


def single_pass_progress(args: argparse.Namespace, stats: Stats, n_rows: int):
    """Prints a line at every tenth of the file (the single pass's progress)."""
    every = max(1, n_rows // 10)
    shown = [0]

    def on_answer(job: Job) -> None:
        done = job.first + len(job.rows)
        if args.verbose or (done // every <= shown[0] and done < n_rows):
            return
        shown[0] = done // every
        with stats.lock:
            anomalies, errors = stats.summary.anomalies, stats.summary.n_errors
        print(f"  {done}/{n_rows} sent, {anomalies} anomalies, {errors} errors")

    return on_answer


def run(args, base: str, schedule: Schedule, stats: Stats, on_answer=None) -> bool:
    """Send everything on the schedule from ``args.threads`` threads; False if interrupted."""
    start = time.perf_counter()
    if args.stream:
        wall = time.time()
        print(
            f"started at {_clock(wall)} UTC (unix {wall:.3f}); request k is due"
            f" k/{args.rate:g} s later",
            flush=True,
        )
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=worker, args=(args, base, schedule, stats, start, stop, on_answer), daemon=True
        )
        for _ in range(args.threads)
    ]
    for t in threads:
        t.start()
    progress = LiveProgress(stats, args.duration, start) if args.stream else None
    completed = True
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)
                if progress is not None:
                    progress.tick()
    except KeyboardInterrupt:
        completed = False
        stop.set()
        for t in threads:
            t.join(args.timeout + 1)
    if progress is not None:
        progress.tick(final=True)
    stats.summary.elapsed_s = time.perf_counter() - start
    return completed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.url.rstrip("/")
    session = make_session(args)
    if args.series:
        return replay_series(args, base, session)
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
    version = info.json()["model_version"]
    data = read_data(args.data, features, args.label_column)
    if args.limit:
        data.rows = data.rows[: args.limit]
        data.labels = data.labels[: args.limit] if data.labels is not None else None
    if not data.rows:
        print(f"error: {args.data} has no rows", file=sys.stderr)
        return 2
    batch = max(args.batch, 1)
    injector = make_injector(args, features, data) if args.inject else None
    stats = Stats(has_labels=data.labels is not None, injecting=injector is not None)

    if args.stream:
        schedule = Schedule(
            data,
            batch=batch,
            score_every=args.score_every,
            rate=args.rate,
            duration=args.duration,
            injector=injector,
        )
        print(
            f"streaming {args.data} ({len(data.rows)} rows, looping) to {base} (model {version}):"
            f" {args.rate:g} requests/s of {batch} row{'s' * (batch > 1)} for {args.duration:g} s"
            f" on {args.threads} thread{'s' * (args.threads > 1)}"
        )
        if injector is not None:
            cols = ", ".join(features[c] for c in injector.columns)
            print(
                f"injecting into {cols} on {args.inject_share:.0%} of the rows in each window,"
                f" seed {injector.seed}:"
            )
            for inj in args.inject:
                print(f"  {inj.describe()}")
        completed = run(args, base, schedule, stats)
    else:
        schedule = Schedule(data, batch=batch, score_every=args.score_every)
        print(f"sending {len(data.rows)} rows from {args.data} to {base} (model {version})")
        completed = run(
            args, base, schedule, stats, single_pass_progress(args, stats, len(data.rows))
        )

    if not completed:
        print("interrupted", file=sys.stderr)
    print(report(stats, args, schedule, data))
    if not completed:
        return 130
    return 0 if stats.summary.n_errors == 0 else 1


class LiveProgress:
    """The stream's progress line on stderr: redrawn in place on a terminal, else a line every
    few seconds."""

    def __init__(self, stats: Stats, duration: float, start: float) -> None:
        self.stats = stats
        self.duration = duration
        self.start = start
        self.tty = sys.stderr.isatty()
        self.every = 0.25 if self.tty else max(1.0, duration / 20)
        self.last = start
        self.window: deque[tuple[float, int]] = deque([(start, 0)])

    def tick(self, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < self.every:
            return
        self.last = now
        with self.stats.lock:
            s = self.stats.summary
            sent, answered, anomalies = self.stats.sent, self.stats.answered, s.anomalies
            injected, errors = self.stats.rows_injected, s.n_errors
        self.window.append((now, sent))
        while len(self.window) > 2 and now - self.window[0][0] > 2.0:
            self.window.popleft()
        t0, n0 = self.window[0]
        rate = (sent - n0) / (now - t0) if now > t0 else 0.0
        elapsed = min(now - self.start, self.duration) if not final else now - self.start
        line = (
            f"  {elapsed:5.1f}/{self.duration:g} s  sent {sent}  answered {answered}"
            f"  anomalies {anomalies}  injected {injected}  errors {errors}  rate {rate:.1f}/s"
        )
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def report(stats: Stats, args: argparse.Namespace, schedule: Schedule, data: Data) -> str:
    lines = [stats.summary.report()]
    if args.stream:
        late = (
            f"{stats.late} more than {LATE_S * 1000:.0f} ms late (the service or this client"
            " could not keep up; try more --threads)"
            if stats.late
            else f"none more than {LATE_S * 1000:.0f} ms late"
        )
        lines.append(
            f"schedule: {stats.sent} of {schedule.total} requests sent at {args.rate:g}/s;"
            f" max lag {stats.max_lag_s * 1000:.1f} ms, {late}"
        )
    if args.stream or args.batch or stats.vs_labels is not None:
        lines.append(
            f"rows: {stats.rows_sent} sent, {stats.rows_scored} scored,"
            f" {stats.rows_injected} injected"
        )
    if stats.vs_injected is not None:
        lines.append(stats.vs_injected.report("vs injected labels"))
    if stats.vs_labels is not None:
        lines.append(stats.vs_labels.report(f"vs label column {data.label_column!r}"))
    if stats.vs_either is not None:
        lines.append(stats.vs_either.report("vs injected or labelled"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- series replay


@dataclass
class SeriesData:
    timestamps: list[float | str]
    values: list[float | None]
    labels: list[bool] | None
    label_column: str | None


def read_series(path: str, label_column: str | None = None) -> SeriesData:
    """A timestamp,value CSV (header first), with the label column if it has one."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "timestamp" not in header or "value" not in header:
            raise SystemExit(f"error: {path} needs timestamp and value columns (has {header})")
        if label_column is None:
            label_column = next((c for c in LABEL_COLUMNS if c in header), None)
        elif label_column not in header:
            raise SystemExit(f"error: {path} has no label column {label_column!r} ({header})")
        ts, xs, labels = [], [], []
        for line_no, record in enumerate(reader, start=2):
            stamp = (record["timestamp"] or "").strip()
            try:
                ts.append(float(stamp))  # Unix seconds
            except ValueError:
                ts.append(stamp)  # ISO 8601, checked by the service
            cell = (record["value"] or "").strip()
            try:
                x = float(cell) if cell else None
            except ValueError:
                raise SystemExit(f"error: {path}, line {line_no}: value {cell!r}") from None
            xs.append(None if x is None or not math.isfinite(x) else x)
            if label_column is not None:
                try:
                    labels.append(parse_label(record[label_column] or ""))
                except ValueError as exc:
                    raise SystemExit(f"error: {path}, line {line_no}: {exc}") from None
    return SeriesData(ts, xs, labels if label_column else None, label_column)


def _as_number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# NAB's standard profile and sigmoid: a minimal copy of service/series/nab.py (pinned to it by
# tests/test_tester_series.py) so that tester.py needs nothing but requests.
NAB_A_TP, NAB_A_FP, NAB_A_FN = 1.0, 0.11, 1.0


def nab_sigmoid(x: float) -> float:
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def nab_windows(truth: list[bool]) -> list[tuple[int, int]]:
    """NAB-style windows around the true anomalies: each run of true points widened, centred,
    to 10% of the series over the number of runs; overlapping windows merged."""
    n = len(truth)
    runs, i = [], 0
    while i < n:
        if truth[i]:
            j = i
            while j + 1 < n and truth[j + 1]:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    if not runs:
        return []
    width = max(1, int(0.1 * n / len(runs)))
    out: list[tuple[int, int]] = []
    for a, b in runs:
        pad = max(0, width - (b - a + 1)) // 2
        left, right = max(0, a - pad), min(n - 1, b + pad)
        if out and left <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], right))
        else:
            out.append((left, right))
    return out


def nab_score(flags: list[bool], windows: list[tuple[int, int]]) -> tuple[float, int, int]:
    """Standard-profile NAB score of ``flags`` (0 none, 100 perfect), windows found, FPs."""
    n = len(flags)
    probation = min(math.floor(0.15 * n), 750)
    scored = [(a, b) for a, b in windows if b >= probation]
    if not scored:
        return math.nan, 0, 0
    top = nab_sigmoid(-1.0)
    raw, found, fps = 0.0, 0, 0
    for left, right in scored:
        width = right - left + 1
        hits = [i for i in range(max(left, probation), right + 1) if flags[i]]
        if hits:
            raw += NAB_A_TP * nab_sigmoid(-(right - hits[0] + 1) / width) / top
            found += 1
        else:
            raw -= NAB_A_FN
    for i in range(probation, n):
        if not flags[i] or any(a <= i <= b for a, b in windows):
            continue
        fps += 1
        before = [(a, b) for a, b in windows if b < i]
        if before:
            a, b = before[-1]
            raw += NAB_A_FP * nab_sigmoid(abs(b - i) / max(b - a, 1))
        else:
            raw -= NAB_A_FP
    null, perfect = -NAB_A_FN * len(scored), NAB_A_TP * len(scored)
    return 100.0 * (raw - null) / (perfect - null), found, fps


def replay_series(args: argparse.Namespace, base: str, session: requests.Session) -> int:
    data = read_series(args.series, args.label_column)
    if args.limit:
        data.timestamps, data.values = data.timestamps[: args.limit], data.values[: args.limit]
        data.labels = data.labels[: args.limit] if data.labels is not None else None
    n = len(data.values)
    rate = args.rate
    duration = args.series_duration if args.series_duration is not None else n / rate
    n = min(n, max(1, math.ceil(duration * rate)))
    values = list(data.values[:n])
    injected = [False] * n
    injector = None
    if args.inject:
        measured = [[v] for v in values if v is not None]
        if not measured:
            raise SystemExit(f"error: {args.series} has no values to inject into")
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        injector = Injector(args.inject, [0], args.inject_share, ColumnStats.of(measured), seed)
        for i, v in enumerate(values):
            if v is not None:
                row, injected[i] = injector.apply([v], i / rate)
                values[i] = row[0]
    params = {}
    for text in args.param:
        name, sep, value = text.partition("=")
        if not sep:
            raise SystemExit(f"error: --param {text!r}: use NAME=VALUE")
        params[name.strip()] = _as_number(value.strip())
    body: dict = {"params": params, "horizon": 0}
    if args.detector:
        body["detector"] = args.detector
    print(
        f"replaying {args.series} ({n} points) to {base}/series/detect at {rate:g} points/s"
        f" ({n / rate:.1f} s)"
    )
    if injector is not None:
        share = f"{args.inject_share:.0%}"
        print(f"injecting into the value on {share} of the points, seed {injector.seed}:")
        for inj in args.inject:
            print(f"  {inj.describe()}")
    answers: list[dict] = []
    changed = requests_sent = 0
    started = time.monotonic()
    first = min(n, 3)  # the service needs 3 points
    while len(answers) < n:
        # Send once a second (and once the first 3 points are due) every point due so far.
        elapsed = time.monotonic() - started
        due = min(n, int(elapsed * rate) + 1)
        if due < first or due == len(answers):
            time.sleep(max(0.0, min(1.0, max(first, len(answers) + 1) / rate - elapsed)))
            continue
        body["timestamps"], body["values"] = data.timestamps[:due], values[:due]
        try:
            r = session.post(f"{base}/series/detect", json=body, timeout=args.timeout)
        except requests.RequestException as exc:
            print(f"error: {base}/series/detect: {exc}", file=sys.stderr)
            return 2
        requests_sent += 1
        if r.status_code != 200:
            print(f"error: {base}/series/detect answered {r.status_code}: {r.text[:300]}",
                  file=sys.stderr)  # fmt: skip
            return 2
        points = r.json()["points"]
        if len(points) != due:
            print(
                f"error: {due} points sent, {len(points)} answered: the file has duplicate or"
                " unsorted timestamps; clean it first",
                file=sys.stderr,
            )
            return 2
        changed += sum(1 for old, new in zip(answers, points, strict=False) if old != new)
        answers.extend(points[len(answers) :])
        if args.verbose:
            flagged = sum(p["is_anomaly"] for p in answers)
            print(f"  {len(answers)}/{n} answered, {flagged} flagged")
        if len(answers) < n:
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
    flags = [p["is_anomaly"] for p in answers]
    print(
        f"requests: {requests_sent}  points: {n} sent, {len(answers)} answered,"
        f" {sum(flags)} flagged, {sum(injected)} injected; earlier answers changed: {changed}"
    )
    truths: list[tuple[str, list[bool]]] = []
    if injector is not None:
        truths.append(("injected labels", injected))
    if data.labels is not None:
        labels = data.labels[:n]
        truths.append((f"label column {data.label_column!r}", labels))
        if injector is not None:
            truths.append(
                ("injected or labelled", [a or b for a, b in zip(injected, labels, strict=True)])
            )
    for name, truth in truths:
        c = Confusion()
        for flagged, t in zip(flags, truth, strict=True):
            c.add(flagged, t)
        score, found, fps = nab_score(flags, nab_windows(truth))
        windows = len(nab_windows(truth))
        nab = "n/a (no window after the probation)" if math.isnan(score) else f"{score:.1f}"
        print(c.report(f"vs {name}"))
        print(
            f"  NAB standard score of the flags: {nab} ({found} of {windows} windows found,"
            f" {fps} false positives)"
        )
    return 0 if changed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
