"""The fast lane: the scoring routes, served in front of FastAPI's middleware and router.

``POST /prediction``, ``/predictions`` and the named ``/models/{name}/...prediction(s)`` are
most of the traffic, and for a one-row request the framework around the endpoint cost more
than the server's own work (``bench/README.md``, "Where the time goes"). This module takes
those requests (and V2 infer's) as soon as the app is called and serves them with the same
pieces FastAPI would use, in the same order:

- what the route's endpoint runs, so there is one implementation of what a scoring route
  answers: its query parameters validated by FastAPI's own function (cached per query string),
  then its ``Scoring`` (``service.api.routes.predict``; V2 infer's is in ``routes.v2``) called
  with the ASGI scope, and the two messages its ``Reply`` makes; a ScoringRoute without a
  ``Scoring`` through the route's own handler, with a Request;
- the app's own exception handlers, looked up as Starlette's ``ExceptionMiddleware`` and
  ``ServerErrorMiddleware`` look them up, so every 4xx (and a 500) has the same status, headers
  and body;
- the HTTP metrics of ``service.api.http_metrics`` (same series, labels and status rule).

What it bypasses: Starlette's middleware stack (server-error, FastAPI's telemetry, body-limit
and exit-stack layers, the HTTP-metrics middleware, the exception middleware: each a coroutine
and a wrapper around ``send``), the router's scan of every route with a regular expression,
and the request/response wrapper. None of them changes a scoring route's answer.

It steps aside (FastAPI serves everything, as if this module did not exist) when the app has
middleware other than the HTTP metrics, and it leaves out a route that an earlier route could
also match, or whose path has a converter (``{x:path}``). It never takes a request with a
``root_path`` or a method other than POST: FastAPI answers those (404, 405, redirects).

``tests/service/test_fast_lane.py`` replays a corpus of good and bad requests against both
paths and requires the same messages (status, headers, body) and the same metric changes:
change this module with that test.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from time import perf_counter

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import http_metrics
from service.api.routes.predict import ScoringRoute

log = logging.getLogger("vigil")

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


@dataclass(frozen=True)
class _Lane:
    """One scoring route as the fast lane serves it."""

    route: ScoringRoute
    handler: Handler
    metrics: http_metrics.HandlerSeries | None  # None: the handler is excluded from metrics
    params: tuple[tuple[int, str], ...]  # (segment index, parameter name)
    literals: tuple[tuple[int, str], ...]  # (segment index, text) that must match


def _segments(path: str) -> list[str]:
    return path.split("/")


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _may_overlap(template: str, other: str) -> bool:
    """Whether some path could match both route templates (``{name}`` matches one segment)."""
    if ":" in other:  # a converter ({x:path} spans segments): assume the worst
        return True
    mine, theirs = _segments(template), _segments(other)
    return len(mine) == len(theirs) and all(
        a == b or _is_param(a) or _is_param(b) for a, b in zip(mine, theirs, strict=True)
    )


def _servable(routes: list[BaseRoute]) -> Iterable[ScoringRoute]:
    """The POST ScoringRoutes that the router would pick for every path they match."""
    for i, route in enumerate(routes):
        if not (isinstance(route, ScoringRoute) and "POST" in route.methods):
            continue
        if ":" in route.path:
            continue
        earlier = routes[:i]
        if any(_shadows(other, route.path) for other in earlier):
            log.warning("fast lane: %s is left to FastAPI (an earlier route may match)", route.path)
            continue
        yield route


def _shadows(other: BaseRoute, template: str) -> bool:
    if isinstance(other, WebSocketRoute):
        return False
    if not isinstance(other, Route):  # a Mount, a Host: could take anything
        return True
    methods = other.methods
    return (methods is None or "POST" in methods) and _may_overlap(template, other.path)


class FastLane:
    """ASGI app: a scoring-route request is served here, anything else by ``app``'s stack."""

    def __init__(
        self, app: FastAPI, stack: ASGIApp, routes: Iterable[ScoringRoute], record: bool
    ) -> None:
        self.app = stack  # the middleware stack FastAPI built: every other request
        self._exact: dict[str, _Lane] = {}
        self._templated: dict[int, list[_Lane]] = {}
        for route in routes:
            segments = _segments(route.path)
            lane = _Lane(
                route=route,
                handler=route.get_route_handler(),
                metrics=http_metrics.series("POST", route.path)
                if record and not http_metrics.is_excluded(route.path)
                else None,
                params=tuple((i, s[1:-1]) for i, s in enumerate(segments) if _is_param(s)),
                literals=tuple((i, s) for i, s in enumerate(segments) if not _is_param(s)),
            )
            if lane.params:
                self._templated.setdefault(len(segments), []).append(lane)
            else:
                self._exact[route.path] = lane
        self._by_class, self._server_error = _exception_handlers(app)
        # The store and settings create_app put in the app's state (one each, for its life).
        self._store, self._settings = app.state.store, app.state.settings

    @property
    def paths(self) -> list[str]:
        """The route templates served here."""
        lanes = [*self._exact.values(), *(lane for ls in self._templated.values() for lane in ls)]
        return [lane.route.path for lane in lanes]

    def match(self, scope: Scope) -> tuple[_Lane, dict[str, str]] | None:
        """The lane and path parameters for an HTTP request, or None for FastAPI's router."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        path = scope["path"]
        lane = self._exact.get(path)
        if lane is not None:
            return lane, {}
        segments = _segments(path)
        for lane in self._templated.get(len(segments), ()):
            if all(segments[i] == text for i, text in lane.literals):
                params = {name: segments[i] for i, name in lane.params}
                if all(params.values()):  # Starlette's {name} matches one or more characters
                    return lane, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
        else:
            await self.serve(*found, scope, receive, send)

    async def serve(
        self, lane: _Lane, params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        start = perf_counter()
        # What Starlette's router puts in the scope for the route it picked.
        route = lane.route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        scope["route"] = route
        metrics = lane.metrics
        if metrics is not None:
            metrics.inprogress.inc()
        status = 500
        try:
            try:
                scoring = route.scoring
                if scoring is None:  # another ScoringRoute (V2 repository): as FastAPI calls it
                    response = await lane.handler(Request(scope, receive, send))
                else:  # what the route's endpoint runs, without a Request or a Response
                    query = route.query_values(scope["query_string"])
                    reply = await scoring.answer(
                        scope, receive, self._store, self._settings, params, query
                    )
                    status = reply.status
                    # The two messages reply.response() sends.
                    length = (b"content-length", str(len(reply.body)).encode())
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [length, *reply.headers],
                        }
                    )
                    await send({"type": "http.response.body", "body": reply.body})
                    return
            except Exception as exc:
                request = Request(scope, receive, send)
                handler = self._handler_for(exc)
                if handler is None:  # as ServerErrorMiddleware: answer 500, then re-raise
                    response = await self._server_error(request, exc)
                    status = response.status_code
                    await response(scope, receive, send)
                    raise
                response = await handler(request, exc)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            if metrics is not None:
                metrics.finished(status, perf_counter() - start)

    def _handler_for(self, exc: Exception) -> ErrorHandler | None:
        for cls in type(exc).__mro__:
            handler = self._by_class.get(cls)
            if handler is not None:
                return handler
        return None


def _exception_handlers(app: FastAPI) -> tuple[dict[type, ErrorHandler], ErrorHandler]:
    """The app's handlers by exception class, and its handler for anything else (500), as
    FastAPI's ``build_middleware_stack`` hands them to the two exception middlewares."""
    by_class: dict[type, ErrorHandler] = {}
    server_error: ErrorHandler | None = None
    for key, handler in app.exception_handlers.items():
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"fast lane: the exception handler for {key} must be async")
        if key in (500, Exception):
            server_error = handler
        elif isinstance(key, type):
            by_class[key] = handler
        # Handlers by status code apply to HTTPException, which no scoring route raises.
    if server_error is None:
        raise TypeError("fast lane: the app needs a handler for Exception (500)")
    return by_class, server_error


