"""NAB-style scoring on tiny series whose scores are computed by hand.

A series of 100 rows at 1 s spacing: probation = floor(0.15 * 100) = 15 rows; one window over
rows 40..49 (W = 10, R = 49). S(x) = 2 / (1 + exp(5x)) - 1, so S(-1) = 0.986614.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.series.nab import PROFILES, Profile, best_threshold, evaluate, label, score_series

STANDARD = PROFILES["standard"]
T = np.arange(100, dtype=float)


def labelled(windows=((40.0, 49.0),), n: int = 100):
    return label("s", np.arange(n, dtype=float), list(windows))


def scores_at(*rows: int, n: int = 100) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def test_window_rows_and_probation() -> None:
    s = labelled()
    assert s.probation == 15
    assert s.windows == ((40, 49),)
    assert (s.window == 0).sum() == 10


def test_a_perfect_detector_scores_100_and_the_null_detector_0() -> None:
    s = labelled()
    perfect = evaluate([(s, scores_at(40))])
    null = evaluate([(s, np.zeros(100))])
    for p in perfect:
        assert p.score == pytest.approx(100.0)
    for p in null:
        assert p.score == 0.0
        assert p.threshold == math.inf


def test_a_detection_halfway_through_the_window_earns_the_sigmoid_share() -> None:
    # row 45: p = -(49 - 45 + 1) / 10 = -0.5; S(-0.5) / S(-1) = 0.848284 / 0.986614 = 0.859793
    s = labelled()
    got = score_series(s, scores_at(45), 1.0, STANDARD)
    assert got.raw == pytest.approx(0.859793, abs=1e-6)
    assert (got.null, got.perfect) == (-1.0, 1.0)
    assert got.normalised == pytest.approx(100 * (0.859793 + 1) / 2, abs=1e-4)  # 92.99


def test_only_the_first_detection_in_a_window_counts() -> None:
    s = labelled()
    assert score_series(s, scores_at(45, 41, 48), 1.0, STANDARD).raw == pytest.approx(
        score_series(s, scores_at(41), 1.0, STANDARD).raw
    )


def test_false_positives_cost_by_distance_from_the_previous_window() -> None:
    s = labelled()
    # row 60: q = |49 - 60| / (10 - 1) = 1.2222, S(q) = -0.995574: costs 0.11 * 0.995574
    after = score_series(s, scores_at(40, 60), 1.0, STANDARD)
    assert after.raw == pytest.approx(1.0 - 0.109513, abs=1e-6)
    assert after.false_positives == 1
    # row 50, right after the window: q = 1/9, S = -0.275, costs only 0.11 * 0.2750
    near = score_series(s, scores_at(40, 50), 1.0, STANDARD)
    assert near.raw == pytest.approx(1.0 - 0.11 * (1 - 2 / (1 + math.exp(5 / 9))), abs=1e-9)
    # row 20: before any window, full A_fp; the reward_low_FP profile doubles it
    before = score_series(s, scores_at(40, 20), 1.0, STANDARD)
    assert before.raw == pytest.approx(1.0 - 0.11)
    low_fp = score_series(s, scores_at(40, 20), 1.0, PROFILES["reward_low_FP_rate"])
    assert low_fp.raw == pytest.approx(1.0 - 0.22)


def test_detections_in_the_probation_are_ignored() -> None:
    s = labelled()
    got = score_series(s, scores_at(3, 14), 1.0, STANDARD)
    assert got.raw == -1.0 and got.detections == 0


def test_a_missed_window_costs_a_fn_per_profile() -> None:
    s = labelled()
    assert score_series(s, scores_at(20), 1.0, PROFILES["reward_low_FN_rate"]).raw == pytest.approx(
        -2.0 - 0.11
    )


def test_a_window_inside_the_probation_is_not_scored() -> None:
    s = labelled(windows=((2.0, 8.0), (40.0, 49.0)))
    assert s.scored_windows == (1,)
    assert evaluate([(s, scores_at(40))])[0].score == pytest.approx(100.0)


def test_the_threshold_is_chosen_over_the_corpus_per_profile() -> None:
    # series a: window hit at 0.6, a false positive at 0.8 (far after the window)
    # series b: no window, false positives at 0.7 and 0.9
    a = labelled()
    sa = np.zeros(100)
    sa[42], sa[90] = 0.6, 0.8
    b = label("b", T, [])
    sb = np.zeros(100)
    sb[30], sb[60] = 0.7, 0.9
    corpus = [(a, sa), (b, sb)]
    # row 42: p = -(49 - 42 + 1) / 10 = -0.8: S(-0.8) / S(-1) = 0.964028 / 0.986614 = 0.977107
    hit = (2 / (1 + math.exp(5 * -0.8)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert hit == pytest.approx(0.977107, abs=1e-6)
    # at 0.6: the hit, and three false positives at full cost (q > 3 or no previous window)
    thr, total = best_threshold(corpus, STANDARD)
    assert thr == 0.6
    assert total == pytest.approx(hit - 3 * 0.11)
    # when false positives cost 1.0 each, saying nothing (-1) beats detecting (hit - 3)
    harsh = Profile("harsh", 1.0, 1.0, 1.0)
    assert best_threshold(corpus, harsh) == (math.inf, -1.0)
    scores = {p.profile.name: p for p in evaluate(corpus)}
    assert scores["standard"].score == pytest.approx(100 * (hit - 0.33 + 1) / 2)
