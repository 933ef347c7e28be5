"""Training jobs over HTTP (Bearer ``VIGIL_ADMIN_TOKEN``, like ``/admin/reload``).

    POST /models/{name}/training-jobs            submit: multipart (a ``data`` CSV) or JSON rows
    GET  /training-jobs/{id}                     one job
    GET  /training-jobs?model=&status=&limit=&cursor=   jobs, newest first, paged
    POST /training-jobs/{id}/cancel
    GET  /training-jobs/{id}/deliveries          its webhook deliveries and their attempts
    POST /training-jobs/{id}/deliveries/{delivery_id}/redeliver

A submission is checked before it is queued (content type, size, detector kind and
parameters, form fields); what only the data can tell (a bad cell, too few rows) fails the job
with the one-line reason ``train`` gives. Training happens in the runner process
(``service.jobs.launcher``), never here: these routes only read and write the job store, off
the event loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import parse_options_header

from service.api import schemas, uploads
from service.api.routes.admin import require_admin
from service.api.routes.predict import read_body
from service.core.features import InputError
from service.detectors import table as detector_table
from service.jobs.store import (
    DEFAULT_PAGE,
    IdempotencyConflict,
    JobError,
    JobNotFound,
    JobStateError,
    JobStore,
    Status,
    UploadTooLarge,
    default_db_path,
    rows_csv,
)
from service.models.registry import NAME_PATTERN, RegistryError, check_name
from service.serving.jobs_telemetry import JobsCollector
from service.settings import Settings

log = logging.getLogger("vigil.jobs")

T = TypeVar("T")
FORM_FIELDS = ("detector", "params", "label_column", "exclude", "promote", "seed")
JSON_FIELDS = ("detector", "params", "feature_names", "rows", "promote", "seed")
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")
REOPEN_AFTER_S = 5.0

_KINDS = list(detector_table.names())

# What any of these routes can answer besides its success (the admin check comes first).
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: schemas.error("Body is not valid JSON, or a multipart body cannot be parsed"),
    401: schemas.error("No Bearer token sent"),
    403: schemas.error("Wrong admin token"),
    404: schemas.error("No such job or delivery"),
    409: schemas.error("The job has ended: it cannot be canceled"),
    413: schemas.error("Upload over VIGIL_MAX_UPLOAD_BYTES"),
    415: schemas.error("Neither multipart/form-data nor JSON"),
    422: schemas.error("Unknown detector or parameter, bad data, or an Idempotency-Key reused"),
    503: schemas.error("The job store cannot be opened (e.g. a read-only registry)"),
}
router = APIRouter(tags=["training jobs"], dependencies=[Depends(require_admin)], responses=_ERRORS)


class JobsAccess:
    """The job store, opened on first use (a service whose registry is read-only still
    serves; its job routes answer 503 and it tries again a few seconds later)."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.jobs_db or default_db_path(settings.registry)
        self._store: JobStore | None = None
        self._failed_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> JobStore | None:
        if self._store is not None:
            return self._store
        with self._lock:
            if self._store is None and time.monotonic() - self._failed_at > REOPEN_AFTER_S:
                try:
                    self._store = JobStore(self.path)
                except (OSError, sqlite3.Error) as exc:
                    self._failed_at = time.monotonic()
                    log.error("cannot open the job store %s: %s", self.path, exc)
        return self._store

    def existing(self) -> JobStore | None:
        """The store if it exists (for metrics: never creates one)."""
        if self._store is None and not self.path.exists():
            return None
        return self.get()

    def require(self) -> JobStore:
        store = self.get()
        if store is None:
            raise HTTPException(503, "the job store cannot be opened; see the service log")
        return store


def install(app: FastAPI, settings: Settings) -> list[JobsCollector]:
    """Add the routes (404 without an admin token, like /admin) and return the job metrics'
    collector for /metrics (zeros until a job store exists)."""
    access = JobsAccess(settings)
    app.state.jobs = access
    # Not in /openapi.json, as /series/detect and the protocol routes are not: a job's rows
    # must hold one value per feature name, a relation JSON Schema cannot state, so a schema
    # could only promise less than the routes check. The README documents them.
    app.include_router(router, include_in_schema=False)
    return [JobsCollector(access.existing)]


def _store(request: Request) -> JobStore:
    return request.app.state.jobs.require()


