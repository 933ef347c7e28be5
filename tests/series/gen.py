"""Series the tests generate: 5-minute points, a daily season, Gaussian noise, seeded."""

from __future__ import annotations

import numpy as np

STEP = 300.0
START = 1_700_000_000.0 - (1_700_000_000.0 % 86_400)  # a UTC midnight
PER_DAY = 288


def seasonal(days: float = 6, noise: float = 1.0, amplitude: float = 10.0, seed: int = 1):
    """Timestamps (Unix seconds) and values: 50 + a daily sine + N(0, noise)."""
    n = int(days * PER_DAY)
    t = START + STEP * np.arange(n)
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (t % 86_400) / 86_400
    return t, 50 + amplitude * np.sin(phase) + rng.normal(0, noise, n)


def noise_only(days: float = 6, seed: int = 2):
    return seasonal(days, noise=1.0, amplitude=0.0, seed=seed)


def flatline(days: float = 6):
    n = int(days * PER_DAY)
    return START + STEP * np.arange(n), np.full(n, 7.0)
