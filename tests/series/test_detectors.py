"""Every series detector kind: causal, stream == batch, and it finds what it should."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.series import KINDS, SeriesStream, detect
from tests.series import gen

FIELDS = ("score", "is_anomaly", "expected", "lower", "upper")


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.fixture(scope="module")
def spiky_seasonal():
    t, x = gen.seasonal(days=5)
    x = x.copy()
    x[1300] += 20  # a spike
    x[1350:] += 15  # a step
    return t, x


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_prefix_gets_the_same_answers_as_the_whole(kind, spiky_seasonal) -> None:
    t, x = spiky_seasonal
    whole = detect(t.tolist(), x.tolist(), kind)
    for n in (700, 1301, 1360):
        part = detect(t[:n].tolist(), x[:n].tolist(), kind)
        for f in FIELDS:
            assert same(getattr(part, f), getattr(whole, f)[:n]), (kind, n, f)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_stream_gets_the_same_answers_as_the_batch(kind, spiky_seasonal) -> None:
    t, x = spiky_seasonal
    iso = [np.datetime_as_string(np.datetime64(int(s), "s"), unit="s") + "Z" for s in t.tolist()]
    batch = detect(iso, x.tolist(), kind, horizon=5)
    stream = SeriesStream(kind)
    answers = [stream.update(ts, v) for ts, v in zip(iso, x.tolist(), strict=True)]
    for f in FIELDS:
        got = np.array([np.nan if a[f] is None else a[f] for a in answers])
        assert same(got, getattr(batch, f).astype(float)), f
    assert [a["timestamp"] for a in answers] == [p["timestamp"] for p in batch.points()]
    assert stream.forecast(5) == batch.forecast


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_spike_and_a_step_are_flagged(kind, spiky_seasonal) -> None:
    t, x = spiky_seasonal
    if kind == "rolling":  # no season: the same anomalies, on a series without one
        t, x = gen.noise_only(days=5)
        x[1300] += 20
        x[1350:] += 15
    r = detect(t.tolist(), x.tolist(), kind)
    assert r.is_anomaly[1300], "spike"
    assert r.is_anomaly[1350:1355].any(), "step"
    assert r.score[1350:1360].max() > 0.5
    flagged = {a["timestamp"] for a in r.anomalies()}
    assert t[1300] in flagged


@pytest.mark.parametrize("k", [2.0, 3.0])
def test_seasonal_bands_hold_the_normal_points_as_k_implies(k) -> None:
    t, x = gen.seasonal(days=8, noise=1.0, seed=5)
    r = detect(t.tolist(), x.tolist(), "seasonal", {"k": k})
    scored = np.isfinite(r.expected)
    assert scored.sum() > 1500
    inside = (x[scored] >= r.lower[scored]) & (x[scored] <= r.upper[scored])
    expected_share = math.erf(k / math.sqrt(2))  # 95.4% at k=2, 99.7% at k=3
    assert inside.mean() >= expected_share - 0.03  # the scale is estimated, not known
    assert inside.mean() <= expected_share + 0.03  # the band is not simply huge
    # the expected value follows the season: residuals are noise-sized
    resid = x[scored] - r.expected[scored]
    assert np.std(resid) < 1.3
    assert np.array_equal(r.is_anomaly[scored], ~inside)


def test_seasonal_detects_the_daily_period_and_forecasts_it() -> None:
    t, x = gen.seasonal(days=4, noise=0.5)
    stream = SeriesStream("seasonal")
    for ts, v in zip(t.tolist(), x.tolist(), strict=True):
        stream.push(ts, v)
    assert stream.detector.period == 86_400
    fc = stream.forecast(288)
    expected = np.array([f[1] for f in fc])
    truth = 50 + 10 * np.sin(2 * np.pi * (np.array([f[0] for f in fc]) % 86_400) / 86_400)
    assert np.max(np.abs(expected - truth)) < 1.5


def test_seasonal_without_a_season_when_there_is_none() -> None:
    t, x = gen.noise_only(days=4)
    stream = SeriesStream("seasonal")
    for ts, v in zip(t.tolist(), x.tolist(), strict=True):
        stream.push(ts, v)
    assert stream.detector.period == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_noise_only_is_rarely_flagged_and_scores_low(kind) -> None:
    t, x = gen.noise_only(days=6)
    r = detect(t.tolist(), x.tolist(), kind)
    assert r.is_anomaly.mean() < 0.01
    assert np.quantile(r.score, 0.99) < 0.5


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_flatline_is_quiet_until_it_moves(kind) -> None:
    t, x = gen.flatline(days=4)
    r = detect(t.tolist(), x.tolist(), kind)
    if kind == "windowed":
        # the forest flags about its contamination (1%) even when all is flat: the time-of-day
        # features alone can isolate a point
        assert r.is_anomaly.mean() <= 0.015
    else:
        assert not r.is_anomaly.any()
        assert np.all(r.score < 0.5)
    x = x.copy()
    x[1000:] = 7.5
    r = detect(t.tolist(), x.tolist(), kind)
    assert r.is_anomaly[1000]
    assert r.score[1000] > 0.5


def test_seasonal_follows_a_level_shift_and_stops_flagging() -> None:
    t, x = gen.seasonal(days=6)
    x = x.copy()
    x[1000:] += 8
    r = detect(t.tolist(), x.tolist(), "seasonal")
    assert r.is_anomaly[1000:1010].any()
    assert r.is_anomaly[1200:].mean() < 0.01  # the new level has become normal


def test_the_answer_has_the_documented_shape() -> None:
    t, x = gen.seasonal(days=3)
    x = x.copy()
    x[800] += 30
    d = detect(t.tolist(), x.tolist(), horizon=4).to_dict()
    assert set(d) == {"detector", "params", "points", "anomalies", "forecast", "notes"}
    assert set(d["points"][0]) == {
        "timestamp",
        "value",
        "score",
        "is_anomaly",
        "expected",
        "lower",
        "upper",
    }
    assert all(0.0 <= p["score"] <= 1.0 for p in d["points"])
    assert {"timestamp": t[800], "value": x[800]}.items() <= d["anomalies"][0].items()
    assert set(d["anomalies"][0]) == {"timestamp", "value", "expected", "score"}
    assert [f["timestamp"] for f in d["forecast"]] == [t[-1] + 300 * i for i in range(1, 5)]
    assert all(f["lower"] < f["expected"] < f["upper"] for f in d["forecast"])
