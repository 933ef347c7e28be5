"""Command line: ``python -m service {sample-data,train,serve,score,evaluate}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from service import __version__


def _max_samples(value: str) -> int | float | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'auto', a row count or a fraction") from None


def _contamination(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'auto' or a number in (0, 0.5]") from None
    if not 0 < v <= 0.5:
        raise argparse.ArgumentTypeError("must be in (0, 0.5]")
    return v


def _fraction_or_count(value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        return float(value)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description="Vigil anomaly detection")
    p.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample-data", help="write deterministic train.csv and test.csv")
    s.add_argument("--out-dir", default="data", help="folder for the CSVs (default: data)")
    s.add_argument("--train-rows", type=int, default=5000)
    s.add_argument("--test-rows", type=int, default=1000)
    s.add_argument("--anomaly-share", type=float, default=0.03, help="share of test anomalies")
    s.add_argument("--seed", type=int, default=7)

    t = sub.add_parser("train", help="train an IsolationForest on a CSV and save the artifact")
    t.add_argument("--data", required=True, help="CSV with a header of numeric feature columns")
    t.add_argument("--out", default="models/model.joblib", help="artifact path")
    t.add_argument("--exclude", action="append", default=[], help="column to skip (repeatable)")
    t.add_argument("--n-estimators", type=int, default=100)
    t.add_argument("--max-samples", type=_max_samples, default="auto")
    t.add_argument("--contamination", type=_contamination, default=0.02)
    t.add_argument("--max-features", type=_fraction_or_count, default=1.0)
    t.add_argument("--bootstrap", action="store_true")
    t.add_argument("--random-state", type=int, default=42)

    v = sub.add_parser("serve", help="run the HTTP service (settings from VIGIL_* variables)")
    v.add_argument("--model", help="overrides VIGIL_MODEL_PATH")
    v.add_argument("--host", help="overrides VIGIL_HOST")
    v.add_argument("--port", type=int, help="overrides VIGIL_PORT")
    v.add_argument("--workers", type=int, help="overrides VIGIL_WORKERS")

    default_model = os.environ.get("VIGIL_MODEL_PATH", "models/model.joblib")
    c = sub.add_parser(
        "score",
        help="score a CSV of any size into a copy with prediction, is_anomaly, anomaly_score",
        description=(
            "Score every row of IN (features matched to the header by name) in chunks with"
            " constant memory. OUT gets IN's columns plus prediction, is_anomaly and"
            " anomaly_score. Rows that cannot be scored keep empty result cells and are"
            " reported by line number on stderr. Exit status: 0 if every row was scored,"
            " 1 if some could not be (OUT is still complete), 2 if the file or model is"
            " unusable."
        ),
    )
    c.add_argument("input", metavar="IN.csv", help="CSV with a header naming the model's features")
    c.add_argument("--out", required=True, metavar="OUT.csv", help="where to write the results")
    c.add_argument("--model", default=default_model, help=f"artifact (default: {default_model})")
    c.add_argument("--chunk-rows", type=_positive_int, default=10_000, help="rows per chunk")
    c.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )

    e = sub.add_parser(
        "evaluate",
        help="compare the model's scores and flags with a labelled CSV",
        description=(
            "ROC-AUC, PR-AUC, precision, recall and F1 at the model's threshold, the confusion"
            " matrix, and the share the threshold flags against the labelled anomaly share."
        ),
    )
    e.add_argument("--data", required=True, help="CSV with the model's features and a label")
    e.add_argument(
        "--label-column", default="label", help="1/true/yes/anomaly is an anomaly (default: label)"
    )
    e.add_argument("--model", default=default_model, help=f"artifact (default: {default_model})")
    e.add_argument("--plot", metavar="FILE.png", help="save ROC, PR and score histograms here")
    return p


def cmd_sample_data(args: argparse.Namespace) -> int:
    from service.data import sample_data

    train, test = sample_data.generate(
        args.out_dir,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
        anomaly_share=args.anomaly_share,
        seed=args.seed,
    )
    print(f"wrote {train} ({args.train_rows} rows) and {test} ({args.test_rows} rows)")
    return 0


def _csv_line_limit() -> int:
    """``VIGIL_MAX_CSV_LINE_BYTES``; a ValueError with a one-line message if settings are bad."""
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings().max_csv_line_bytes
    except ValidationError as exc:
        problems = "; ".join(
            f"VIGIL_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"invalid settings: {problems}") from None


def _cannot_write(path: str, exc: OSError) -> str:
    return f"error: cannot write {path}: {exc.strerror or exc}"


def cmd_train(args: argparse.Namespace) -> int:
    from service.data.dataset import DataError
    from service.training.trainer import TrainingParams, train_from_csv

    params = TrainingParams(
        n_estimators=args.n_estimators,
        max_samples=args.max_samples,
        contamination=args.contamination,
        max_features=args.max_features,
        bootstrap=args.bootstrap,
        random_state=args.random_state,
    )
    try:
        model = train_from_csv(
            args.data,
            args.out,
            params,
            exclude=tuple(args.exclude),
            max_line_bytes=_csv_line_limit(),
        )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # reading errors are DataErrors: this is the artifact's write
        print(_cannot_write(args.out, exc), file=sys.stderr)
        return 2
    meta = model.metadata
    print(
        f"trained model {meta['version']} on {meta['n_training_rows']} rows of"
        f" {meta['n_features']} features ({', '.join(meta['feature_names'])});"
        f" threshold {meta['threshold']:.4f}, flags {meta['training_anomaly_ratio']:.2%}"
        f" of training rows"
    )
    print(f"saved {args.out} and {args.out}.json")
    print(json.dumps(meta["training_scores"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {
        "VIGIL_MODEL_PATH": args.model,
        "VIGIL_HOST": args.host,
        "VIGIL_PORT": args.port,
        "VIGIL_WORKERS": args.workers,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)  # workers re-read settings from the environment

    from pydantic import ValidationError

    from service.runtime.server import serve
    from service.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if not Path(settings.model_path).exists():
        print(f"warning: {settings.model_path} does not exist; serving not ready", file=sys.stderr)
    serve(settings)
    return 0


def _load_model(path: str):
    from service.models import artifact
    from service.models.loaded import Model

    return Model(artifact.load(path), source=Path(path))


def cmd_score(args: argparse.Namespace) -> int:
    from service.data.batch_scoring import ProgressBar, score_csv
    from service.data.dataset import DataError
    from service.models.artifact import ArtifactError

    try:
        limit = _csv_line_limit()
        model = _load_model(args.model)
    except (ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(sys.stderr, f"scoring {Path(args.input).name}") if show else None

    def on_error(failure) -> None:
        if bar is not None:
            bar.clear_line()
        print(f"{args.input}, line {failure.line}: not scored: {failure.reason}", file=sys.stderr)

    try:
        result = score_csv(
            args.input,
            args.out,
            model,
            chunk_rows=args.chunk_rows,
            on_error=on_error,
            on_progress=bar.update if bar is not None else None,
            max_line_bytes=limit,
        )
    except (DataError, OSError) as exc:
        if bar is not None:
            bar.clear_line()
        # Reading errors are DataErrors: an OSError is the output's write.
        message = f"error: {exc}" if isinstance(exc, DataError) else _cannot_write(args.out, exc)
        print(message, file=sys.stderr)
        return 2
    if bar is not None:
        bar.clear_line()
    rate = result.rows / result.elapsed_s if result.elapsed_s else 0.0
    print(
        f"scored {result.scored} of {result.rows} rows with model {model.version} into"
        f" {args.out}: {result.anomalies} anomalies; {result.elapsed_s:.1f} s, {rate:,.0f} rows/s"
    )
    if result.failed:
        print(
            f"warning: {result.failed} rows could not be scored (their result cells are empty;"
            " line numbers above)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from service.data.dataset import DataError
    from service.evaluation import vectors as evaluation
    from service.models.artifact import ArtifactError

    try:
        limit = _csv_line_limit()
        model = _load_model(args.model)
        X, labels = evaluation.load_labelled(
            args.data, args.label_column, model.feature_names, max_line_bytes=limit
        )
    except (ArtifactError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ev = evaluation.evaluate(model, X, labels)
    print(f"evaluation of {args.model} on {args.data} (label column {args.label_column!r})")
    print(ev.table())
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print(
                "error: --plot needs matplotlib (pip install -r requirements.txt)",
                file=sys.stderr,
            )
            return 2
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        try:
            fig = evaluation.plot(ev, args.plot)
        except (OSError, ValueError) as exc:
            print(f"error: cannot save {args.plot}: {exc}", file=sys.stderr)
            return 2
        plt.close(fig)
        print(f"saved {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "sample-data": cmd_sample_data,
        "train": cmd_train,
        "serve": cmd_serve,
        "score": cmd_score,
        "evaluate": cmd_evaluate,
    }
    return handler[args.command](args)
