"""tester.py --series: a timestamp,value file replayed as a stream through POST /series/detect."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import tester
from service.series import nab
from tests.series import gen
from tests.support import run_tester


@pytest.mark.parametrize("seed", range(30))
def test_the_nab_copy_scores_like_service_series_nab(seed):
    rng = random.Random(seed)
    n = rng.randint(20, 400)
    truth = [rng.random() < 0.03 for _ in range(n)]
    flags = [rng.random() < rng.choice([0.01, 0.05, 0.2]) for _ in range(n)]
    windows = tester.nab_windows(truth)
    score, found, fps = tester.nab_score(flags, windows)
    labelled = nab.label("s", np.arange(n, dtype=float), [(a, b) for a, b in windows])
    ref = nab.score_series(labelled, np.array(flags, float), 0.5, nab.PROFILES["standard"])
    if math.isnan(score):
        assert ref.windows == 0
    else:
        assert score == pytest.approx(ref.normalised, abs=1e-9)
        assert (found, fps) == (ref.detected, ref.false_positives)


def test_nab_windows_widen_and_merge_runs():
    truth = [False] * 100
    truth[10] = truth[11] = truth[60] = True
    # 10% of 100 over 2 runs: 5 points each, centred (a run of 2 gets one more on each side)
    assert tester.nab_windows(truth) == [(9, 12), (58, 62)]
    assert tester.nab_windows([False] * 10) == []


def test_replays_a_series_with_an_injected_step_and_labels(tmp_path, live_server):
    t, x = gen.seasonal(days=4, seed=3)
    labels = np.zeros(t.size, int)
    x[600] += 60  # a labelled spike, before the injected step
    labels[600] = 1
    path = tmp_path / "series.csv"
    path.write_text(
        "timestamp,value,label\n"
        + "".join(f"{a:.0f},{b:.6f},{c}\n" for a, b, c in zip(t, x, labels, strict=True))
    )
    out = run_tester(
        "--url", live_server.url, "--series", str(path), "--rate", "400",
        "--detector", "rolling", "--param", "k=5", "--param", "window=100",
        "--inject", "step:2:0.25:12", "--seed", "4",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert f"replaying {path} ({t.size} points)" in text
    assert "earlier answers changed: 0" in text
    injected = [line for line in text.splitlines() if line.startswith("vs injected labels")]
    labelled = [line for line in text.splitlines() if line.startswith("vs label column 'label'")]
    assert injected and labelled and "vs injected or labelled" in text
    assert "tp 1, fp" in labelled[0] and ", fn 0," in labelled[0]  # the spike is flagged
    # The step (100 points from 2 s in) is found, early in its window.
    lines = text.splitlines()
    nab_line = lines[lines.index(injected[0]) + 1]
    assert "(1 of 1 windows found" in nab_line
    assert float(nab_line.split(": ")[1].split()[0]) > 50


def test_series_options_need_series():
    out = run_tester("--detector", "rolling")
    assert out.returncode == 2 and "--detector and --param need --series" in out.stderr
    out = run_tester("--series", "x.csv", "--batch", "3")
    assert out.returncode == 2 and "leave out --stream and --batch" in out.stderr
