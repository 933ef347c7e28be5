"""Compare detector kinds on one labelled data set: fit each, score the test rows, rank them.

Every kind from the table (``service.detectors.table``) is fitted with its defaults, or with
``--param`` overrides, on the same training rows and seed, then scores the same labelled test
rows. The metrics are :func:`service.evaluation.vectors.evaluate_scores`'s (the same numbers
``python -m service evaluate`` prints); this module adds the timing, the ranking, the table and
the plot. A kind that cannot fit the data, or cannot score it, is reported with its one-line
error instead of stopping the comparison.

Timing: before it is timed, each kind is fitted and scored once on a small subsample of the
training rows, so that imports and numba's first-call compilation are not counted as fit time.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.detectors import detector, table
from service.detectors.base import ParamError
from service.evaluation.vectors import Evaluation, evaluate_scores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["KindResult", "compare", "kinds_from", "params_per_kind", "plot", "rank", "table_text"]

WARM_UP_ROWS = 64
TIE_DECIMALS = 9
_MAX_ERROR_CHARS = 160

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KindResult:
    """One kind's outcome: its evaluation and timings, or the error that stopped it."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    """The resolved parameters (defaults filled in); empty when they were refused."""
    evaluation: Evaluation | None = None
    fit_seconds: float = math.nan
    """Wall time of ``detector.fit`` on the training rows (scaler, fit and calibration)."""
    score_seconds: float = math.nan
    """Wall time of scoring every test row in one call."""
    error: str | None = None
    """One line: why the kind could not be fitted or could not score the test rows."""

    @property
    def ok(self) -> bool:
        return self.evaluation is not None

    @property
    def roc_auc(self) -> float:
        return self.evaluation.roc_auc if self.evaluation is not None else math.nan

    @property
    def pr_auc(self) -> float:
        return self.evaluation.pr_auc if self.evaluation is not None else math.nan


def kinds_from(spec: str) -> list[str]:
    """``"all"`` or ``"k1,k2"`` to kind names (table order for all, given order otherwise).

    Repeats are dropped; an unknown name raises ``UnknownKindError`` listing the known kinds.
    """
    if spec.strip().lower() == "all":
        return table.names()
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("--detectors is empty: give 'all' or kind names separated by commas")
    for name in names:
        table.get(name)
    return list(dict.fromkeys(names))


def params_per_kind(kinds: Sequence[str], assignments: Iterable[str]) -> dict[str, dict[str, str]]:
    """Split ``--param`` strings among ``kinds`` and validate them.

    ``name=value`` applies to every kind compared, so each must accept it (``scaler=standard``,
    ``contamination=0.05``); ``kind.name=value`` applies to that kind only
    (``lof.n_neighbors=10``). Raises :class:`ParamError` naming the kind and the parameter.
    """
    common: list[str] = []
    own: dict[str, list[str]] = {k: [] for k in kinds}
    for item in assignments:
        target, dot, rest = item.partition(".")
        name = item.partition("=")[0]
        if dot and "." in name:  # kind.name=value (a dot in a value is no target)
            kind = target.strip().lower()
            if kind not in own:
                table.get(kind)  # unknown kind: UnknownKindError lists the known ones
                raise ParamError(kind, rest.partition("=")[0], f"{kind} is not being compared")
            own[kind].append(rest)
        else:
            common.append(item)
    out: dict[str, dict[str, str]] = {}
    for kind in kinds:
        given = detector.parse_assignments(kind, common)
        its_own = detector.parse_assignments(kind, own[kind])
        given.update(its_own)  # a kind's own setting wins over the common one
        try:
            detector.resolve_params(kind, given)  # refuse now, before anything is fitted
        except ParamError as exc:
            if exc.param in its_own or exc.param in detector.param_specs(table.get(kind)):
                raise
            problem = str(exc).removeprefix(f"{kind}: ")
            hint = f"to set {exc.param} for some kinds only, write KIND.{exc.param}=VALUE"
            raise ParamError(kind, exc.param, f"{problem}; {hint}") from None
        out[kind] = given
    return out


