"""The protocol every detector kind implements, and its parameter specs.

A kind is a stateless object with a ``name``, a tuple of :class:`Param` (its own parameters,
defaults as PyOD's), ``fit(X, params, seed) -> Fit`` and ``scorer(state) -> Scorer``.
``Fit.state`` is plain data (numpy arrays, numbers, strings, lists of those) so that an
artifact can hold it and serving needs neither PyOD nor a fitted scikit-learn object.
Raw scores are "higher is more anomalous", as PyOD's ``decision_function``.

Parameter values arrive as strings (``--param k=v`` on the CLI) or as JSON values (the API);
each :class:`Param` parses both, and every error names the kind and the parameter.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "DetectorKind",
    "Fit",
    "FitError",
    "Param",
    "ParamError",
    "Scorer",
    "boolean",
    "choice",
    "integer",
    "integer_list",
    "number",
    "optional",
]


class ParamError(ValueError):
    """A parameter value (or name) a kind refuses: the message names the kind and parameter."""

    def __init__(self, kind: str, param: str, problem: str) -> None:
        super().__init__(f"{kind}: {problem}")
        self.kind = kind
        self.param = param


class FitError(ValueError):
    """Training data a kind cannot fit with the given parameters (message says why)."""


class Scorer(Protocol):
    """Serving-time scorer: ``score(X)`` for a C-contiguous finite float64 ``(n, d)`` array."""

    n_features: int

    def score(self, X: np.ndarray) -> np.ndarray: ...


# A parser takes a CLI string or a JSON value and returns the canonical value, or raises
# ValueError("must be ...") (the caller adds "<kind>: <param> " and ", got <value>").
Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Param:
    """One parameter: its name, default (already canonical), parser and a one-line doc."""

    name: str
    default: Any
    parse: Parser = field(repr=False)
    doc: str = ""

    def value(self, kind: str, raw: Any) -> Any:
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise ParamError(kind, self.name, f"{self.name} {exc}, got {raw!r}") from None


@dataclass
class Fit:
    """What ``DetectorKind.fit`` returns: serving state, training scores, PyOD's threshold.

    ``training_scores`` are the library's scores of the training rows (PyOD's
    ``decision_scores_``); ``threshold`` is the library's own (``threshold_``, or
    ``-offset_`` for the IsolationForest). ``info`` is small JSON-able metadata.
    """

    state: dict[str, Any]
    training_scores: np.ndarray
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)


class DetectorKind(ABC):
    """A detector kind. Subclasses set the class attributes and implement fit and scorer."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    default_contamination: float = 0.1  # PyOD's default
    default_max_train_rows: int | None = None  # None: no subsample
    rows_independent: bool = False
    """True when a row's score in a batch equals its score alone, bit for bit (elementwise
    arithmetic only, no matrix products whose summation order depends on the batch size):
    the server may then score concurrent one-row requests together
    (``service.serving.row_batcher``). tests/detectors/test_exactness.py checks it."""

    @abstractmethod
    def fit(self, X: np.ndarray, params: Mapping[str, Any], seed: int) -> Fit:
        """Fit on ``X`` (already scaled, finite float64) with this kind's own parameters."""

    @abstractmethod
    def scorer(self, state: Mapping[str, Any]) -> Scorer:
        """Build the serving scorer from ``Fit.state`` (no PyOD, no fitted estimator)."""


def pyod_threshold(scores: np.ndarray, contamination: float) -> float:
    """PyOD's ``_process_decision_scores``: ``percentile(scores, 100 * (1 - contamination))``."""
    return float(np.percentile(scores, 100 * (1 - contamination)))


# --- parsers ---------------------------------------------------------------------------------

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NONE = {"none", "null", ""}


def _is_json_number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def integer(low: int | None = None, high: int | None = None) -> Parser:
    """An integer in [low, high]; accepts ``"5"``, ``5`` and ``5.0``."""
    bounds = _bounds_text(low, high, integer=True)

    def parse(raw: Any) -> int:
        value: Any = raw
        if isinstance(raw, str):
            try:
                value = float(raw.strip()) if raw.strip() else None
            except ValueError:
                value = None
        if not _is_json_number(value) or not math.isfinite(value) or value != int(value):
            raise ValueError(f"must be an integer{bounds}")
        value = int(value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"must be an integer{bounds}")
        return value

    return parse


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Parser:
    """A finite number in the given interval."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    text = "a number"
    if low is not None and high is not None:
        text = f"a number in {left}{low}, {high}{right}"
    elif low is not None:
        text = f"a number {'>' if low_open else '>='} {low}"
    elif high is not None:
        text = f"a number {'<' if high_open else '<='} {high}"

    def parse(raw: Any) -> float:
        value: Any = raw
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                value = None
        if not _is_json_number(value) or not math.isfinite(value):
            raise ValueError(f"must be {text}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise ValueError(f"must be {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise ValueError(f"must be {text}")
        return value

    return parse


def choice(*options: str) -> Parser:
    def parse(raw: Any) -> str:
        if isinstance(raw, str) and raw.strip().lower() in options:
            return raw.strip().lower()
        raise ValueError(f"must be one of {', '.join(options)}")

    return parse


def boolean() -> Parser:
    def parse(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError("must be true or false")

    return parse


def optional(inner: Parser) -> Parser:
    """``None`` (JSON null, or the string ``none``) or what ``inner`` accepts."""

    def parse(raw: Any) -> Any:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE):
            return None
        try:
            return inner(raw)
        except ValueError as exc:
            raise ValueError(f"{exc} or none") from None

    return parse


def integer_list(low: int = 1, max_len: int = 16) -> Parser:
    """A non-empty list of integers >= low: ``"32,16,32"`` or ``[32, 16, 32]``."""
    item = integer(low)

    def parse(raw: Any) -> tuple[int, ...]:
        items: Sequence[Any] | None = None
        if isinstance(raw, str):
            items = [p for p in raw.replace(" ", "").split(",")] if raw.strip() else None
        elif isinstance(raw, list | tuple):
            items = raw
        elif _is_json_number(raw):
            items = [raw]
        problem = f"must be a list of 1 to {max_len} integers >= {low} (e.g. 32,16,32)"
        if not items or len(items) > max_len:
            raise ValueError(problem)
        try:
            return tuple(item(v) for v in items)
        except ValueError:
            raise ValueError(problem) from None

    return parse


def _bounds_text(low: float | None, high: float | None, *, integer: bool) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
