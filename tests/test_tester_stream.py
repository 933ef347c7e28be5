"""tester.py's stream mode: injection, the schedule, the precision/recall arithmetic, and runs
against a live server (stream, injection, batches)."""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys

import numpy as np
import pytest

import tester
from service.data.dataset import load_csv
from service.models import artifact
from tests.support import REPO, run_tester

ROWS = [[1.0, 10.0], [2.0, 20.0], [3.0, 40.0], [4.0, 80.0]]


def injector(text: str, *, columns=(1,), share=1.0, seed=1) -> tester.Injector:
    return tester.Injector(
        [tester.Injection.parse(text)], list(columns), share, tester.ColumnStats.of(ROWS), seed
    )


# ---------------------------------------------------------------------------- parsing


def test_injection_parses_and_describes_its_window():
    inj = tester.Injection.parse("step:10:5:3")
    assert inj == tester.Injection("step", 10.0, 5.0, 3.0)
    assert [inj.active(t) for t in (9.99, 10.0, 14.99, 15.0)] == [False, True, True, False]
    assert tester.Injection.parse("offline:0:1") == tester.Injection("offline", 0.0, 1.0, 0.0)
    assert "from 10 s to 15 s" in inj.describe()


@pytest.mark.parametrize(
    "text",
    [
        "wobble:0:1:2",  # unknown kind
        "step:0:1",  # magnitude missing
        "step:0:1:2:3",
        "step:x:1:2",
        "step:-1:1:2",  # negative start
        "step:0:0:2",  # empty window
        "step:0:1:0",  # changes nothing
        "spike:0:1:1",  # spike needs a factor above 1
        "drop:0:1:1.5",  # more than the whole range
        "scale:0:1:1",
        "scale:0:1:-2",
        "step:0:inf:2",
    ],
)
def test_bad_injections_are_refused(text):
    with pytest.raises(ValueError):
        tester.Injection.parse(text)


def test_stream_options_need_stream(capsys):
    with pytest.raises(SystemExit) as exc:
        tester.parse_args(["--inject", "step:0:1:2"])
    assert exc.value.code == 2
    assert "--inject needs --stream" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tester.parse_args(["--stream", "--inject", "step:0:1"])
    with pytest.raises(SystemExit):
        tester.parse_args(["--stream", "--inject-share", "0"])


# ---------------------------------------------------------------------------- each kind


def expected(kind: str, magnitude: float, value: float, column: int) -> float | None:
    """The injected value, or None for spike (random, checked by range)."""
    col = [r[column] for r in ROWS]
    return {
        "step": value + magnitude * statistics.pstdev(col),
        "drop": value - magnitude * (max(col) - min(col)),
        "offline": 0.0,
        "scale": value * magnitude,
        "spike": None,
    }[kind]


@pytest.mark.parametrize(
    "text", ["spike:1:1:4", "step:1:1:3", "drop:1:1:0.5", "offline:1:1", "scale:1:1:2.5"]
)
def test_each_kind_changes_the_chosen_column_of_the_labelled_rows_only(text):
    inj_spec = tester.Injection.parse(text)
    kind, magnitude = inj_spec.kind, inj_spec.magnitude
    inj = injector(text, columns=(1,), share=0.5, seed=3)
    in_window = {True: 0, False: 0}
    for step in range(300):
        t = step / 100  # 0 .. 2.99 s; the window is [1, 2)
        row = ROWS[step % len(ROWS)]
        original = list(row)
        out, injected = inj.apply(row, t)
        assert row == original, "the data row itself must never change"
        if not 1 <= t < 2:
            assert not injected and out == row
            continue
        in_window[injected] += 1
        if not injected:
            assert out == row
            continue
        assert out[0] == row[0], "a column not chosen changed"
        want = expected(kind, magnitude, row[1], 1)
        if want is None:
            assert row[1] < out[1] <= row[1] * magnitude
        else:
            assert out[1] == pytest.approx(want)
        assert out[1] != row[1]
    # share 0.5: both labelled and unlabelled rows in the window
    assert in_window[True] > 20 and in_window[False] > 20


def test_all_columns_and_overlapping_injections():
    inj = tester.Injector(
        [tester.Injection.parse("scale:0:1:2"), tester.Injection.parse("step:0:1:1")],
        [0, 1],
        1.0,
        tester.ColumnStats.of(ROWS),
        seed=0,
    )
    out, injected = inj.apply(ROWS[0], 0.5)
    stds = tester.ColumnStats.of(ROWS).std
    assert injected
    assert out == pytest.approx([1.0 * 2 + stds[0], 10.0 * 2 + stds[1]])


