"""One figure per series: values, the expected value and band, detections, labelled windows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.series.nab import LabelledSeries

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from service.series.stream import SeriesResult


def plot_series(
    result: SeriesResult,
    labelled: LabelledSeries,
    threshold: float,
    title: str,
    path: str | Path | None = None,
) -> Figure:
    """Detections are the points scoring >= ``threshold`` after the probation (NAB's rule)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    t = result.timestamps.astype("datetime64[s]")
    fig = Figure(figsize=(14, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for left, right in labelled.windows:
        ax.axvspan(t[left], t[right], color="tab:orange", alpha=0.2, lw=0)
    ax.fill_between(t, result.lower, result.upper, color="tab:blue", alpha=0.15, lw=0, label="band")
    ax.plot(t, result.values, color="0.2", lw=0.6, label="value")
    ax.plot(t, result.expected, color="tab:blue", lw=0.8, label="expected")
    det = np.asarray(result.score) >= threshold
    det[: labelled.probation] = False
    ax.scatter(
        t[det],
        result.values[det],
        color="tab:red",
        s=14,
        zorder=3,
        label=f"detection (score >= {threshold:.3f})",
    )
    if labelled.probation:
        ax.axvline(t[labelled.probation], color="0.5", ls=":", lw=1, label="end of probation")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Patch(color="tab:orange", alpha=0.2, label="labelled window"))
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, loc="upper left", fontsize=8, ncols=3)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
