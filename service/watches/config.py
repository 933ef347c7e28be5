"""The watch file (``VIGIL_WATCHES``): which PromQL queries to score, how often, with what.

```yaml
watches:
  - name: request_rate              # [A-Za-z_][A-Za-z0-9_]*, unique; the `watch` label
    query: sum(rate(http_requests_total{job="vigil"}[1m]))
    step: 30s                       # how often to poll, and the spacing of the points
    detector: seasonal              # a series detector kind (default seasonal)
    params: {k: 5}                  # its parameters (checked at start)
    max_series: 10                  # series exported; more are counted, not exported
    lookback: 1d                    # history scored at start (default 2,000 steps)
```

Every problem is a ``WatchConfigError`` naming the file, the watch and the field; the service
refuses to start with it rather than run without the watches it was asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from service.series import SeriesInputError, get_kind
from service.watches.prometheus import MAX_POINTS_PER_SERIES, parse_duration

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FIELDS = ("name", "query", "step", "detector", "params", "max_series", "lookback")
DEFAULT_MAX_SERIES = 10
MAX_SERIES_LIMIT = 1000
DEFAULT_LOOKBACK_STEPS = 2000
MIN_STEP = 1.0


class WatchConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Watch:
    name: str
    query: str
    step: float
    """Seconds."""
    detector: str
    params: dict[str, float | int] = field(default_factory=dict)
    max_series: int = DEFAULT_MAX_SERIES
    lookback: float = 0.0
    """Seconds of history scored at start (at most Prometheus' 11,000 points)."""


def _watch(raw: object, i: int, seen: set[str]) -> Watch:
    where = f"watches[{i}]"
    if not isinstance(raw, dict):
        raise WatchConfigError(f"{where} must be a mapping with name, query and step")
    extra = [k for k in raw if k not in FIELDS]
    if extra:
        raise WatchConfigError(f"{where}: unknown field {extra[0]!r}; known: {', '.join(FIELDS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise WatchConfigError(f"{where}.name must match {NAME.pattern}, got {name!r}")
    if name in seen:
        raise WatchConfigError(f"{where}.name {name!r} is used twice")
    where = f"watch {name!r}"
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise WatchConfigError(f"{where}: query must be a non-empty PromQL string")
    try:
        step = parse_duration(raw.get("step"), "step")
        if step < MIN_STEP:
            raise ValueError(f"step must be at least {MIN_STEP:g} s, got {raw.get('step')!r}")
        top = step * (MAX_POINTS_PER_SERIES - 1)
        lookback = (
            parse_duration(raw["lookback"], "lookback")
            if "lookback" in raw
            else step * DEFAULT_LOOKBACK_STEPS
        )
        if lookback > top:
            raise ValueError(f"lookback must be at most {MAX_POINTS_PER_SERIES - 1} steps")
    except ValueError as e:
        raise WatchConfigError(f"{where}: {e}") from None
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise WatchConfigError(f"{where}: params must be a mapping")
    try:
        kind = get_kind(raw.get("detector", "seasonal"))
        resolved = kind.resolve(params)
    except SeriesInputError as e:
        raise WatchConfigError(f"{where}: {e}") from None
    cap = raw.get("max_series", DEFAULT_MAX_SERIES)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_SERIES_LIMIT:
        raise WatchConfigError(
            f"{where}: max_series must be an integer from 1 to {MAX_SERIES_LIMIT}, got {cap!r}"
        )
    seen.add(name)
    return Watch(name, query, step, kind.name, resolved, cap, lookback)


def parse(text: str, source: str = "watches") -> list[Watch]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise WatchConfigError(f"{source}: not YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("watches"), list):
        raise WatchConfigError(f"{source}: expected a mapping with a `watches:` list")
    seen: set[str] = set()
    try:
        return [_watch(raw, i, seen) for i, raw in enumerate(doc["watches"])]
    except WatchConfigError as e:
        raise WatchConfigError(f"{source}: {e}") from None


def load(path: Path) -> list[Watch]:
    try:
        text = path.read_text()
    except OSError as e:
        raise WatchConfigError(f"{path}: cannot read the watch file: {e.strerror}") from None
    return parse(text, str(path))
