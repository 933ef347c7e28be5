"""Admin routes: model reload. Off (404) unless VIGIL_ADMIN_TOKEN is set."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api import schemas
from service.models.store import ModelStore, ReloadOutcome
from service.settings import Settings

log = logging.getLogger("vigil.admin")


class ReloadResponse(BaseModel):
    result: schemas.ReloadResult
    model_version: str | None
    previous_version: str | None
    reason: str | None = None
    changes: list[str] = []


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def require_admin(request: Request, settings: Annotated[Settings, Depends(_settings)]) -> None:
    if settings.admin_token is None:
        raise HTTPException(404, "Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            "admin token required: send 'Authorization: Bearer <VIGIL_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(403, "wrong admin token")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


async def reload_model(store: ModelStore) -> ReloadOutcome:
    """Reload off the event loop, so requests keep being served while new models load."""
    return await anyio.to_thread.run_sync(store.reload)


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Reload the registry and VIGIL_MODEL_PATH (Bearer VIGIL_ADMIN_TOKEN)",
    responses={
        401: schemas.error(
            "No Bearer token sent",
            headers={"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
        ),
        403: schemas.error("Wrong admin token"),
        409: {
            "model": ReloadResponse,
            "description": "Refused; the models served before keep serving",
        },
    },
    # The route exists only with VIGIL_ADMIN_TOKEN set (app.py leaves it out of the document
    # otherwise: it answers 404 like any unknown path).
    openapi_extra={"security": [{schemas.ADMIN_SECURITY: []}]},
)
async def reload(request: Request) -> JSONResponse:
    # With several workers, the store tells the others through the supervisor.
    outcome = await reload_model(request.app.state.store)
    body = ReloadResponse(**outcome.__dict__).model_dump()
    return JSONResponse(body, status_code=409 if outcome.result == "refused" else 200)
