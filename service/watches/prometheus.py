"""A small client for Prometheus' range queries (``/api/v1/query_range``), with a timeout.

Used by watches and by ``POST /series/detect``'s ``prometheus`` form. Errors say which side
failed: ``PrometheusQueryError`` for a query Prometheus refused (the caller's fault: 422),
``PrometheusUnavailable`` for a Prometheus that is unset, down, slow or answers garbage (502,
503 or 504).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import requests

MAX_POINTS_PER_SERIES = 11_000
"""Prometheus refuses a range query of more points than this per series."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class PrometheusQueryError(ValueError):
    """Prometheus refused the query (bad PromQL, too many points): the message is its error."""


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer: not configured (503), down or garbled (502), slow (504)."""

    def __init__(self, message: str, status_code: int = 502) -> None:
        super().__init__(message)
        self.status_code = status_code


def parse_duration(raw: object, name: str) -> float:
    """Seconds from a positive number or a Prometheus duration (``30s``, ``1m30s``)."""
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be seconds or a duration like 30s, got {raw!r}")
    if isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, str) and raw and "".join(n + u for n, u in _DURATION.findall(raw)) == raw:
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(raw))
    else:
        raise ValueError(f"{name} must be seconds or a duration like 30s, got {raw!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be above 0 seconds, got {raw!r}")
    return seconds


def _finite_or_nan(raw: object) -> float:
    """Prometheus' sample value; +Inf and -Inf (a division by zero) count as no value."""
    x = float(raw)  # type: ignore[arg-type]
    return x if math.isfinite(x) else math.nan


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    timestamps: list[float]
    values: list[float]
    """NaN where Prometheus answered NaN."""


@dataclass(frozen=True)
class PrometheusClient:
    url: str
    timeout: float
    authorization_file: Path | None = None

    def _headers(self) -> dict[str, str]:
        if self.authorization_file is None:
            return {}
        try:
            return {"Authorization": self.authorization_file.read_text().strip()}
        except OSError as e:
            raise PrometheusUnavailable(
                f"cannot read VIGIL_PROMETHEUS_AUTHORIZATION_FILE: {e.strerror}", 503
            ) from None

    def query_range(
        self, query: str, start: float, end: float, step: float, session: requests.Session | None
    ) -> list[RangeSeries]:
        """Every series the query returns over [start, end] at ``step`` seconds."""
        target = self.url.rstrip("/") + "/api/v1/query_range"
        params = {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)}
        http = session or requests
        try:
            r = http.post(target, data=params, headers=self._headers(), timeout=self.timeout)
        except requests.Timeout:
            raise PrometheusUnavailable(
                f"Prometheus did not answer within {self.timeout:g} s", 504
            ) from None
        except requests.RequestException as e:
            raise PrometheusUnavailable(f"cannot reach Prometheus: {type(e).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrometheusUnavailable(f"Prometheus answered {r.status_code} without JSON")
        if body.get("status") != "success":
            error = str(body.get("error") or f"status {r.status_code}")[:500]
            if r.status_code in (400, 422) or body.get("errorType") in ("bad_data", "execution"):
                raise PrometheusQueryError(error)
            raise PrometheusUnavailable(f"Prometheus answered {r.status_code}: {error}")
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise PrometheusQueryError(
                f"the query must return a range vector of series, got {data.get('resultType')}"
            )
        out = []
        for s in data.get("result") or []:
            labels = {str(k): str(v) for k, v in (s.get("metric") or {}).items()}
            pairs = s.get("values") or []
            out.append(
                RangeSeries(
                    labels,
                    [float(t) for t, _ in pairs],
                    [_finite_or_nan(v) for _, v in pairs],
                )
            )
        return out
