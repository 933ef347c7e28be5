"""Comparing detector kinds: every kind listed, metrics as scikit-learn's, failures reported."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from service.cli.compare import main
from service.data import public_datasets
from service.data.dataset import load_csv
from service.detectors import detector, table
from service.evaluation import compare
from service.evaluation.vectors import evaluate_scores
from tests.support import REPO

PNG = b"\x89PNG\r\n\x1a\n"
SEED = 42


@pytest.fixture(scope="module")
def wbc(tmp_path_factory) -> Path:
    """The breast cancer recipe: 188 training rows, 190 test rows, 30 features."""
    out = tmp_path_factory.mktemp("wbc")
    public_datasets.breast_cancer(out, seed=SEED)
    return out


@pytest.fixture(scope="module")
def wbc_data(wbc):
    train = load_csv(wbc / "train.csv")
    test = load_csv(wbc / "test.csv", features=train.feature_names, label_column="label")
    return train.X, test.X, test.labels


@pytest.fixture(scope="module")
def all_kinds(wbc_data) -> list[compare.KindResult]:
    X_train, X_test, labels = wbc_data
    return compare.compare(X_train, X_test, labels, seed=SEED)


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    """A 12-row training CSV (too few rows for LOF's default 20 neighbours) and a test CSV."""
    rng = np.random.default_rng(3)
    train, test = tmp_path / "tiny_train.csv", tmp_path / "tiny_test.csv"
    train.write_text(
        "x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in rng.normal(size=(12, 2)).tolist())
    )
    test.write_text(
        "x,y,label\n"
        + "".join(
            f"{a!r},{b!r},{i % 4 == 0:d}\n"
            for i, (a, b) in enumerate(rng.normal(size=(20, 2)).tolist())
        )
    )
    return train, test


def _row(table_text: str, kind: str) -> str:
    """The table's row for ``kind``, with its padding collapsed to single spaces."""
    (line,) = [line for line in table_text.splitlines() if line.split()[0] == kind]
    return " ".join(line.split())


def _key(r: compare.KindResult) -> tuple[float, float]:
    return round(r.roc_auc, 9), round(r.pr_auc, 9)


def test_every_kind_in_the_table_is_compared_best_first(all_kinds):
    assert sorted(r.kind for r in all_kinds) == sorted(table.names())
    assert all(r.ok for r in all_kinds), [r.error for r in all_kinds if not r.ok]
    keys = [_key(r) for r in all_kinds]
    assert keys == sorted(keys, reverse=True)
    # The kinds really differ on this data, so the order is a ranking, not the table's order.
    assert len({k[0] for k in keys}) > 3
    lines = compare.table_text(all_kinds).splitlines()
    assert lines[0].split() == [
        "kind",
        "ROC-AUC",
        "PR-AUC",
        "P",
        "R",
        "F1",
        "fit",
        "s",
        "score",
        "s",
    ]
    assert [line.split()[0] for line in lines[1:]] == [r.kind for r in all_kinds]
    for line, r in zip(lines[1:], all_kinds, strict=True):
        assert line.split()[1:3] == [f"{r.roc_auc:.4f}", f"{r.pr_auc:.4f}"]
        assert r.fit_seconds > 0 and r.score_seconds > 0


def test_scores_and_metrics_equal_scikit_learns_on_the_same_scores(all_kinds, wbc_data):
    X_train, X_test, labels = wbc_data
    for r in all_kinds:
        assert r.params == detector.resolve_params(r.kind, {})  # every kind with its defaults
        fitted = detector.load(detector.fit(r.kind, X_train, {}, SEED))
        scores = fitted.score(X_test)
        ev = r.evaluation
        np.testing.assert_array_equal(ev.anomaly_score, scores, err_msg=r.kind)
        assert ev.roc_auc == roc_auc_score(labels, scores), r.kind
        assert ev.pr_auc == average_precision_score(labels, scores), r.kind
        flags = scores > fitted.threshold
        np.testing.assert_array_equal(ev.is_anomaly, flags, err_msg=r.kind)
        tp, fp, fn = (
            int((flags & labels).sum()),
            int((flags & ~labels).sum()),
            int((~flags & labels).sum()),
        )
        assert (ev.tp, ev.fp, ev.fn) == (tp, fp, fn), r.kind
        if tp + fp:
            assert ev.precision == tp / (tp + fp), r.kind
        else:
            assert math.isnan(ev.precision), r.kind
        assert ev.recall == tp / (tp + fn)
        assert ev.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_overrides_reach_every_kind_and_a_kind_of_its_own():
    params = compare.params_per_kind(
        ["knn", "lof", "pca"], ["scaler=standard", "lof.n_neighbors=5"]
    )
    assert params == {
        "knn": {"scaler": "standard"},
        "lof": {"scaler": "standard", "n_neighbors": "5"},
        "pca": {"scaler": "standard"},
    }


def test_a_kind_that_cannot_fit_is_reported_last_not_raised():
    rng = np.random.default_rng(5)
    X_train, X_test = rng.normal(size=(12, 2)), rng.normal(size=(40, 2))
    labels = np.arange(40) % 10 == 0
    results = compare.compare(X_train, X_test, labels, kinds=["lof", "knn", "iforest"], seed=SEED)
    assert [r.kind for r in results][-1] == "lof"
    lof = results[-1]
    assert not lof.ok and lof.evaluation is None
    assert (
        lof.error
        == "fit failed: n_neighbors (20) must be smaller than the number of training rows (12)"
    )
    assert all(r.ok for r in results[:-1])
    assert _row(compare.table_text(results), "lof") == f"lof {lof.error}"


def _result(kind: str, scores: list[float], labels: list[bool]) -> compare.KindResult:
    ev = evaluate_scores(
        np.array(scores), np.array(scores) > 0.5, np.array(labels), threshold=0.5,
        training_contamination=0.1, model_version=kind,
    )  # fmt: skip
    return compare.KindResult(kind, evaluation=ev, fit_seconds=0.1, score_seconds=0.01)


def test_ranking_by_roc_auc_then_pr_auc_with_failures_and_undefined_last():
    y = [True, True, False, False, False, False]
    perfect = _result("perfect", [0.9, 0.8, 0.5, 0.4, 0.3, 0.2], y)
    # Summation order alone can make a perfect PR-AUC 0.9999999999999999: that is a tie.
    noisy_ev = dataclasses.replace(perfect.evaluation, pr_auc=0.9999999999999999)
    noisy = dataclasses.replace(perfect, kind="noisy", evaluation=noisy_ev)
    first_and_fourth = _result("first_and_fourth", [0.9, 0.6, 0.8, 0.7, 0.5, 0.4], y)
    second_and_third = _result("second_and_third", [0.8, 0.7, 0.9, 0.5, 0.4, 0.3], y)
    assert first_and_fourth.roc_auc == second_and_third.roc_auc == 0.75
    assert first_and_fourth.pr_auc == 0.75 > second_and_third.pr_auc
    one_class = _result("one_class", [0.1, 0.2, 0.3], [False, False, False])
    assert math.isnan(one_class.roc_auc)
    failed = compare.KindResult("failed", error="fit failed: no")
    given = [failed, one_class, second_and_third, first_and_fourth, noisy, perfect]
    assert [r.kind for r in compare.rank(given)] == [
        "noisy", "perfect", "first_and_fourth", "second_and_third", "one_class", "failed",
    ]  # fmt: skip


def test_cli_prints_the_table_and_saves_the_plot(data_dir, tmp_path, capsys):
    png = tmp_path / "compare.png"
    argv = ["--train", str(data_dir / "train.csv"), "--test", str(data_dir / "test.csv")]
    rc = main([*argv, "--detectors", "pca,iforest,hbos", "--plot", str(png), "--seed", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("kind") and sorted(line.split()[0] for line in lines[1:]) == [
        "hbos",
        "iforest",
        "pca",
    ]
    assert "comparing 3 detector kinds: 2000 training rows x 2 features" in err
    assert "[3/3] hbos: ROC-AUC" in err
    assert png.read_bytes().startswith(PNG)


def test_cli_ignores_a_label_column_in_the_training_csv(data_dir, capsys):
    test_csv = str(data_dir / "test.csv")
    assert main(["--train", test_csv, "--test", test_csv, "--detectors", "pca"]) == 0
    assert "500 training rows x 2 features" in capsys.readouterr().err


def test_cli_exit_1_when_a_kind_cannot_fit_and_0_with_its_own_parameter(tiny, capsys):
    train, test = tiny
    argv = ["--train", str(train), "--test", str(test), "--detectors", "lof,knn"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert _row(out, "lof").startswith("lof fit failed: n_neighbors (20) must be smaller")
    assert out.splitlines()[1].split()[0] == "knn"  # the failure comes last
    assert "1 of 2 kinds could not be compared: lof" in err
    assert main([*argv, "--param", "lof.n_neighbors=5"]) == 0
    assert "fit failed" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label-column", "lbl"], "label column 'lbl' not found in ['mean', 'sd', 'label']"),
        (["--detectors", "iforest,nope"], "unknown detector kind 'nope' (known: iforest, ecod"),
        (["--detectors", " , "], "--detectors is empty"),
        (
            ["--param", "scaler=bogus"],
            "iforest: scaler must be one of none, standard, minmax, robust",
        ),
        (["--param", "n_neighbors=10"], "iforest: unknown parameter 'n_neighbors'"),
        (["--param", "n_neighbors=10"], "; to set n_neighbors for some kinds only, write KIND."),
        (["--param", "pca.n_neighbors=10"], "pca: unknown parameter 'n_neighbors' (known: n_comp"),
        (["--param", "pca.n_components=0"], "pca: n_components must be"),
        (["--param", "knn.n_neighbors=5"], "knn is not being compared"),
        (["--param", "nope.x=1"], "unknown detector kind 'nope'"),
        (["--param", "scaler"], "parameter 'scaler' must be written name=value"),
    ],
)
def test_cli_bad_input_is_exit_2_naming_the_problem(data_dir, capsys, extra, message):
    argv = ["--train", str(data_dir / "train.csv"), "--test", str(data_dir / "test.csv")]
    assert main([*argv, "--detectors", "iforest,pca", *extra]) == 2
    out, err = capsys.readouterr()
    assert message in err and err.startswith("error: ")
    assert out == ""  # refused before anything was fitted


def test_cli_bad_files_are_exit_2(data_dir, tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text("mean,label\n0.1,1\n")
    cases = [
        (tmp_path / "missing.csv", data_dir / "test.csv", "data file not found"),
        (data_dir / "train.csv", other, "lacks the model's features ['sd']"),
    ]
    for train, test, message in cases:
        assert main(["--train", str(train), "--test", str(test)]) == 2
        assert message in capsys.readouterr().err


def test_runs_as_a_module(data_dir):
    argv = ["--train", str(data_dir / "train.csv"), "--test", str(data_dir / "test.csv")]
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli.compare", *argv, "--detectors", "pca"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:3] == ["pca", "1.0000", "1.0000"]
