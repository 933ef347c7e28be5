"""The histogram fast paths (service.serving.telemetry.observe_one and observe_many) leave a
histogram exactly as prometheus_client's own ``observe``, value by value, leaves it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from service.serving.telemetry import (
    INFERENCE_BUCKETS,
    PERCENTILE_BUCKETS,
    observe_many,
    observe_one,
)

BUCKETS = st.sampled_from([PERCENTILE_BUCKETS, INFERENCE_BUCKETS, (1.0, 2.0, 5.0)])


def bound_or_near(buckets: tuple[float, ...]):
    """Values on a bucket bound, just beside one, or anywhere (negative and huge included)."""
    bounds = st.sampled_from(buckets)
    return st.one_of(
        bounds,
        bounds.map(lambda b: float(np.nextafter(b, np.inf))),
        bounds.map(lambda b: float(np.nextafter(b, -np.inf))),
        st.floats(-10, 1e6, allow_nan=False),
        st.just(0.0),
    )


def pair(
    buckets: tuple[float, ...],
) -> tuple[Histogram, Histogram, CollectorRegistry, CollectorRegistry]:
    registries = CollectorRegistry(), CollectorRegistry()
    own, fast = (
        Histogram("h", "h", ["model"], buckets=buckets, registry=r).labels("m") for r in registries
    )
    return own, fast, *registries


def samples(registry: CollectorRegistry) -> list:
    return [
        (s.name, s.labels, s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), buckets=BUCKETS)
def test_observe_one_is_observe(data, buckets):
    values = data.draw(st.lists(bound_or_near(buckets), max_size=20))
    own, fast, own_registry, fast_registry = pair(buckets)
    for value in values:
        own.observe(value)
        observe_one(fast, value)
    assert samples(fast_registry) == samples(own_registry)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), buckets=BUCKETS)
def test_observe_many_is_observe(data, buckets):
    values = data.draw(st.lists(bound_or_near(buckets), min_size=1, max_size=50))
    own, fast, own_registry, fast_registry = pair(buckets)
    for value in values:
        own.observe(value)
    observe_many(fast, np.array(values))
    got, expected = samples(fast_registry), samples(own_registry)
    assert [s[:2] for s in got] == [s[:2] for s in expected]
    for (name, _, a), (_, _, b) in zip(got, expected, strict=True):
        assert a == b if not name.endswith("_sum") else np.isclose(a, b, rtol=1e-12, atol=1e-9)


@pytest.fixture(scope="module")
def model(model_path):
    from service.models import artifact
    from service.models.loaded import Model

    return Model(artifact.load(model_path))


def vigil_samples() -> dict:
    from prometheus_client import REGISTRY

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        if family.name.startswith("vigil_")
        for s in family.samples
        if not s.name.endswith("_created")
    }


def change(before: dict, after: dict, rename: str) -> dict:
    """What changed, with the model label ``rename`` written as "m"."""
    out = {}
    for (name, labels), value in after.items():
        moved = value - before.get((name, labels), 0.0)
        if moved:
            labels = tuple((k, "m" if (k, v) == ("model", rename) else v) for k, v in labels)
            out[(name, labels)] = round(moved, 9) if name.endswith("_sum") else moved
    return out


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    seconds=st.floats(1e-6, 0.5),
)
def test_a_batch_of_rows_counts_as_each_row_would(model, n, seed, seconds):
    """The row batcher counts its rows with record_rows: the same series change as they
    would with one record_row per row (sums to 9 decimals: float additions in another order)."""
    from service.serving import telemetry

    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0.1, 0.05, size=(n, 2)), [[5.0, -3.0]]])[rng.permutation(n + 1)]
    scores = model.score(X)
    flags, values = scores.is_anomaly.tolist(), scores.anomaly_score.tolist()
    percentiles = [model.percentile_one(v) for v in values]
    endpoints = [str(e) for e in rng.choice(["prediction", "v2"], size=len(values))]
    reference = telemetry._reference(model)
    assert reference is not None  # the drift bins are counted too
    names = (f"one-{seed}-{n}", f"batch-{seed}-{n}")
    one, batch = (telemetry.ModelMetrics(name, "1", reference) for name in names)

    before = vigil_samples()
    for i in range(len(values)):
        telemetry.record_row(
            one, endpoints[i], X[i : i + 1], values[i], flags[i], percentiles[i], seconds
        )
    middle = vigil_samples()
    telemetry.record_rows(batch, endpoints, X, values, flags, percentiles, seconds)
    after = vigil_samples()
    assert change(before, middle, names[0]) == change(middle, after, names[1])
