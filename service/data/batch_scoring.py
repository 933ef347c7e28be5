"""Scoring a CSV file of any size in chunks, with constant memory.

The output is the input, row for row and cell for cell, with three columns added:
``prediction`` (-1 anomaly, 1 normal, as scikit-learn's ``predict``), ``is_anomaly``
(``true``/``false``, as the API answers) and ``anomaly_score`` (s(x), full precision). The
model's features are found in the header by name; every other column is carried through.

A row that cannot be scored (a missing, non-numeric, NaN or infinite feature, or the wrong
number of cells) is kept in the output with its result cells empty, and reported through
``on_error`` with its line number. Blank lines are skipped. A file that cannot be read as a
whole (not UTF-8, NUL bytes, a line over the limit, malformed quoting) is an error, read with
bounded memory (:mod:`service.data.csvfile`). The output is written to a
temporary file beside ``out`` and renamed at the end, so an interrupted run leaves no
half-written output.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.data.atomic import atomic_file
from service.data.csvfile import CsvFile, DataError, is_blank
from service.data.dataset import default_max_line_bytes, list_names, parse_number
from service.models.loaded import Model

RESULT_COLUMNS = ("prediction", "is_anomaly", "anomaly_score")
DEFAULT_CHUNK_ROWS = 10_000
MAX_KEPT_FAILURES = 1000
_PREDICTION = {True: "-1", False: "1"}
_FLAG = {True: "true", False: "false"}


@dataclass(frozen=True)
class Failure:
    line: int
    """Line number in the input file (the header is line 1)."""
    reason: str


@dataclass(frozen=True)
class Progress:
    rows: int
    """Data rows read so far (scored or not)."""
    failed: int
    bytes_read: int
    total_bytes: int
    elapsed_s: float


@dataclass
class BatchResult:
    rows: int = 0
    scored: int = 0
    anomalies: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    """The first ``MAX_KEPT_FAILURES`` failures (all of them went to ``on_error``)."""
    elapsed_s: float = 0.0


def check_columns(path: Path, columns: list[str], names: tuple[str, ...], what: str) -> None:
    """DataError unless ``columns`` (stripped; a CSV header, a Parquet schema's names) hold
    each of the model's features ``names`` once and none of the result columns."""
    missing = [n for n in names if n not in columns]
    if missing:
        raise DataError(
            f"{path} lacks the model's features {list_names(missing)}"
            f" ({what}: {list_names(columns)})"
        )
    clash = [c for c in RESULT_COLUMNS if c in columns]
    if clash:
        raise DataError(f"{path} already has the result columns {clash}; rename or drop them")
    dupes = sorted({n for n in names if columns.count(n) > 1})
    if dupes:
        raise DataError(f"{path}: feature columns {list_names(dupes)} appear more than once")


def score_csv(
    in_path: str | Path,
    out_path: str | Path,
    model: Model,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_error: Callable[[Failure], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    max_line_bytes: int | None = None,
) -> BatchResult:
    """Score every row of ``in_path`` into ``out_path``; see the module's docstring.

    Memory holds one chunk of ``chunk_rows`` rows at a time. ``on_progress`` is called after
    each chunk; ``on_error`` once for each row that cannot be scored. Raises
    :class:`DataError` when the file as a whole cannot be used (no header, missing features,
    result columns already present, not UTF-8, NUL bytes, a line over ``max_line_bytes``
    (default ``VIGIL_MAX_CSV_LINE_BYTES``), malformed CSV); the output is then not written.
    Cells are numbers by the rules of :func:`service.data.dataset.parse_number`.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    in_path, out_path = Path(in_path), Path(out_path)
    if max_line_bytes is None:
        max_line_bytes = default_max_line_bytes()
    if not in_path.is_file():
        raise DataError(f"data file not found: {in_path}")
    if out_path.exists() and out_path.resolve() == in_path.resolve():
        raise DataError(f"{out_path} is the input file; write the output somewhere else")
    total_bytes = in_path.stat().st_size
    result = BatchResult()
    start = time.perf_counter()

    def fail(line: int, reason: str) -> None:
        failure = Failure(line, reason)
        result.failed += 1
        if len(result.failures) < MAX_KEPT_FAILURES:
            result.failures.append(failure)
        if on_error is not None:
            on_error(failure)

    with CsvFile(in_path, max_line_bytes) as source:
        chunks = _ChunkReader(source, model.feature_names, chunk_rows, fail)
        with atomic_file(out_path, text=True) as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow([*chunks.header, *RESULT_COLUMNS])
            while records := chunks.read():
                result.rows += len(records)
                cells: list[list[str]] = [["", "", ""] for _ in records]
                if chunks.scorable:
                    scores = model.score(chunks.X[: len(chunks.scorable)])
                    flags = scores.is_anomaly.tolist()
                    values = scores.anomaly_score.tolist()
                    for pos, flag, value in zip(chunks.scorable, flags, values, strict=True):
                        cells[pos] = [_PREDICTION[flag], _FLAG[flag], repr(value)]
                    result.scored += len(flags)
                    result.anomalies += sum(flags)
                for record, extra in zip(records, cells, strict=True):
                    writer.writerow(record + extra)
                if on_progress is not None:
                    elapsed = time.perf_counter() - start
                    on_progress(
                        Progress(
                            result.rows, result.failed, source.bytes_read, total_bytes, elapsed
                        )
                    )
    result.elapsed_s = time.perf_counter() - start
    return result


class _ChunkReader:
    """Reads a CSV's header, then its rows a chunk at a time into one reused matrix."""

    def __init__(
        self,
        source: CsvFile,
        names: tuple[str, ...],
        chunk_rows: int,
        fail: Callable[[int, str], None],
    ) -> None:
        self.records = source.records()
        self.path = source.path
        self.names = names
        self.chunk_rows = chunk_rows
        self.fail = fail
        self.header = self._read_header()
        stripped = [h.strip() for h in self.header]
        self.indices = [stripped.index(n) for n in names]
        self.X = np.empty((chunk_rows, len(names)), dtype=np.float64)
        self.scorable: list[int] = []
        """Positions, in the last chunk, of the rows now in ``X[: len(scorable)]``."""
        self._done = False

    def _read_header(self) -> list[str]:
        path, names = self.path, self.names
        first = next(self.records, None)
        if first is None or is_blank(first[1], 0):
            raise DataError(f"{path} is empty: expected a header row of column names")
        header = first[1]
        check_columns(path, [h.strip() for h in header], names, "header")
        return header

    def read(self) -> list[list[str]]:
        """The next chunk's records, each padded to the header's width (empty at the end).

        Rows that cannot be scored are reported to ``fail`` and left out of ``X``.
        """
        records: list[list[str]] = []
        self.scorable = []
        if self._done:
            return records
        width = len(self.header)
        for line_no, record in self.records:
            if is_blank(record, width):
                continue  # a blank line: not a row
            if len(record) != width:
                self.fail(line_no, f"{len(record):,} cells, header has {width}")
                record += [""] * (width - len(record))
            else:
                try:
                    self.X[len(self.scorable)] = self._parse(record)
                except ValueError as exc:
                    self.fail(line_no, str(exc))
                else:
                    self.scorable.append(len(records))
            records.append(record)
            if len(records) == self.chunk_rows:
                return records
        self._done = True
        return records

    def _parse(self, record: list[str]) -> list[float]:
        values = []
        for i, name in zip(self.indices, self.names, strict=True):
            try:
                values.append(parse_number(record[i]))
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from None
        return values


class ProgressBar:
    """A one-line text progress bar on a stream (``\\r`` redraws; no dependency)."""

    def __init__(self, stream, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self._shown = False

    def update(self, p: Progress) -> None:
        share = p.bytes_read / p.total_bytes if p.total_bytes else 1.0
        filled = round(self.width * share)
        rate = p.rows / p.elapsed_s if p.elapsed_s > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        failed = f", {p.failed:,} failed" if p.failed else ""
        self.stream.write(
            f"\r{self.label} [{bar}] {share:4.0%}  {p.rows:,} rows{failed}  {rate:,.0f} rows/s"
        )
        self.stream.flush()
        self._shown = True

    def clear_line(self) -> None:
        """End the bar's line so that a message can be printed below it."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
