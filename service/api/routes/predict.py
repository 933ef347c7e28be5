"""HTTP routes: thin. They read the request, call a handler, and write JSON.

The scoring routes are the hot path. What each answers is a :class:`Scoring` (which model, one
row or a batch), free of FastAPI. They are declared as :class:`ScoringRoute`, which keeps
FastAPI's routing, OpenAPI docs, error handling and query validation but skips its per-request
dependency solving; and the fast lane (``service.api.fast_lane``) serves them in front of
FastAPI's middleware and router, calling the same :class:`Scoring` (``bench/README.md`` says
what each layer costs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from service.api import schemas
from service.core.features import InputError, decode_json
from service.models.loaded import Model
from service.models.store import ModelStore
from service.serving import dataplane
from service.settings import Settings

router = APIRouter()


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a
# thread hop per dependency per request.
async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def require_model(store: Annotated[ModelStore, Depends(get_store)]) -> Model:
    return dataplane.default_model(store)


StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelDep = Annotated[Model, Depends(require_model)]
ScoreQuery = Annotated[bool, Query(description="Add anomaly_score to each result.")]

_ERRORS = {
    400: schemas.error(
        "Body is empty or not valid JSON (NaN and Infinity are not JSON), or a number is"
        " too large for a float64"
    ),
    413: schemas.error("Body over VIGIL_MAX_BODY_BYTES, or batch over VIGIL_MAX_BATCH_ROWS rows"),
    415: schemas.error("Content-Type is not JSON, or Content-Encoding is not identity"),
    422: schemas.error("Wrong features or values, or a bad query parameter"),
    503: schemas.error("No model loaded"),
}
_NAMED_ERRORS = {
    **_ERRORS,
    404: schemas.error("No such model, version or alias (the detail lists those that exist)"),
    503: schemas.error("The model's default version is not loaded"),
}


def _json(content: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


async def read_json(request: Request, max_bytes: int) -> object:
    """The request's JSON body: Content-Type, Content-Encoding and size checked (4xx)."""
    return await read_json_from(request.scope, request.receive, max_bytes)


