"""The watch file: every field checked at start, errors naming the watch and the field."""

from __future__ import annotations

import pytest

from service.api.app import create_app
from service.settings import Settings
from service.watches.config import WatchConfigError, parse

GOOD = "watches:\n  - {name: rate, query: up, step: 30s}\n"


def test_defaults():
    (w,) = parse(GOOD)
    assert (w.step, w.detector, w.max_series, w.lookback) == (30.0, "seasonal", 10, 60_000.0)
    assert w.params["k"] == 5.0


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("- 1", "expected a mapping with a `watches:` list"),
        ("watches: [3]", "watches[0] must be a mapping"),
        ("watches:\n  - {name: 1x, query: up, step: 1s}", "watches[0].name must match"),
        ("watches:\n  - {name: a, query: up, step: 1s}\n  - {name: a, query: up, step: 1s}",
         "watches[1].name 'a' is used twice"),
        ("watches:\n  - {name: a, query: '', step: 1s}", "watch 'a': query must be"),
        ("watches:\n  - {name: a, query: up, step: 0.5}", "watch 'a': step must be at least 1"),
        ("watches:\n  - {name: a, query: up, step: 1x}", "watch 'a': step must be seconds"),
        ("watches:\n  - {name: a, query: up, step: 1s, lookback: 4h}",
         "watch 'a': lookback must be at most 10999 steps"),
        ("watches:\n  - {name: a, query: up, step: 1s, detector: arima}",
         "watch 'a': detector must be one of"),
        ("watches:\n  - {name: a, query: up, step: 1s, params: {k: 0}}",
         "watch 'a': seasonal: parameter k must be > 0"),
        ("watches:\n  - {name: a, query: up, step: 1s, max_series: 0}",
         "watch 'a': max_series must be an integer from 1 to 1000"),
        ("watches:\n  - {name: a, query: up, step: 1s, every: 1}", "unknown field 'every'"),
        ("watches: [", "not YAML"),
    ],
)  # fmt: skip
def test_each_problem_is_named(text, detail):
    with pytest.raises(WatchConfigError, match=None) as e:
        parse(text, "w.yml")
    assert str(e.value).startswith("w.yml: ") and detail in str(e.value)


def test_the_service_refuses_to_start_with_a_bad_watch_file_or_no_prometheus(tmp_path):
    bad = tmp_path / "w.yml"
    bad.write_text("watches:\n  - {name: a, query: up, step: 1x}\n")
    base = {"model_path": tmp_path / "m.joblib", "registry": tmp_path}
    with pytest.raises(WatchConfigError, match="step must be seconds"):
        create_app(Settings(**base, watches=bad, prometheus_url="http://127.0.0.1:9"))
    good = tmp_path / "good.yml"
    good.write_text(GOOD)
    with pytest.raises(WatchConfigError, match="watches need VIGIL_PROMETHEUS_URL"):
        create_app(Settings(**base, watches=good))
    with pytest.raises(WatchConfigError, match="cannot read the watch file"):
        create_app(Settings(**base, watches=tmp_path / "nope.yml", prometheus_url="http://x:1"))


def test_the_shipped_example_is_valid():
    from tests.support import REPO

    names = [w.name for w in parse((REPO / "monitor" / "watches.yml").read_text())]
    assert names == ["request_rate", "anomaly_rate"]
