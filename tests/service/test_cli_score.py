"""`python -m service score`: chunked scoring of a CSV, bad rows kept and reported."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from service.cli.main import main
from service.data import batch_scoring
from service.data.dataset import load_csv
from service.models import artifact
from service.models.loaded import Model
from tests.support import REPO

N_ROWS = 350
CHUNK = 100
BAD = {  # data row number (from 0) -> what is wrong with it
    7: ("sd", "abc"),
    150: ("mean", ""),
    151: ("sd", "nan"),
    260: ("mean", "inf"),
}


@pytest.fixture(scope="module")
def model(model_path) -> Model:
    return Model(artifact.load(model_path), source=model_path)


@pytest.fixture
def big_csv(tmp_path, data_dir):
    """More than three chunks, the features out of the model's order between other columns,
    and four rows that cannot be scored."""
    test = load_csv(data_dir / "test.csv", label_column="label")
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "sd", "note", "mean", "label"])
        for i in range(N_ROWS):
            mean, sd = test.X[i % test.n_rows]
            cells = {"mean": f"{mean:.6f}", "sd": f"{sd:.6f}"}
            if i in BAD:
                column, value = BAD[i]
                cells[column] = value
            w.writerow([f"r{i}", cells["sd"], "a, quoted note", cells["mean"], i % 2])
        w.writerow([])  # a blank line at the end is not a row
    return path


def read(path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_score_a_file_larger_than_a_chunk_with_bad_rows(
    big_csv, tmp_path, model_path, reference, capsys
):
    out = tmp_path / "out.csv"
    code = main(
        ["score", str(big_csv), "--out", str(out), "--model", str(model_path),
         "--chunk-rows", str(CHUNK), "--no-progress"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1  # some rows could not be scored; the output is still complete

    header, rows = read(out)
    assert header == ["id", "sd", "note", "mean", "label", "prediction", "is_anomaly",
                      "anomaly_score"]  # fmt: skip
    assert len(rows) == N_ROWS  # nothing dropped
    _, original = read(big_csv)
    assert [r[:5] for r in rows] == [r for r in original if r]  # input cells unchanged

    # Each bad row: reported by its line number (header = line 1), empty result cells.
    for i in BAD:
        assert rows[i][5:] == ["", "", ""]
        assert f"line {i + 2}: not scored" in captured.err
    assert "column 'sd': 'abc' is not numeric" in captured.err
    assert "column 'mean': missing value" in captured.err
    assert captured.err.count("not scored") == len(BAD)
    assert f"warning: {len(BAD)} rows could not be scored" in captured.err
    assert f"scored {N_ROWS - len(BAD)} of {N_ROWS} rows" in captured.out

    # Every other row: exactly scikit-learn's answer, whatever the column order.
    est = reference
    good = [r for i, r in enumerate(rows) if i not in BAD]
    X = np.array([[float(r[3]), float(r[1])] for r in good])  # (mean, sd): the model's order
    assert [int(r[5]) for r in good] == est.predict(X).tolist()
    assert [r[6] == "true" for r in good] == (est.predict(X) == -1).tolist()
    assert [float(r[7]) for r in good] == (-est.score_samples(X)).tolist()


def test_memory_holds_one_chunk_at_a_time(big_csv, tmp_path, model):
    """The model never sees more than a chunk: memory does not grow with the file."""
    seen = []

    class Spy:
        feature_names = model.feature_names

        def score(self, X):
            seen.append(X.shape[0])
            return model.score(X)

    progress = []
    result = batch_scoring.score_csv(
        big_csv, tmp_path / "out.csv", Spy(), chunk_rows=CHUNK, on_progress=progress.append
    )
    assert max(seen) <= CHUNK and sum(seen) == N_ROWS - len(BAD)
    assert len(seen) == 4  # 350 rows in chunks of 100
    assert (result.rows, result.scored, result.failed) == (N_ROWS, N_ROWS - len(BAD), len(BAD))
    assert [f.line for f in result.failures] == [i + 2 for i in sorted(BAD)]
    assert [p.rows for p in progress] == [100, 200, 300, 350]
    assert progress[-1].bytes_read == progress[-1].total_bytes == big_csv.stat().st_size


def test_rows_with_the_wrong_number_of_cells_are_kept_and_reported(tmp_path, model):
    src = tmp_path / "in.csv"
    src.write_text("mean,sd\n0.0,0.1\n0.2\n0.0,0.1,9\n0.5,0.5\n")
    failures = []
    result = batch_scoring.score_csv(src, tmp_path / "out.csv", model, on_error=failures.append)
    assert [(f.line, f.reason) for f in failures] == [
        (3, "1 cells, header has 2"),
        (4, "3 cells, header has 2"),
    ]
    _, rows = read(tmp_path / "out.csv")
    assert rows[1] == ["0.2", "", "", "", ""]  # padded to the header, results empty
    assert rows[2][:3] == ["0.0", "0.1", "9"]
    assert rows[3][:3] == ["0.5", "0.5", "-1"]
    assert result.scored == 2 and result.anomalies == 1


def test_a_clean_file_exits_0_and_shows_a_progress_bar(tmp_path, data_dir, model_path):
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "service", "score", str(data_dir / "test.csv"), "--out", str(out),
         "--model", str(model_path), "--chunk-rows", "200", "--progress"],
        cwd=REPO, capture_output=True, timeout=60,
    )  # fmt: skip
    err = proc.stderr.decode()  # bytes: text mode would turn the bar's \r into \n
    assert proc.returncode == 0, err
    assert err.startswith("\rscoring test.csv [") and err.count("\r") == 3  # 3 chunks
    assert "] 100%  500 rows" in err
    header, rows = read(out)
    assert header == ["mean", "sd", "label", "prediction", "is_anomaly", "anomaly_score"]
    assert len(rows) == 500 and all(r[3] in ("1", "-1") for r in rows)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("mean,x\n0,1\n", "lacks the model's features ['sd']"),
        ("mean,sd,prediction\n0,1,1\n", "already has the result columns ['prediction']"),
        ("", "is empty"),
    ],
)
def test_unusable_files_exit_2_and_write_nothing(tmp_path, model_path, capsys, content, message):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(content)
    code = main(["score", str(src), "--out", str(out), "--model", str(model_path)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary file left behind


def test_the_input_is_never_overwritten(tmp_path, data_dir, model_path, capsys):
    src = tmp_path / "in.csv"
    src.write_bytes((data_dir / "test.csv").read_bytes())
    assert main(["score", str(src), "--out", str(src), "--model", str(model_path)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert src.read_bytes() == (data_dir / "test.csv").read_bytes()


def test_a_missing_model_exits_2(tmp_path, data_dir, capsys):
    code = main(["score", str(data_dir / "test.csv"), "--out", str(tmp_path / "o.csv"),
                 "--model", str(tmp_path / "none.joblib")])  # fmt: skip
    assert code == 2
    assert "model file not found" in capsys.readouterr().err
