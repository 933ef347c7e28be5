"""KServe V1 (REST): ``{"instances": [...]}`` in; model documents out.

Rows are parsed by the model's :class:`~service.core.features.FeatureParser`, as for
``/predictions``: each instance is an array of feature values in order or an object keyed by
feature name, with the same checks and row limit. The ``:predict`` answer is the
``/predictions`` body, ``handlers.batch_result(model, scores, with_score)``: its
``{"predictions": [...]}`` is V1's, each prediction a ``/predictions`` row, with the
``model_version`` beside it. A :class:`V1Error` becomes ``{"error": message}`` with its status
(400 bad request, 404 unknown model, 503 not ready).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from service.core.features import FeatureParser, InputError
from service.protocols.common import (
    NOT_FOUND,
    NOT_READY,
    ProtocolError,
    decode_object,
    not_ready_message,
    unknown_model_message,
)


class V1Error(ProtocolError):
    """A refused V1 request: 400 bad request, 404 unknown model, 503 not ready."""


def parse_predict_request(body: bytes, parser: FeatureParser, max_rows: int) -> np.ndarray:
    """The ``(rows, n_features)`` float64 matrix of a ``:predict`` body, or :class:`V1Error`
    (400) whose message starts with the field, ``instances: ...``."""
    doc = decode_object(body, V1Error, 'an "instances" array')
    if "instances" not in doc:
        also = ' (the columnar "inputs" format is not supported)' if "inputs" in doc else ""
        raise V1Error(
            f'instances: missing{also}; send {{"instances": [[...], ...]}}, one row per instance'
        )
    instances = doc["instances"]
    if type(instances) is list and instances and type(instances[0]) in (int, float):
        expected = f"{parser.n} features ({', '.join(parser.names)})"
        raise V1Error(
            f"instances: expected an array of instances (arrays of {expected} or objects keyed"
            " by feature name), got a flat array of numbers; send one instance as [[...]]"
        )
    try:
        return parser.many(instances, max_rows)
    except InputError as exc:
        raise V1Error(f"instances: {exc.message}") from None


def models_list(names: Iterable[str]) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {"models": list(names)}


def model_status(name: str, ready: bool) -> dict[str, Any]:
    """``GET /v1/models/{name}`` (200 when ready, else 503 with this body)."""
    return {"name": name, "ready": ready}


def unknown_model(name: str, known: Sequence[str]) -> V1Error:
    """404 for a model the registry does not serve; the message lists those it does."""
    return V1Error(unknown_model_message(name, known), NOT_FOUND)


def not_ready(name: str, reason: str | None) -> V1Error:
    """503 for a known model that cannot score now."""
    return V1Error(not_ready_message(name, reason), NOT_READY)
