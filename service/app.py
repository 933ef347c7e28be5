"""The FastAPI application: wiring of settings, model store, routes, metrics and error shapes."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from service import __version__, admin, metrics
from service.api import answer_head_as_get, router
from service.artifact import ArtifactError
from service.model_store import ModelStore
from service.settings import Settings
from service.validation import InputError

log = logging.getLogger("vigil")

DESCRIPTION = """Scores feature vectors for anomalies with a scikit-learn IsolationForest.

`POST /prediction` takes one vector (a JSON array of numbers in feature order, or an object
keyed by feature name); `POST /predictions` takes a batch. `?score=true` adds the anomaly
score s(x) in (0, 1]; higher is more anomalous.
"""


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
    where = where.replace("query.", "query parameter ")
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = ModelStore()

    reloads: set[asyncio.Task] = set()

    def on_sighup() -> None:
        task = asyncio.get_running_loop().create_task(admin.reload_model(store, settings))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            store.load(settings.model_path)
        except ArtifactError as exc:
            log.warning("starting without a model (not ready): %s", exc)
        # What start-up allocated (modules, the model) lives as long as the process: take it out
        # of the garbage collector's full passes, which otherwise rescan it every few requests
        # (a fifth of a 10,000-row request). Objects freed later are still freed by refcount.
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("not in the main thread: SIGHUP reload is off")
        yield
        with suppress(ValueError, RuntimeError, NotImplementedError):
            loop.remove_signal_handler(signal.SIGHUP)

    app = FastAPI(
        title="Vigil",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Vigil exports Prometheus metrics; FastAPI's OpenTelemetry hooks would only check, on
        # every request, for a provider that is never configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.store = store

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": "; ".join(_describe(e) for e in exc.errors())}, status_code=422
        )

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        # The client hung up mid-body: nobody reads this answer. 499 keeps it out of the 5xx
        # error budget (nginx's "client closed request").
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    # On the app itself rather than include_router(): FastAPI matches a request to an included
    # router twice, about 10 µs of a one-row prediction's 100 (bench/layers.py).
    app.router.routes.extend(router.routes)
    app.include_router(admin.router)
    metrics.instrument(app)
    answer_head_as_get(app)
    return app
