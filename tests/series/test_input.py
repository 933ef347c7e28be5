"""Messy input: each case gets its defined answer or a SeriesInputError naming the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.series import SeriesInputError, SeriesStream, detect
from service.series.input import normalise
from tests.series import gen


def test_iso_and_unix_timestamps_mean_the_same_instants() -> None:
    iso = normalise(
        ["2024-05-01T00:00:00Z", "2024-05-01 00:05:00", "2024-05-01T02:10:00+02:00"], [1, 2, 3]
    )
    unix = normalise([1714521600, 1714521900.0, 1714522200], [1, 2, 3])
    assert iso.timestamps.tolist() == unix.timestamps.tolist()
    assert iso.iso and not unix.iso


def test_unsorted_input_is_answered_in_time_order() -> None:
    s = normalise([30, 10, 20, 40], [3.0, 1.0, 2.0, 4.0])
    assert s.timestamps.tolist() == [10, 20, 30, 40]
    assert s.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert any("not in order" in n for n in s.notes)


def test_duplicate_timestamps_become_one_point_with_the_mean() -> None:
    s = normalise([10, 20, 20, 30, 40], [1.0, 2.0, 4.0, None, 5.0])
    assert s.timestamps.tolist() == [10, 20, 30, 40]
    assert s.values[:2].tolist() == [1.0, 3.0]
    assert math.isnan(s.values[2])
    assert any("duplicate" in n for n in s.notes)


def test_missing_values_are_answered_but_never_flagged_nor_learned() -> None:
    t, x = gen.seasonal(days=4)
    values: list[float | None] = x.tolist()
    for i in range(700, 1100, 7):
        values[i] = None
    values[900] = float("nan")
    r = detect(t.tolist(), values)
    missing = np.isnan(r.values)
    assert missing.sum() == len(range(700, 1100, 7)) + 1
    assert not r.is_anomaly[missing].any()
    assert np.all(r.score[missing] == 0)
    assert np.isfinite(r.expected[missing]).all()  # after warm-up: what was expected there
    points = r.points()
    assert points[900]["value"] is None and points[900]["expected"] is not None
    # learning skipped the gaps: the rest equals a run where those points were never sent
    keep = ~missing
    r2 = detect(t[keep].tolist(), x[keep].tolist())
    assert np.array_equal(r2.score, r.score[keep])


def test_gaps_and_irregular_spacing_are_kept_as_they_are() -> None:
    t, x = gen.seasonal(days=4)
    rng = np.random.default_rng(3)
    t = t + rng.uniform(-60, 60, t.size)  # jitter
    keep = np.ones(t.size, bool)
    keep[800:900] = False  # an 8-hour gap
    r = detect(t[keep].tolist(), x[keep].tolist(), horizon=3)
    assert r.timestamps.size == keep.sum()
    assert r.is_anomaly.mean() < 0.01
    # the forecast steps by the median spacing from the last point
    step = r.forecast[1][0] - r.forecast[0][0]
    assert 240 < step < 360


@pytest.mark.parametrize(
    ("timestamps", "values", "message"),
    [
        ([1, 2, 3], [1, 2], "same length, got 3 timestamps and 2 values"),
        ([1, 2, "noon"], [1, 2, 3], "timestamps[2] is not an ISO 8601 timestamp"),
        ([1, None, 3], [1, 2, 3], "timestamps[1] must be Unix seconds"),
        ([1, True, 3], [1, 2, 3], "timestamps[1] must be Unix seconds"),
        ([1, 2, float("inf")], [1, 2, 3], "timestamps[2] must be a finite number"),
        ([1, 2, 3], [1, "2", 3], "values[1] must be a number or null"),
        ([1, 2, 3], [1, False, 3], "values[1] must be a number or null"),
        ([1, 2, 3], [1, 2, float("inf")], "values[2] must be finite"),
        ([1, 2, 3], [1, None, 3], "2 measured points at distinct timestamps; at least 3"),
        ([1, 1, 1, 2], [1, 2, 3, 4], "2 measured points at distinct timestamps"),
        ([], [], "0 measured points"),
        ("1,2,3", [1, 2, 3], "timestamps must be an array"),
    ],
)
def test_unusable_input_is_an_error_naming_the_field(timestamps, values, message) -> None:
    with pytest.raises(SeriesInputError) as err:
        detect(timestamps, values)
    assert message in str(err.value)


def test_more_points_than_the_limit_is_an_error() -> None:
    with pytest.raises(SeriesInputError, match="values has 11 points, more than the limit 10"):
        detect(list(range(11)), list(range(11)), max_points=10)


@pytest.mark.parametrize(
    ("detector", "params", "message"),
    [
        ("prophet", {}, "detector must be one of seasonal, windowed, rolling, got 'prophet'"),
        ("seasonal", {"kk": 3}, "seasonal: unknown parameter 'kk'"),
        ("seasonal", {"k": 0}, "seasonal: parameter k must be > 0, got 0"),
        ("seasonal", {"k": "wide"}, "seasonal: parameter k must be a number, got 'wide'"),
        ("seasonal", {"window": 2.5}, "seasonal: parameter window must be an integer, got 2.5"),
        ("windowed", {"contamination": 0.9}, "windowed: parameter contamination must be <= 0.5"),
        ("rolling", {"k": float("nan")}, "rolling: parameter k must be finite"),
    ],
)
def test_bad_detector_or_parameter_names_it(detector, params, message) -> None:
    with pytest.raises(SeriesInputError) as err:
        detect([1, 2, 3], [1, 2, 3], detector, params)
    assert message in str(err.value)


@pytest.mark.parametrize("horizon", [-1, 10_001, 2.5, True])
def test_bad_horizon_is_an_error(horizon) -> None:
    with pytest.raises(SeriesInputError, match="horizon must be an integer from 0 to 10000"):
        detect([1, 2, 3], [1, 2, 3], horizon=horizon)


def test_a_stream_refuses_a_point_that_is_not_after_the_last() -> None:
    stream = SeriesStream()
    stream.update("2024-05-01T00:00:00Z", 1.0)
    with pytest.raises(SeriesInputError, match="point 1 is not after the previous one"):
        stream.update("2024-05-01T00:00:00Z", 2.0)
    with pytest.raises(SeriesInputError, match=r"value\[1\] must be a number or null"):
        stream.update("2024-05-01T00:05:00Z", "x")


def test_a_short_series_is_answered_as_warming_up() -> None:
    r = detect([0, 300, 600, 900], [1.0, 2.0, 3.0, 2.0])
    assert not r.is_anomaly.any()
    assert all(p["expected"] is None for p in r.points())
    assert r.forecast and all(f[1] is None for f in r.forecast)
