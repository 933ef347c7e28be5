"""Response and request shapes, for the OpenAPI docs. The hot path builds JSON directly."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    prediction: int = Field(description="1 for an inlier, -1 for an anomaly (scikit-learn's).")
    is_anomaly: bool = Field(description="True exactly when scikit-learn's predict gives -1.")
    anomaly_score: float | None = Field(
        None,
        description="With score=true: s(x) = -score_samples(x), in (0, 1]; higher is more"
        " anomalous. The row is an anomaly when it is above the model's threshold.",
    )


class PredictionResponse(Prediction):
    model_version: str


class BatchResponse(BaseModel):
    model_version: str
    predictions: list[Prediction] = Field(description="One result per row, in request order.")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong, e.g. 'expected 2 features (mean, sd), got 3'.")


class ModelInformation(BaseModel):
    model_version: str
    model_file: str
    loaded_at: float = Field(description="Unix time the model was loaded by this process.")
    created_at: str = Field(description="When the model was trained (ISO 8601, UTC).")
    feature_names: list[str]
    n_features: int
    n_training_rows: int
    threshold: float = Field(description="anomaly_score above this is an anomaly.")
    offset: float = Field(description="scikit-learn's offset_ (threshold = -offset).")
    training_anomaly_ratio: float = Field(description="Share of training rows flagged.")
    training_scores: dict[str, float] = Field(description="Summary of training anomaly scores.")
    params: dict[str, Any] = Field(description="The IsolationForest's parameters.")
    max_samples_effective: int
    sklearn_version: str
    vigil_version: str


class Health(BaseModel):
    status: str
    model_version: str | None = None
    reason: str | None = None


SINGLE_EXAMPLES = {
    "array": {"summary": "Feature values in order", "value": [0.1, 0.1]},
    "object": {"summary": "Keyed by feature name", "value": {"mean": 0.1, "sd": 0.1}},
}
BATCH_EXAMPLES = {
    "arrays": {"summary": "Rows as arrays", "value": [[0.1, 0.1], [0.0, 0.09], [0.5, 0.5]]},
    "objects": {
        "summary": "Rows keyed by feature name",
        "value": [{"mean": 0.1, "sd": 0.1}, {"mean": 0.5, "sd": 0.5}],
    },
}


def json_body(examples: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """An ``openapi_extra`` request body for routes that read the raw body themselves."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "examples": examples}},
        }
    }


ROW_SCHEMA = {
    "oneOf": [
        {"type": "array", "items": {"type": "number"}, "description": "Values in feature order"},
        {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "Values keyed by feature name",
        },
    ]
}
BATCH_SCHEMA = {"type": "array", "items": ROW_SCHEMA}
