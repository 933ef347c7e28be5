"""``python -m service drift --data CSV --model NAME[@VERSION]|ARTIFACT``: offline drift of a
CSV's rows against a model's reference sketch (PSI, KS, Wasserstein per feature and for the
score), with the same bins and PSI formula as the recording rules.

Exit status: 0 when no feature and not the score drifted (PSI <= 0.2), 1 when any did, 2 when
the data, the model or its reference cannot be used. A model trained before drift sketches
has none; ``--reference-data TRAIN.csv`` builds one from its training CSV on the fly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.data.dataset import DataError, load_csv
from service.models.artifact import ArtifactError

REFERENCE_KEY = "drift_reference"
"""Where the artifact's metadata holds the reference sketch."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="CSV of the rows to check (header: features)")
    p.add_argument(
        "--model", required=True, help="NAME[@VERSION] in the registry, or an artifact path"
    )
    p.add_argument(
        "--reference-data",
        help="training CSV to build the reference from when the model has none stored",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="a column of --data to skip, such as a non-numeric label (repeatable)",
    )
    p.add_argument("--plot", help="save each column's bin shares against the reference here")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service drift",
        description="Drift of a CSV's rows against a model's training data (PSI, KS, Wasserstein)",
    )
    add_arguments(p)
    return p


def reference_of(model: Any, reference_data: str | None) -> dict:
    """The model's stored sketch, else one built from ``reference_data`` and its scores."""
    from service.drift import reference

    stored = model.metadata.get(REFERENCE_KEY)
    if stored is None and reference_data is None:
        raise ValueError(
            f"model {model.version} has no drift reference (trained before drift sketches);"
            " pass its training CSV with --reference-data"
        )
    if stored is None:
        ds = load_csv(reference_data)
        X = _columns(ds.X, ds.feature_names, list(model.feature_names), reference_data)
        stored = reference.build(X, model.feature_names, model.score(X).anomaly_score)
    reference.validate(stored, model.feature_names)
    return stored


def _columns(X, names: list[str], wanted: list[str], path: str):
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DataError(f"{path}: no column for features {missing} (it has {names})")
    return X[:, [names.index(n) for n in wanted]]


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from service.cli.common import load_model
    from service.drift import offline
    from service.models.registry import RegistryError

    exclude = tuple(args.exclude)
    try:
        model = load_model(args.model)
        ref = reference_of(model, args.reference_data)
        ds = load_csv(args.data, exclude=exclude)
        X = _columns(ds.X, ds.feature_names, list(model.feature_names), args.data)
        report = offline.compare(ref, X, list(model.feature_names), model.score(X).anomaly_score)
    except (ArtifactError, DataError, RegistryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"drift of {args.data} against model {model.label} ({model.version})")
    print(report.table())
    if args.plot:
        try:
            offline.plot(report, args.plot)
        except (OSError, ValueError) as exc:
            print(f"error: cannot save {args.plot}: {exc}", file=sys.stderr)
            return 2
        print(f"saved {args.plot}")
    return 1 if report.drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
