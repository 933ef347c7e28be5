"""``POST /series/detect``: anomalies in time series, with expected values, bands and a forecast.

Three forms of body, each with optional ``detector``, ``params`` and ``horizon``:

- one series: ``{"timestamps": [...], "values": [...]}``;
- several: ``{"series": [{"labels": {...}, "timestamps": [...], "values": [...]}, ...]}``;
- a Prometheus range query: ``{"prometheus": {"query", "start", "end", "step"}}``, answered per
  returned series with its labels (``VIGIL_PROMETHEUS_URL``).

Every refusal is a 4xx naming the field; detection runs in a worker thread, never on the event
loop. The detection itself is ``service.series.detect`` (causal: see docs/series.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from service.api import schemas
from service.api.routes.predict import _json, read_json
from service.core.features import InputError
from service.series import DEFAULT_KIND, SeriesInputError, SeriesStream, detect
from service.series.input import parse_timestamp
from service.series.stream import DEFAULT_HORIZON, MAX_HORIZON
from service.settings import Settings
from service.watches.prometheus import (
    MAX_POINTS_PER_SERIES,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailable,
    parse_duration,
)

router = APIRouter()

TOP_FIELDS = ("detector", "params", "horizon", "timestamps", "values", "series", "prometheus")
SERIES_FIELDS = ("labels", "timestamps", "values")
PROMETHEUS_FIELDS = ("query", "start", "end", "step")

_ERRORS = {
    400: schemas.error("Body is empty or not valid JSON (NaN and Infinity are not JSON)"),
    413: schemas.error("Body over VIGIL_MAX_BODY_BYTES, or points over VIGIL_MAX_SERIES_POINTS"),
    415: schemas.error("Content-Type is not JSON, or Content-Encoding is not identity"),
    422: schemas.error("A field is missing, of the wrong type or unusable (the detail names it)"),
    502: schemas.error("Prometheus is down or answered garbage"),
    503: schemas.error("No Prometheus configured (VIGIL_PROMETHEUS_URL)"),
    504: schemas.error("Prometheus did not answer in time (VIGIL_PROMETHEUS_TIMEOUT)"),
}


def _unknown(given: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    extra = [k for k in given if k not in known]
    if extra:
        raise InputError(f"{where}unknown field {extra[0]!r}; known: {', '.join(known)}")


def _labels(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InputError(f"{where}labels must be an object of strings")
    return raw


def _check_points(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise InputError(
            f"{what} {n:,} points, more than the limit {limit:,} (VIGIL_MAX_SERIES_POINTS)", 413
        )


class _Job:
    """A parsed request: the detector, its parameters, the horizon, and the series to detect."""

    def __init__(self, body: dict[str, Any]) -> None:
        detector = body.get("detector", DEFAULT_KIND)
        params = body.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InputError(f"params must be an object, got {type(params).__name__}")
        try:
            SeriesStream(detector, params)  # the detector and parameters, checked once
        except SeriesInputError as e:
            raise InputError(str(e)) from None
        horizon = body.get("horizon", DEFAULT_HORIZON)
        integer = isinstance(horizon, int) and not isinstance(horizon, bool)
        if not integer or not 0 <= horizon <= MAX_HORIZON:
            raise InputError(f"horizon must be an integer from 0 to {MAX_HORIZON}, got {horizon!r}")
        self.detector, self.params, self.horizon = detector, params, horizon

    def run(self, timestamps: list, values: list, max_points: int) -> dict[str, Any]:
        return detect(
            timestamps, values, self.detector, self.params, self.horizon, max_points
        ).to_dict()


def _forms(body: dict[str, Any]) -> str:
    present = [
        name
        for name, keys in (
            ("timestamps and values", ("timestamps", "values")),
            ("series", ("series",)),
            ("prometheus", ("prometheus",)),
        )
        if any(k in body for k in keys)
    ]
    if len(present) != 1:
        raise InputError(
            "send exactly one of timestamps and values, series, or prometheus"
            + (f"; got {' and '.join(present)}" if present else "")
        )
    return present[0]


def _one(job: _Job, body: dict[str, Any], limit: int) -> dict[str, Any]:
    for key in ("timestamps", "values"):
        if key not in body:
            raise InputError(f"{key} is required with {'values' if key == 'timestamps' else key}")
        if not isinstance(body[key], list):
            raise InputError(f"{key} must be an array")
    _check_points(len(body["values"]), limit, "values has")
    try:
        return job.run(body["timestamps"], body["values"], limit)
    except SeriesInputError as e:
        raise InputError(str(e)) from None


def _many(job: _Job, body: dict[str, Any], limit: int) -> dict[str, Any]:
    series = body["series"]
    if not isinstance(series, list) or not series:
        raise InputError("series must be a non-empty array of {labels, timestamps, values}")
    total = 0
    for i, s in enumerate(series):
        where = f"series[{i}]: "
        if not isinstance(s, dict):
            raise InputError(f"{where}must be an object with timestamps and values")
        _unknown(s, SERIES_FIELDS, where)
        _labels(s.get("labels"), where)
        for key in ("timestamps", "values"):
            if not isinstance(s.get(key), list):
                raise InputError(f"{where}{key} must be an array")
        total += len(s["values"])
    _check_points(total, limit, "series have")
    out = []
    for i, s in enumerate(series):
        try:
            result = job.run(s["timestamps"], s["values"], limit)
        except SeriesInputError as e:
            raise InputError(f"series[{i}]: {e}") from None
        out.append({"labels": s.get("labels") or {}, **result})
    return {"detector": out[0]["detector"], "params": out[0]["params"], "series": _unshared(out)}


def _unshared(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each series' answer without the detector and params the envelope already gives."""
    return [{k: v for k, v in r.items() if k not in ("detector", "params")} for r in out]


