"""``compare``: fit every detector kind on one CSV, score a labelled CSV, print them best first.

``add_arguments`` builds the options on any parser, so ``python -m service compare ...`` and
``python -m service.cli.compare ...`` parse alike; ``run`` returns the exit status: 0 when
every kind was compared, 1 when some could not be (their rows say why; the table is still
printed), 2 when the input is unusable (a file, the label column, a kind or a parameter), with
the reason on stderr. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train", required=True, metavar="CSV", help="training rows (a label column is ignored)"
    )
    parser.add_argument(
        "--test", required=True, metavar="CSV", help="test rows: the training features and a label"
    )
    parser.add_argument(
        "--label-column", default="label", help="1/true/yes/anomaly is an anomaly (default: label)"
    )
    parser.add_argument(
        "--detectors",
        default="all",
        metavar="all|KIND,KIND",
        help="the kinds to compare (default: all)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[KIND.]NAME=VALUE",
        help="a parameter for every kind compared (scaler=standard), or for one"
        " (lof.n_neighbors=10); repeatable",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="save every kind's ROC and PR curves")
    parser.add_argument("--seed", type=int, default=42, help="random seed of every fit")


def _training_columns(path: str) -> list[str]:
    """The training CSV's header names (empty for an empty file; the reader says why later)."""
    from service.data.csvfile import CsvFile
    from service.data.dataset import default_max_line_bytes

    with CsvFile(path, default_max_line_bytes()) as f:
        first = next(f.records(), None)
    return [] if first is None else [name.strip() for name in first[1]]


def _error(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.data.dataset import DataError, load_csv
    from service.detectors.base import ParamError
    from service.detectors.table import UnknownKindError
    from service.evaluation import compare
    from service.evaluation.vectors import load_labelled

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        kinds = compare.kinds_from(args.detectors)
        params = compare.params_per_kind(kinds, args.param)
        label = args.label_column if args.label_column in _training_columns(args.train) else None
        train = load_csv(args.train, label_column=label)
        X_test, labels = load_labelled(args.test, args.label_column, train.feature_names)
    except ValidationError as exc:
        return _error(f"invalid settings: {exc}")
    except (DataError, ParamError, UnknownKindError, ValueError) as exc:
        return _error(exc)
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            return _error("--plot needs matplotlib (pip install -r requirements.txt)")
        matplotlib.use("Agg")

    progress(
        f"comparing {len(kinds)} detector kinds: {train.n_rows} training rows x"
        f" {len(train.feature_names)} features from {args.train}, {labels.size} test rows with"
        f" {int(labels.sum())} labelled anomalies from {args.test}"
    )
    results = compare.compare(
        train.X, X_test, labels, kinds=kinds, params=params, seed=args.seed, progress=progress
    )
    print(compare.table_text(results))
    if args.plot:
        import matplotlib.pyplot as plt

        try:
            fig = compare.plot(results, args.plot)
        except (OSError, ValueError) as exc:
            return _error(f"cannot save {args.plot}: {exc}")
        plt.close(fig)
        progress(f"saved {args.plot}")
    failed = [r.kind for r in results if not r.ok]
    if failed:
        names = ", ".join(failed)
        progress(f"{len(failed)} of {len(results)} kinds could not be compared: {names}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.cli.compare",
        description=(
            "Fit each detector kind on --train with its defaults (or --param), score the"
            " labelled --test rows, and print ROC-AUC, PR-AUC, precision, recall and F1 at"
            " each kind's threshold, and fit and score times, best first. Exit status: 0 all"
            " kinds compared, 1 some could not be (their rows say why), 2 unusable input."
        ),
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
