"""``python -m service.cli.series evaluate-series`` on a small generated labelled corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.series import gen
from tests.support import REPO


def write_csv(path: Path, t: np.ndarray, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = t.astype("datetime64[s]").astype(str)
    path.write_text(
        "timestamp,value\n" + "".join(f"{s},{v}\n" for s, v in zip(stamps, x, strict=True))
    )


def corpus(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    t, x = gen.seasonal(days=5, seed=8)
    x = x.copy()
    x[1200:] += 25  # a step: its window is 1190..1250
    write_csv(data / "a" / "step.csv", t, x)
    t2, x2 = gen.noise_only(days=3, seed=9)
    write_csv(data / "a" / "quiet.csv", t2, x2)
    windows = {
        "a/step.csv": [
            [str(t[1190].astype("datetime64[s]")), str(t[1250].astype("datetime64[s]"))]
        ],
        "a/quiet.csv": [],
    }
    wfile = tmp_path / "windows.json"
    wfile.write_text(json.dumps(windows))
    return data, wfile


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli.series", "evaluate-series", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prints_the_three_profiles_per_series_numbers_and_plots(tmp_path) -> None:
    data, wfile = corpus(tmp_path)
    out = run(
        "--data",
        str(data),
        "--windows",
        str(wfile),
        "--param",
        "k=4",
        "--plot",
        str(tmp_path / "plots"),
    )
    assert out.returncode == 0, out.stderr
    assert "detector seasonal (k=4.0," in out.stdout
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    # the step is found early in its window, nothing is flagged in the quiet series
    assert float(lines["standard"][1]) > 90
    assert float(lines["reward_low_FP_rate"][1]) > 90
    assert float(lines["reward_low_FN_rate"][1]) > 90
    assert lines["a/step.csv"][1:4] == ["1", "1", "0"]
    assert lines["a/quiet.csv"][1:4] == ["0", "0", "0"]
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["a__quiet.png", "a__step.png"]
    assert (tmp_path / "plots" / "a__step.png").read_bytes()[:4] == b"\x89PNG"


def test_unusable_input_exits_2_with_the_reason(tmp_path) -> None:
    data, wfile = corpus(tmp_path)
    out = run("--data", str(data), "--windows", str(wfile), "--param", "k=0")
    assert out.returncode == 2
    assert "seasonal: parameter k must be > 0" in out.stderr
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"a/missing.csv": []}))
    out = run("--data", str(data), "--windows", str(missing))
    assert out.returncode == 2
    assert "a/missing.csv is not a file under" in out.stderr


def test_python_m_service_evaluate_series_is_the_same_command(tmp_path) -> None:
    data, wfile = corpus(tmp_path)
    args = ["--data", str(data), "--windows", str(wfile), "--detector", "rolling"]
    direct = run(*args)
    main = subprocess.run(
        [sys.executable, "-m", "service", "evaluate-series", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert main.returncode == direct.returncode == 0, main.stderr
    strip = [line for line in main.stdout.splitlines() if "detection took" not in line]
    assert strip == [line for line in direct.stdout.splitlines() if "detection took" not in line]
    assert "detector rolling" in main.stdout
