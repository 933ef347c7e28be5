"""The OpenAPI document (``/openapi.json``, ``/docs``), built from the routes and the serving model.

The request bodies are described from the model being served (its feature names and count) and
from ``VIGIL_MAX_BATCH_ROWS``, so the document says exactly what the service accepts. FastAPI
builds the document once; here it is rebuilt whenever the serving model's version changes (a
reload, or the first model after starting without one).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from service.api import schemas
from service.models.loaded import Model
from service.models.store import ModelStore
from service.settings import Settings

_NOT_BUILT = object()


def install_openapi(app: FastAPI, store: ModelStore, settings: Settings) -> None:
    """Make ``app.openapi()`` describe the model that ``store`` serves."""
    built_for: object = _NOT_BUILT

    def openapi() -> dict[str, Any]:
        nonlocal built_for
        model = store.model
        version = model.version if model is not None else None
        if app.openapi_schema is None or version != built_for:
            app.openapi_schema = None
            # FastAPI's document shares dicts with the routes' openapi_extra: edit a copy.
            doc = copy.deepcopy(FastAPI.openapi(app))
            app.openapi_schema = describe(doc, model, settings)
            built_for = version
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(doc: dict[str, Any], model: Model | None, settings: Settings) -> dict[str, Any]:
    """Add the request bodies for ``model`` (None: no model loaded) to FastAPI's ``doc``."""
    names = model.feature_names if model is not None else None
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(
        schemas.request_components(names, settings.max_batch_rows)
    )
    if any("security" in op for op in _operations(doc)):
        components.setdefault("securitySchemes", {})[schemas.ADMIN_SECURITY] = (
            schemas.ADMIN_SECURITY_SCHEME
        )
    if model is not None:
        examples = schemas.request_examples(names)
        for op in _operations(doc):
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            component = ref.rpartition("/")[2]
            if component in examples:
                body["examples"] = examples[component]
        doc["info"]["description"] += (
            f"\nServing model `{model.version}`: {len(names)} features ({', '.join(names)})."
        )
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in doc.get("paths", {}).values() for op in path.values()]
