"""Command line: ``python -m service {sample-data,train,serve,score,evaluate}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from service import __version__
from service.cli.common import load_model, model_source, settings_value


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


def _byte_size(value: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = value.strip().upper().removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "")
    try:
        n = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError("use a byte count such as 65536, 512K or 64M") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
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

    t = sub.add_parser(
        "train",
        help="train a detector on a CSV: register it in the registry (--name) or save it (--out)",
        description=(
            "Fit a detector kind on a CSV. With --name the model is registered as a new version"
            " of that model in the registry (its first version, and any with --promote, becomes"
            " its default); without, it is saved at --out (a lone artifact, VIGIL_MODEL_PATH)."
        ),
    )
    t.add_argument("--data", required=True, help="CSV with a header of numeric feature columns")
    t.add_argument("--name", help="register as a new version of this model in the registry")
    t.add_argument("--registry", help="registry folder (default: VIGIL_REGISTRY, else models)")
    t.add_argument("--promote", action="store_true", help="make the new version the default")
    t.add_argument("--out", default="models/model.joblib", help="artifact path, without --name")
    t.add_argument(
        "--detector",
        default="iforest",
        help="detector kind (default iforest; see --list-detectors)",
    )
    t.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the kind, or contamination / scaler / max_train_rows (repeatable)",
    )
    t.add_argument(
        "--list-detectors", action="store_true", help="list the kinds and their parameters"
    )
    t.add_argument("--exclude", action="append", default=[], help="column to skip (repeatable)")
    t.add_argument("--seed", "--random-state", dest="seed", type=int, default=42)
    t.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="what is being fitted, on stderr (default: when stderr is a terminal)",
    )
    iforest = t.add_argument_group("iforest shorthands (the same as --param NAME=VALUE)")
    iforest.add_argument("--n-estimators", type=int)
    iforest.add_argument("--max-samples", type=_max_samples)
    iforest.add_argument("--contamination", type=_contamination)
    iforest.add_argument("--max-features", type=_fraction_or_count)
    iforest.add_argument("--bootstrap", action="store_true", default=None)

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
    c.add_argument(
        "input", metavar="IN", help="CSV with a header naming the model's features (or Parquet)"
    )
    c.add_argument(
        "--out", required=True, metavar="OUT", help="where to write the results (.parquet: Parquet)"
    )
    c.add_argument(
        "--model",
        default=default_model,
        help=f"artifact path or NAME[@VERSION] in the registry (default: {default_model})",
    )
    c.add_argument("--chunk-rows", type=_positive_int, default=10_000, help="rows per chunk")
    c.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    d = c.add_argument_group("on Dask (the same results, from partitions scored in parallel)")
    d.add_argument(
        "--engine",
        choices=("single", "dask"),
        default="single",
        help="single: this process, CSV only (default); dask: a Dask cluster, CSV or Parquet",
    )
    d.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a running Dask scheduler (default: a local cluster); IN and OUT's folder must be"
        " at the same paths on its workers",
    )
    d.add_argument(
        "--workers", type=_positive_int, help="local cluster processes (default: cores, max 4)"
    )
    d.add_argument(
        "--partition-size",
        type=_byte_size,
        metavar="BYTES",
        help="input bytes per partition, e.g. 512K (default: 4 per worker thread, 1M to 64M)",
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
    e.add_argument(
        "--model",
        default=default_model,
        help=f"artifact path or NAME[@VERSION] in the registry (default: {default_model})",
    )
    e.add_argument("--plot", metavar="FILE.png", help="save ROC, PR and score histograms here")
    from service.cli import models as models_cli

    m = sub.add_parser("models", help="list, show, promote, roll back and delete models")
    models_cli.add_arguments(m)

    from service.cli import compare as compare_cli

    k = sub.add_parser(
        "compare",
        help="train every detector kind on a CSV and rank them on a labelled one",
        description=compare_cli.__doc__,
    )
    compare_cli.add_arguments(k)

    from service.cli import drift as drift_cli

    d = sub.add_parser(
        "drift",
        help="drift of a CSV's rows against a model's training data (PSI, KS, Wasserstein)",
        description=drift_cli.__doc__,
    )
    drift_cli.add_arguments(d)
    from service.cli import jobs as jobs_cli

    j = sub.add_parser("jobs", help="submit, watch and list training jobs on a running service")
    jobs_cli.add_arguments(j)
    from service.cli import series as cli_series

    es = sub.add_parser(
        "evaluate-series",
        help="NAB-style scores of a series detector on labelled series",
        description=cli_series.__doc__,
    )
    cli_series.add_arguments(es)
    from service.cli import rollout as rollout_cli

    ro = sub.add_parser(
        "rollout",
        help="move a model's default alias and wait until every replica serves it",
        description=rollout_cli.__doc__,
    )
    rollout_cli.add_arguments(ro)
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


def _list_detectors() -> int:
    from service.detectors import detector, table

    for kind in table.kinds().values():
        print(f"{kind.name:12} {kind.summary}")
        for spec in detector.param_specs(kind).values():
            print(f"    {spec.name}={spec.default!r:<10} {spec.doc}")
    return 0


def _train_params(args: argparse.Namespace) -> list[str]:
    """``--param`` values, after the iforest shorthands (which they override)."""
    shorthands = {
        "n_estimators": args.n_estimators,
        "max_samples": args.max_samples,
        "max_features": args.max_features,
        "bootstrap": args.bootstrap,
    }
    given = {k: v for k, v in shorthands.items() if v is not None}
    if given and args.detector != "iforest":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags}: iforest parameters; for {args.detector} use --param")
    if args.contamination is not None:
        given["contamination"] = args.contamination
    return [f"{k}={v}" for k, v in given.items()] + list(args.param)


def cmd_train(args: argparse.Namespace) -> int:
    if args.list_detectors:
        return _list_detectors()
    from service.data.dataset import DataError
    from service.models import artifact
    from service.models.registry import Registry, RegistryError
    from service.training.trainer import train_from_csv

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = say if show else None

    target = args.out
    try:
        params = _train_params(args)
        model = train_from_csv(
            args.data,
            None if args.name else args.out,
            params,
            kind=args.detector,
            seed=args.seed,
            exclude=tuple(args.exclude),
            max_line_bytes=_csv_line_limit(),
            progress=progress,
        )
        if args.name:
            root = args.registry or settings_value("registry")
            target = str(root)
            info = Registry(root).register(
                args.name, lambda path: artifact.save(model, path), promote=args.promote
            )
    except (DataError, ValueError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # reading errors are DataErrors: this is the artifact's write
        print(_cannot_write(target, exc), file=sys.stderr)
        return 2
    meta = model.metadata
    print(
        f"trained {meta['kind']} model {meta['version']} on {meta['n_training_rows']} rows of"
        f" {meta['n_features']} features ({', '.join(meta['feature_names'])});"
        f" threshold {meta['threshold']:.4f}, flags {meta['training_anomaly_ratio']:.2%}"
        f" of training rows"
    )
    if args.name:
        model_info = Registry(target).model(args.name)
        default = model_info.aliases.get("default")
        print(
            f"registered {args.name} version {info.number} in {target}"
            f" (default: version {default}); reload the service to serve it"
        )
    else:
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
    if not Path(settings.model_path).exists() and not Path(settings.registry).is_dir():
        print(
            f"warning: neither {settings.model_path} nor the registry {settings.registry}"
            " exists; serving not ready",
            file=sys.stderr,
        )
    serve(settings)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from service.data.batch_scoring import ProgressBar, score_csv
    from service.data.dataset import DataError
    from service.models.artifact import ArtifactError

    if args.engine == "dask":
        return _score_on_dask(args)
    dask_only = [f for f in ("scheduler", "workers", "partition_size") if getattr(args, f)]
    if dask_only:
        flag = "--" + dask_only[0].replace("_", "-")
        print(f"error: {flag} is for --engine dask", file=sys.stderr)
        return 2
    if Path(args.input).suffix.lower() in (".parquet", ".pq"):
        print(f"error: {args.input}: Parquet input needs --engine dask", file=sys.stderr)
        return 2
    try:
        limit = _csv_line_limit()
        model = load_model(args.model)
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


def _score_on_dask(args: argparse.Namespace) -> int:
    """``score --engine dask``: the same output, exit status and messages as ``score``."""
    from service.data import dask_scoring
    from service.data.batch_scoring import ProgressBar
    from service.data.dataset import DataError
    from service.models.artifact import ArtifactError

    if args.scheduler and args.workers:
        print("error: --workers is for the local cluster, not --scheduler", file=sys.stderr)
        return 2
    try:
        limit = _csv_line_limit()
        ref = dask_scoring.ModelRef.from_manifest(*model_source(args.model))
    except (ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(sys.stderr, f"scoring {Path(args.input).name}") if show else None
    place = "row" if dask_scoring.is_parquet(args.input) else "line"

    def on_error(failure) -> None:
        if bar is not None:
            bar.clear_line()
        where = f"{args.input}, {place} {failure.line}"
        print(f"{where}: not scored: {failure.reason}", file=sys.stderr)

    try:
        with dask_scoring.dask_client(args.scheduler, args.workers) as client:
            result = dask_scoring.score_file(
                args.input,
                args.out,
                ref,
                client,
                chunk_rows=args.chunk_rows,
                partition_bytes=args.partition_size,
                on_error=on_error,
                on_progress=bar.update if bar is not None else None,
                max_line_bytes=limit,
            )
    except (DataError, ArtifactError, dask_scoring.DaskError, OSError) as exc:
        if bar is not None:
            bar.clear_line()
        message = _cannot_write(args.out, exc) if isinstance(exc, OSError) else f"error: {exc}"
        print(message, file=sys.stderr)
        return 2
    if bar is not None:
        bar.clear_line()
    rate = result.rows / result.elapsed_s if result.elapsed_s else 0.0
    print(
        f"scored {result.scored} of {result.rows} rows with model {ref.version} into"
        f" {args.out}: {result.anomalies} anomalies; {result.elapsed_s:.1f} s, {rate:,.0f} rows/s"
        f" ({result.partitions} partitions on Dask)"
    )
    if result.failed:
        print(
            f"warning: {result.failed} rows could not be scored (their result cells are empty;"
            f" {place} numbers above)",
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
        model = load_model(args.model)
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
        "models": _cmd_models,
        "compare": _cmd_compare,
        "drift": _cmd_drift,
        "jobs": _cmd_jobs,
        "evaluate-series": _cmd_evaluate_series,
        "rollout": _cmd_rollout,
    }
    return handler[args.command](args)


def _cmd_models(args: argparse.Namespace) -> int:
    from service.cli import models as models_cli

    return models_cli.run(args)


def _cmd_compare(args: argparse.Namespace) -> int:
    from service.cli import compare as compare_cli

    return compare_cli.run(args)


def _cmd_drift(args: argparse.Namespace) -> int:
    from service.cli import drift as drift_cli

    return drift_cli.run(args)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from service.cli import jobs as jobs_cli

    return jobs_cli.run(args)


def _cmd_evaluate_series(args: argparse.Namespace) -> int:
    from service.cli import series as cli_series

    return cli_series.run(args)


def _cmd_rollout(args: argparse.Namespace) -> int:
    from service.cli import rollout as rollout_cli

    return rollout_cli.run(args)
