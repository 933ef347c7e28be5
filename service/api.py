"""HTTP routes: thin. They read the request, call a handler, and write JSON."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from service import handlers, schemas
from service.model_store import ModelStore
from service.scoring import Model
from service.settings import Settings
from service.validation import InputError, decode_json

router = APIRouter()


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def require_model(store: Annotated[ModelStore, Depends(get_store)]) -> Model:
    model = store.model
    if model is None:
        raise HTTPException(503, f"no model loaded: {store.not_ready_reason}")
    return model


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelDep = Annotated[Model, Depends(require_model)]
ScoreQuery = Annotated[bool, Query(description="Add anomaly_score to each result.")]

_ERRORS = {
    400: {"model": schemas.ErrorResponse, "description": "Body is not valid JSON"},
    413: {"model": schemas.ErrorResponse, "description": "Body or batch too large"},
    415: {"model": schemas.ErrorResponse, "description": "Body is not JSON"},
    422: {"model": schemas.ErrorResponse, "description": "Wrong features or values"},
    503: {"model": schemas.ErrorResponse, "description": "No model loaded"},
}


def _json(content: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


async def read_json(request: Request, max_bytes: int) -> object:
    ctype = request.headers.get("content-type")
    if ctype is not None:
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise InputError(f"Content-Type must be application/json, got {mime or 'nothing'}", 415)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise InputError(
            f"body is {length} bytes; the limit is {max_bytes} (VIGIL_MAX_BODY_BYTES)", 413
        )
    body = await request.body()
    if len(body) > max_bytes:
        raise InputError(f"body is over the limit of {max_bytes} bytes", 413)
    return decode_json(body)


@router.post(
    "/prediction",
    response_model=schemas.PredictionResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Score one feature vector",
    openapi_extra=schemas.json_body(schemas.SINGLE_EXAMPLES, schemas.ROW_SCHEMA),
)
async def prediction(
    request: Request, model: ModelDep, settings: SettingsDep, score: ScoreQuery = False
) -> Response:
    X = model.parser.one(await read_json(request, settings.max_body_bytes))
    scores = await handlers.score(model, X, endpoint="prediction", inline_rows=settings.inline_rows)
    return _json(handlers.single_result(model, scores, score))


@router.post(
    "/predictions",
    response_model=schemas.BatchResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Score a batch of feature vectors",
    openapi_extra=schemas.json_body(schemas.BATCH_EXAMPLES, schemas.BATCH_SCHEMA),
)
async def predictions(
    request: Request, model: ModelDep, settings: SettingsDep, score: ScoreQuery = False
) -> Response:
    payload = await read_json(request, settings.max_body_bytes)
    X = model.parser.many(payload, settings.max_batch_rows)
    scores = await handlers.score(
        model, X, endpoint="predictions", inline_rows=settings.inline_rows
    )
    return _json(handlers.batch_result(model, scores, score))


@router.get(
    "/model_information",
    response_model=schemas.ModelInformation,
    responses={503: _ERRORS[503]},
    summary="The loaded model's parameters and metadata",
)
async def model_information(model: ModelDep) -> Response:
    return _json(handlers.model_information(model))


@router.get("/health/live", response_model=schemas.Health, summary="Liveness")
async def live() -> Response:
    return _json({"status": "alive"})


@router.get(
    "/health/ready",
    response_model=schemas.Health,
    responses={503: {"model": schemas.Health, "description": "No model loaded"}},
    summary="Readiness: 200 only while a model is loaded",
)
async def ready(store: StoreDep) -> Response:
    model = store.model
    if model is None:
        return _json({"status": "not ready", "reason": store.not_ready_reason}, 503)
    return _json({"status": "ready", "model_version": model.version})
