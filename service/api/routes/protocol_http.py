"""What the V2 and KServe V1 routes share: reading a body, finding the model, error answers.

Both protocols answer errors as ``{"error": "..."}`` (``service.protocols.common``), so their
routes turn every refusal into a :class:`ProtocolError` and answer it here, rather than
through the app's ``{"detail": ...}`` handlers.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException
from starlette.types import Receive, Scope

from service.api.routes.admin import require_admin
from service.api.routes.predict import JSON_TYPE, Reply, Scoring, ScoringRoute, read_body_from
from service.core.features import InputError
from service.models.loaded import Model
from service.models.store import Catalog, ModelEntry, ModelNotFound
from service.protocols.common import NOT_FOUND, NOT_READY, ProtocolError, error_body
from service.serving import dataplane

JSON = "application/json"
BINARY = b"application/octet-stream"
UNSUPPORTED_MEDIA_TYPE = 415
CONTENT_TOO_LARGE = 413
UNAUTHORIZED = 401
_BEARER = (b"www-authenticate", b"Bearer")


def route_maker(router: APIRouter) -> Callable[..., Callable]:
    """``@route(path, method, scoring=None)`` for ``router``: a :class:`ScoringRoute` (a Request
    and str path parameters only, no per-request dependency solving), left out of
    ``/openapi.json`` (the protocols' specifications describe these routes; the README lists
    them). With a ``scoring``, the endpoint must answer ``scoring.respond``: the fast lane calls
    the ``scoring`` directly."""

    def route(path: str, method: str, scoring: Scoring | None = None) -> Callable:
        def register(endpoint: Callable) -> Callable:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                route_class_override=ScoringRoute,
                include_in_schema=False,
            )
            router.routes[-1].scoring = scoring
            return endpoint

        return register

    return route


def json_response(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type=JSON)


def error_reply(exc: ProtocolError) -> Reply:
    headers = (JSON_TYPE, _BEARER) if exc.status == UNAUTHORIZED else (JSON_TYPE,)
    return Reply(error_body(exc.message), exc.status, headers)


def error_response(exc: ProtocolError) -> Response:
    return error_reply(exc).response()


async def read_protocol_body(
    request: Request, max_bytes: int, *, binary: bool
) -> tuple[bytes, str | None]:
    """:func:`read_protocol_body_from` the request's scope and receive channel."""
    return await read_protocol_body_from(request.scope, request.receive, max_bytes, binary=binary)


async def read_protocol_body_from(
    scope: Scope, receive: Receive, max_bytes: int, *, binary: bool
) -> tuple[bytes, str | None]:
    """The body and its ``Inference-Header-Content-Length`` header (None when absent).

    JSON bodies may come with no Content-Type (tritonclient sends none); with ``binary``,
    ``application/octet-stream`` is accepted too. Over ``max_bytes`` is 413, another media type
    or a compressed body 415, all as :class:`ProtocolError`.
    """
    ctype = length = encoding = header_length = None
    for name, value in scope["headers"]:  # one pass over the raw headers
        if name == b"content-type":
            ctype = ctype or value
        elif name == b"content-length":
            length = length or value
        elif name == b"content-encoding":
            encoding = encoding or value
        elif name == b"inference-header-content-length":
            header_length = header_length or value
    if ctype is not None:
        mime = ctype.split(b";", 1)[0].strip().lower()
        if not (
            mime == b"application/json" or mime.endswith(b"+json") or (binary and mime == BINARY)
        ):
            accepted = f"{JSON} or application/octet-stream" if binary else JSON
            shown = mime[:60].decode("latin-1") or "nothing"
            raise ProtocolError(
                f"Content-Type must be {accepted}, got {shown}", UNSUPPORTED_MEDIA_TYPE
            )
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        shown = encoding.strip()[:40].decode("latin-1")
        raise ProtocolError(
            f"Content-Encoding {shown} is not accepted: send the body uncompressed",
            UNSUPPORTED_MEDIA_TYPE,
        )
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ProtocolError(
            f"body is {int(length)} bytes; the limit is {max_bytes} (VIGIL_MAX_BODY_BYTES)",
            CONTENT_TOO_LARGE,
        )
    try:
        body = await read_body_from(receive, max_bytes)
    except InputError as exc:
        raise ProtocolError(f"{exc.message} (VIGIL_MAX_BODY_BYTES)", exc.status_code) from None
    return body, None if header_length is None else header_length.decode("latin-1")


def find_entry(catalog: Catalog, name: str) -> ModelEntry:
    """Model ``name`` as served, or 404 listing the models that exist."""
    try:
        return catalog.model(name)
    except ModelNotFound as exc:
        raise ProtocolError(str(exc), NOT_FOUND) from None


def find_model(catalog: Catalog, name: str, version: str | None = None) -> Model:
    """Model ``name`` (at ``version``, else its default alias): 404 for an unknown name or
    version (the message lists those that exist), 503 when its default version is not loaded."""
    try:
        return dataplane.resolve(catalog, name, version)
    except ModelNotFound as exc:
        raise ProtocolError(str(exc), NOT_FOUND) from None
    except dataplane.NotReady as exc:
        raise ProtocolError(exc.reason, NOT_READY) from None


def check_admin(request: Request) -> None:
    """``require_admin``'s check (401 no token, 403 wrong token, 404 when the admin routes are
    off) as a :class:`ProtocolError`."""
    try:
        require_admin(request, request.app.state.settings)
    except HTTPException as exc:
        raise ProtocolError(str(exc.detail), exc.status_code) from None
