"""The train, score and evaluate commands on hostile or broken CSV files (issue 9, defect 8).

Each runs the real CLI in a subprocess and requires exit status 2 and exactly one line on
stderr that names the file (and the line and column or byte where there is one), no
traceback, and nothing written. Files are generated here; the big ones are sparse (a hole
reads as NUL bytes) or scaled down through ``VIGIL_MAX_CSV_LINE_BYTES``.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from service.models import artifact
from service.training.trainer import TrainingParams, train_from_csv
from tests.support import REPO

ROWS = [f"{i / 10},{(i % 7) / 10}\n" for i in range(12)]
GOOD_ROWS = "".join(ROWS)  # lines 2-13 after a header
MB = 1024 * 1024


def cli(*args: str, env: dict[str, str] | None = None, preexec_fn=None):
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec_fn,
    )


def assert_refused(proc: subprocess.CompletedProcess, path: Path | None, *fragments: str) -> str:
    """Exit 2 and one line on stderr naming ``path`` with each fragment; returns the line."""
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, lines[:5]
    line = lines[0]
    assert line.startswith("error: "), line
    assert path is None or str(path) in line, line
    for fragment in fragments:
        assert fragment in line, line
    assert len(line) < 400 + len(str(path))  # never the file's content in bulk
    return line


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def nul_line(path: Path, prefix: str, size: int) -> Path:
    """``prefix`` and then NUL bytes up to ``size`` bytes, without a newline (a sparse file)."""
    write(path, prefix)
    os.truncate(path, size)
    return path


# --- train ---------------------------------------------------------------------------------

TRAIN_CASES = {
    # name: (file content, extra env, fragments of the one error line)
    "200 KB cell": (
        "a,b\n" + GOOD_ROWS + "1," + "x" * 200_000 + "\n",
        {},
        ("line 14, column 'b': 'xxxx", "is not numeric"),
    ),
    "200 KB column name": (
        "a," + "n" * 200_000 + "\n" + GOOD_ROWS + "1,x\n",
        {},
        ("line 14, column 'nnnn", "(200,000 characters): 'x' is not numeric"),
    ),
    "not UTF-8": (
        b"a,b\n0,0\n0,0\n1,caf\xe9\n",
        {},
        ("line 4, byte 6: not UTF-8 text (byte 0xe9)",),
    ),
    "UTF-16": (("a,b\n" + GOOD_ROWS).encode("utf-16"), {}, ("line 1", "UTF-16; save it as UTF-8")),
    "underscore in a number": (
        "a,b\n" + GOOD_ROWS + "1_01,2\n",
        {},
        ("line 14, column 'a': '1_01' is not a plain decimal number",),
    ),
    "non-ASCII digits": ("a,b\n" + GOOD_ROWS + "1,\u0661\n", {}, ("line 14, column 'b'",)),
    "number beyond float64": ("a,b\n" + GOOD_ROWS + "1,1e999\n", {}, ("beyond float64",)),
    "empty column name": (
        "a,,b\n" + "1,2,3\n" * 12,
        {},
        ("line 1, column 2: the column has no name",),
    ),
    "blank header name after strip": (
        "a, ,b\n" + "1,2,3\n" * 12,
        {},
        ("column 2: the column has no name",),
    ),
    "control character in a name": (
        'a,"b\nc"\n' + GOOD_ROWS,
        {},
        ("line 1, column 2: the name 'b\\nc' holds a control character",),
    ),
    "line of commas under the limit": (
        "a,b\n" + "".join(ROWS[:2]) + "," * 1000 + "\n" + GOOD_ROWS,
        {},
        ("line 4: 1,001 cells, header has 2",),
    ),
    "line of commas over the limit": (
        "a,b\n" + "".join(ROWS[:2]) + "," * (64 * 1024) + "\n" + GOOD_ROWS,
        {"VIGIL_MAX_CSV_LINE_BYTES": "4096"},
        ("line 4: longer than 4,096 bytes", "VIGIL_MAX_CSV_LINE_BYTES"),
    ),
    "header over the limit": (
        ",".join(f"c{i}" for i in range(3000)) + "\n",
        {"VIGIL_MAX_CSV_LINE_BYTES": "4096"},
        ("line 1: longer than 4,096 bytes",),
    ),
    "quoted record over the limit": (
        'a,b\n1,"2\n' + "3333333333\n" * 3000 + '"\n',
        {"VIGIL_MAX_CSV_LINE_BYTES": "4096"},
        ("lines 2-", "a record longer than 4,096 bytes"),
    ),
    "quote never closed": (
        "a,b\n" + GOOD_ROWS + '1,"2\n3,4\n',
        {},
        ("line 14: a quoted cell is never closed",),
    ),
    "NUL byte": ("a,b\n" + GOOD_ROWS + "1,2\x003\n", {}, ("line 14, byte 4: a NUL byte",)),
    "bad settings": (
        "a,b\n" + GOOD_ROWS,
        {"VIGIL_MAX_CSV_LINE_BYTES": "lots"},
        ("invalid settings: VIGIL_MAX_CSV_LINE_BYTES",),
    ),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_refuses_hostile_files_in_one_line(tmp_path, case):
    content, env, fragments = TRAIN_CASES[case]
    data = write(tmp_path / "hostile.csv", content)
    out = tmp_path / "models" / "m.joblib"
    proc = cli("train", "--data", str(data), "--out", str(out), "--n-estimators", "5", env=env)
    # Bad settings are not the file's fault: that line names the setting instead.
    assert_refused(proc, None if case == "bad settings" else data, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.csv"]  # nothing written


def test_train_refuses_a_300_mb_line_of_nul_bytes_at_once(tmp_path):
    data = nul_line(tmp_path / "nul.csv", "a,b\n" + GOOD_ROWS + "1,", 300 * MB)
    out = tmp_path / "m.joblib"
    proc = cli("train", "--data", str(data), "--out", str(out))
    assert_refused(proc, data, "line 14, byte 3: a NUL byte")
    assert not out.exists()


def test_train_reads_a_utf8_byte_order_mark_as_encoding_not_name(tmp_path):
    data = write(tmp_path / "bom.csv", "\ufeffmean,sd\n" + GOOD_ROWS)
    out = tmp_path / "m.joblib"
    proc = cli("train", "--data", str(data), "--out", str(out), "--n-estimators", "5")
    assert proc.returncode == 0, proc.stderr
    assert artifact.load(out).metadata["feature_names"] == ["mean", "sd"]


def cli_peak_rss(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI; what it did, and its own peak RSS in MB (from wait4, not the test's)."""
    with subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err), usage.ru_maxrss / 1024


