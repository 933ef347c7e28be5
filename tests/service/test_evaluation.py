"""Evaluation against labels: the metrics, the terminal table, the plots, and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from service.cli.main import main
from service.data.dataset import DataError, load_csv
from service.evaluation import vectors as evaluation
from service.models import artifact
from service.models.loaded import Model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model(model_path) -> Model:
    return Model(artifact.load(model_path), source=model_path)


def test_metrics_on_the_sample_labelled_data(model, data_dir, reference):
    ds = load_csv(data_dir / "test.csv", label_column="label")
    ev = evaluation.evaluate(model, ds.X, ds.labels)

    est = reference
    flags = est.predict(ds.X) == -1
    scores = -est.score_samples(ds.X)
    y = ds.labels
    tp, fp = int((flags & y).sum()), int((flags & ~y).sum())
    fn, tn = int((~flags & y).sum()), int((~flags & ~y).sum())
    assert (ev.tp, ev.fp, ev.fn, ev.tn) == (tp, fp, fn, tn)
    assert ev.confusion_matrix().tolist() == [[tn, fp], [fn, tp]]
    assert ev.precision == tp / (tp + fp)
    assert ev.recall == tp / (tp + fn)
    assert ev.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert ev.roc_auc == roc_auc_score(y, scores)
    assert ev.pr_auc == average_precision_score(y, scores)
    assert ev.implied_contamination == flags.mean()
    assert ev.actual_contamination == y.mean() == 0.04  # the fixture's anomaly share
    assert ev.training_contamination == model.metadata["training_anomaly_ratio"]
    assert ev.threshold == model.metadata["threshold"]
    # The sample anomalies are far out: the score ranks them all first.
    assert ev.roc_auc > 0.99 and ev.recall == 1.0


def test_undefined_metrics_are_nan_and_shown_as_n_a():
    ev = evaluation.evaluate_scores(
        np.array([0.4, 0.5, 0.7]),
        np.array([False, False, True]),
        np.array([False, False, False]),
        threshold=0.6,
        training_contamination=0.02,
    )
    assert math.isnan(ev.roc_auc) and math.isnan(ev.pr_auc) and math.isnan(ev.recall)
    assert ev.precision == 0.0 and ev.f1 == 0.0
    assert "ROC-AUC             n/a" in ev.table()
    with pytest.raises(DataError):
        evaluation.evaluate_scores(
            np.array([]), np.array([]), np.array([]), threshold=0.6, training_contamination=0
        )


def test_features_are_matched_by_name(tmp_path, model):
    path = tmp_path / "l.csv"
    path.write_text("is_bad,sd,id,mean\nyes,0.5,a,0.5\nno,0.1,b,0.0\n")
    X, labels = evaluation.load_labelled(path, "is_bad", model.feature_names)
    assert X.tolist() == [[0.5, 0.5], [0.0, 0.1]]  # (mean, sd)
    assert labels.tolist() == [True, False]
    with pytest.raises(DataError, match="lacks the model's features"):
        evaluation.load_labelled(path, "is_bad", ("mean", "sd", "max"))
    with pytest.raises(DataError, match="label column 'nope' not found"):
        evaluation.load_labelled(path, "nope", model.feature_names)


def test_evaluate_cli_prints_the_table_and_plots(data_dir, model_path, tmp_path, capsys, model):
    png = tmp_path / "eval.png"
    code = main(
        ["evaluate", "--data", str(data_dir / "test.csv"), "--label-column", "label",
         "--model", str(model_path), "--plot", str(png)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    ds = load_csv(data_dir / "test.csv", label_column="label")
    ev = evaluation.evaluate(model, ds.X, ds.labels)
    assert ev.table() in out
    for name in ("ROC-AUC", "PR-AUC", "precision", "recall", "F1", "contamination",
                 "anomaly share", "labelled anomaly", "labelled normal"):  # fmt: skip
        assert name in out
    assert f"{ev.roc_auc:.4f}" in out and f"{ev.implied_contamination:.2%}" in out
    assert png.read_bytes().startswith(PNG)


def test_plot_has_the_three_panels(model, data_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = load_csv(data_dir / "test.csv", label_column="label")
    fig = evaluation.plot(evaluation.evaluate(model, ds.X, ds.labels))
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["ROC", "Precision-recall", "Scores by label"]
        roc = fig.axes[0]
        assert any(line.get_label().startswith("ROC-AUC") for line in roc.get_lines())
    finally:
        plt.close(fig)


def test_evaluate_cli_errors_exit_2(data_dir, model_path, capsys):
    code = main(["evaluate", "--data", str(data_dir / "train.csv"), "--model", str(model_path)])
    assert code == 2
    assert "label column 'label' not found" in capsys.readouterr().err
