"""Batch scoring on Dask: ``python -m service score --engine dask``.

The same result as :func:`service.data.batch_scoring.score_csv`, row for row and cell for cell,
from partitions scored in parallel on a Dask cluster (``distributed``; a local one unless a
scheduler is given). Imported only for ``--engine dask``: the serving worker never loads Dask.

- The driver reads only the header and the model's manifest; it never unpickles the model.
  Each worker process reads, verifies (:func:`service.models.artifact.read_verified`) and
  smoke-checks the artifact once, and refuses a file whose SHA-256 is not the one the run
  started with, so every partition is scored by the same version.
- A CSV is cut into byte ranges. A range starts at the first line start at or after its
  nominal offset and owns the records that start before its end. A line start can be inside a
  quoted cell that spans lines; so each range reports where its last record ended, and a range
  whose start is not where the previous one ended is scored again from there (rare: only a
  multi-line cell across a cut does it). Line numbers are counted per range and added up.
- A Parquet file is cut into runs of whole row groups; a bad row is reported by its row number.
- Workers write their parts into a folder beside the output; the driver joins them into one
  file written atomically (:func:`service.data.atomic.atomic_file`) and removes the folder. So
  input and output must be at the same paths on every worker (a shared filesystem).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from service.data.atomic import atomic_file
from service.data.batch_scoring import (
    _FLAG,
    _PREDICTION,
    RESULT_COLUMNS,
    BatchResult,
    Failure,
    Progress,
    _ChunkReader,
    check_columns,
)
from service.data.csvfile import CsvFile, DataError
from service.data.dataset import default_max_line_bytes, list_names, parse_number
from service.models import artifact
from service.models.artifact import ArtifactError
from service.models.loaded import Model

MAX_PARTITION_BYTES = 64 * 1024 * 1024
MIN_PARTITION_BYTES = 1024 * 1024
PARTITIONS_PER_THREAD = 4
"""Without a partition size: enough parts to keep every worker thread busy and balanced."""
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEP = "\t"  # failures files: "<line>\t<reason>", reasons never hold a tab or a line break


class DaskError(Exception):
    """The cluster cannot run the job (no scheduler, a worker lost for good, ...)."""


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the model the run started with, read from its manifest."""

    path: str
    """Absolute path: workers may run in other folders."""
    sha256: str
    version: str
    feature_names: tuple[str, ...]
    name: str = "default"
    number: int = 1

    @classmethod
    def from_manifest(cls, path: str | Path, name: str = "default", number: int = 1) -> ModelRef:
        """The model at ``path`` (an :class:`ArtifactError` as ``score`` gives for a bad one);
        nothing is unpickled here."""
        if not Path(path).is_file():  # as ``score`` says it, before any cluster starts
            raise ArtifactError(path, "model file not found")
        manifest = artifact.read_manifest(path)
        path = Path(path).absolute()
        meta = manifest["metadata"]
        names = meta.get("feature_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ArtifactError(path, "metadata has no usable kind, feature_names and n_features")
        return cls(
            str(path), manifest["sha256"], str(meta.get("version")), tuple(names), name, number
        )


_KEPT_MODELS = 4
_models: dict[tuple[str, str], Model] = {}
_models_lock = threading.Lock()


def worker_model(ref: ModelRef) -> tuple[Model, bool]:
    """The model, verified and loaded once per process; ``(model, loaded by this call)``."""
    key = (ref.path, ref.sha256)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model, False
        verified = artifact.read_verified(ref.path)
        if verified.sha256 != ref.sha256:
            raise ArtifactError(
                ref.path,
                f"the model file changed during the run: sha256 {verified.sha256},"
                f" the run started with {ref.sha256}",
            )
        art = artifact.from_verified(verified)
        model = Model(art, source=Path(ref.path), name=ref.name, number=ref.number)
        while len(_models) >= _KEPT_MODELS:  # a long-lived worker serves many runs
            _models.pop(next(iter(_models)))
        _models[key] = model
        return model, True


# --- what a task answers -----------------------------------------------------------------


@dataclass
class PartResult:
    index: int
    start: int
    """CSV: the byte where the part's first record starts; Parquet: its first row group."""
    end: int
    """CSV: the byte where the record after the part's last starts (or the file's end)."""
    lines: int = 0
    """CSV: lines read (newlines in ``[start, end)``)."""
    rows: int = 0
    scored: int = 0
    anomalies: int = 0
    failed: int = 0
    data_path: str = ""
    failures_path: str = ""
    error: str = ""
    """Why the file cannot be used (a DataError's message)."""
    model_error: tuple[str, str | None] | None = None
    """The worker refused the model: an ArtifactError's reason and detail."""
    pid: int = 0
    loaded_model: bool = False


@dataclass
class DaskResult(BatchResult):
    partitions: int = 0
    rescored: int = 0
    """CSV parts scored again because a quoted cell over lines crossed their cut."""
    worker_loads: dict[int, int] = field(default_factory=dict)
    """Model loads per worker process id (each is 1: one load per process)."""


# --- CSV parts (run on the workers) --------------------------------------------------------


class _CsvRange(CsvFile):
    """The records of a CSV file that start in ``[start, end)``; line numbers count from
    ``line_base + 1`` (the header's checks for a byte order mark never apply)."""

    def __init__(self, path: Path, limit: int, start: int, end: int, line_base: int) -> None:
        super().__init__(path, limit)
        self.start = start
        self.end = end
        self.line_base = line_base

    def __enter__(self) -> _CsvRange:
        super().__enter__()
        self._fh.seek(self.start)
        self._lines.line_no = self.line_base
        return self

    @property
    def position(self) -> int:
        return self.start + self.bytes_read

    @property
    def lines_read(self) -> int:
        return self._lines.line_no - self.line_base

    def owned(self) -> Iterator[tuple[int, list[str]]]:
        records = self.records()
        while self.position < self.end:
            item = next(records, None)
            if item is None:
                return
            yield item


class _HeaderFirst:
    """A record source for :class:`_ChunkReader`: the header, then a range's records."""

    def __init__(self, path: Path, header: list[str], records: Iterator) -> None:
        self.path = path
        self._records = chain([(1, header)], records)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        return self._records


def _line_start_at_or_after(path: Path, offset: int) -> int:
    with path.open("rb") as fh:
        fh.seek(offset - 1)
        while True:
            piece = fh.readline(1 << 20)
            if not piece or piece.endswith(b"\n"):
                return fh.tell()


@dataclass(frozen=True)
class CsvTask:
    index: int
    start: int
    exact: bool
    """``start`` is a record start; else it is a nominal offset, moved to the next line start."""
    end: int


def score_csv_part(
    task: CsvTask,
    in_path: str,
    header: list[str],
    ref: ModelRef,
    parts_dir: str,
    parquet_out: bool,
    chunk_rows: int,
    max_line_bytes: int,
) -> PartResult:
    """Score one byte range of a CSV into a part file; errors come back in the result."""
    path = Path(in_path)
    start = task.start if task.exact else _line_start_at_or_after(path, task.start)
    result = PartResult(task.index, start, start, pid=os.getpid())
    try:
        model, result.loaded_model = worker_model(ref)
    except ArtifactError as exc:
        result.model_error = (exc.reason, exc.detail)
        return result
    stem = Path(parts_dir) / f"part-{task.index:06d}-{start}"
    result.data_path = f"{stem}.{'parquet' if parquet_out else 'csv'}"
    result.failures_path = f"{stem}.failures"
    try:
        with (
            _CsvRange(path, max_line_bytes, start, task.end, 1) as source,
            _PartWriter(result.data_path, header, parquet_out) as out,
            _FailureLog(result) as log,
        ):
            chunks = _ChunkReader(
                _HeaderFirst(path, header, source.owned()), ref.feature_names, chunk_rows, log.add
            )
            while records := chunks.read():
                result.rows += len(records)
                n = len(chunks.scorable)
                scores = model.score(chunks.X[:n]) if n else None
                out.write_csv_records(records, chunks.scorable, scores)
                if scores is not None:
                    result.scored += n
                    result.anomalies += int(scores.is_anomaly.sum())
            result.end = source.position
            result.lines = source.lines_read
    except DataError as exc:
        result.error = str(exc)
    return result


class _FailureLog:
    """Failures of one part, written to its failures file as they come."""

    def __init__(self, result: PartResult) -> None:
        self.result = result
        self.path = Path(result.failures_path)

    def __enter__(self) -> _FailureLog:
        self.fh = self.path.open("w", encoding="utf-8", newline="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def add(self, line: int, reason: str) -> None:
        self.result.failed += 1
        self.fh.write(f"{line}{_SEP}{_one_line(reason)}\n")


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


class _PartWriter:
    """One part's rows, as CSV lines (no header) or as a Parquet file, renamed into place when
    complete (a retried task overwrites a dead one's part whole)."""

    def __init__(self, path: str, header: list[str], parquet: bool, schema: Any = None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.header = header
        self.parquet = parquet
        self.schema = schema

    def __enter__(self) -> _PartWriter:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self.schema is None:  # CSV input: every input cell as the text it was
                self.schema = pa.schema(
                    [pa.field(n, pa.string()) for n in self.header] + _result_fields()
                )
            self.pq_writer = pq.ParquetWriter(self.tmp, self.schema)
        else:
            self.fh = self.tmp.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.fh, lineterminator="\n")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.parquet:
            self.pq_writer.close()
        else:
            self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def write_csv_records(self, records: list[list[str]], scorable: list[int], scores) -> None:
        """A chunk of CSV records, exactly as :func:`score_csv` writes them."""
        if not self.parquet:
            cells: list[list[str]] = [["", "", ""] for _ in records]
            if scores is not None:
                flags = scores.is_anomaly.tolist()
                values = scores.anomaly_score.tolist()
                for pos, flag, value in zip(scorable, flags, values, strict=True):
                    cells[pos] = [_PREDICTION[flag], _FLAG[flag], repr(value)]
            self.writer.writerows(r + c for r, c in zip(records, cells, strict=True))
            return
        import pyarrow as pa

        columns = [pa.array(list(col), pa.string()) for col in zip(*records, strict=True)]
        if not records:
            columns = [pa.array([], pa.string()) for _ in self.header]
        results = _result_arrays(len(records), np.asarray(scorable, dtype=np.int64), scores)
        self.pq_writer.write_table(pa.Table.from_arrays(columns + results, schema=self.schema))

    def write_arrow(self, batch, rows: np.ndarray, scores) -> None:
        """A batch of a Parquet input with its results."""
        import pyarrow as pa

        results = _result_arrays(batch.num_rows, rows, scores)
        if self.parquet:
            table = pa.Table.from_arrays([*batch.columns, *results], schema=self.schema)
            self.pq_writer.write_table(table)
            return
        texts = [_texts(col) for col in batch.columns]
        pred, flag, value = (r.to_pylist() for r in results)
        for i, row in enumerate(zip(*texts, strict=True)):
            if pred[i] is None:
                self.writer.writerow([*row, "", "", ""])
            else:
                anomalous = flag[i]
                self.writer.writerow(
                    [*row, _PREDICTION[anomalous], _FLAG[anomalous], repr(value[i])]
                )


def _result_fields() -> list:
    import pyarrow as pa

    return [
        pa.field("prediction", pa.int64()),
        pa.field("is_anomaly", pa.bool_()),
        pa.field("anomaly_score", pa.float64()),
    ]


def _result_arrays(n: int, rows: np.ndarray, scores) -> list:
    """prediction, is_anomaly and anomaly_score for ``n`` rows, null where not scored."""
    import pyarrow as pa

    missing = np.ones(n, dtype=bool)
    flag = np.zeros(n, dtype=bool)
    value = np.zeros(n, dtype=np.float64)
    if scores is not None and len(rows):
        missing[rows] = False
        flag[rows] = scores.is_anomaly
        value[rows] = scores.anomaly_score
    prediction = np.where(flag, -1, 1).astype(np.int64)
    return [
        pa.array(prediction, mask=missing),
        pa.array(flag, mask=missing),
        pa.array(value, mask=missing),
    ]


def _texts(column) -> list[str]:
    """A Parquet column's cells as CSV text: empty for null, ``repr`` for floats."""
    out = []
    for v in column.to_pylist():
        if v is None:
            out.append("")
        elif isinstance(v, bool):
            out.append(_FLAG[v])
        elif isinstance(v, float):
            out.append(repr(v))
        else:
            out.append(str(v))
    return out


# --- Parquet parts (run on the workers) ----------------------------------------------------


@dataclass(frozen=True)
class ParquetTask:
    index: int
    row_groups: tuple[int, ...]
    first_row: int
    """Row number (from 1) of the task's first row."""


def score_parquet_part(
    task: ParquetTask,
    in_path: str,
    ref: ModelRef,
    parts_dir: str,
    parquet_out: bool,
    chunk_rows: int,
) -> PartResult:
    import pyarrow.parquet as pq

    first = task.row_groups[0] if task.row_groups else 0
    result = PartResult(task.index, first, first, pid=os.getpid())
    try:
        model, result.loaded_model = worker_model(ref)
    except ArtifactError as exc:
        result.model_error = (exc.reason, exc.detail)
        return result
    stem = Path(parts_dir) / f"part-{task.index:06d}"
    result.data_path = f"{stem}.{'parquet' if parquet_out else 'csv'}"
    result.failures_path = f"{stem}.failures"
    pf = pq.ParquetFile(in_path)
    schema = pf.schema_arrow
    features = _feature_columns(Path(in_path), schema, ref.feature_names)
    out_schema = schema
    for f in _result_fields():
        out_schema = out_schema.append(f)
    row = task.first_row
    with (
        _PartWriter(result.data_path, schema.names, parquet_out, out_schema) as out,
        _FailureLog(result) as log,
    ):
        for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=list(task.row_groups)):
            X, ok = _parquet_features(batch, features, ref.feature_names, row, log.add)
            rows = np.flatnonzero(ok)
            scores = model.score(np.ascontiguousarray(X[rows])) if len(rows) else None
            out.write_arrow(batch, rows, scores)
            result.rows += batch.num_rows
            if scores is not None:
                result.scored += len(rows)
                result.anomalies += int(scores.is_anomaly.sum())
            row += batch.num_rows
    return result


def _feature_columns(path: Path, schema, names: tuple[str, ...]) -> list[int]:
    """Indices of the model's features in a Parquet schema; DataError if they cannot be used."""
    import pyarrow as pa

    stripped = [n.strip() for n in schema.names]
    check_columns(path, stripped, names, "columns")
    indices = [stripped.index(n) for n in names]
    for i in indices:
        t = schema.field(i).type
        usable = (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
        )
        if not usable:
            raise DataError(
                f"{path}: feature column {schema.names[i]!r} is of type {t};"
                " features must be numbers (or text holding numbers)"
            )
    return indices


def _parquet_features(
    batch, columns: list[int], names: tuple[str, ...], first_row: int, fail
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's feature matrix and which rows can be scored; each other row is reported to
    ``fail`` with its first bad feature, in the words CSV cells get."""
    import pyarrow as pa

    n = batch.num_rows
    X = np.empty((n, len(columns)), dtype=np.float64)
    reasons: list[str | None] = [None] * n
    for j, (i, name) in enumerate(zip(columns, names, strict=True)):
        col = batch.column(i)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            for r, cell in enumerate(col.to_pylist()):
                try:
                    X[r, j] = parse_number("" if cell is None else cell)
                except ValueError as exc:
                    if reasons[r] is None:
                        reasons[r] = f"column {name!r}: {exc}"
            continue
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        X[:, j] = values
        null = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        bad = null | ~np.isfinite(values)
        for r in np.flatnonzero(bad).tolist():
            if reasons[r] is None:
                why = (
                    "missing value"
                    if null[r]
                    else "NaN is not allowed"
                    if math.isnan(values[r])
                    else "infinity is not allowed"
                )
                reasons[r] = f"column {name!r}: {why}"
    ok = np.ones(n, dtype=bool)
    for r, reason in enumerate(reasons):
        if reason is not None:
            ok[r] = False
            fail(first_row + r, reason)
    return X, ok


# --- the driver ----------------------------------------------------------------------------


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    single-threaded processes (default: one per core the process may use, at most 4)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DaskError(
            "--engine dask needs dask and distributed (pip install -r requirements.txt)"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise DaskError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    import dask

    n = workers or min(len(os.sched_getaffinity(0)), 4)
    # Dask has its workers' malloc give memory back at every 64 KiB freed: parsing CSV cells
    # then costs ~5x the system time, and a local worker scores at ~60% of a plain process.
    untrimmed = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with (
        dask.config.set(untrimmed),
        tempfile.TemporaryDirectory(prefix="vigil-dask-") as scratch,
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=scratch,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def score_file(
    in_path: str | Path,
    out_path: str | Path,
    ref: ModelRef,
    client: Any,
    *,
    chunk_rows: int = 10_000,
    partition_bytes: int | None = None,
    on_error: Callable[[Failure], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    max_line_bytes: int | None = None,
) -> DaskResult:
    """Score ``in_path`` (CSV, or Parquet by its suffix) into ``out_path`` (Parquet by its
    suffix, else CSV) on the cluster of ``client``; see the module's docstring.

    Raises :class:`DataError` (the file cannot be used, with the message ``score`` gives),
    :class:`ArtifactError` (a worker refused the model), :class:`DaskError`; the output is
    then not written. ``on_error`` gets each failure in file order (Parquet: row numbers).
    """
    if chunk_rows < 1 or (partition_bytes is not None and partition_bytes < 1):
        raise ValueError("chunk_rows and partition_bytes must be at least 1")
    in_path, out_path = Path(in_path).absolute(), Path(out_path).absolute()
    limit = default_max_line_bytes() if max_line_bytes is None else max_line_bytes
    if not in_path.is_file():
        raise DataError(f"data file not found: {in_path}")
    if out_path.exists() and out_path.resolve() == in_path.resolve():
        raise DataError(f"{out_path} is the input file; write the output somewhere else")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.parts.", dir=out_path.parent))
    try:
        job = _Job(in_path, out_path, ref, client, parts_dir, chunk_rows, limit)
        job.on_error, job.on_progress = on_error, on_progress
        if partition_bytes is None:
            partition_bytes = auto_partition_bytes(job.total_bytes, client)
        if is_parquet(in_path):
            job.run_parquet(partition_bytes)
        else:
            job.run_csv(partition_bytes)
        return job.result
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def auto_partition_bytes(total_bytes: int, client: Any) -> int:
    """``PARTITIONS_PER_THREAD`` parts per worker thread, each 1 to 64 MiB."""
    threads = max(1, sum(client.nthreads().values()))
    share = math.ceil(total_bytes / (threads * PARTITIONS_PER_THREAD))
    return min(MAX_PARTITION_BYTES, max(MIN_PARTITION_BYTES, share))


class _Job:
    def __init__(
        self,
        in_path: Path,
        out_path: Path,
        ref: ModelRef,
        client: Any,
        parts_dir: Path,
        chunk_rows: int,
        limit: int,
    ) -> None:
        self.in_path, self.out_path, self.ref, self.client = in_path, out_path, ref, client
        self.parts_dir, self.chunk_rows, self.limit = parts_dir, chunk_rows, limit
        self.parquet_out = is_parquet(out_path)
        self.on_error: Callable[[Failure], None] | None = None
        self.on_progress: Callable[[Progress], None] | None = None
        self.result = DaskResult()
        self.start = time.perf_counter()
        self.total_bytes = in_path.stat().st_size

    # CSV --------------------------------------------------------------------------------

    def run_csv(self, partition_bytes: int) -> None:
        with CsvFile(self.in_path, self.limit) as source:
            reader = _ChunkReader(source, self.ref.feature_names, 1, lambda *_: None)
            header, data_start = reader.header, source.bytes_read
        names = [h.strip() for h in header]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if self.parquet_out and dupes:  # Parquet readers refuse to pick one of them
            raise DataError(
                f"{self.in_path}: columns {list_names(dupes)} appear more than once; rename"
                " them for Parquet output, or write CSV"
            )
        with self.in_path.open("rb") as fh:
            header_lines = fh.read(data_start).count(b"\n")
        total = self.total_bytes
        n = max(0, math.ceil((total - data_start) / partition_bytes))
        cuts = [data_start + k * partition_bytes for k in range(n)] + [total]
        tasks = [CsvTask(k, cuts[k], k == 0, cuts[k + 1]) for k in range(n)]

        def submit(task: CsvTask):
            return self.client.submit(
                score_csv_part, task, str(self.in_path), header, self.ref,
                str(self.parts_dir), self.parquet_out, self.chunk_rows, self.limit, pure=False,
            )  # fmt: skip

        futures = [submit(t) for t in tasks]
        expected, lines_before = data_start, header_lines
        parts: list[PartResult] = []
        try:
            for task, future in zip(tasks, futures, strict=True):
                part = self._gather(future)
                if part.start != expected and part.model_error is None:
                    self.result.rescored += 1
                    exact = CsvTask(task.index, expected, True, task.end)
                    part = self._gather(submit(exact))
                if part.error:
                    raise DataError(self._csv_error_at(header, expected, lines_before))
                self._check(part)
                self._report(part, lines_before - 1)
                parts.append(part)
                expected, lines_before = part.end, lines_before + part.lines
                self._progress(expected)
        finally:
            self.client.cancel(futures)
        self._join(header, parts)

    def _csv_error_at(self, header: list[str], start: int, lines_before: int) -> str:
        """The error a part met, read again here with its true line numbers."""
        with _CsvRange(self.in_path, self.limit, start, self.total_bytes, lines_before) as src:
            reader = _ChunkReader(
                _HeaderFirst(self.in_path, header, src.owned()),
                self.ref.feature_names,
                self.chunk_rows,
                lambda *_: None,
            )
            try:
                while reader.read():
                    pass
            except DataError as exc:
                return str(exc)
        return f"{self.in_path}: could not be read on a worker"  # not seen again here

    # Parquet ----------------------------------------------------------------------------

    def run_parquet(self, partition_bytes: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.in_path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.in_path} cannot be read as Parquet: {exc}") from None
        schema = pf.schema_arrow
        _feature_columns(self.in_path, schema, self.ref.feature_names)
        meta = pf.metadata
        tasks: list[ParquetTask] = []
        group: list[int] = []
        size, first_row, row = 0, 1, 1
        for g in range(meta.num_row_groups):
            group.append(g)
            size += meta.row_group(g).total_byte_size
            row += meta.row_group(g).num_rows
            if size >= partition_bytes or g == meta.num_row_groups - 1:
                tasks.append(ParquetTask(len(tasks), tuple(group), first_row))
                group, size, first_row = [], 0, row
        futures = [
            self.client.submit(
                score_parquet_part,
                t,
                str(self.in_path),
                self.ref,
                str(self.parts_dir),
                self.parquet_out,
                self.chunk_rows,
                pure=False,
            )
            for t in tasks
        ]
        parts = []
        try:
            for future in futures:
                part = self._gather(future)
                self._check(part)
                self._report(part, 0)
                parts.append(part)
                self._progress(self.total_bytes * len(parts) // max(len(tasks), 1))
        finally:
            self.client.cancel(futures)
        self._join(schema.names, parts, schema)

    # both -------------------------------------------------------------------------------

    def _gather(self, future) -> PartResult:
        try:
            return future.result()
        except DataError:
            raise
        except Exception as exc:  # a worker lost for good, a task that could not run, ...
            raise DaskError(f"the Dask job failed: {type(exc).__name__}: {exc}") from None

    def _check(self, part: PartResult) -> None:
        if part.model_error is not None:
            raise ArtifactError(self.ref.path, *part.model_error)
        if part.error:
            raise DataError(part.error)

    def _report(self, part: PartResult, line_offset: int) -> None:
        r = self.result
        r.partitions += 1
        r.rows += part.rows
        r.scored += part.scored
        r.anomalies += part.anomalies
        r.failed += part.failed
        if part.loaded_model:
            r.worker_loads[part.pid] = r.worker_loads.get(part.pid, 0) + 1
        if not part.failed:
            return
        with open(part.failures_path, encoding="utf-8") as fh:
            for text in fh:
                line, reason = text.rstrip("\n").split(_SEP, 1)
                failure = Failure(int(line) + line_offset, reason)
                if len(r.failures) < 1000:
                    r.failures.append(failure)
                if self.on_error is not None:
                    self.on_error(failure)

    def _progress(self, bytes_done: int) -> None:
        if self.on_progress is not None:
            elapsed = time.perf_counter() - self.start
            r = self.result
            self.on_progress(Progress(r.rows, r.failed, bytes_done, self.total_bytes, elapsed))

    def _join(self, header: list[str], parts: list[PartResult], schema: Any = None) -> None:
        """The parts, in order, into the output; atomically."""
        if self.parquet_out:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if schema is None:
                schema = pa.schema([pa.field(n, pa.string()) for n in header])
            for f in _result_fields():
                schema = schema.append(f)
            with atomic_file(self.out_path) as fh, pq.ParquetWriter(fh, schema) as writer:
                for part in parts:
                    pf = pq.ParquetFile(part.data_path)
                    for g in range(pf.num_row_groups):
                        writer.write_table(pf.read_row_group(g))
        else:
            with atomic_file(self.out_path, text=True) as out:
                csv.writer(out, lineterminator="\n").writerow([*header, *RESULT_COLUMNS])
                out.flush()
                for part in parts:
                    with open(part.data_path, encoding="utf-8", newline="") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        self.result.elapsed_s = time.perf_counter() - self.start
