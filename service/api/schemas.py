"""Request and response shapes for the OpenAPI document. The hot path builds JSON directly.

The response models are pydantic classes. The request bodies depend on the serving model (its
feature names and count) and on ``VIGIL_MAX_BATCH_ROWS``, so they are JSON schemas built by
:func:`request_components` whenever the document is built for a model (``service/openapi.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema


class Prediction(BaseModel):
    prediction: Literal[-1, 1] = Field(
        description="1 for an inlier, -1 for an anomaly (scikit-learn's convention)."
    )
    is_anomaly: bool = Field(description="True exactly when the score is above the threshold.")
    # Left out of the answer without score=true; never null.
    anomaly_score: float | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=lambda schema: schema.pop("default"),  # absent, never null
        description="With score=true only: the kind's raw score, higher is more anomalous (for"
        " the iforest s(x) = -score_samples(x), in (0, 1]; for PyOD kinds decision_function)."
        " The row is an anomaly when it is above the model's threshold.",
    )


class ScoredBy(BaseModel):
    model: str = Field(description="The model's name in the registry.")
    version: int = Field(description="The version number that scored the rows.")
    model_version: str = Field(description="That version's content hash.")
    kind: str = Field(description="The detector kind (iforest, ecod, lof, ...).")


class PredictionResponse(Prediction, ScoredBy):
    pass


class BatchResponse(ScoredBy):
    predictions: list[Prediction] = Field(description="One result per row, in request order.")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong, e.g. 'expected 2 features (mean, sd), got 3'.")


class ModelInformation(BaseModel):
    model: str
    version: int
    model_version: str = Field(description="The content hash of the fitted detector.")
    kind: str
    model_file: str = Field(description="The artifact's file name (no folder).")
    loaded_at: float = Field(description="Unix time the version was loaded by this process.")
    created_at: str = Field(description="When the model was trained (ISO 8601, UTC).")
    feature_names: list[str]
    n_features: int
    n_training_rows: int
    threshold: float = Field(description="anomaly_score above this is an anomaly.")
    training_anomaly_ratio: float = Field(description="Share of training rows flagged.")
    training_scores: dict[str, float] = Field(description="Quantiles of the training scores.")
    params: dict[str, Any] = Field(description="The detector's parameters, defaults filled in.")
    library_versions: dict[str, str]
    vigil_version: str | None
    offset: float | SkipJsonSchema[None] = Field(
        None, description="iforest only: scikit-learn's offset_ (threshold = -offset)."
    )
    max_samples_effective: int | SkipJsonSchema[None] = Field(
        None, description="iforest only: the rows drawn per tree."
    )
    aliases: dict[str, int] | SkipJsonSchema[None] = Field(
        None, description="/models/{name} only: the model's aliases."
    )
    versions: list[int] | SkipJsonSchema[None] = Field(
        None, description="/models/{name} only: the loaded versions."
    )


class ModelSummary(BaseModel):
    name: str
    kind: str | None
    ready: bool
    default_version: int | None
    versions: list[int] = Field(description="Loaded versions.")
    registered_versions: list[int] = Field(description="Every version in the registry.")
    aliases: dict[str, int]
    feature_names: list[str]
    reason: str | SkipJsonSchema[None] = Field(None, description="Why it is not ready.")


class ModelList(BaseModel):
    models: list[ModelSummary]
    default_model: str | None = Field(description="The model /prediction serves.")


# What POST /admin/reload answers (model_store.ReloadOutcome.result): 200 for the first two.
ReloadResult = Literal["reloaded", "unchanged", "refused"]


class Live(BaseModel):
    status: Literal["alive"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: str | None = Field(description="The default model (none when there is none).")
    model_version: str | None
    models: dict[str, str] = Field(description="Each model: ready, or why not.")


class NotReady(BaseModel):
    status: Literal["not ready"]
    reason: str = Field(description="Why no model is loaded (files named by base name only).")
    models: dict[str, str] = Field(description="Each model: ready, or why not.")


def error(description: str, **extra: Any) -> dict[str, Any]:
    """A ``responses=`` entry whose body is :class:`ErrorResponse`."""
    return {"model": ErrorResponse, "description": description, **extra}


# Security scheme of POST /admin/reload; service/openapi.py declares it in the components.
ADMIN_SECURITY = "AdminToken"
ADMIN_SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "VIGIL_ADMIN_TOKEN, sent as 'Authorization: Bearer <token>'.",
}

ROW = "Row"
BATCH = "Batch"


def json_body(component: str) -> dict[str, Any]:
    """An ``openapi_extra`` request body for routes that read the raw body themselves.

    The schema is a reference to ``component``, which :func:`request_components` defines for the
    serving model.
    """
    ref = {"$ref": f"#/components/schemas/{component}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


# Feature values are float64 numbers ("format: double"): NaN and Infinity are not JSON, and a
# number that rounds to infinity as a float64 (2**1024 - 2**970 or more, about 1.8e308) is
# refused with a 400. That bound is not given as exclusiveMaximum: it is not a float64 itself,
# so clients that read the document into float64s (and schemathesis) cannot use it.
NUMBER = {
    "type": "number",
    "format": "double",
    "description": "A float64: beyond about ±1.8e308 is refused (400).",
}


def request_components(
    feature_names: Sequence[str] | None, max_batch_rows: int
) -> dict[str, dict[str, Any]]:
    """The ``Row`` and ``Batch`` schemas for a model taking ``feature_names`` (None: no model)."""
    if feature_names is None:
        row = {
            "description": "One feature vector. No model is loaded, so every request answers"
            " 503; the document describes the model's features once one is loaded.",
            "oneOf": [
                {"type": "array", "items": NUMBER, "minItems": 1},
                {"type": "object", "additionalProperties": NUMBER, "minProperties": 1},
            ],
        }
    else:
        names = list(feature_names)
        listed = f"{len(names)} features ({', '.join(names)})"
        row = {
            "description": f"One feature vector of the serving model: {listed}.",
            "oneOf": [
                {
                    "type": "array",
                    "description": f"Values in feature order: {', '.join(names)}.",
                    "items": NUMBER,
                    "minItems": len(names),
                    "maxItems": len(names),
                },
                {
                    "type": "object",
                    "description": "Values keyed by feature name, every feature and no other.",
                    "properties": {name: NUMBER for name in names},
                    "required": names,
                    "additionalProperties": False,
                },
            ],
        }
    batch = {
        "description": f"Rows to score: 1 to {max_batch_rows} (VIGIL_MAX_BATCH_ROWS; more is"
        " 413), each an array or an object; they may be mixed.",
        "type": "array",
        "items": {"$ref": f"#/components/schemas/{ROW}"},
        "minItems": 1,
        "maxItems": max_batch_rows,
    }
    return {ROW: row, BATCH: batch}


def request_examples(feature_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Named examples of each request body for a model taking ``feature_names``."""
    names = list(feature_names)

    def array(value: float) -> list[float]:
        return [value] * len(names)

    def keyed(value: float) -> dict[str, float]:
        return dict.fromkeys(names, value)

    return {
        ROW: {
            "array": {"summary": "Feature values in order", "value": array(0.1)},
            "object": {"summary": "Keyed by feature name", "value": keyed(0.1)},
        },
        BATCH: {
            "arrays": {"summary": "Rows as arrays", "value": [array(0.1), array(0.5)]},
            "objects": {"summary": "Rows keyed by feature name", "value": [keyed(0.1), keyed(0.5)]},
        },
    }