def assert_no_more_memory_than_on_a_tiny_file(huge: Path, tiny: Path, *args: str) -> None:
    """Peak memory on ``huge`` is that of ``tiny`` (both refused), give or take a few MB."""
    refused, baseline = cli_peak_rss(*[str(tiny) if a == "FILE" else a for a in args])
    assert refused.returncode == 2, refused.stderr
    proc, peak = cli_peak_rss(*[str(huge) if a == "FILE" else a for a in args])
    assert_refused(proc, huge, "a NUL byte")
    assert peak < baseline + 16, f"peak RSS {peak:.0f} MB, {baseline:.0f} MB on a tiny file"


def test_train_memory_stays_bounded_on_a_300_mb_line(tmp_path):
    """The line is never held in memory: refused after reading at most the line limit."""
    tiny = write(tmp_path / "tiny.csv", "a,b\n1,\0\n")
    huge = nul_line(tmp_path / "huge.csv", "a,b\n1,", 300 * MB)
    out = str(tmp_path / "m.joblib")
    assert_no_more_memory_than_on_a_tiny_file(huge, tiny, "train", "--data", "FILE", "--out", out)


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def old_model(tmp_path, data_dir):
    """A small model already in place, as a service would be serving it."""

    def put(folder: Path) -> tuple[Path, dict[str, bytes]]:
        out = folder / "model.joblib"
        train_from_csv(data_dir / "train.csv", out, TrainingParams(n_estimators=1))
        return out, {p.name: p.read_bytes() for p in folder.iterdir()}

    return put


@pytest.fixture
def tiny_fs(tmp_path):
    """A 768 KiB tmpfs: room for a one-tree model (about 280 KiB with its manifest), not for a
    hundred trees beside it (about 720 KiB)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mount.stderr.strip()}); see the RLIMIT_FSIZE test"
        )
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_train_on_a_full_disk_leaves_the_old_model_whole(tiny_fs, old_model, data_dir):
    out, before = old_model(tiny_fs)
    proc = cli("train", "--data", str(data_dir / "train.csv"), "--out", str(out))
    assert_refused(proc, out, "cannot write", "No space left on device")
    assert {p.name: p.read_bytes() for p in tiny_fs.iterdir()} == before  # no temp file either
    assert artifact.load(out).metadata["params"]["n_estimators"] == 1


def _file_size_limit() -> None:
    # Python ignores SIGXFSZ, so going over the limit is an OSError (EFBIG), as a full disk is.
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_train_when_a_write_fails_midway_leaves_the_old_model_whole(tmp_path, old_model, data_dir):
    """Without root (no tmpfs): a file-size limit makes the artifact's write fail partway."""
    folder = tmp_path / "models"
    folder.mkdir()
    out, before = old_model(folder)
    proc = cli(
        "train", "--data", str(data_dir / "train.csv"), "--out", str(out),
        preexec_fn=_file_size_limit,
    )  # fmt: skip
    assert_refused(proc, out, "cannot write", "File too large")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- score ----------------------------------------------------------------------------------