def _one_line(kind: str, exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    prefix = f"{kind}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if not isinstance(exc, ValueError):  # FitError and ParamError are ValueErrors
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text or type(exc).__name__


def _warm_up(kind: str, X: np.ndarray, params: Mapping[str, Any], seed: int) -> None:
    """Fit and score once on a few rows, untimed: imports and JIT compilation happen here."""
    n = X.shape[0]
    rows = np.random.default_rng(seed).choice(n, size=min(n, WARM_UP_ROWS), replace=False)
    sample = np.ascontiguousarray(X[np.sort(rows)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.load(detector.fit(kind, sample, params, seed)).score(sample)
    except Exception:  # the timed fit below reports what goes wrong
        pass


def _fit_and_score(
    kind: str,
    X_train: np.ndarray,
    X_test: np.ndarray,
    labels: np.ndarray,
    params: Mapping[str, Any],
    seed: int,
    say: Progress,
) -> KindResult:
    resolved = detector.resolve_params(kind, params)

    def relay(message: str) -> None:
        # What is fitted on how many rows (and any subsample) is news; fit's own "fitted in"
        # is not: the summary line gives the fit time as measured here.
        if ": fitted in " not in message:
            say(message)

    _warm_up(kind, X_train, params, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        try:
            state = detector.fit(kind, X_train, params, seed, progress=relay)
        except Exception as exc:  # any kind's failure is reported, not raised
            return KindResult(kind, resolved, error=f"fit failed: {_one_line(kind, exc)}")
        fit_seconds = time.perf_counter() - started
        try:
            fitted = detector.load(state)
            started = time.perf_counter()
            scores = fitted.score(X_test)
            score_seconds = time.perf_counter() - started
        except Exception as exc:
            error = f"score failed: {_one_line(kind, exc)}"
            return KindResult(kind, resolved, fit_seconds=fit_seconds, error=error)
    for message in dict.fromkeys((str(w.message).splitlines() or [""])[0] for w in caught):
        say(f"{kind}: warning: {message[:_MAX_ERROR_CHARS]}")
    if not np.isfinite(scores).all():
        return KindResult(
            kind,
            resolved,
            fit_seconds=fit_seconds,
            score_seconds=score_seconds,
            error="score failed: non-finite scores on the test rows",
        )
    ev = evaluate_scores(
        scores,
        fitted.is_anomaly(scores),
        labels,
        threshold=fitted.threshold,
        training_contamination=state["training_anomaly_ratio"],
        model_version=kind,
    )
    return KindResult(kind, resolved, ev, fit_seconds, score_seconds)


def compare(
    X_train: np.ndarray,
    X_test: np.ndarray,
    labels: np.ndarray,
    kinds: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> list[KindResult]:
    """Fit each kind on ``X_train``, score ``X_test`` against ``labels``; best first.

    ``kinds`` defaults to every kind in the table; ``params`` maps a kind to its parameter
    overrides (see :func:`params_per_kind`). ``progress`` is told what happens, kind by kind.
    """
    say = progress or (lambda _message: None)
    kinds = list(kinds) if kinds is not None else table.names()
    X_train = np.ascontiguousarray(X_train, dtype=np.float64)
    X_test = np.ascontiguousarray(X_test, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    results = []
    for i, kind in enumerate(kinds, 1):
        step = f"[{i}/{len(kinds)}] "

        def tell(message: str, step: str = step) -> None:
            say(step + message)

        result = _fit_and_score(
            kind, X_train, X_test, labels, (params or {}).get(kind, {}), seed, tell
        )
        if result.ok:
            tell(
                f"{kind}: ROC-AUC {_num(result.roc_auc)}, PR-AUC {_num(result.pr_auc)};"
                f" fit {result.fit_seconds:.3f} s, score {result.score_seconds:.4f} s"
            )
        else:
            tell(f"{kind}: {result.error}")
        results.append(result)
    return rank(results)


def rank(results: Iterable[KindResult]) -> list[KindResult]:
    """Best first: by ROC-AUC, then PR-AUC (undefined last); ties keep their order; failures
    come last, in their order.

    Values equal to 9 decimals tie: summation order alone makes a perfect average precision
    0.9999999999999999 for one kind and 1.0 for another.
    """

    def key(r: KindResult) -> tuple[float, float]:
        return tuple(  # type: ignore[return-value]
            math.inf if math.isnan(v) else -round(v, TIE_DECIMALS) for v in (r.roc_auc, r.pr_auc)
        )

    results = list(results)
    return sorted((r for r in results if r.ok), key=key) + [r for r in results if not r.ok]


def _num(v: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


_COLUMNS = ("kind", "ROC-AUC", "PR-AUC", "P", "R", "F1", "fit s", "score s")


def table_text(results: Sequence[KindResult]) -> str:
    """The comparison as a plain-text table, in the given order (``compare``'s: best first).

    P, R and F1 are precision, recall and F1 at each kind's own threshold (its
    contamination's quantile of its training scores).
    """
    width = max([len(_COLUMNS[0]), *(len(r.kind) for r in results)])
    head = f"{_COLUMNS[0]:<{width}}" + "".join(f"{c:>9}" for c in _COLUMNS[1:])
    lines = [head]
    for r in results:
        if r.evaluation is None:
            lines.append(f"{r.kind:<{width}}  {r.error}")
            continue
        ev = r.evaluation
        cells = (
            _num(ev.roc_auc),
            _num(ev.pr_auc),
            _num(ev.precision, 3),
            _num(ev.recall, 3),
            _num(ev.f1, 3),
            f"{r.fit_seconds:.3f}",
            f"{r.score_seconds:.4f}",
        )
        lines.append(f"{r.kind:<{width}}" + "".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)


def plot(results: Sequence[KindResult], path: str | Path | None = None) -> Figure:
    """ROC and precision-recall curves of every kind that scored, in one figure.

    With ``path`` the figure is also saved there (PNG, or any format matplotlib knows).
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(13, 5.5))
    scored = [r for r in results if r.evaluation is not None]
    colours = plt.get_cmap("tab10").colors
    share = math.nan
    for i, r in enumerate(scored):
        ev = r.evaluation
        assert ev is not None
        colour = colours[i % len(colours)]
        style = ("-", "--", ":")[(i // len(colours)) % 3]
        share = ev.actual_contamination
        if ev.labels.any() and not ev.labels.all():
            fpr, tpr, _ = roc_curve(ev.labels, ev.anomaly_score)
            ax_roc.plot(fpr, tpr, style, color=colour, label=f"{r.kind} {ev.roc_auc:.3f}")
        if ev.labels.any():
            precision, recall, _ = precision_recall_curve(ev.labels, ev.anomaly_score)
            ax_pr.step(
                recall,
                precision,
                style,
                where="post",
                color=colour,
                label=f"{r.kind} {ev.pr_auc:.3f}",
            )
    ax_roc.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate (recall)")
    ax_roc.set_title("ROC (legend: ROC-AUC)")
    ax_roc.legend(loc="lower right", fontsize="small")
    if not math.isnan(share):
        ax_pr.axhline(share, ls=":", color="grey", label="chance")
    ax_pr.set(xlabel="recall", ylabel="precision", ylim=(0, 1.05))
    ax_pr.set_title("Precision-recall (legend: PR-AUC)")
    ax_pr.legend(loc="lower left", fontsize="small")
    n_rows = scored[0].evaluation.n_rows if scored else 0  # type: ignore[union-attr]
    fig.suptitle(f"{len(scored)} detector kinds on {n_rows} labelled rows")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
