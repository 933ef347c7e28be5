"""Labelled anomaly-detection CSVs made from a public data set that scikit-learn ships.

``breast_cancer``: the Wisconsin diagnostic breast cancer data (``sklearn.datasets.
load_breast_cancer``: 569 tumours, 30 features, no download). The recipe is ODDS's "WBC" set:
every benign tumour (357) is normal, and 21 malignant ones drawn at random (seeded) are the
anomalies, 5.6% of 378 rows. Each class is shuffled and cut in half, so both files have that
share: ``train.csv`` (188 rows, 10 of them anomalies, features only: unlabelled, as in
unsupervised training) and ``test.csv`` (190 rows, 11 anomalies, and a ``label`` column,
1 = malignant). Feature names are scikit-learn's with ``_`` for spaces (``mean_radius``);
values are written as Python's shortest round-trip text, so they read back bit for bit. The
same seed gives byte-identical files.

    python -m service.data.public_datasets --out-dir data/breast_cancer [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from service.data.atomic import atomic_write_bytes

__all__ = ["BREAST_CANCER_ANOMALIES", "breast_cancer"]

BREAST_CANCER_ANOMALIES = 21


def _csv_bytes(header: list[str], rows: list[list[object]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def breast_cancer(out_dir: str | Path, seed: int = 42) -> tuple[Path, Path]:
    """Write ``train.csv`` and ``test.csv`` into ``out_dir`` (the recipe in the module doc)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    X, target = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    malignant = int(np.flatnonzero(bunch.target_names == "malignant")[0])
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(target != malignant)
    anomalies = np.sort(
        rng.choice(np.flatnonzero(target == malignant), BREAST_CANCER_ANOMALIES, replace=False)
    )
    # A stratified half split: each class shuffled and cut in two, then each half shuffled.
    train_idx, test_idx = [], []
    for rows in (normal, anomalies):
        rows = rng.permutation(rows)
        cut = rows.size // 2
        train_idx.append(rows[:cut])
        test_idx.append(rows[cut:])
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path, test_path = out / "train.csv", out / "test.csv"
    atomic_write_bytes(train_path, _csv_bytes(names, [X[i].tolist() for i in train]))
    atomic_write_bytes(
        test_path,
        _csv_bytes(
            [*names, "label"],
            [[*X[i].tolist(), int(target[i] == malignant)] for i in test],
        ),
    )
    return train_path, test_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.data.public_datasets",
        description="Write train.csv and test.csv (label column 'label') from scikit-learn's"
        " bundled breast cancer data: benign is normal, 21 malignant rows are the anomalies.",
    )
    parser.add_argument("--out-dir", default="data/breast_cancer", help="folder for the CSVs")
    parser.add_argument("--seed", type=int, default=42, help="which malignant rows, and the split")
    args = parser.parse_args(argv)
    train, test = breast_cancer(args.out_dir, seed=args.seed)
    print(f"wrote {train} and {test}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
