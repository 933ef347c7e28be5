"""The FastAPI application: wiring of settings, model store, routes, metrics and error shapes."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from service import __version__
from service.api import http_metrics
from service.api.fast_lane import FastLaneApp
from service.api.openapi import install_openapi
from service.api.routes import admin, kserve_v1, v2, v2_repository
from service.api.routes import jobs as jobs_routes
from service.api.routes import models as models_routes
from service.api.routes import series as series_routes
from service.api.routes.predict import answer_head_as_get, router
from service.core.features import InputError
from service.jobs.anomaly_events import AnomalyEvents
from service.models.store import ModelNotFound, ModelStore
from service.runtime import server
from service.serving import telemetry
from service.serving.dataplane import NotReady
from service.settings import Settings
from service.watches import runner as watch_runner

log = logging.getLogger("vigil")

DESCRIPTION = """Scores feature vectors for anomalies with named, versioned models of many
detector kinds (IsolationForest, PyOD's ECOD, LOF, kNN and more, an autoencoder).

`POST /prediction` takes one vector (a JSON array of numbers in feature order, or an object
keyed by feature name) for the default model; `POST /predictions` takes a batch.
`POST /models/{name}/prediction(s)` does the same for a named model (also at
`/versions/{version}/` or `/aliases/{alias}/`). `?score=true` adds the anomaly score; higher is
more anomalous.
"""


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
    where = where.replace("query.", "query parameter ")
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    shared = server.served_copy()  # several workers: what they serve, kept by the supervisor
    # anomaly.detected webhooks of the opted-in models: started before the models load, so the
    # first catalog already has its hooks; the job store is opened by the routes' access.
    events = AnomalyEvents(settings, lambda: app.state.jobs.get())

    def on_swap(old, new) -> None:
        telemetry.on_swap(old, new)
        for model in new.served():
            model.anomaly_hook = events.hook(model.name)

    store = ModelStore(
        settings,
        shared,
        on_publish=server.tell_supervisor if shared else None,
        on_swap=on_swap,
        on_reload=telemetry.record_reload,
    )

    watches = watch_runner.from_settings(settings, shared.root if shared else None)
    reloads: set[asyncio.Task] = set()

    def in_background(work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def on_reload_signal() -> None:
        in_background(admin.reload_model(store))

    def on_follow_signal() -> None:
        in_background(anyio.to_thread.run_sync(store.adopt))

    signals = {server.RELOAD: on_reload_signal}
    if shared is not None:
        signals[server.FOLLOW] = on_follow_signal

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await anyio.to_thread.run_sync(events.start)
        catalog = store.load()
        if catalog.default is None:
            log.warning("no default model (not ready): %s", catalog.not_ready_reason())
        loop = asyncio.get_running_loop()
        try:
            for sig, handler in signals.items():
                loop.add_signal_handler(sig, handler)
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("not in the main thread: SIGHUP reload is off")
        if watches is not None:
            watches.start()  # a thread: Prometheus down or slow never blocks the loop
        if shared is not None:
            # Told to follow before the handler was in place, a worker did not hear it: look.
            await anyio.to_thread.run_sync(store.adopt)
        # What start-up allocated (modules, the model) lives as long as the process: take it out
        # of the garbage collector's full passes, which otherwise rescan it every few requests
        # (a fifth of a 10,000-row request). Objects freed later are still freed by refcount.
        gc.collect()
        gc.freeze()
        yield
        await anyio.to_thread.run_sync(events.stop)
        if watches is not None:
            await anyio.to_thread.run_sync(watches.stop)
        with suppress(ValueError, RuntimeError, NotImplementedError):
            for sig in signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)  # a late signal must not kill us on the way out

    # FastAPI, with the scoring routes served in front of its middleware and router.
    app = FastLaneApp(
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
    install_openapi(app, store, settings)

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(ModelNotFound)
    async def not_found(_: Request, exc: ModelNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=503)

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
    app.router.routes.extend(models_routes.router.routes)
    v2.install(app.router.routes)  # Open Inference Protocol V2, infer beside /predictions
    for protocol in (v2_repository, kserve_v1):  # V2's repository extension, KServe V1
        app.router.routes.extend(protocol.router.routes)
    app.router.routes.extend(series_routes.router.routes)
    app.include_router(admin.router, include_in_schema=settings.admin_token is not None)
    job_metrics = jobs_routes.install(app, settings)
    http_metrics.instrument(app, job_metrics)
    answer_head_as_get(app)
    return app
