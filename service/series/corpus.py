"""Reading a labelled corpus: a folder of ``timestamp,value`` CSVs and a windows JSON file.

The windows file maps each series' path relative to the folder (``folder/file.csv``) to a list
of ``[start, end]`` timestamps (NAB's ``combined_windows.json`` format). Series are the CSVs the
windows file names; one it names that is missing is an error, as is a malformed row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.series.errors import SeriesInputError
from service.series.input import normalise, parse_timestamp


@dataclass(frozen=True)
class CorpusSeries:
    name: str
    timestamps: list[str]
    values: list[float | None]
    windows: list[tuple[float, float]]
    """(start, end) in Unix seconds."""

    def unix_times(self) -> np.ndarray:
        return normalise(self.timestamps, self.values).timestamps


def read_series_csv(path: Path) -> tuple[list[str], list[float | None]]:
    """A ``timestamp,value`` CSV (header first); empty or ``nan`` cells are missing values."""
    timestamps: list[str] = []
    values: list[float | None] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise SeriesInputError(f"{path}: the header must be timestamp,value, got {header!r}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise SeriesInputError(f"{path}:{line}: expected timestamp,value, got {row!r}")
            timestamps.append(row[0])
            cell = row[1].strip()
            try:
                value = float(cell) if cell else None
            except ValueError:
                raise SeriesInputError(
                    f"{path}:{line}: value must be a number, got {cell!r}"
                ) from None
            values.append(None if value is None or value != value else value)
    return timestamps, values


def read_corpus(data: Path, windows_file: Path) -> list[CorpusSeries]:
    """Every series the windows file names, in its order, with its windows."""
    try:
        spec = json.loads(windows_file.read_text())
    except (OSError, ValueError) as e:
        raise SeriesInputError(f"{windows_file}: cannot read the windows file: {e}") from None
    if not isinstance(spec, dict):
        raise SeriesInputError(f"{windows_file}: expected an object of file -> windows")
    out = []
    for name, wins in spec.items():
        path = data / name
        if not path.is_file():
            raise SeriesInputError(f"{windows_file}: {name} is not a file under {data}")
        timestamps, values = read_series_csv(path)
        windows = []
        for i, w in enumerate(wins):
            if not (isinstance(w, list) and len(w) == 2):
                raise SeriesInputError(f"{windows_file}: {name} window {i} must be [start, end]")
            windows.append(
                (parse_timestamp(w[0], i, f"{name} window"), parse_timestamp(w[1], i, name))
            )
        out.append(CorpusSeries(name, timestamps, values, windows))
    return out