def test_the_seed_makes_injection_reproducible():
    def run(seed: int) -> list:
        inj = injector("spike:0:10:5", share=0.3, seed=seed)
        return [inj.apply(ROWS[i % 4], i / 10) for i in range(100)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    labelled = sum(injected for _, injected in run(7))
    assert 10 < labelled < 60  # about 30% of 100


# ---------------------------------------------------------------------------- the schedule


def test_schedule_spaces_requests_by_the_rate_and_loops_over_the_data():
    data = tester.Data([[float(i), 0.0] for i in range(3)], [False, True, False], "label")
    sched = tester.Schedule(
        data,
        batch=1,
        score_every=4,
        rate=10,
        duration=2,
        injector=tester.Injector(
            [tester.Injection.parse("offline:1:0.5")], [0, 1], 1.0, tester.ColumnStats.of(ROWS), 0
        ),
    )
    jobs = []
    while (job := sched.next()) is not None:
        jobs.append(job)
    assert sched.total == len(jobs) == 20
    assert [j.due for j in jobs] == [k / 10 for k in range(20)]
    assert [j.rows[0][0] for j in jobs[:6]] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    assert [j.labels[0] for j in jobs[:3]] == [False, True, False]
    # injected: the requests due at 1.0 .. 1.4 s, and their rows are zeroed
    assert [k for k, j in enumerate(jobs) if j.injected[0]] == [10, 11, 12, 13, 14]
    assert all(j.rows[0] == [0.0, 0.0] for j in jobs[10:15])
    assert [k for k, j in enumerate(jobs) if j.with_score] == [3, 7, 11, 15, 19]


def test_schedule_total_is_exact_for_awkward_rates():
    data = tester.Data([[0.0]])
    assert tester.Schedule(data, batch=1, score_every=0, rate=10, duration=0.3).total == 3
    assert tester.Schedule(data, batch=1, score_every=0, rate=3, duration=1).total == 3
    assert tester.Schedule(data, batch=1, score_every=0, rate=7, duration=0.01).total == 1


def test_single_pass_batches_cover_the_file_once():
    data = tester.Data([[float(i)] for i in range(7)])
    sched = tester.Schedule(data, batch=3, score_every=0)
    sizes = []
    while (job := sched.next()) is not None:
        sizes.append((job.first, len(job.rows), job.due))
    assert sizes == [(0, 3, 0.0), (3, 3, 0.0), (6, 1, 0.0)]


# ---------------------------------------------------------------------------- arithmetic

FLAGS = [True, True, True, False, False, False, False, True]
TRUTH = [True, True, False, True, False, False, False, False]


def test_precision_recall_f1_on_a_case_worked_by_hand():
    # tp: rows 0, 1; fp: rows 2, 7; fn: row 3; tn: rows 4, 5, 6.
    c = tester.Confusion()
    for flag, truth in zip(FLAGS, TRUTH, strict=True):
        c.add(flag, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 3)
    assert c.precision == 2 / 4
    assert c.recall == 2 / 3
    assert c.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert c.f1 == pytest.approx(4 / 7)
    assert c.report("x") == ("x: precision 0.500  recall 0.667  F1 0.571  (tp 2, fp 2, fn 1, tn 3)")


def test_undefined_ratios_are_not_reported_as_numbers():
    c = tester.Confusion(tn=5)
    assert c.precision is None and c.recall is None and c.f1 is None
    assert "precision n/a  recall n/a  F1 n/a" in c.report("x")
    c = tester.Confusion(fn=2, tn=5)  # nothing flagged, two missed
    assert c.precision is None and c.recall == 0.0 and c.f1 == 0.0


def test_the_evaluation_module_agrees_on_the_hand_worked_case():
    from service.evaluation.vectors import evaluate_scores

    ev = evaluate_scores(
        np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1, 0.65]),
        np.array(FLAGS),
        np.array(TRUTH),
        threshold=0.6,
        training_contamination=0.02,
    )
    assert (ev.tp, ev.fp, ev.fn, ev.tn) == (2, 2, 1, 3)
    assert (ev.precision, ev.recall) == (0.5, 2 / 3)
    assert ev.f1 == pytest.approx(4 / 7)


# ---------------------------------------------------------------------------- live server


def line(stdout: str, prefix: str) -> str:
    (found,) = [x for x in stdout.splitlines() if x.startswith(prefix)]
    return found


def replay(data_path, features, *, rate, duration, injections, columns, share, seed, batch=1):
    """What tester.py sends for these options, rebuilt here from its own classes."""
    data = tester.read_data(str(data_path), features)
    inj = tester.Injector(
        [tester.Injection.parse(t) for t in injections],
        [features.index(c) for c in columns],
        share,
        tester.ColumnStats.of(data.rows),
        seed,
    )
    sched = tester.Schedule(
        data, batch=batch, score_every=0, rate=rate, duration=duration, injector=inj
    )
    rows, injected, labels = [], [], []
    while (job := sched.next()) is not None:
        rows += job.rows
        injected += job.injected
        labels += job.labels
    return np.array(rows), injected, labels


