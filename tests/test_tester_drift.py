"""tester.py --inject drift:START:DURATION:MAGNITUDE: a mean shift ramped over the window, then
held, in the chosen columns only."""

from __future__ import annotations

import statistics

import pytest

import tester

ROWS = [[1.0, 10.0], [2.0, 20.0], [3.0, 40.0], [4.0, 80.0]]
STD1 = statistics.pstdev(r[1] for r in ROWS)


def drift(text: str, *, share: float = 1.0, seed: int = 1) -> tester.Injector:
    return tester.Injector(
        [tester.Injection.parse(text)], [1], share, tester.ColumnStats.of(ROWS), seed
    )


def test_drift_parses_and_says_it_ramps_then_holds():
    inj = tester.Injection.parse("drift:10:20:2.5")
    assert inj == tester.Injection("drift", 10.0, 20.0, 2.5)
    assert "from 10 s to 30 s" in inj.describe()
    assert "ramp, then held" in inj.describe()
    # Active from START on, and still after the window: drift does not end by itself.
    assert [inj.active(t) for t in (9.99, 10.0, 29.99, 30.0, 1e6)] == [
        False, True, True, True, True,
    ]  # fmt: skip
    args = tester.parse_args(["--stream", "--inject", "drift:0:60:-1.5"])
    assert args.inject == [tester.Injection("drift", 0.0, 60.0, -1.5)]


@pytest.mark.parametrize("text", ["drift:0:1:0", "drift:0:1", "drift:0:0:2", "drift:-1:1:2"])
def test_bad_drifts_are_refused(text):
    with pytest.raises(ValueError):
        tester.Injection.parse(text)


@pytest.mark.parametrize(
    ("t", "shift"),
    [(10.0, 0.0), (12.5, 0.25), (15.0, 0.5), (19.0, 0.9), (20.0, 1.0), (500.0, 1.0)],
)
def test_the_shift_is_a_linear_ramp_of_standard_deviations_then_held(t, shift):
    inj = drift("drift:10:10:2")
    for row in ROWS:
        out, injected = inj.apply(row, t)
        assert injected
        assert out[0] == row[0], "a column not chosen changed"
        assert out[1] == pytest.approx(row[1] + 2 * shift * STD1)


def test_no_drift_before_start_and_the_data_row_is_never_changed():
    inj = drift("drift:10:10:-3")
    for row in ROWS:
        original = list(row)
        out, injected = inj.apply(row, 9.999)
        assert (out, injected) == (row, False)
        inj.apply(row, 15.0)
        assert row == original


def test_drift_moves_the_mean_of_a_share_of_the_rows():
    """With share 0.5, half the rows (seeded) carry the whole shift, the rest none."""
    inj = drift("drift:0:1:4", share=0.5, seed=11)
    shifted = 0
    for k in range(400):
        row = ROWS[k % 4]
        out, injected = inj.apply(row, 5.0)
        assert out[1] == (pytest.approx(row[1] + 4 * STD1) if injected else row[1])
        shifted += injected
    assert 150 < shifted < 250
