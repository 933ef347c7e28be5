"""KServe V1 (REST): ``GET /v1/models``, ``GET /v1/models/{name}``,
``POST /v1/models/{name}:predict``.

The codec is ``service.protocols.kserve_v1``. A ``:predict`` is a ``/models/{name}/predictions``
with ``score=true`` in V1's envelope: the same parser, limits, scoring and model metrics
(``endpoint="predictions"``), and the same body, whose ``predictions`` is V1's. Errors are
``{"error": "..."}``. Left out of ``/openapi.json`` like the V2 routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api.routes.protocol_http import (
    error_response,
    find_entry,
    find_model,
    json_response,
    read_protocol_body,
    route_maker,
)
from service.protocols import kserve_v1
from service.protocols.common import NOT_READY, ProtocolError
from service.serving import dataplane

router = APIRouter(tags=["kserve-v1"])
route = route_maker(router)


@route("/v1/models", "GET")
async def models(request: Request) -> Response:
    return json_response(kserve_v1.models_list(sorted(request.app.state.store.catalog.models)))


@route("/v1/models/{name}", "GET")
async def model(request: Request, name: str) -> Response:
    """200 while the model's default version serves, else 503; 404 unknown."""
    try:
        entry = find_entry(request.app.state.store.catalog, name)
    except ProtocolError as exc:
        return error_response(exc)
    return json_response(
        kserve_v1.model_status(name, entry.ready), 200 if entry.ready else NOT_READY
    )


@route("/v1/models/{name}:predict", "POST")
async def predict(request: Request, name: str) -> Response:
    settings = request.app.state.settings
    try:
        model = find_model(request.app.state.store.catalog, name)
        body, _ = await read_protocol_body(request, settings.max_body_bytes, binary=False)
        X = kserve_v1.parse_predict_request(body, model.parser, settings.max_batch_rows)
    except ProtocolError as exc:
        return error_response(exc)
    scores = await dataplane.score(
        model, X, endpoint="predictions", inline_rows=settings.inline_rows
    )
    return json_response(dataplane.batch_result(model, scores, True))
