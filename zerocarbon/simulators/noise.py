"""Seeded, smooth, deterministic noise for the simulated plant.

Every random-looking signal of the plant (clouds, load fluctuation, voltage, frequency)
is a :class:`SmoothNoise`: a fixed sum of sinusoids whose periods and phases are drawn
once from a seeded generator. Its value is a pure function of time, so it is smooth
(no steps), bounded and identical however the plant's time is stepped.
"""

from __future__ import annotations

import math
import random


def seeded_rng(seed: int, *labels: str) -> random.Random:
    """A generator seeded by the site seed and a purpose label (stable across runs).

    String seeds are hashed with SHA-512 by :mod:`random` (version 2 seeding), so the
    stream does not depend on ``PYTHONHASHSEED``.
    """
    return random.Random(":".join((str(seed), *labels)))


class SmoothNoise:
    """Band-limited noise in [-1, 1] as a function of time.

    ``n(t) = sum_i a_i sin(2 pi t / T_i + phi_i) / sum_i a_i`` with periods ``T_i``
    log-uniform in [``min_period_s``, ``max_period_s``], amplitudes ``a_i = sqrt(T_i)``
    (slow components dominate, as in red noise) and uniform phases.

    Parameters
    ----------
    rng : random.Random
        Source of the periods and phases (use :func:`seeded_rng`).
    min_period_s, max_period_s : float
        Shortest and longest period [s].
    terms : int
        Number of sinusoids.
    """

    __slots__ = ("_amplitudes", "_omegas", "_phases")

    def __init__(
        self, rng: random.Random, min_period_s: float, max_period_s: float, terms: int = 6
    ) -> None:
        if not 0 < min_period_s <= max_period_s:
            raise ValueError(
                f"need 0 < min_period_s <= max_period_s, got {min_period_s}, {max_period_s}"
            )
        log_lo, log_hi = math.log(min_period_s), math.log(max_period_s)
        periods = [math.exp(rng.uniform(log_lo, log_hi)) for _ in range(terms)]
        total = sum(math.sqrt(p) for p in periods)
        self._amplitudes = tuple(math.sqrt(p) / total for p in periods)
        self._omegas = tuple(2.0 * math.pi / p for p in periods)
        self._phases = tuple(rng.uniform(0.0, 2.0 * math.pi) for _ in periods)

    def __call__(self, t_s: float) -> float:
        """Noise value at POSIX time ``t_s`` [s]; dimensionless, in [-1, 1]."""
        return sum(
            a * math.sin(w * t_s + p)
            for a, w, p in zip(self._amplitudes, self._omegas, self._phases, strict=True)
        )

    @property
    def std(self) -> float:
        """Standard deviation of the value over a long time (dimensionless)."""
        return math.sqrt(sum(a * a for a in self._amplitudes) / 2.0)

    @property
    def max_rate_per_s(self) -> float:
        """Upper bound of ``|dn/dt|`` [1/s]."""
        return sum(a * w for a, w in zip(self._amplitudes, self._omegas, strict=True))
