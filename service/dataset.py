"""Reading numeric CSV files into feature matrices; errors name the file, line and column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TRUE = {"1", "true", "yes", "anomaly"}
_FALSE = {"0", "false", "no", "normal"}


class DataError(ValueError):
    """The data file cannot be used; the message says why and where."""


@dataclass(frozen=True)
class Dataset:
    feature_names: list[str]
    X: np.ndarray
    """Feature matrix, float64, shape (rows, features)."""
    labels: np.ndarray | None = None
    """True where the row is labelled an anomaly, when a label column was read."""

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


def parse_label(value: str) -> bool:
    """A label cell: 1/true/yes/anomaly is an anomaly, 0/false/no/normal is not."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a label (use 1/0 or true/false)")


def load_csv(
    path: str | Path,
    *,
    label_column: str | None = None,
    exclude: tuple[str, ...] = (),
    min_rows: int = 1,
) -> Dataset:
    """Read a CSV with a header row of feature names and numeric cells only.

    ``label_column`` (if given) is read as the anomaly label and is not a feature; columns in
    ``exclude`` are skipped. Every other column must be numeric and finite on every row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{path} is empty: expected a header row of column names")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}: duplicate column names {dupes}")
        if label_column is not None and label_column not in header:
            raise DataError(f"{path}: label column {label_column!r} not found in {header}")
        missing = [c for c in exclude if c not in header]
        if missing:
            raise DataError(f"{path}: excluded columns {missing} not found in {header}")
        skip = set(exclude) | ({label_column} if label_column else set())
        feat_idx = [i for i, h in enumerate(header) if h not in skip]
        if not feat_idx:
            raise DataError(f"{path}: no feature columns left (header: {header})")
        names = [header[i] for i in feat_idx]
        label_idx = header.index(label_column) if label_column else None

        rows: list[list[float]] = []
        labels: list[bool] = []
        for line_no, record in enumerate(reader, start=2):
            if not record or all(not c.strip() for c in record):
                continue  # blank line
            if len(record) != len(header):
                raise DataError(
                    f"{path}, line {line_no}: {len(record)} cells, header has {len(header)}"
                )
            values = []
            for i in feat_idx:
                values.append(_parse_number(record[i], path, line_no, header[i]))
            rows.append(values)
            if label_idx is not None:
                try:
                    labels.append(parse_label(record[label_idx]))
                except ValueError as exc:
                    raise DataError(
                        f"{path}, line {line_no}, column {label_column!r}: {exc}"
                    ) from None
    if len(rows) < min_rows:
        raise DataError(f"{path} has {len(rows)} data rows; at least {min_rows} are needed")
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    y = np.asarray(labels, dtype=bool) if label_idx is not None else None
    return Dataset(feature_names=names, X=X, labels=y)


def _parse_number(cell: str, path: Path, line_no: int, column: str) -> float:
    text = cell.strip()
    if not text:
        raise DataError(f"{path}, line {line_no}, column {column!r}: missing value")
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line_no}: column {column!r} is not numeric ({text!r})"
        ) from None
    if math.isnan(value):
        raise DataError(f"{path}, line {line_no}, column {column!r}: NaN is not allowed")
    if math.isinf(value):
        raise DataError(f"{path}, line {line_no}, column {column!r}: infinity is not allowed")
    return value
