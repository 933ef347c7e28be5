"""Open Inference Protocol V2 (REST): health, server and model metadata, readiness, infer.

The codec is ``service.protocols.v2``; scoring goes through the data plane as for
``/predictions``, so the answers, limits and model metrics are the same (the metrics'
``endpoint`` label is ``v2``). Versions are the registry's version numbers, as strings; without
one, the model's default alias answers. The repository extension is in ``v2_repository.py``.

The routes are left out of ``/openapi.json``: the protocol's specification describes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope

from service import __version__
from service.api.routes.predict import Reply, Scoring
from service.api.routes.protocol_http import (
    error_reply,
    error_response,
    find_entry,
    find_model,
    json_response,
    read_protocol_body_from,
    route_maker,
)
from service.models.loaded import Model
from service.models.store import Catalog, ModelStore
from service.protocols import v2
from service.protocols.common import NOT_READY, ProtocolError
from service.serving import dataplane
from service.settings import Settings

ENDPOINT = "v2"
"""The ``endpoint`` label of the model metrics for V2 infers."""

router = APIRouter(tags=["v2"])
route = route_maker(router)
infer_router = APIRouter(tags=["v2"])
infer_route = route_maker(infer_router)


def install(routes: list) -> None:
    """Add the V2 routes to an app's ``routes``: the infer routes right after
    ``/predictions``, the others at the end.

    Each request is matched against the routes in order, twice (routing, then the HTTP metrics'
    handler label), at a microsecond or more per route: at the end of the list, a one-row V2
    infer would spend more time being matched than scored. No route before it shares its paths.
    """
    at = next(i for i, r in enumerate(routes) if getattr(r, "path", None) == "/predictions") + 1
    routes[at:at] = infer_router.routes
    routes.extend(router.routes)


# --- server -----------------------------------------------------------------------------------


@route("/v2", "GET")
async def server_metadata(request: Request) -> Response:
    return json_response(v2.server_metadata(__version__))


@route("/v2/health/live", "GET")
async def server_live(request: Request) -> Response:
    return json_response({"live": True})


@route("/v2/health/ready", "GET")
async def server_ready(request: Request) -> Response:
    """Ready as ``/health/ready`` is: while the default model (with none, any model) serves."""
    ok, body = dataplane.readiness(request.app.state.store.catalog)
    return json_response(
        {"ready": ok} if ok else {"ready": False, "reason": body["reason"]}, 200 if ok else 503
    )


# --- models -----------------------------------------------------------------------------------


def _versions(catalog: Catalog, name: str) -> list[str]:
    return [str(n) for n in sorted(catalog.models[name].versions)]


def _metadata(catalog: Catalog, model: Model) -> dict[str, Any]:
    return v2.model_metadata(
        model.name,
        _versions(catalog, model.name),
        model.feature_names,
        kind=model.kind,
        parameters={
            "version": str(model.number),
            "content_hash": model.version,
            "threshold": model.threshold,
        },
    )


@route("/v2/models/{name}", "GET")
async def model_metadata(request: Request, name: str) -> Response:
    catalog = request.app.state.store.catalog
    try:
        return json_response(_metadata(catalog, find_model(catalog, name)))
    except ProtocolError as exc:
        return error_response(exc)


@route("/v2/models/{name}/versions/{version}", "GET")
async def version_metadata(request: Request, name: str, version: str) -> Response:
    catalog = request.app.state.store.catalog
    try:
        return json_response(_metadata(catalog, find_model(catalog, name, version)))
    except ProtocolError as exc:
        return error_response(exc)


@route("/v2/models/{name}/ready", "GET")
async def model_ready(request: Request, name: str) -> Response:
    """200 while the model's default version serves, 503 while it does not, 404 unknown."""
    try:
        entry = find_entry(request.app.state.store.catalog, name)
    except ProtocolError as exc:
        return error_response(exc)
    return json_response(v2.model_ready(name, entry.ready), 200 if entry.ready else NOT_READY)


@route("/v2/models/{name}/versions/{version}/ready", "GET")
async def version_ready(request: Request, name: str, version: str) -> Response:
    """200 while the version is loaded; 404 for a version that is not (the message says why)."""
    try:
        find_model(request.app.state.store.catalog, name, version)
    except ProtocolError as exc:
        return error_response(exc)
    return json_response(v2.model_ready(name, True))


# --- infer ------------------------------------------------------------------------------------


def _answer_parameters(model: Model) -> dict[str, Any]:
    return {"kind": model.kind, "content_hash": model.version}


class Infer(Scoring):
    """``POST /v2/models/{name}[/versions/{version}]/infer``: refusals answered as the
    protocol's ``{"error": ...}``, one row scored as ``/prediction`` scores it."""

    async def answer(
        self,
        scope: Scope,
        receive: Receive,
        store: ModelStore,
        settings: Settings,
        params: Mapping[str, str],
        query: Mapping[str, Any],
    ) -> Reply:
        try:
            model = find_model(store.catalog, params["name"], params.get("version"))
            body, header_length = await read_protocol_body_from(
                scope, receive, settings.max_body_bytes, binary=True
            )
            parsed = v2.parse_infer_request(
                body, header_length, model.feature_names, settings.max_batch_rows
            )
        except ProtocolError as exc:
            return error_reply(exc)
        X = parsed.features
        if X.shape[0] == 1:  # the single-row path of /prediction: no numpy calls to count it
            anomaly, score = await dataplane.score_row(model, X, ENDPOINT)
            flags, scores = np.array((anomaly,)), np.array((score,))
        else:
            result = await dataplane.score(
                model, X, endpoint=ENDPOINT, inline_rows=settings.inline_rows
            )
            flags, scores = result.is_anomaly, result.anomaly_score
        answer, header_length = v2.encode_infer_response(
            model_name=model.name,
            model_version=str(model.number),
            request_id=parsed.id,
            outputs=parsed.outputs,
            is_anomaly=flags,
            anomaly_score=scores,
            parameters=_answer_parameters(model),
        )
        return Reply(answer, headers=v2.response_headers(header_length))


INFER = Infer()


@infer_route("/v2/models/{name}/infer", "POST", INFER)
async def infer(request: Request, name: str) -> Response:
    return await INFER.respond(request, {}, name=name)


@infer_route("/v2/models/{name}/versions/{version}/infer", "POST", INFER)
async def version_infer(request: Request, name: str, version: str) -> Response:
    return await INFER.respond(request, {}, name=name, version=version)