Store = Annotated[JobStore, Depends(_store)]


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call in a worker thread (SQLite writes fsync); its refusals as HTTP."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except JobNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except JobStateError as exc:
        raise HTTPException(409, str(exc)) from None
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except (IdempotencyConflict, JobError, RegistryError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None


# --- reading a submission ---------------------------------------------------------------------


def _strict_json(text: str | bytes, what: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise InputError(f"{what}: duplicate key {k!r}", 422)
            out[k] = v
        return out

    def no_constant(name: str) -> Any:
        raise InputError(f"{what}: {name} is not a JSON number", 422)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InputError):
            raise
        status = 400 if what == "body" else 422
        raise InputError(f"{what} is not valid JSON: {exc}", status) from None


def _promote(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise InputError(f"{where}: expected true or false, got {value!r}", 422)


def _seed(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        seed = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    except ValueError:
        seed = None
    if seed is None or not 0 <= seed < 2**32:
        raise InputError(f"{where}: expected a whole number from 0 to 2**32-1, got {value!r}", 422)
    return seed


def _check_detector(detector: Any, params: Any) -> None:
    """Unknown kind or parameter: 422 now, not a failed job later."""
    from service.detectors.detector import resolve_params

    if not isinstance(detector, str) or not detector:
        raise InputError("detector: required, a detector kind such as iforest or lof", 422)
    if not isinstance(params, dict):
        raise InputError(f"params: expected a JSON object, got {type(params).__name__}", 422)
    try:
        resolve_params(detector, params)
    except ValueError as exc:
        raise InputError(str(exc), 422) from None


def _one(form: uploads.Form, name: str) -> str | None:
    values = form.fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InputError(f"form field {name!r} is given {len(values)} times", 422)
    return values[0]


def _from_form(form: uploads.Form) -> dict[str, Any]:
    unknown = sorted(set(form.fields) - set(FORM_FIELDS))
    if unknown:
        raise InputError(
            f"unknown form field {unknown[0]!r} (fields: data, {', '.join(FORM_FIELDS)})", 422
        )
    params_text = _one(form, "params")
    params = _strict_json(params_text, "form field 'params'") if params_text else {}
    exclude = [c.strip() for v in form.fields.get("exclude", []) for c in v.split(",")]
    options: dict[str, Any] = {"filename": form.filename or "data.csv"}
    if exclude := [c for c in exclude if c]:
        options["exclude"] = exclude
    if label := (_one(form, "label_column") or "").strip():
        options["label_column"] = label
    if (seed := _seed(_one(form, "seed"), "form field 'seed'")) is not None:
        options["seed"] = seed
    return {
        "detector": (_one(form, "detector") or "").strip(),
        "params": params,
        "options": options,
        "promote": _promote(_one(form, "promote") or "false", "form field 'promote'"),
    }


def _from_json(body: Any) -> tuple[dict[str, Any], bytes]:
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object with detector, feature_names, rows", 422)
    unknown = sorted(set(body) - set(JSON_FIELDS))
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} (fields: {', '.join(JSON_FIELDS)})", 422)
    for needed in ("feature_names", "rows"):
        if not isinstance(body.get(needed), list):
            raise InputError(f"{needed}: required, a JSON array", 422)
    if not all(isinstance(n, str) for n in body["feature_names"]):
        raise InputError("feature_names: expected an array of strings", 422)
    try:
        data = rows_csv(body["feature_names"], body["rows"])
    except ValueError as exc:
        raise InputError(str(exc), 422) from None
    options: dict[str, Any] = {"filename": "rows"}
    if (seed := _seed(body.get("seed"), "seed")) is not None:
        options["seed"] = seed
    spec = {
        "detector": body.get("detector"),
        "params": body.get("params", {}),
        "options": options,
        "promote": _promote(body.get("promote", False), "promote"),
    }
    return spec, data


def _accepted(job_public: dict[str, Any], replayed: bool) -> JSONResponse:
    headers = {"Location": f"/training-jobs/{job_public['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job_public, status_code=202, headers=headers)


@router.post(
    "/models/{name}/training-jobs",
    status_code=202,
    summary="Train a new version of a model in the background (Bearer VIGIL_ADMIN_TOKEN)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["data", "detector"],
                        "properties": {
                            "data": {"type": "string", "format": "binary"},
                            "detector": {"type": "string", "enum": _KINDS},
                            "params": {"type": "string", "description": "a JSON object"},
                            "label_column": {"type": "string"},
                            "exclude": {"type": "string"},
                            "promote": {"type": "boolean"},
                            "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                        },
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["detector", "feature_names", "rows"],
                        "properties": {
                            "detector": {"type": "string", "enum": _KINDS},
                            "params": {"type": "object"},
                            "feature_names": {"type": "array", "items": {"type": "string"}},
                            "rows": {
                                "type": "array",
                                "items": {"type": "array", "items": {"type": "number"}},
                            },
                            "promote": {"type": "boolean"},
                            "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                        },
                    }
                },
            },
        },
        "security": [{schemas.ADMIN_SECURITY: []}],
    },
)
async def submit(name: str, request: Request, store: Store) -> JSONResponse:
    try:
        check_name(name)
    except RegistryError as exc:
        raise InputError(str(exc), 422) from None
    limit: int = request.app.state.settings.max_upload_bytes
    content_type = request.headers.get("content-type", "")
    mime = parse_options_header(content_type)[0].decode("latin-1").lower()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if mime not in ("multipart/form-data", "application/json"):
        raise InputError(
            "Content-Type must be multipart/form-data (a CSV file field named data) or"
            f" application/json, got {mime or 'nothing'}",
            415,
        )
    if encoding not in ("", "identity"):
        raise InputError(f"Content-Encoding {encoding[:40]} is not accepted", 415)
    uploads.check_length(request.headers.get("content-length"), limit)
    key = request.headers.get("idempotency-key")
    tmp: Path | None = None
    try:
        if mime == "multipart/form-data":
            form = await uploads.read_form(request.stream(), content_type, store.uploads, limit)
            tmp = form.data_path
            spec = _from_form(form)
        else:
            try:
                body = await read_body(request, limit)
            except InputError as exc:
                raise uploads.too_large(None, limit) if exc.status_code == 413 else exc from None
            parsed = await anyio.to_thread.run_sync(_strict_json, body, "body")
            spec, data = await anyio.to_thread.run_sync(_from_json, parsed)
        _check_detector(spec["detector"], spec["params"])

        def queue() -> tuple[Any, bool]:
            if tmp is None:
                return store.submit(name, **spec, data=data, idempotency_key=key, max_bytes=limit)
            with tmp.open("rb") as fh:
                return store.submit(name, **spec, data=fh, idempotency_key=key, max_bytes=limit)

        job, created = await _call(queue)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    if created:
        log.info("job %s queued: model %s, %s", job.id, name, spec["detector"])
    return _accepted(job.public(), replayed=not created)


