"""The OpenAPI document (``/openapi.json``, ``/docs``), built from the routes and the models.

The request bodies are described from the models being served (their feature names and count)
and from ``VIGIL_MAX_BATCH_ROWS``, so the document says exactly what the service accepts.
FastAPI builds the document once; here it is rebuilt whenever what is served changes (a
reload, or the first models after starting without any).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from service.api import schemas
from service.models.loaded import Model
from service.models.store import Catalog, ModelStore
from service.settings import Settings

_NOT_BUILT = object()


def install_openapi(app: FastAPI, store: ModelStore, settings: Settings) -> None:
    """Make ``app.openapi()`` describe the models that ``store`` serves."""
    built_for: object = _NOT_BUILT

    def openapi() -> dict[str, Any]:
        nonlocal built_for
        catalog = store.catalog
        key = (catalog.plan_sha256(), catalog.default_name)
        if app.openapi_schema is None or key != built_for:
            app.openapi_schema = None
            # FastAPI's document shares dicts with the routes' openapi_extra: edit a copy.
            doc = copy.deepcopy(FastAPI.openapi(app))
            app.openapi_schema = describe(doc, catalog, settings)
            built_for = key
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# The named scoring routes, as FastAPI documents them: their bodies depend on the model, so the
# document lists them once per served model, version and alias instead (see describe()).
NAMED_TEMPLATES = (
    "/models/{name}/prediction",
    "/models/{name}/predictions",
    "/models/{name}/versions/{version}/prediction",
    "/models/{name}/versions/{version}/predictions",
    "/models/{name}/aliases/{alias}/prediction",
    "/models/{name}/aliases/{alias}/predictions",
)


def describe(doc: dict[str, Any], catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """Add the request bodies of the served models to FastAPI's ``doc``: the unnamed routes'
    for the default model (the general shape when there is none), and each named route once
    per model, version and alias with that version's features."""
    model = catalog.default
    names = model.feature_names if model is not None else None
    components = doc.setdefault("components", {})
    schemas_ = components.setdefault("schemas", {})
    schemas_.update(schemas.request_components(names, settings.max_batch_rows))
    if any("security" in op for op in _operations(doc)):
        components.setdefault("securitySchemes", {})[schemas.ADMIN_SECURITY] = (
            schemas.ADMIN_SECURITY_SCHEME
        )
    paths = doc.setdefault("paths", {})
    templates = {t: paths.pop(t) for t in NAMED_TEMPLATES if t in paths}
    for entry in catalog.models.values():
        targets: list[tuple[str, Model]] = []
        if entry.default is not None:
            targets.append((f"/models/{entry.name}", entry.default))
        targets += [(f"/models/{entry.name}/versions/{n}", m) for n, m in entry.versions.items()]
        targets += [
            (f"/models/{entry.name}/aliases/{a}", entry.versions[n])
            for a, n in entry.aliases.items()
            if n in entry.versions
        ]
        for prefix, version in targets:
            suffix = f"{version.name}-{version.number}"
            row, batch = f"{schemas.ROW}-{suffix}", f"{schemas.BATCH}-{suffix}"
            if row not in schemas_:
                parts = schemas.request_components(version.feature_names, settings.max_batch_rows)
                schemas_[row] = parts[schemas.ROW]
                schemas_[batch] = {**parts[schemas.BATCH], "items": {"$ref": _ref(row)}}
            for leaf, component in (("prediction", row), ("predictions", batch)):
                template = next(t for t in templates if t.endswith("/" + leaf))
                _concrete(paths, templates, template, prefix, leaf, component, version)
    _enumerate_names(paths, catalog)
    if model is not None:
        examples = schemas.request_examples(names)
        for op in _operations(doc):
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            component = ref.rpartition("/")[2]
            if component in examples:
                body["examples"] = examples[component]
        doc["info"]["description"] += (
            f"\nDefault model `{model.name}` version {model.number} ({model.kind},"
            f" `{model.version}`): {len(names)} features ({', '.join(names)})."
        )
    return doc


def _ref(component: str) -> str:
    return f"#/components/schemas/{component}"


def _concrete(paths, templates, template, prefix, leaf, component, version) -> None:
    """``paths[prefix/leaf]``: the template's operation, without path parameters, with the
    body ``component`` and examples for ``version``'s features."""
    op = copy.deepcopy(templates[template]["post"])
    op["parameters"] = [p for p in op.get("parameters", []) if p.get("in") != "path"]
    op["operationId"] = f"{op.get('operationId', leaf)}_{prefix.strip('/').replace('/', '_')}"
    body = op["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": _ref(component)}
    examples = schemas.request_examples(version.feature_names)
    body["examples"] = examples[schemas.ROW if leaf == "prediction" else schemas.BATCH]
    paths[f"{prefix}/{leaf}"] = {"post": op}


def _enumerate_names(paths: dict[str, Any], catalog: Catalog) -> None:
    """``GET /models/{name}``: the names (and versions) that exist, as enums."""
    names = sorted(catalog.models)
    versions = sorted({str(n) for e in catalog.models.values() for n in e.versions})
    for path, item in paths.items():
        if not path.startswith("/models/{name}"):
            continue
        for op in item.values():
            for param in op.get("parameters", []):
                if param.get("in") != "path":
                    continue
                if param["name"] == "name" and names:
                    param["schema"] = {**param.get("schema", {}), "enum": names}
                elif param["name"] == "version" and versions:
                    param["schema"] = {**param.get("schema", {}), "enum": versions}


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in doc.get("paths", {}).values() for op in path.values()]