@pytest.mark.slow
def test_stream_with_injection_reports_exactly_what_the_model_flags(
    live_server, data_dir, model_path, reference
):
    opts = dict(rate=40, duration=1.5, columns=["sd"], share=0.5, seed=5)
    injections = ["step:0.5:0.5:8", "offline:1:0.25"]
    proc = run_tester(
        "--url", live_server.url, "--data", str(data_dir / "test.csv"), "--stream",
        "--rate", "40", "--duration", "1.5", "--inject", injections[0], "--inject", injections[1],
        "--inject-columns", "sd", "--inject-share", "0.5", "--seed", "5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "seed 5" in out and "step from 0.5 s to 1 s" in out

    est = reference
    features = artifact.load(model_path).metadata["feature_names"]
    X, injected, labels = replay(data_dir / "test.csv", features, injections=injections, **opts)
    flags = est.predict(X) == -1
    assert len(X) == 60 and 0 < sum(injected) < 30

    assert line(out, "requests:") == f"requests: 60  anomalies: {flags.sum()}  errors: 0 (none)"
    assert line(out, "rows:") == f"rows: 60 sent, 60 scored, {sum(injected)} injected"
    for name, truth in (
        ("vs injected labels", injected),
        ("vs label column 'label'", labels),
        ("vs injected or labelled", [a or b for a, b in zip(injected, labels, strict=True)]),
    ):
        c = tester.Confusion()
        for flag, t in zip(flags, truth, strict=True):
            c.add(bool(flag), t)
        assert line(out, name) == c.report(name)
    assert line(out, "schedule:").startswith("schedule: 60 of 60 requests sent at 40/s")
    # The progress line (stderr is not a terminal here: whole lines).
    progress = [x for x in proc.stderr.splitlines() if "answered" in x]
    assert progress and re.search(r"sent 60 +answered 60 .*errors 0 +rate [\d.]+/s", progress[-1])


@pytest.mark.slow
def test_batches_go_through_predictions(live_server, data_dir, reference):
    ds = load_csv(data_dir / "test.csv", label_column="label")
    flagged = int((reference.predict(ds.X) == -1).sum())
    proc = run_tester(
        "--url", live_server.url, "--data", str(data_dir / "test.csv"), "--batch", "64",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    requests_ = math.ceil(ds.n_rows / 64)
    assert f"requests: {requests_}  anomalies: {flagged}  errors: 0 (none)" in proc.stdout
    assert f"rows: {ds.n_rows} sent, {ds.n_rows} scored, 0 injected" in proc.stdout
    assert f"  {ds.n_rows}/{ds.n_rows} sent" in proc.stdout

    proc = run_tester(
        "--url", live_server.url, "--data", str(data_dir / "test.csv"), "--stream", "--batch",
        "25", "--rate", "10", "--duration", "1", "--inject", "scale:0.5:0.5:10", "--seed", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert line(proc.stdout, "rows:") == "rows: 250 sent, 250 scored, 125 injected"
    assert line(proc.stdout, "requests:").startswith("requests: 10  anomalies: ")


@pytest.mark.slow
def test_a_refused_batch_counts_as_one_error(live_server, tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text("mean,sd\n0.0,0.1\n0.0,1e400\n0.0,0.1\n0.5,0.5\n")
    proc = run_tester("--url", live_server.url, "--data", str(data), "--batch", "2")
    assert proc.returncode == 1
    assert "requests: 2  anomalies: 1  errors: 1 (400: 1)" in proc.stdout
    assert "rows: 4 sent, 2 scored, 0 injected" in proc.stdout
    assert "rows 1-2: 400" in proc.stderr


def test_tester_needs_only_requests():
    code = (
        "import sys, tester; "
        "bad = {'numpy', 'sklearn', 'service'} & {m.split('.')[0] for m in sys.modules}; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)


def test_tester_reads_labels_as_the_service_does():
    """tester.py keeps its own copy of parse_label (it must run with only requests)."""
    from service.data.dataset import parse_label

    for cell in ["1", "0", "true", "False", " yes ", "NO", "anomaly", "normal", "2", "", "x"]:
        try:
            expected = parse_label(cell)
        except ValueError as exc:
            with pytest.raises(ValueError) as err:
                tester.parse_label(cell)
            assert str(err.value) == str(exc)
        else:
            assert tester.parse_label(cell) is expected
