"""Deterministic sample data: two features, ``mean`` and ``sd``, of a healthy signal's windows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FEATURES = ("mean", "sd")


def _normal_points(rng: np.random.Generator, n: int) -> np.ndarray:
    mean = rng.normal(0.0, 0.05, n)
    sd = np.abs(rng.normal(0.1, 0.02, n))
    return np.column_stack([mean, sd])


def _anomalies(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clear outliers: a shifted mean, an inflated spread, or both."""
    mean = rng.choice([-1.0, 1.0], n) * rng.uniform(0.3, 0.6, n)
    sd = rng.uniform(0.25, 0.6, n)
    return np.column_stack([mean, sd])


def generate(
    out_dir: str | Path,
    *,
    train_rows: int = 5000,
    test_rows: int = 1000,
    anomaly_share: float = 0.03,
    seed: int = 7,
) -> tuple[Path, Path]:
    """Write ``train.csv`` (normal points only) and ``test.csv`` (with a ``label`` column).

    The same arguments always give byte-identical files.
    """
    if not 0 <= anomaly_share < 1:
        raise ValueError("anomaly_share must be in [0, 1)")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = _normal_points(rng, train_rows)
    n_anom = round(test_rows * anomaly_share)
    test = np.vstack([_normal_points(rng, test_rows - n_anom), _anomalies(rng, n_anom)])
    labels = np.r_[np.zeros(test_rows - n_anom, dtype=int), np.ones(n_anom, dtype=int)]
    order = rng.permutation(test_rows)
    test, labels = test[order], labels[order]

    train_path, test_path = out / "train.csv", out / "test.csv"
    _write(train_path, list(FEATURES), [[f"{v:.6f}" for v in row] for row in train])
    _write(
        test_path,
        [*FEATURES, "label"],
        [[f"{v:.6f}" for v in row] + [str(lab)] for row, lab in zip(test, labels, strict=True)],
    )
    return train_path, test_path


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