def _runs_as_declared(app: FastAPI, route: ScoringRoute) -> bool:
    """False for a route whose router was included with dependencies: FastAPI answers it (with
    the 500 that says a ScoringRoute does not run them)."""
    try:
        route._refuse_added_dependencies(app)
    except RuntimeError:
        return False
    return True


class FastLaneApp(FastAPI):
    """FastAPI with the fast lane in front of its middleware stack.

    ``fast_lane`` is false to serve every route through FastAPI (the equivalence test, and
    ``bench/layers.py``, compare both); set it before the first request, or reset
    ``middleware_stack`` to None after changing it.
    """

    fast_lane: bool = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # For an HTTP request FastAPI's and Starlette's __call__ only set scope["app"] (and
        # root_path, when the app has one) before calling the middleware stack: the fast lane
        # does that itself, two calls sooner.
        stack = self.middleware_stack
        if type(stack) is FastLane and scope["type"] == "http" and not self.root_path:
            found = stack.match(scope)
            if found is not None:
                scope["app"] = self
                await stack.serve(*found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if not self.fast_lane:
            return stack
        metrics = http_metrics.HTTPMetricsMiddleware
        others = [m for m in self.user_middleware if m.cls is not metrics]
        if others:
            log.warning("fast lane off: the app has other middleware (%s)", others)
            return stack
        routes = [r for r in _servable(self.router.routes) if _runs_as_declared(self, r)]
        if not routes:
            return stack
        recorded = any(m.cls is metrics for m in self.user_middleware)
        return FastLane(self, stack, routes, record=recorded)


__all__ = ["FastLane", "FastLaneApp"]