def score(src: Path, out: Path, model_path: Path, env=None):
    return cli(
        "score", str(src), "--out", str(out), "--model", str(model_path), "--no-progress", env=env
    )


def test_score_carries_a_200_kb_cell_through(tmp_path, model_path):
    note = "n" * 200_000
    src = write(tmp_path / "in.csv", f"mean,sd,note\n0.1,0.1,{note}\n0.2,0.1,short\n")
    out = tmp_path / "out.csv"
    proc = score(src, out, model_path)
    assert proc.returncode == 0, proc.stderr
    rows = out.read_text().splitlines()
    assert rows[1].split(",")[2] == note and len(rows) == 3


def test_score_keeps_and_reports_a_row_with_an_underscored_number(tmp_path, model_path):
    src = write(tmp_path / "in.csv", "mean,sd\n0.1,0.1\n0.1,1_01\n")
    out = tmp_path / "out.csv"
    proc = score(src, out, model_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{src}, line 3: not scored: column 'sd': '1_01' is not a plain decimal" in proc.stderr
    assert out.read_text().splitlines()[2] == "0.1,1_01,,,"


@pytest.mark.parametrize(
    ("content", "env", "fragments"),
    [
        ("mean,sd\n" + "0.1,0.1\n" * 3 + "," * 8192 + "\n", {"VIGIL_MAX_CSV_LINE_BYTES": "4096"},
         ("line 5: longer than 4,096 bytes",)),
        (b"mean,sd\n0.1,0.1\n0.1,caf\xe9\n", {}, ("line 3, byte 8: not UTF-8",)),
        ('mean,sd\n0.1,"0.1\n', {}, ("line 2: a quoted cell is never closed",)),
    ],
    ids=["line over the limit", "not UTF-8", "quote never closed"],
)  # fmt: skip
def test_score_refuses_unreadable_files_and_writes_nothing(
    tmp_path, model_path, content, env, fragments
):
    src = write(tmp_path / "in.csv", content)
    proc = score(src, tmp_path / "out.csv", model_path, env)
    assert_refused(proc, src, *fragments)
    assert list(tmp_path.iterdir()) == [src]  # no output, no temporary file


def test_score_refuses_a_300_mb_nul_line_and_writes_nothing(tmp_path, model_path):
    src = nul_line(tmp_path / "in.csv", "mean,sd\n0.1,0.1\n", 300 * MB)
    proc = score(src, tmp_path / "out.csv", model_path)
    assert_refused(proc, src, "line 3, byte 1: a NUL byte")
    assert list(tmp_path.iterdir()) == [src]
    tiny = write(tmp_path / "tiny.csv", "mean,sd\n0.1,0.1\n\0\n")
    args = ("score", "FILE", "--out", str(tmp_path / "o.csv"), "--model", str(model_path))
    assert_no_more_memory_than_on_a_tiny_file(src, tiny, *args)


def test_score_on_a_full_disk_names_the_output_and_leaves_nothing(
    tiny_fs, tmp_path, data_dir, model_path
):
    rows = (data_dir / "train.csv").read_text().splitlines()
    big = write(tmp_path / "big.csv", "\n".join(rows + rows[1:] * 20) + "\n")  # ~800 KB
    out = tiny_fs / "scored.csv"
    proc = score(big, out, model_path)
    assert_refused(proc, out, "cannot write", "No space left on device")
    assert list(tiny_fs.iterdir()) == []


# --- evaluate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"mean,sd,l\xe9bel\n0.1,0.1,0\n", ("line 1, byte 10: not UTF-8",)),
        ("mean,sd,label\n0.1,0.1,0\n0.1," + "9" * 200_000 + ",1\n", ("line 3, column 'sd'",)),
        ("mean,sd,label\n0.1,0.1,0\n0.1,0.1," + "y" * 200_000 + "\n",
         ("line 3, column 'label': 'yyy", "is not a label")),
        ("mean,sd,label\n0.1,0.1,0\n1_0,0.1,1\n", ("line 3, column 'mean': '1_0' is not a plain",)),
    ],
    ids=["not UTF-8", "200 KB number", "200 KB label", "underscore"],
)  # fmt: skip
def test_evaluate_refuses_hostile_files_in_one_line(tmp_path, model_path, content, fragments):
    data = write(tmp_path / "labelled.csv", content)
    proc = cli("evaluate", "--data", str(data), "--model", str(model_path))
    assert_refused(proc, data, *fragments)


def test_evaluate_reads_a_byte_order_mark_as_encoding(tmp_path, model_path, data_dir):
    data = write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + (data_dir / "test.csv").read_bytes())
    proc = cli("evaluate", "--data", str(data), "--model", str(model_path))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"rows +500 ", proc.stdout), proc.stdout