async def read_json_from(scope: Scope, receive: Receive, max_bytes: int) -> object:
    """:func:`read_json` from the ASGI scope and receive channel (the fast lane has no Request)."""
    # One pass over the raw headers: cheaper than three lookups in Starlette's Headers.
    ctype = length = encoding = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            ctype = ctype or value
        elif name == b"content-length":
            length = length or value
        elif name == b"content-encoding":
            encoding = encoding or value
    if ctype is not None and ctype != b"application/json":  # what clients send, as sent
        mime = ctype.split(b";", 1)[0].strip().lower().decode("latin-1")
        if mime != "application/json" and not mime.endswith("+json"):
            raise InputError(f"Content-Type must be application/json, got {mime or 'nothing'}", 415)
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        shown = encoding.strip()[:40].decode("latin-1")
        raise InputError(
            f"Content-Encoding {shown} is not accepted: send the JSON body uncompressed", 415
        )
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise InputError(
            f"body is {int(length)} bytes; the limit is {max_bytes} (VIGIL_MAX_BODY_BYTES)", 413
        )
    return decode_json(await read_body_from(receive, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it grows past ``max_bytes``.

    Reads the ASGI messages directly: Starlette's ``Request.body()`` goes through an async
    generator, which costs more than the rest of reading a one-row request.
    """
    return await read_body_from(request.receive, max_bytes)


async def read_body_from(receive: Receive, max_bytes: int) -> bytes:
    """:func:`read_body` from the ASGI receive channel."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"body is over the limit of {max_bytes} bytes", 413)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ScoringRoute(APIRoute):
    """A route for endpoints that take only the Request, path and query parameters.

    FastAPI's generic handler solves the dependency graph, gathers path, header, cookie and
    body parameters and records telemetry context on every request: about 60 µs, more than
    scoring a row. This handler calls the endpoint directly. Query parameters are validated
    with FastAPI's own function (same coercion, same 422 errors), once per distinct query
    string; path parameters must be plain strings (a model name, a version), passed as the
    router matched them, for the endpoint to look up. Routing, exception handlers, middleware
    and the OpenAPI schema (built from the endpoint's signature) are FastAPI's as for any route.

    It runs no dependencies: an endpoint that declares one is refused when the route is built,
    and one added by ``include_router(..., dependencies=...)`` (say, an auth check) makes every
    request fail with a 500 and a logged error, never silently skipped.
    """

    QUERY_CACHE_SIZE = 64  # distinct query strings remembered; clients send a handful

    scoring: Scoring | None = None
    """What the route answers, free of FastAPI, for the fast lane (set by :func:`scoring_route`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed_queries: dict[bytes, dict[str, Any]] = {}

    def query_values(self, query_string: bytes) -> dict[str, Any]:
        """The endpoint's query parameters from a raw query string, validated by FastAPI's own
        function (:class:`RequestValidationError` as for any route), remembered per string."""
        parsed = self._parsed_queries
        values = parsed.get(query_string)
        if values is None:
            values, errors = request_params_to_args(
                self.dependant.query_params, QueryParams(query_string)
            )
            if errors:
                raise RequestValidationError(errors)
            if len(parsed) < self.QUERY_CACHE_SIZE:
                parsed[query_string] = values
        return values

    def get_route_handler(self) -> Callable[[Request], Any]:
        dependant = self.dependant
        request_name = dependant.request_param_name
        if (
            request_name is None
            or dependant.dependencies
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or any(p.field_info.annotation is not str for p in dependant.path_params)
        ):
            raise TypeError(
                f"{self.path}: a ScoringRoute endpoint takes a Request, str path parameters and"
                " query parameters only"
            )
        endpoint = dependant.call
        query_values = self.query_values

        checked = False

        async def handler(request: Request) -> Response:
            nonlocal checked
            if not checked:
                self._refuse_added_dependencies(request.app)
                checked = True
            kwargs = query_values(request.scope["query_string"])
            path_params = request.scope.get("path_params")
            if path_params:
                kwargs = {**kwargs, **path_params}
            return await endpoint(**{request_name: request, **kwargs})

        return handler

    def _refuse_added_dependencies(self, app: Any) -> None:
        for context in iter_route_contexts(app.routes):
            if context.original_route is self and context.dependant.dependencies:
                raise RuntimeError(
                    f"{self.path}: its router was included with dependencies, which a"
                    " ScoringRoute does not run; use a plain route or a middleware"
                )


# --- the scoring routes ------------------------------------------------------------------------

Resolver = Callable[[ModelStore, Mapping[str, str]], Model]


def _default_model(store: ModelStore, params: Mapping[str, str]) -> Model:
    return dataplane.default_model(store)


def _named_model(store: ModelStore, params: Mapping[str, str]) -> Model:
    """Model ``name`` at its default alias, at ``version`` or at ``alias``."""
    return dataplane.resolve(
        store.catalog, params["name"], params.get("version"), params.get("alias")
    )


JSON_TYPE = (b"content-type", b"application/json")


class Reply(NamedTuple):
    """A scoring route's answer: what the fast lane sends as two ASGI messages, and what
    :meth:`response` turns into the same messages on FastAPI's path."""

    body: bytes
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = (JSON_TYPE,)
    """Raw headers after ``content-length``, which the sender adds."""

    def response(self) -> Response:
        response = Response(self.body, self.status)  # no media type: content-length alone
        response.raw_headers.extend(self.headers)
        return response


class Scoring(ABC):
    """What a scoring route answers, free of FastAPI. The route's endpoint calls
    :meth:`respond` with its Request; the fast lane (``service.api.fast_lane``) calls
    :meth:`answer` with the ASGI scope, so both paths run one implementation."""

    @abstractmethod
    async def answer(
        self,
        scope: Scope,
        receive: Receive,
        store: ModelStore,
        settings: Settings,
        params: Mapping[str, str],
        query: Mapping[str, Any],
    ) -> Reply:
        """The answer to a request with these path ``params`` and validated ``query``
        parameters; a refusal it does not answer itself raises, for the app's handlers."""

    async def respond(self, request: Request, query: Mapping[str, Any], **params: str) -> Response:
        state = request.app.state
        reply = await self.answer(
            request.scope, request.receive, state.store, state.settings, params, query
        )
        return reply.response()


@dataclass(frozen=True)
class Prediction(Scoring):
    """``/prediction(s)`` and the named ``/models/...`` routes: which model (``resolve``, from
    the path parameters), one row or a batch; ``score`` in the query adds the scores."""

    resolve: Resolver
    batch: bool

    async def answer(
        self,
        scope: Scope,
        receive: Receive,
        store: ModelStore,
        settings: Settings,
        params: Mapping[str, str],
        query: Mapping[str, Any],
    ) -> Reply:
        """A 200 with the JSON result; refusals raise (InputError, ModelNotFound, NotReady...)."""
        model = self.resolve(store, params)  # an unknown model is a 404 whatever the body
        payload = await read_json_from(scope, receive, settings.max_body_bytes)
        with_score = query["score"]
        if not self.batch:
            row = await dataplane.score_row(model, model.parser.one(payload))
            return Reply(orjson.dumps(dataplane.single_result(model, row, with_score)))
        X = model.parser.many(payload, settings.max_batch_rows)
        scores = await dataplane.score(
            model, X, endpoint="predictions", inline_rows=settings.inline_rows
        )
        return Reply(orjson.dumps(dataplane.batch_result(model, scores, with_score)))


def scoring_route(path: str, scoring: Scoring, **kwargs: Any):
    """``@router.post(path, **kwargs)``, served by :class:`ScoringRoute`, answering as
    ``scoring`` does (the endpoint must call ``scoring.respond``)."""

    def register(endpoint):
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=ScoringRoute, **kwargs
        )
        router.routes[-1].scoring = scoring
        return endpoint

    return register


ONE = Prediction(_default_model, batch=False)
MANY = Prediction(_default_model, batch=True)
NAMED_ONE = Prediction(_named_model, batch=False)
NAMED_MANY = Prediction(_named_model, batch=True)


@scoring_route(
    "/prediction",
    ONE,
    response_model=schemas.PredictionResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Score one feature vector with the default model",
    openapi_extra=schemas.json_body(schemas.ROW),
)
async def prediction(request: Request, score: ScoreQuery = False) -> Response:
    return await ONE.respond(request, {"score": score})


@scoring_route(
    "/predictions",
    MANY,
    response_model=schemas.BatchResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Score a batch of feature vectors with the default model",
    openapi_extra=schemas.json_body(schemas.BATCH),
)
async def predictions(request: Request, score: ScoreQuery = False) -> Response:
    return await MANY.respond(request, {"score": score})


# The named routes: a model by name at its default alias, at a version number, or at an alias.
def _named_route(path: str, batch: bool, summary: str):
    return scoring_route(
        path,
        NAMED_MANY if batch else NAMED_ONE,
        response_model=schemas.BatchResponse if batch else schemas.PredictionResponse,
        response_model_exclude_none=True,
        responses=_NAMED_ERRORS,
        summary=summary,
        openapi_extra=schemas.json_body(schemas.BATCH if batch else schemas.ROW),
    )


@_named_route("/models/{name}/prediction", False, "Score one vector with a model's default")
async def model_prediction(request: Request, name: str, score: ScoreQuery = False) -> Response:
    return await NAMED_ONE.respond(request, {"score": score}, name=name)


@_named_route("/models/{name}/predictions", True, "Score a batch with a model's default")
async def model_predictions(request: Request, name: str, score: ScoreQuery = False) -> Response:
    return await NAMED_MANY.respond(request, {"score": score}, name=name)


@_named_route(
    "/models/{name}/versions/{version}/prediction", False, "Score one vector with a version"
)
async def version_prediction(
    request: Request, name: str, version: str, score: ScoreQuery = False
) -> Response:
    return await NAMED_ONE.respond(request, {"score": score}, name=name, version=version)


@_named_route("/models/{name}/versions/{version}/predictions", True, "Score a batch with a version")
async def version_predictions(
    request: Request, name: str, version: str, score: ScoreQuery = False
) -> Response:
    return await NAMED_MANY.respond(request, {"score": score}, name=name, version=version)


@_named_route("/models/{name}/aliases/{alias}/prediction", False, "Score one vector at an alias")
async def alias_prediction(
    request: Request, name: str, alias: str, score: ScoreQuery = False
) -> Response:
    return await NAMED_ONE.respond(request, {"score": score}, name=name, alias=alias)


@_named_route("/models/{name}/aliases/{alias}/predictions", True, "Score a batch at an alias")
async def alias_predictions(
    request: Request, name: str, alias: str, score: ScoreQuery = False
) -> Response:
    return await NAMED_MANY.respond(request, {"score": score}, name=name, alias=alias)


@router.get(
    "/model_information",
    response_model=schemas.ModelInformation,
    responses={503: _ERRORS[503]},
    summary="The default model's parameters and metadata",
)
async def model_information(model: ModelDep) -> Response:
    return _json(dataplane.model_information(model))


@router.get("/health/live", response_model=schemas.Live, summary="Liveness")
async def live() -> Response:
    return _json({"status": "alive"})


@router.get(
    "/health/ready",
    response_model=schemas.Ready,
    responses={503: {"model": schemas.NotReady, "description": "No model loaded"}},
    summary="Readiness: 200 only while a model is loaded",
)
async def ready(store: StoreDep) -> Response:
    ok, body = dataplane.readiness(store.catalog)
    return _json(body, 200 if ok else 503)


def answer_head_as_get(app: FastAPI) -> None:
    """Let ``HEAD`` reach every GET route of ``app``, answered as GET without the body.

    FastAPI's routes answer only the methods they name (Starlette's add HEAD to GET); uvicorn
    sends no body for a HEAD request and keeps the GET answer's headers. Call this last: the
    HEAD routes come after every other route, so they cost the routes before them nothing,
    and they stay out of the OpenAPI document.
    """
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods and "HEAD" not in route.methods:
            app.router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                dependencies=route.dependencies,
                name=route.name,
                include_in_schema=False,
            )
