"""Offline drift: compare rows (a CSV's) with a model's reference sketch.

Per feature and for the score: PSI on the reference bins (the formula of ``psi.py``, which the
recording rules repeat in PromQL), the two-sample Kolmogorov-Smirnov statistic and p-value and
the Wasserstein (earth mover's) distance against the stored reference sample. A column is
flagged as drifted when its PSI is above ``DRIFT_THRESHOLD`` (0.2), the alert's threshold; KS
and Wasserstein are there to read, not to flag (on thousands of rows the KS p-value is tiny for
shifts too small to matter, and the Wasserstein distance is in the column's own units).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from service.drift.binning import SCORE, counts
from service.drift.psi import DRIFT_THRESHOLD, psi_of_counts, shares

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class ColumnDrift:
    """One feature's (or the score's) drift against the reference."""

    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float
    reference_std: float
    counts: list[int]
    reference_shares: list[float]
    edges: list[float]

    @property
    def drifted(self) -> bool:
        return self.psi > DRIFT_THRESHOLD

    @property
    def shares(self) -> list[float]:
        return shares(self.counts).tolist()


@dataclass(frozen=True)
class DriftReport:
    n_rows: int
    n_reference_rows: int
    columns: list[ColumnDrift]

    @property
    def drifted(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    def table(self) -> str:
        head = f"{'column':<20} {'PSI':>8} {'KS':>8} {'KS p':>10} {'Wasserstein':>12} {'W/std':>7}"
        lines = [
            f"{self.n_rows} rows against a reference of {self.n_reference_rows} training rows"
            f" (drift: PSI > {DRIFT_THRESHOLD:g})",
            head,
        ]
        for c in self.columns:
            w_std = c.wasserstein / c.reference_std if c.reference_std > 0 else float("nan")
            lines.append(
                f"{c.name:<20} {c.psi:>8.4f} {c.ks_statistic:>8.4f} {c.ks_pvalue:>10.3g}"
                f" {c.wasserstein:>12.4g} {w_std:>7.3f}" + ("  DRIFT" if c.drifted else "")
            )
        flagged = self.drifted
        lines.append(f"drifted: {', '.join(flagged)}" if flagged else "no drift")
        return "\n".join(lines)


def column_drift(
    sketch: dict[str, Any], reference_sample: np.ndarray, values: np.ndarray
) -> ColumnDrift:
    """``values`` against one column's sketch (bins, shares) and its reference sample."""
    c = counts(sketch["edges"], values)
    ks = stats.ks_2samp(values, reference_sample)
    return ColumnDrift(
        name=sketch["name"],
        psi=psi_of_counts(c, sketch["shares"]),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein=float(stats.wasserstein_distance(values, reference_sample)),
        reference_std=float(sketch["stats"]["std"]),
        counts=[int(v) for v in c],
        reference_shares=[float(v) for v in sketch["shares"]],
        edges=[float(e) for e in sketch["edges"]],
    )


def compare(
    reference: dict[str, Any],
    X: np.ndarray,
    feature_names: list[str],
    scores: np.ndarray | None = None,
) -> DriftReport:
    """Drift of rows ``X`` (columns named ``feature_names``, in any order, extra ones
    ignored) and, when given, of their ``scores`` against ``reference``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("no rows to compare")
    wanted = [f["name"] for f in reference["features"]]
    missing = [n for n in wanted if n not in feature_names]
    if missing:
        raise ValueError(f"the data has no column for features {missing} (it has {feature_names})")
    sample = np.asarray(reference["sample"]["rows"], dtype=np.float64).reshape(-1, len(wanted))
    columns = [
        column_drift(f, sample[:, j], X[:, feature_names.index(f["name"])])
        for j, f in enumerate(reference["features"])
    ]
    if scores is not None:
        ref_scores = np.asarray(reference["sample"]["scores"], dtype=np.float64)
        columns.append(column_drift(reference["score"], ref_scores, np.asarray(scores)))
    return DriftReport(int(X.shape[0]), int(reference["n_rows"]), columns)


def plot(report: DriftReport, path: str | Path | None = None) -> Figure:
    """Each column's share per bin, current against reference, with its PSI; saved to
    ``path`` when given (PNG, or any format matplotlib knows from the extension)."""
    from matplotlib.figure import Figure

    n = len(report.columns)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, c in zip(axes, report.columns, strict=False):
        x = np.arange(len(c.counts))
        ax.bar(x - 0.2, c.reference_shares, width=0.4, label="reference", color="0.6")
        ax.bar(x + 0.2, c.shares, width=0.4, label="current", color="C3" if c.drifted else "C0")
        ax.set_title(f"{c.name}: PSI {c.psi:.3f}" + (" (drift)" if c.drifted else ""))
        ax.set_xlabel("bin (training deciles)" if c.name != SCORE else "score bin")
        ax.set_ylabel("share of rows")
        ax.set_xticks(x)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
