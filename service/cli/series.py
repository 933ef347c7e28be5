"""``python -m service.cli.series evaluate-series``: NAB-style scores of a series detector on
your own labelled series (a folder of ``timestamp,value`` CSVs and a windows JSON file).

Prints the three profile scores (standard, reward_low_FP_rate, reward_low_FN_rate; each at the
corpus threshold that maximises it), the numbers of each series under the standard profile,
and with ``--plot DIR`` writes one PNG per series. Exit status: 0, or 2 when the input cannot
be used (the message says why).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from service.series.benchmark import CorpusRun, run_corpus
from service.series.corpus import read_corpus
from service.series.errors import SeriesInputError
from service.series.table import DEFAULT_KIND, KINDS


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def add_arguments(ev: argparse.ArgumentParser) -> None:
    """The options of ``evaluate-series`` (also ``python -m service evaluate-series``)."""
    ev.add_argument("--data", type=Path, required=True, help="folder of timestamp,value CSVs")
    ev.add_argument("--windows", type=Path, required=True, help="JSON: file -> [[start, end]]")
    ev.add_argument("--detector", default=DEFAULT_KIND, choices=list(KINDS))
    ev.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a detector parameter (repeatable)",
    )
    ev.add_argument("--plot", type=Path, metavar="DIR", help="write one PNG per series here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.cli.series")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("evaluate-series", help="NAB-style scores on labelled series"))
    return parser


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"


def report(run: CorpusRun) -> str:
    params = ", ".join(f"{k}={v}" for k, v in run.params.items())
    points = sum(r.timestamps.size for r in run.results)
    lines = [
        f"detector {run.detector} ({params})",
        f"{len(run.results)} series, {points:,} points, "
        f"{sum(len(s.scored_windows) for s in run.labelled)} labelled windows; "
        f"detection took {run.seconds:.1f} s",
        "",
        f"  {'profile':<20} {'score':>7} {'threshold':>10}",
    ]
    for cs in run.scores:
        lines.append(f"  {cs.profile.name:<20} {cs.score:>7.1f} {cs.threshold:>10.4f}")
    standard = run.scores[0]
    lines += [
        "",
        f"  per series (standard profile, threshold {standard.threshold:.4f}): score is"
        " 100 (raw - null) / (perfect - null), '-' without windows",
        f"  {'series':<58} {'windows':>7} {'found':>5} {'FP':>4} {'raw':>7} {'score':>6}",
    ]
    for s in standard.series:
        lines.append(
            f"  {s.name:<58} {s.windows:>7} {s.detected:>5} {s.false_positives:>4} "
            f"{s.raw:>7.2f} {_num(s.normalised):>6}"
        )
    return "\n".join(lines)


def write_plots(run: CorpusRun, out: Path) -> list[Path]:
    from service.series.plots import plot_series

    out.mkdir(parents=True, exist_ok=True)
    threshold = run.scores[0].threshold
    paths = []
    for result, lab, s in zip(run.results, run.labelled, run.scores[0].series, strict=True):
        path = out / (re.sub(r"[^A-Za-z0-9_.-]+", "__", s.name.removesuffix(".csv")) + ".png")
        title = (
            f"{s.name}: {run.detector}, standard score {_num(s.normalised)} "
            f"({s.detected}/{s.windows} windows, {s.false_positives} FP)"
        )
        plot_series(result, lab, threshold, title, path)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        KINDS[args.detector].resolve(dict(args.param))  # a bad parameter fails before any work
        corpus = read_corpus(args.data, args.windows)
        if not corpus:
            raise SeriesInputError(f"{args.windows}: names no series")
        run = run_corpus(corpus, args.detector, dict(args.param))
    except SeriesInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(run))
    if args.plot:
        paths = write_plots(run, args.plot)
        print(f"\n{len(paths)} plots in {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
