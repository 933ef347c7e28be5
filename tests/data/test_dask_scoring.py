"""`python -m service score --engine dask`: on a real `dask scheduler` with two `dask worker`
processes (and on a local cluster), the same output as the single-process `score`."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.data import dask_scoring
from service.data.csvfile import DataError
from service.models.artifact import ArtifactError
from tests.support import REPO, free_port

pytestmark = pytest.mark.slow

N_ROWS = 3000
BAD_ROWS = sum(1 for i in range(N_ROWS) if i % 101 in (7, 30, 55, 80))
PARTITION = "16K"  # a dozen partitions of the test files
DASK = Path(sys.executable).with_name("dask")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # scheduler and workers unpickle service's tasks


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> str:
    """The address of a real scheduler with two single-threaded worker processes, each in a
    folder of its own (not the repository: paths must not depend on the folder)."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    procs = []

    def start(name: str, *args: str) -> None:
        (root / name).mkdir()
        log = (root / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [str(DASK), *args], cwd=root / name, env=ENV, stdout=log, stderr=subprocess.STDOUT
            )
        )

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port",
              address.rsplit(":", 1)[1], "--no-dashboard")  # fmt: skip
        for name in ("worker-1", "worker-2"):
            start(name, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                  "--no-nanny", "--no-dashboard", "--local-directory", str(root))  # fmt: skip
        with Client(address, timeout="60s") as client:  # polls the scheduler until it answers
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _write_csv(path: Path, rows: list[list[str]], header: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def tricky_csv(tmp_path_factory, data_dir) -> Path:
    """Thousands of rows: notes with quoted line breaks (whose inner lines look like rows) on
    every third row, blank lines, and rows that cannot be scored for each reason."""
    test = list(csv.reader((data_dir / "test.csv").open()))[1:]
    rows = []
    for i in range(N_ROWS):
        mean, sd, label = test[i % len(test)]
        note = f'say "{i}",\n{"0.1,0.2," * 6}\n0.3,0.4' if i % 3 == 0 else f"note {i}"
        cells = [str(i), sd, note, mean, label]
        if i % 101 == 7:
            cells[1] = "abc"
        elif i % 101 == 30:
            cells[3] = ""
        elif i % 101 == 55:
            cells[3] = "1_01"
        elif i % 101 == 80:
            cells = cells[:2]  # too few cells
        rows.append(cells)
        if i % 400 == 0:
            rows.append([])  # a blank line is not a row
    path = tmp_path_factory.mktemp("in") / "in.csv"
    _write_csv(path, rows, ["id", "sd", "note", "mean", "label"])
    return path


def _score(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "score", "--no-progress", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _not_scored(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": not scored: " in line]


@pytest.fixture(scope="module")
def single(tricky_csv, model_path) -> tuple[Path, list[str]]:
    """Today's single-process output of the tricky CSV and the rows it reported."""
    out = tricky_csv.with_name("single.csv")
    done = _score(str(tricky_csv), "--out", str(out), "--model", str(model_path))
    assert done.returncode == 1, done.stderr
    return out, _not_scored(done.stderr)


def test_csv_on_a_scheduler_with_two_workers_is_the_single_process_output(
    scheduler, tricky_csv, single, model_path, tmp_path
):
    out = tmp_path / "dask.csv"
    done = _score(str(tricky_csv), "--out", str(out), "--model", str(model_path),
                  "--engine", "dask", "--scheduler", scheduler,
                  "--partition-size", PARTITION, "--chunk-rows", "100")  # fmt: skip
    assert done.returncode == 1, done.stderr  # some rows cannot be scored; OUT is complete
    single_out, single_reported = single
    assert out.read_bytes() == single_out.read_bytes()
    assert _not_scored(done.stderr) == single_reported  # the same lines, in file order
    assert len(single_reported) == BAD_ROWS  # every one reported
    assert "partitions on Dask" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["dask.csv"]  # no parts left behind


def test_each_worker_verifies_the_model_once_and_cut_quoted_cells_are_rescored(
    scheduler, tricky_csv, single, model_path, tmp_path
):
    from distributed import Client

    model = tmp_path / "copy" / "model.joblib"  # a path no worker has loaded yet
    model.parent.mkdir()
    for src in (model_path, model_path.with_name(model_path.name + ".json")):
        shutil.copy(src, model.parent / src.name)
    ref = dask_scoring.ModelRef.from_manifest(model)
    out = tmp_path / "out.csv"
    with Client(scheduler) as client:
        result = dask_scoring.score_file(
            tricky_csv, out, ref, client, partition_bytes=16 * 1024, chunk_rows=100
        )
    assert out.read_bytes() == single[0].read_bytes()
    assert result.partitions >= 8
    assert result.rescored >= 1  # a cut fell inside a quoted cell over lines
    assert sorted(result.worker_loads.values()) in ([1], [1, 1])  # once per worker process
    assert (result.rows, result.failed) == (N_ROWS, BAD_ROWS)


@pytest.fixture(scope="module")
def parquet_pair(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """The same rows as Parquet (typed: ints, floats with null, NaN and infinity, and a text
    feature column) and as the CSV that says the same, cell for cell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    test = list(csv.reader((data_dir / "test.csv").open()))[1:]
    ids, means, sds, notes = [], [], [], []
    for i in range(N_ROWS):
        mean, sd, _ = test[i % len(test)]
        m: float | None = float(mean)
        if i % 97 == 3:
            m = None
        elif i % 97 == 40:
            m = float("nan")
        elif i % 97 == 70:
            m = float("inf")
        ids.append(i)
        means.append(m)
        sds.append("n/a" if i % 89 == 11 else sd)
        notes.append(f"note, {i}")
    table = pa.table({"id": ids, "mean": means, "note": notes, "sd": sds})
    folder = tmp_path_factory.mktemp("parquet")
    pq.write_table(table, folder / "in.parquet", row_group_size=250)
    text = [
        [str(i), "" if m is None else repr(m), n, s]
        for i, m, n, s in zip(ids, means, notes, sds, strict=True)
    ]
    _write_csv(folder / "same.csv", text, ["id", "mean", "note", "sd"])
    return folder / "in.parquet", folder / "same.csv"


def test_parquet_on_a_scheduler_is_the_single_process_output(
    scheduler, parquet_pair, model_path, tmp_path
):
    import pyarrow.parquet as pq

    parquet, same_csv = parquet_pair
    single = tmp_path / "single.csv"
    reference = _score(str(same_csv), "--out", str(single), "--model", str(model_path))
    assert reference.returncode == 1
    common = ["--model", str(model_path), "--engine", "dask", "--scheduler", scheduler,
              "--partition-size", "8K"]  # fmt: skip

    as_csv = _score(str(parquet), "--out", str(tmp_path / "dask.csv"), *common)
    assert as_csv.returncode == 1, as_csv.stderr
    assert (tmp_path / "dask.csv").read_bytes() == single.read_bytes()
    # The same rows refused for the same reasons: CSV line n is Parquet row n - 1.
    reasons = [line.split(": not scored: ")[1] for line in _not_scored(reference.stderr)]
    assert [line.split(": not scored: ")[1] for line in _not_scored(as_csv.stderr)] == reasons
    assert f"{parquet}, row 4: not scored: column 'mean': missing value" in as_csv.stderr
    assert "column 'sd': 'n/a' is not numeric" in as_csv.stderr

    as_parquet = _score(str(parquet), "--out", str(tmp_path / "dask.parquet"), *common)
    assert as_parquet.returncode == 1, as_parquet.stderr
    table = pq.read_table(tmp_path / "dask.parquet")
    assert table.column_names == ["id", "mean", "note", "sd", "prediction", "is_anomaly",
                                  "anomaly_score"]  # fmt: skip
    assert table.column("id").to_pylist() == list(range(N_ROWS))  # typed, in order
    with single.open(newline="") as fh:
        expected = [row[4:] for row in list(csv.reader(fh))[1:]]
    got = [
        ["", "", ""] if p is None else [str(p), "true" if a else "false", repr(s)]
        for p, a, s in zip(
            table.column("prediction").to_pylist(),
            table.column("is_anomaly").to_pylist(),
            table.column("anomaly_score").to_pylist(),
            strict=True,
        )
    ]
    assert got == expected


def test_a_local_cluster_gives_the_same_output(tricky_csv, single, model_path, tmp_path):
    out = tmp_path / "local.csv"
    done = _score(str(tricky_csv), "--out", str(out), "--model", str(model_path),
                  "--engine", "dask", "--workers", "2", "--partition-size", PARTITION,
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert out.read_bytes() == single[0].read_bytes()
    assert _not_scored(done.stderr) == single[1]


def test_a_tampered_artifact_is_refused_on_the_workers(scheduler, tricky_csv, model_path, tmp_path):
    model = tmp_path / "model.joblib"
    shutil.copy(model_path.with_name(model_path.name + ".json"), tmp_path)
    data = bytearray(model_path.read_bytes())
    data[-20] ^= 0xFF  # same size, another hash; the manifest the driver reads is intact
    model.write_bytes(bytes(data))
    out = tmp_path / "out.csv"
    done = _score(str(tricky_csv), "--out", str(out), "--model", str(model),
                  "--engine", "dask", "--scheduler", scheduler)  # fmt: skip
    assert done.returncode == 2
    assert "model file does not match its manifest: sha256" in done.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.joblib", "model.joblib.json"]


def test_a_model_replaced_during_the_run_is_refused_on_the_workers(
    scheduler, tricky_csv, model_path, tmp_path
):
    from distributed import Client

    from service.training.trainer import TrainingParams, train_from_csv

    model = tmp_path / "model.joblib"
    for src in (model_path, model_path.with_name(model_path.name + ".json")):
        shutil.copy(src, tmp_path / src.name)
    ref = dask_scoring.ModelRef.from_manifest(model)  # the run starts with this version
    other = TrainingParams(n_estimators=20)
    with Client(scheduler) as client:
        train_data = tmp_path / "train.csv"
        _write_csv(train_data, [[str(i / 7), str(i % 5)] for i in range(50)], ["mean", "sd"])
        train_from_csv(train_data, model, other)  # a valid, different model in its place
        with pytest.raises(ArtifactError, match="changed during the run"):
            dask_scoring.score_file(tricky_csv, tmp_path / "out.csv", ref, client)
    assert not (tmp_path / "out.csv").exists()


def test_a_file_error_late_in_the_file_is_the_single_process_error_and_keeps_old_output(
    scheduler, tricky_csv, model_path, tmp_path
):
    broken = tmp_path / "broken.csv"
    text = tricky_csv.read_bytes()
    cut = text.index(b"\n2900,")  # a NUL byte in the last partitions' data
    broken.write_bytes(text[:cut] + b"\n2900,0.1,\0,0.2,0" + text[cut:])
    old = b"the previous output\n"
    single_out, dask_out = tmp_path / "single.csv", tmp_path / "dask.csv"
    single_out.write_bytes(old)
    dask_out.write_bytes(old)
    reference = _score(str(broken), "--out", str(single_out), "--model", str(model_path))
    done = _score(str(broken), "--out", str(dask_out), "--model", str(model_path),
                  "--engine", "dask", "--scheduler", scheduler,
                  "--partition-size", PARTITION)  # fmt: skip
    assert reference.returncode == done.returncode == 2
    error = reference.stderr.splitlines()[-1]
    assert "a NUL byte" in error and ", line " in error
    assert done.stderr.splitlines()[-1] == error  # the same line number, counted over parts
    assert dask_out.read_bytes() == old  # the old output stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "dask.csv", "single.csv"]


def test_dask_flags_need_the_dask_engine(tricky_csv, tmp_path):
    from service.cli.main import main

    assert main(["score", str(tricky_csv), "--out", str(tmp_path / "o.csv"),
                 "--scheduler", "tcp://127.0.0.1:1"]) == 2  # fmt: skip
    assert main(["score", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o.csv")]) == 2
    assert not (tmp_path / "o.csv").exists()


def test_parquet_output_refuses_repeated_column_names_before_any_work(model_path, tmp_path):
    """Parquet readers cannot read a file with two columns of one name: refused up front."""
    data = tmp_path / "in.csv"
    data.write_text("a,mean,a,sd\n1,0.1,x,0.1\n")
    ref = dask_scoring.ModelRef.from_manifest(model_path)
    with pytest.raises(DataError, match=r"columns \['a'\] appear more than once"):
        dask_scoring.score_file(
            data, tmp_path / "out.parquet", ref, client=None, partition_bytes=1 << 20
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
