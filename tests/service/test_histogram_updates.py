"""The histogram fast paths (service.serving.telemetry.observe_one and observe_many) leave a
histogram exactly as prometheus_client's own ``observe``, value by value, leaves it."""

from __future__ import annotations

import numpy as np
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
