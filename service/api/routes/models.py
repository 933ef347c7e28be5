"""``GET /models``, ``/models/{name}``, ``/models/{name}/versions/{version}``: what is served.

The scoring routes of a named model are in ``predict.py`` beside the default model's (they
share the hot path). Unknown names and versions are 404s whose detail lists what exists.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api import schemas
from service.api.routes.predict import _json
from service.serving import dataplane

router = APIRouter(tags=["models"])

_NOT_FOUND = {
    404: schemas.error("No such model or version (the detail lists those that exist)"),
    503: schemas.error("The model's default version is not loaded"),
}


@router.get("/models", response_model=schemas.ModelList, summary="Every served model")
async def models(request: Request) -> Response:
    return _json(dataplane.models_listing(request.app.state.store.catalog))


@router.get(
    "/models/{name}",
    response_model=schemas.ModelInformation,
    responses=_NOT_FOUND,
    summary="A model's default version: kind, features, parameters, threshold, versions",
)
async def model(request: Request, name: str) -> Response:
    return _json(dataplane.model_detail(request.app.state.store.catalog, name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=schemas.ModelInformation,
    responses={404: _NOT_FOUND[404]},
    summary="One loaded version of a model",
)
async def model_version(request: Request, name: str, version: str) -> Response:
    catalog = request.app.state.store.catalog
    return _json(dataplane.resolve(catalog, name, version=version).describe())
