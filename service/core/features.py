"""Turning decoded JSON into feature matrices, with 4xx-ready messages that name the problem.

Transport-free: the API maps :class:`InputError` to an HTTP response with its status code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from contextlib import suppress
from itertools import chain

import numpy as np
import orjson

_NUMBER_TYPES = {float, int}  # exactly: bool is an int subclass but not a feature value
_SHOWN_NAMES = 5  # an error lists at most this many names, then how many more
_SHOWN_NAME_CHARS = 40  # and each name up to this many characters


class InputError(ValueError):
    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _names(names: Sequence[str]) -> str:
    """``a, b, c`` for an error message: the first few names, each shortened, and a count."""
    shown = [
        n if len(n) <= _SHOWN_NAME_CHARS else n[:_SHOWN_NAME_CHARS] + "..."
        for n in map(str, names[:_SHOWN_NAMES])
    ]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def _refuse_duplicate_keys(pairs: Iterable[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise InputError(
                f'duplicate key "{_names([key])}" in an object: give each feature once'
            )
        out[key] = value
    return out


def _object_keys(obj: dict) -> int:
    """Keys of ``obj`` and of the objects nested in its values, directly or in arrays whose first
    item is an object (a protocol document: ``{"inputs": [{"name": ...}]}``). Objects it does
    not reach only make the count fall short of the colons, which sends the body to the exact
    check."""
    keys = len(obj)
    for value in obj.values():
        kind = type(value)
        if kind is dict:
            keys += _object_keys(value)
        elif kind is list and value and type(value[0]) is dict:
            keys += sum(_object_keys(item) for item in value if type(item) is dict)
    return keys


def _check_unique_keys(body: bytes, value: object) -> None:
    """Refuse an object that repeats a key (orjson keeps the last value silently).

    Cheap for the bodies the service accepts: every member of an object has one ``:`` outside
    strings, so when the body has exactly as many colons as the top-level or row objects (and,
    for a top-level object, the objects nested in it) have keys, no key can repeat (and no
    colon hides in a string). Only otherwise is the body parsed again, with a hook that sees
    every key.
    """
    if type(value) is dict:
        try:
            keys = _object_keys(value)
        except RecursionError:  # nested deeper than Python recurses: the exact check decides
            keys = -1
    elif type(value) is list:
        if set(map(type, value)) == {dict}:  # C-level passes: a batch of row objects
            keys = sum(map(len, value))
        else:
            keys = sum(len(v) for v in value if type(v) is dict)
    else:
        return
    if body.count(b":") == keys:
        return
    # Deep nesting can exceed the stdlib parser's recursion limit: no valid row nests, and
    # the rows are checked next.
    with suppress(RecursionError):
        json.loads(body, object_pairs_hook=_refuse_duplicate_keys)


def decode_json(body: bytes) -> object:
    """Strict JSON: NaN and Infinity literals, numbers beyond float range, and objects that
    repeat a key are refused."""
    if not body.strip():
        raise InputError("request body is empty: send a JSON array of feature values", 400)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "NaN" in body.decode("utf-8", "replace") or "Infinity" in body.decode(
            "utf-8", "replace"
        ):
            raise InputError(
                "body is not valid JSON: NaN and Infinity are not JSON numbers;"
                " feature values must be finite",
                400,
            ) from None
        if "infinity" in msg:
            where = msg.split(":", 1)[-1].strip()
            raise InputError(
                f"a number is too large for a float64 ({where}); feature values must be finite",
                400,
            ) from None
        raise InputError(f"body is not valid JSON: {msg}", 400) from None
    if b"{" in body:
        _check_unique_keys(body, value)
    return value


class FeatureParser:
    """Validates rows against one model's features and builds float64 matrices."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.names = tuple(feature_names)
        self.n = len(self.names)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._expected = f"{self.n} features ({', '.join(self.names)})"

    def _row(self, value: object, where: str) -> list:
        if type(value) is list:
            if len(value) != self.n:
                if any(type(v) is list for v in value):
                    raise InputError(
                        f"{where}nested arrays are not accepted: expected one flat array of"
                        f" {self._expected} (several rows go to /predictions)"
                    )
                if not value:
                    raise InputError(f"{where}empty array: expected {self._expected}")
                raise InputError(f"{where}expected {self._expected}, got {len(value)}")
            for i, v in enumerate(value):
                t = type(v)
                if t is not float and t is not int:
                    if t is list:
                        raise InputError(
                            f"{where}feature {i} ({self.names[i]}) is an array; send one flat"
                            " array of numbers per row (several rows go to /predictions)"
                        )
                    raise InputError(
                        f"{where}feature {i} ({self.names[i]}) must be a number,"
                        f" got {_type_name(v)}"
                    )
            return value
        if type(value) is dict:
            missing = [n for n in self.names if n not in value]
            unknown = [k for k in value if k not in self._index]
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing {_names(missing)}")
                if unknown:
                    parts.append(f"unknown {_names(unknown)}")
                raise InputError(f"{where}expected {self._expected}: {'; '.join(parts)}")
            return self._row([value[n] for n in self.names], where)
        raise InputError(
            f"{where}expected an array of {self._expected} or an object keyed by feature name,"
            f" got {_type_name(value)}"
        )

    def _matrix(self, rows: list[list], where_of_row) -> np.ndarray:
        try:
            X = np.array(rows, dtype=np.float64)
        except OverflowError:
            X = None
        if X is None or not np.isfinite(X).all():
            for r, row in enumerate(rows):
                for i, v in enumerate(row):
                    try:
                        finite = math.isfinite(float(v))
                    except OverflowError:
                        finite = False
                    if not finite:
                        raise InputError(
                            f"{where_of_row(r)}feature {i} ({self.names[i]}) is out of range:"
                            " values must be finite float64 numbers"
                        )
        return X

    def one(self, value: object) -> np.ndarray:
        """A single row: shape (1, n_features)."""
        row = self._row(value, "")
        try:  # NaN and infinities carry through a sum: one cheap check instead of two numpy calls
            finite = math.isfinite(sum(row))
        except OverflowError:  # an integer beyond float64
            finite = False
        if finite:
            return np.array([row], dtype=np.float64)
        return self._matrix([row], lambda r: "")

    def many(self, value: object, max_rows: int) -> np.ndarray:
        """A batch of rows: shape (rows, n_features)."""
        if type(value) is not list:
            raise InputError(f"expected a JSON array of rows, got {_type_name(value)}")
        if not value:
            raise InputError("empty batch: send at least one row")
        if len(value) > max_rows:
            raise InputError(
                f"batch has {len(value)} rows; the limit is {max_rows} (VIGIL_MAX_BATCH_ROWS)",
                413,
            )
        if type(value[0]) in (int, float):
            raise InputError(
                f"expected an array of rows (arrays of {self._expected}), got a flat array;"
                " a single row goes to /prediction or is wrapped as [[...]]"
            )
        if not self._plain_rows(value):  # objects, or something to point out row by row
            value = [self._row(v, f"row {r}: ") for r, v in enumerate(value)]
        return self._matrix(value, lambda r: f"row {r}: ")

    def _plain_rows(self, rows: list) -> bool:
        """Whether every row is an array of ``n`` numbers: checked in C-level passes (map, set),
        twice as fast as row by row for large batches."""
        return (
            set(map(type, rows)) == {list}
            and set(map(len, rows)) == {self.n}
            and set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES
        )
