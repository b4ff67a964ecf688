"""Production-line loads: shift patterns in the site's local time, ramped, with noise.

A line's process output is ``rated * ramp(pattern(local time)) * (1 + noise)``
[kW of undegraded process power]: the shift pattern is a step function of the local time
of day, :class:`Ramp` turns its steps into ramps of a few minutes (and absorbs
daylight-saving jumps), and a small seeded
:class:`~zerocarbon.simulators.noise.SmoothNoise` makes it look measured. The power the
line draws (:meth:`LineLoad.drawn_kw`) adds what a real line has besides its process::

    P_drawn = idle_fraction * rated + P_output * (1 + efficiency_noise * z_h)

a fixed load at all hours that produces nothing (the intercept of an ISO 50006 energy
baseline) and a seeded factor per UTC hour ``h`` on the energy per unit, ``z_h`` standard
normal clipped to +-3 (product mix, material, ambient temperature). Both are 0 by default,
and then ``P_drawn == P_output`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from zerocarbon.simulators.noise import SmoothNoise, seeded_rng

DEFAULT_LOAD_RATED_POWER_KW = 200.0  # used when a load device has no rated_power_kw
HOUR_S = 3600.0
EFFICIENCY_CLIP_SIGMAS = 3.0  # the hourly efficiency factor's z is clipped to +-this


@dataclass(frozen=True, slots=True)
class ShiftPattern:
    """Fraction of rated power by local hour of day: ``(start_h, end_h, fraction)``
    blocks in [0, 24); ``idle_fraction`` outside every block."""

    name: str
    blocks: tuple[tuple[float, float, float], ...]
    idle_fraction: float

    def fraction(self, local_hour: float) -> float:
        """Target fraction of rated power at ``local_hour`` [h, 0..24)."""
        for start_h, end_h, fraction in self.blocks:
            if start_h <= local_hour < end_h:
                return fraction
        return self.idle_fraction


# Three shifts (00-08, 08-16, 16-24) at 72-88 %, a 30-min break in each shift and
# 30-min handovers at 55 %.
THREE_SHIFTS = ShiftPattern(
    "three_shifts",
    (
        (0.25, 3.5, 0.72),
        (4.0, 7.75, 0.72),
        (8.25, 11.5, 0.88),
        (12.0, 15.75, 0.88),
        (16.25, 19.5, 0.80),
        (20.0, 23.75, 0.80),
    ),
    idle_fraction=0.55,
)

# One long day shift 08-20 at 80-85 % with a lunch and a tea break, idle at 10 %.
DAY_SHIFT = ShiftPattern(
    "day_shift",
    (
        (8.0, 12.0, 0.85),
        (12.0, 12.75, 0.40),
        (12.75, 17.5, 0.85),
        (17.5, 18.0, 0.40),
        (18.0, 20.0, 0.80),
    ),
    idle_fraction=0.10,
)

PATTERNS: tuple[ShiftPattern, ...] = (THREE_SHIFTS, DAY_SHIFT)


class Ramp:
    """A value that follows a target at a bounded rate (a first-order ramp limiter)."""

    __slots__ = ("rate_per_s", "value")

    def __init__(self, rate_per_s: float, value: float) -> None:
        self.rate_per_s = rate_per_s
        self.value = value

    def step(self, target: float, interval_s: float) -> float:
        """Move towards ``target`` by at most ``rate_per_s * interval_s``; return the value."""
        max_change = self.rate_per_s * interval_s
        self.value += max(-max_change, min(max_change, target - self.value))
        return self.value


class LocalHours:
    """UTC POSIX time -> the site's local hour of day.

    The UTC offset is looked up once per quarter hour (zones change offset on quarter
    hours at the finest).
    """

    _SLOT_S = 900

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)
        self._cached_slot = -1
        self._offset_s = 0.0

    def hour_of_day(self, ts_s: float) -> float:
        """Local time of day at ``ts_s`` [h, 0..24)."""
        slot = int(ts_s // self._SLOT_S)
        if slot != self._cached_slot:
            local = datetime.fromtimestamp(slot * self._SLOT_S, UTC).astimezone(self._zone)
            offset = local.utcoffset()
            self._offset_s = offset.total_seconds() if offset is not None else 0.0
            self._cached_slot = slot
        return ((ts_s + self._offset_s) % 86400.0) / 3600.0


class LineLoad:
    """One production line's electrical load [kW] (+ consumption).

    Parameters
    ----------
    rated_power_kw : float
        Line rating [kW].
    pattern : ShiftPattern
        Shift pattern in local time.
    seed : int
        Site seed; with ``label`` it fixes the noise.
    label : str
        Distinguishes the lines' noise (the device id).
    ramp_per_min : float
        Fraction of the rating the schedule may change per minute [1/min].
    noise_fraction : float
        Amplitude of the smooth multiplicative noise [fraction of power].
    idle_fraction : float
        Fixed load drawn at all hours, producing nothing [fraction of rated power].
    efficiency_noise : float
        Relative standard deviation of the energy per unit, one factor per UTC hour [-].
    """

    def __init__(
        self,
        rated_power_kw: float,
        pattern: ShiftPattern,
        seed: int,
        label: str,
        ramp_per_min: float = 0.10,
        noise_fraction: float = 0.04,
        idle_fraction: float = 0.0,
        efficiency_noise: float = 0.0,
    ) -> None:
        self.rated_power_kw = rated_power_kw
        self.pattern = pattern
        self.noise_fraction = noise_fraction
        self.idle_kw = idle_fraction * rated_power_kw
        self.efficiency_noise = efficiency_noise
        self._seed = seed
        self._label = label
        self._noise = SmoothNoise(seeded_rng(seed, "load", label), 60.0, 1800.0)
        self._ramp = Ramp(ramp_per_min / 60.0, float("nan"))
        self._factor_hour = -1
        self._factor = 1.0

    def efficiency_factor(self, ts_s: float) -> float:
        """Energy drawn per unit of output in the UTC hour of ``ts_s``, relative to the
        nominal [-]: ``1 + efficiency_noise * z``, ``z`` standard normal (clipped to
        +-:data:`EFFICIENCY_CLIP_SIGMAS`) seeded by the site seed, the line and the hour,
        so it depends on the time only, not on how the plant was stepped."""
        if self.efficiency_noise == 0.0:
            return 1.0
        hour = math.floor(ts_s / HOUR_S)
        if hour != self._factor_hour:
            z = seeded_rng(self._seed, "efficiency", self._label, str(hour)).gauss(0.0, 1.0)
            z = max(-EFFICIENCY_CLIP_SIGMAS, min(EFFICIENCY_CLIP_SIGMAS, z))
            self._factor = 1.0 + self.efficiency_noise * z
            self._factor_hour = hour
        return self._factor

    def drawn_kw(self, ts_s: float, output_kw: float) -> float:
        """Power the line draws at ``ts_s`` for a process output of ``output_kw`` [kW]:
        the idle load plus the output times the hour's efficiency factor."""
        return self.idle_kw + output_kw * self.efficiency_factor(ts_s)

    def start(self, local_hour: float) -> None:
        """Put the ramp on the schedule's value (no ramp-up from zero at start)."""
        self._ramp.value = self.pattern.fraction(local_hour)

    def step(self, ts_s: float, local_hour: float, interval_s: float) -> float:
        """Advance the ramp by ``interval_s`` [s]; undegraded process output at ``ts_s``
        [kW] (what the production counter counts; :meth:`drawn_kw` for the meter)."""
        fraction = self._ramp.step(self.pattern.fraction(local_hour), interval_s)
        return self.rated_power_kw * fraction * (1.0 + self.noise_fraction * self._noise(ts_s))
