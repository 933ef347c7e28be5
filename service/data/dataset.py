"""Reading numeric CSV files into feature matrices; errors name the file, line and column.

The rules (also in the README's Training section): UTF-8, with or without a byte order mark;
the first line is the header, whose names are stripped of spaces, not empty, free of control
characters and unique; a number is plain decimal (an optional sign, digits, an optional point
and an optional exponent: ``-1.5``, ``.5``, ``2e-3``), finite and within float64's range. Lines
and records are at most ``VIGIL_MAX_CSV_LINE_BYTES`` long (see :mod:`service.data.csvfile`).
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.data.csvfile import CsvFile, DataError, is_blank, shorten

__all__ = ["DataError", "Dataset", "load_csv", "parse_label", "parse_number"]

_TRUE = {"1", "true", "yes", "anomaly"}
_FALSE = {"0", "false", "no", "normal"}
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHOWN_NAMES = 8


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


def parse_number(cell: str) -> float:
    """A cell as a finite float, or ValueError saying why not.

    Only plain decimal numbers: Python's ``float()`` also takes ``1_01`` (as 101), non-ASCII
    digits, ``nan`` and ``inf``, none of which a CSV cell should mean.
    """
    text = cell.strip()
    if not text:
        raise ValueError("missing value")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{shorten(text)} is not numeric") from None
    # What float() takes beyond plain decimals needs letters, '_' or non-ASCII digits, or is
    # not finite: this check is the regular expression's, at a fraction of its cost.
    if math.isfinite(value) and text.isascii() and "_" not in text:
        return value
    if _NUMBER.fullmatch(text):
        raise ValueError(f"{shorten(text)} is beyond float64's range")
    if math.isnan(value):
        raise ValueError("NaN is not allowed")
    if math.isinf(value):
        raise ValueError("infinity is not allowed")
    raise ValueError(
        f"{shorten(text)} is not a plain decimal number (use an optional sign, digits 0-9,"
        " an optional '.' and exponent, e.g. -1.5e3)"
    )


def list_names(names: Sequence[str]) -> str:
    """The first few names of a header for an error message, and how many there are."""
    shown = ", ".join(shorten(n) for n in names[:_SHOWN_NAMES])
    more = f", ... ({len(names):,} columns)" if len(names) > _SHOWN_NAMES else ""
    return f"[{shown}{more}]"


def check_names(path: Path, header: list[str], used: Sequence[int]) -> None:
    """Refuse empty, unprintable or repeated names among the header's ``used`` columns."""
    for i in used:
        name = header[i]
        if not name:
            raise DataError(f"{path}, line 1, column {i + 1}: the column has no name")
        if _CONTROL.search(name):
            raise DataError(
                f"{path}, line 1, column {i + 1}: the name {shorten(name)} holds a control"
                " character"
            )
    seen: set[str] = set()
    dupes: set[str] = set()
    for i in used:
        (dupes if header[i] in seen else seen).add(header[i])
    if dupes:
        raise DataError(f"{path}: duplicate column names {list_names(sorted(dupes))}")


def default_max_line_bytes() -> int:
    from service.settings import Settings

    return Settings().max_csv_line_bytes


def load_csv(
    path: str | Path,
    *,
    features: Sequence[str] | None = None,
    label_column: str | None = None,
    exclude: tuple[str, ...] = (),
    min_rows: int = 1,
    max_line_bytes: int | None = None,
) -> Dataset:
    """Read a CSV with a header row of feature names and numeric cells only.

    ``features`` (if given) picks those columns by name, in that order, and ignores the
    others; otherwise every column is a feature except ``label_column`` (read as the anomaly
    label) and those in ``exclude``. Feature cells must be numbers on every row (see
    :func:`parse_number`). ``max_line_bytes`` defaults to ``VIGIL_MAX_CSV_LINE_BYTES``.
    """
    if features is not None and exclude:
        raise ValueError("give features or exclude, not both")
    limit = max_line_bytes if max_line_bytes is not None else default_max_line_bytes()
    with CsvFile(path, limit) as f:
        path = f.path
        records = f.records()
        first = next(records, None)
        if first is None or is_blank(first[1], 0):
            raise DataError(f"{path} is empty: expected a header row of column names")
        header = [h.strip() for h in first[1]]
        width = len(header)
        if label_column is not None and label_column not in header:
            raise DataError(
                f"{path}: label column {label_column!r} not found in {list_names(header)}"
            )
        label_idx = header.index(label_column) if label_column is not None else None
        if features is not None:
            missing = [n for n in features if n not in header]
            if missing:
                raise DataError(
                    f"{path} lacks the model's features {list_names(missing)}"
                    f" (header: {list_names(header)})"
                )
            if label_column in features:
                raise DataError(f"label column {label_column!r} is one of the model's features")
            feat_idx = [header.index(n) for n in features]
            wanted = {*features, label_column}
            used = [i for i, h in enumerate(header) if h in wanted]
            check_names(path, header, used)
        else:
            check_names(path, header, range(width))
            missing = [c for c in exclude if c not in header]
            if missing:
                raise DataError(
                    f"{path}: excluded columns {list_names(missing)} not found in"
                    f" {list_names(header)}"
                )
            skip = set(exclude) | ({label_column} if label_column is not None else set())
            feat_idx = [i for i, h in enumerate(header) if h not in skip]
            if not feat_idx:
                raise DataError(f"{path}: no feature columns left (header: {list_names(header)})")
        names = [header[i] for i in feat_idx]

        values = array("d")  # 8 bytes a number, not a Python float in a list
        labels = array("b")
        n_rows = 0
        for line_no, record in records:
            if is_blank(record, width):
                continue
            if len(record) != width:
                raise DataError(
                    f"{path}, line {line_no}: {len(record):,} cells, header has {width}"
                )
            for i in feat_idx:
                try:
                    values.append(parse_number(record[i]))
                except ValueError as exc:
                    raise DataError(
                        f"{path}, line {line_no}, column {shorten(header[i])}: {exc}"
                    ) from None
            if label_idx is not None:
                try:
                    labels.append(parse_label(record[label_idx]))
                except ValueError:
                    raise DataError(
                        f"{path}, line {line_no}, column {label_column!r}:"
                        f" {shorten(record[label_idx])} is not a label (use 1/0 or true/false)"
                    ) from None
            n_rows += 1
    if n_rows < min_rows:
        raise DataError(f"{path} has {n_rows} data rows; at least {min_rows} are needed")
    X = np.frombuffer(values, dtype=np.float64).reshape(n_rows, len(names))
    y = np.frombuffer(labels, dtype=np.int8).astype(bool) if label_idx is not None else None
    return Dataset(feature_names=names, X=X, labels=y)
