"""Evaluating a model against labelled data: the numbers and the plots.

Shared by ``python -m service evaluate`` and the training notebook, so both report the same
thing. The threshold is the model's own (``predict``'s); ROC-AUC and PR-AUC judge the
anomaly score at every threshold. scikit-learn's metrics are used here: this is offline
evaluation, never the serving path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.data.dataset import DataError, load_csv
from service.models.loaded import Model

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Evaluation:
    """How a model's scores and flags compare with the labels of one data set."""

    model_version: str
    threshold: float
    """Anomaly when s(x) is above it (the model's ``-offset_``)."""
    training_contamination: float
    """Share of its training rows the model flags (its contamination as fitted)."""
    labels: np.ndarray
    """True where the row is labelled an anomaly."""
    anomaly_score: np.ndarray
    """s(x), higher is more anomalous."""
    is_anomaly: np.ndarray
    """The model's flag at its threshold."""
    roc_auc: float
    """NaN when the labels hold one class only."""
    pr_auc: float
    """Average precision (the area under the step PR curve); NaN without labelled anomalies."""
    precision: float
    """NaN when nothing is flagged."""
    recall: float
    """NaN when nothing is labelled an anomaly."""
    f1: float
    """NaN when nothing is flagged and nothing is labelled."""
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)

    @property
    def implied_contamination(self) -> float:
        """Share of these rows the threshold flags."""
        return (self.tp + self.fp) / self.n_rows

    @property
    def actual_contamination(self) -> float:
        """Share of these rows labelled anomalies."""
        return (self.tp + self.fn) / self.n_rows

    def confusion_matrix(self) -> np.ndarray:
        """[[tn, fp], [fn, tp]]: rows are the labels (normal, anomaly), columns the flags."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def table(self) -> str:
        """The evaluation as a plain-text table for a terminal."""

        def num(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.4f}"

        flagged, labelled = self.tp + self.fp, self.tp + self.fn
        rows = [
            ("rows", f"{self.n_rows}", f"{labelled} labelled anomalies"),
            ("ROC-AUC", num(self.roc_auc), "of the score, over every threshold"),
            ("PR-AUC", num(self.pr_auc), "average precision of the score"),
            ("threshold", f"{self.threshold:.4f}", "anomaly when s(x) is above it"),
            ("precision", num(self.precision), f"{self.tp} of {flagged} flagged rows"),
            ("recall", num(self.recall), f"{self.tp} of {labelled} labelled anomalies"),
            ("F1", num(self.f1), ""),
            (
                "contamination",
                f"{self.implied_contamination:.2%}",
                "flagged here at the threshold (implied)",
            ),
            ("anomaly share", f"{self.actual_contamination:.2%}", "labelled here (actual)"),
            (
                "training",
                f"{self.training_contamination:.2%}",
                "flagged on the training data",
            ),
        ]
        lines = [f"model {self.model_version}"]
        lines += [f"  {name:<14} {value:>8}  {note}".rstrip() for name, value, note in rows]
        lines += [
            "",
            f"  {'confusion':<17}{'flagged':>10}{'not flagged':>13}",
            f"  {'labelled anomaly':<17}{self.tp:>10}{self.fn:>13}",
            f"  {'labelled normal':<17}{self.fp:>10}{self.tn:>13}",
        ]
        return "\n".join(lines)


def evaluate_scores(
    anomaly_score: np.ndarray,
    is_anomaly: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float,
    training_contamination: float,
    model_version: str = "",
) -> Evaluation:
    """The metrics of given scores and flags against labels."""
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(anomaly_score, dtype=np.float64)
    flags = np.asarray(is_anomaly, dtype=bool)
    if not labels.size:
        raise DataError("no rows to evaluate")
    if not labels.shape == scores.shape == flags.shape:
        raise ValueError(f"shapes differ: {labels.shape}, {scores.shape}, {flags.shape}")
    (tn, fp), (fn, tp) = confusion_matrix(labels, flags, labels=[False, True]).tolist()
    both = bool(labels.any() and not labels.all())
    roc = float(roc_auc_score(labels, scores)) if both else math.nan
    pr = float(average_precision_score(labels, scores)) if labels.any() else math.nan
    return Evaluation(
        model_version=model_version,
        threshold=float(threshold),
        training_contamination=float(training_contamination),
        labels=labels,
        anomaly_score=scores,
        is_anomaly=flags,
        roc_auc=roc,
        pr_auc=pr,
        precision=tp / (tp + fp) if tp + fp else math.nan,
        recall=tp / (tp + fn) if tp + fn else math.nan,
        f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
    )


def evaluate(model: Model, X: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Score ``X`` with ``model`` and compare its flags and scores with ``labels``."""
    scores = model.score(np.asarray(X, dtype=np.float64))
    return evaluate_scores(
        scores.anomaly_score,
        scores.is_anomaly,
        labels,
        threshold=model.metadata["threshold"],
        training_contamination=model.metadata["training_anomaly_ratio"],
        model_version=model.version,
    )


def load_labelled(
    path: str | Path,
    label_column: str,
    feature_names: list[str] | tuple[str, ...],
    *,
    max_line_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's features (matched by name, in the model's order) and the labels of a CSV.

    Columns that are neither features nor the label are ignored.
    """
    ds = load_csv(
        path, features=feature_names, label_column=label_column, max_line_bytes=max_line_bytes
    )
    return ds.X, ds.labels


def plot(ev: Evaluation, path: str | Path | None = None) -> Figure:
    """ROC curve, precision-recall curve and the score histogram of each class.

    The model's operating point (its threshold) is marked on both curves. With ``path`` the
    figure is also saved there (PNG, or any format matplotlib knows from the extension).
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (ax_roc, ax_pr, ax_hist) = plt.subplots(1, 3, figsize=(15, 4.5))
    labels, scores = ev.labels, ev.anomaly_score
    fpr_at = ev.fp / (ev.fp + ev.tn) if ev.fp + ev.tn else math.nan
    if labels.any() and not labels.all():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax_roc.plot(fpr, tpr, color="tab:blue", label=f"ROC-AUC {ev.roc_auc:.3f}")
        ax_roc.plot(
            [fpr_at], [ev.recall], "o", color="black", label=f"threshold {ev.threshold:.3f}"
        )
    ax_roc.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC")
    ax_roc.legend(loc="lower right")

    if labels.any():
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax_pr.step(
            recall, precision, where="post", color="tab:blue", label=f"PR-AUC {ev.pr_auc:.3f}"
        )
        if not math.isnan(ev.precision):
            ax_pr.plot([ev.recall], [ev.precision], "o", color="black", label="threshold")
        ax_pr.axhline(ev.actual_contamination, ls=":", color="grey", label="chance")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.05))
    ax_pr.legend(loc="lower left")

    bins = np.histogram_bin_edges(scores, bins=50)
    for name, mask, colour in (
        ("labelled normal", ~labels, "tab:green"),
        ("labelled anomaly", labels, "tab:red"),
    ):
        if mask.any():
            ax_hist.hist(scores[mask], bins, histtype="step", lw=1.5, color=colour, label=name)
    ax_hist.axvline(ev.threshold, color="black", ls="--", label=f"threshold {ev.threshold:.3f}")
    ax_hist.set(xlabel="anomaly score s(x)", ylabel="rows", yscale="log", title="Scores by label")
    ax_hist.legend()
    fig.suptitle(f"model {ev.model_version}: {ev.n_rows} rows")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