def _prometheus_request(raw: object, limit: int) -> tuple[str, float, float, float]:
    where = "prometheus."
    if not isinstance(raw, dict):
        raise InputError("prometheus must be an object with query, start, end and step")
    _unknown(raw, PROMETHEUS_FIELDS, "prometheus: ")
    for key in PROMETHEUS_FIELDS:
        if key not in raw:
            raise InputError(f"{where}{key} is required")
    query = raw["query"]
    if not isinstance(query, str) or not query.strip():
        raise InputError(f"{where}query must be a non-empty PromQL string")
    try:
        start = parse_timestamp(raw["start"], 0, "prometheus.start")
        end = parse_timestamp(raw["end"], 0, "prometheus.end")
    except SeriesInputError as e:
        raise InputError(str(e).replace("[0]", "")) from None
    try:
        step = parse_duration(raw["step"], f"{where}step")
    except ValueError as e:
        raise InputError(str(e)) from None
    if end <= start:
        raise InputError(f"{where}end must be after prometheus.start")
    points = math.floor((end - start) / step) + 1
    cap = min(limit, MAX_POINTS_PER_SERIES)
    if points > cap:
        raise InputError(
            f"{where}step: (end - start) / step gives {points:,} points per series, more than"
            f" {cap:,} (Prometheus' 11,000 and VIGIL_MAX_SERIES_POINTS)",
            413 if points > limit else 422,
        )
    return query, start, end, step


def _prometheus(job: _Job, body: dict[str, Any], settings: Settings, limit: int) -> Any:
    query, start, end, step = _prometheus_request(body["prometheus"], limit)
    if settings.prometheus_url is None:
        raise PrometheusUnavailable("no Prometheus configured: set VIGIL_PROMETHEUS_URL", 503)
    client = PrometheusClient(
        settings.prometheus_url, settings.prometheus_timeout, settings.prometheus_authorization_file
    )
    try:
        found = client.query_range(query, start, end, step, None)
    except PrometheusQueryError as e:
        raise InputError(f"prometheus.query: Prometheus refused it: {e}") from None
    _check_points(sum(len(s.values) for s in found), limit, "the query returned")
    out = []
    for s in found:
        try:
            result = job.run(s.timestamps, s.values, limit)
        except SeriesInputError as e:  # one short series does not spoil the others
            out.append({"labels": s.labels, "error": str(e)})
            continue
        out.append({"labels": s.labels, **result})
    resolved = SeriesStream(job.detector, job.params)
    return {"detector": resolved.kind.name, "params": resolved.params, "series": _unshared(out)}


def detect_body(body: object, settings: Settings) -> dict[str, Any]:
    """The answer to a decoded body (blocking: run it in a worker thread)."""
    if not isinstance(body, dict):
        raise InputError(
            "body must be a JSON object with timestamps and values, series, or prometheus"
        )
    _unknown(body, TOP_FIELDS, "")
    form = _forms(body)
    job = _Job(body)
    limit = settings.max_series_points
    if form == "series":
        return _many(job, body, limit)
    if form == "prometheus":
        return _prometheus(job, body, settings, limit)
    return _one(job, body, limit)


@router.post(
    "/series/detect",
    responses=_ERRORS,
    summary="Anomalies in time series: per point score, flag, expected value and band",
    # Left out of /openapi.json: what makes a series usable (equal lengths, 3 distinct
    # timestamps with values) is beyond JSON Schema, so the document could only promise less
    # than the route checks. The README and docs/series.md describe the body.
    include_in_schema=False,
)
async def series_detect(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    try:
        answer = await anyio.to_thread.run_sync(detect_body, body, settings)
    except PrometheusUnavailable as e:
        return _json({"detail": str(e)}, e.status_code)
    return _json(answer)
