"""The V2 model repository extension, mapped onto the registry.

- ``POST /v2/repository/index``: every registered version with its state (``READY`` when
  loaded, else ``UNAVAILABLE`` and why); ``{"ready": true}`` lists only the ready ones. Open to
  all, like ``GET /models``.
- ``POST /v2/repository/models/{name}/load`` (admin token): the registry's reload, as
  ``/admin/reload`` and SIGHUP do (every model, verified; a refused reload keeps the old catalog
  serving and answers 409), then 200 only if ``name`` is served; 404 if the registry has no
  such model, 503 if it has but cannot serve it.
- ``POST /v2/repository/models/{name}/unload`` (admin token): 400. The registry, not a client,
  decides what is served (aliases and ``VIGIL_REGISTRY_LOAD``); an unload that the next reload,
  SIGHUP or worker restart silently undid would mislead, so none is done.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.routes import admin
from service.api.routes.protocol_http import (
    check_admin,
    error_response,
    find_entry,
    find_model,
    json_response,
    read_protocol_body,
    route_maker,
)
from service.models.registry import DEFAULT_ALIAS
from service.models.store import Catalog
from service.protocols import v2
from service.protocols.common import BAD_REQUEST, ProtocolError

router = APIRouter(tags=["v2"])
route = route_maker(router)

CONFLICT = 409
_BODY_LIMIT = 64 * 1024  # load and unload take no parameters: a small JSON object at most


def repository_index(catalog: Catalog, registry_load: str, ready_only: bool) -> list[dict]:
    """One entry per registered version of every model (loaded or not)."""
    entries: list[dict[str, Any]] = []
    for name in sorted(catalog.models):
        entry = catalog.models[name]
        default = entry.aliases.get(DEFAULT_ALIAS)
        numbers = sorted(set(entry.registered) | set(entry.versions))
        if not numbers:
            entries.append(
                v2.repository_index_entry(name, None, "UNAVAILABLE", "no version registered")
            )
        for n in numbers:
            if n in entry.versions:
                entries.append(v2.repository_index_entry(name, str(n), "READY"))
            elif n == default and entry.error:
                entries.append(v2.repository_index_entry(name, str(n), "UNAVAILABLE", entry.error))
            else:
                reason = f"not loaded (VIGIL_REGISTRY_LOAD={registry_load})"
                entries.append(v2.repository_index_entry(name, str(n), "UNAVAILABLE", reason))
    if ready_only:
        return [e for e in entries if e["state"] == "READY"]
    return entries


@route("/v2/repository/index", "POST")
async def index(request: Request) -> Response:
    try:
        body, _ = await read_protocol_body(request, _BODY_LIMIT, binary=False)
        ready_only = v2.parse_repository_index_request(body)
    except ProtocolError as exc:
        return error_response(exc)
    settings = request.app.state.settings
    catalog = request.app.state.store.catalog
    return json_response(repository_index(catalog, settings.registry_load, ready_only))


@route("/v2/repository/models/{name}/load", "POST")
async def load(request: Request, name: str) -> Response:
    try:
        check_admin(request)
        body, _ = await read_protocol_body(request, _BODY_LIMIT, binary=False)
        v2.parse_repository_load_request(body, "load")
        store = request.app.state.store
        outcome = await admin.reload_model(store)
        if outcome.result == "refused":
            raise ProtocolError(
                f"reload refused, the models served before keep serving: {outcome.reason}",
                CONFLICT,
            )
        model = find_model(store.catalog, name)
    except ProtocolError as exc:
        return error_response(exc)
    return json_response(
        {
            "name": name,
            "version": str(model.number),
            "result": outcome.result,
            "changes": list(outcome.changes),
        }
    )


@route("/v2/repository/models/{name}/unload", "POST")
async def unload(request: Request, name: str) -> Response:
    try:
        check_admin(request)
        body, _ = await read_protocol_body(request, _BODY_LIMIT, binary=False)
        v2.parse_repository_load_request(body, "unload")
        find_entry(request.app.state.store.catalog, name)
        raise ProtocolError(
            f"unload is not supported: the registry decides what is served. To stop serving"
            f" {name!r}, change the registry (python -m service models ...) and POST"
            f" /v2/repository/models/{name}/load to reload it",
            BAD_REQUEST,
        )
    except ProtocolError as exc:
        return error_response(exc)
