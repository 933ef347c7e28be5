"""The PSI formula against hand-worked examples."""

from __future__ import annotations

import math

import pytest

from service.drift import psi


def test_psi_of_a_hand_worked_example():
    # shares 0.2 0.3 0.5 against 0.25 0.25 0.5:
    # (0.2 - 0.25) ln(0.2 / 0.25) + (0.3 - 0.25) ln(0.3 / 0.25) + 0
    # = 0.05 (ln 1.25 + ln 1.2) = 0.05 ln 1.5 = 0.020273255405408...
    assert psi.psi_of_counts([20, 30, 50], [0.25, 0.25, 0.5]) == pytest.approx(
        0.020273255405408, abs=1e-14
    )
    assert psi.psi([0.2, 0.3, 0.5], [0.25, 0.25, 0.5]) == pytest.approx(0.05 * math.log(1.5))


def test_an_empty_bin_is_floored_at_epsilon_not_infinite():
    # a = 0 -> 1e-4 and a = 1 against 0.5 / 0.5:
    # (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(2) = 4.2577... + 0.3466... = 4.604318...
    assert psi.EPSILON == 1e-4
    got = psi.psi_of_counts([0, 10], [0.5, 0.5])
    assert got == pytest.approx((1e-4 - 0.5) * math.log(2e-4) + 0.5 * math.log(2), abs=1e-12)
    assert got == pytest.approx(4.60431846666895, abs=1e-12)
    # A reference share of 0 is floored too.
    assert math.isfinite(psi.psi([0.5, 0.5], [1.0, 0.0]))


def test_same_shares_give_zero_and_no_rows_give_nan():
    assert psi.psi_of_counts([10, 20, 30, 40], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert math.isnan(psi.psi_of_counts([0, 0], [0.5, 0.5]))


def test_bin_counts_must_match():
    with pytest.raises(ValueError, match="bins"):
        psi.psi([0.5, 0.5], [0.3, 0.3, 0.4])