@router.get("/training-jobs/{job_id}", summary="A training job")
async def get_job(job_id: str, store: Store) -> dict[str, Any]:
    return (await _call(store.get, job_id)).public()


@router.get("/training-jobs", summary="Training jobs, newest first, paged")
async def list_jobs(
    store: Store,
    model: Annotated[str | None, Query(pattern=f"^{NAME_PATTERN.pattern}$")] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = DEFAULT_PAGE,
    cursor: str | None = None,
) -> dict[str, Any]:
    page = await _call(store.list, model=model, status=status, limit=limit, cursor=cursor)
    return {"jobs": [j.public() for j in page.jobs], "next_cursor": page.next_cursor}


@router.post("/training-jobs/{job_id}/cancel", summary="Cancel a queued or running job")
async def cancel_job(job_id: str, store: Store) -> dict[str, Any]:
    return (await _call(store.cancel, job_id)).public()


@router.get("/training-jobs/{job_id}/deliveries", summary="A job's webhook deliveries")
async def job_deliveries(job_id: str, store: Store) -> dict[str, Any]:
    found = await _call(store.deliveries, job_id=job_id)
    return {"deliveries": [d.public() for d in found]}


@router.post(
    "/training-jobs/{job_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a webhook delivery again (same webhook-id, from the start of the schedule)",
)
async def redeliver(job_id: str, delivery_id: str, store: Store) -> dict[str, Any]:
    def again() -> dict[str, Any]:
        store.get(job_id)
        if store.delivery(delivery_id).job_id != job_id:
            raise JobNotFound(f"job {job_id} has no delivery {delivery_id!r}")
        return store.redeliver(delivery_id).public()

    return await _call(again)
