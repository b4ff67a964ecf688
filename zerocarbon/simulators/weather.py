"""Outdoor air temperature for the simulated plant: a seasonal and a daily cycle with
seeded weather noise.

``T(t) = T_mean + A_season cos(2 pi (doy - doy_warmest) / 365.25)
       + A_day cos(2 pi (h - h_warmest) / 24) + A_noise n(t)``  [degC]

with ``doy`` the day of year and ``h`` the local hour. The defaults give roughly the
Yangtze delta's climate (Suzhou, Shanghai: monthly means near 4 degC in January and
29 degC in July), the warmest hour at 14:00 and a daily swing of +-4 degC; they are
round figures for a plausible simulation, not a climate record. It is what a plant's
weather station reads: a relevant variable of energy use (ISO 50006 clause 4.2) for the
drift rule's baselines.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from zerocarbon.simulators.loads import LocalHours
from zerocarbon.simulators.noise import SmoothNoise, seeded_rng

MEAN_C = 16.5  # annual mean [degC]
SEASON_AMPLITUDE_C = 12.4  # half the spread of the warmest and coldest month [degC]
WARMEST_DAY = 205  # day of year of the seasonal maximum (late July)
DAY_AMPLITUDE_C = 4.0  # half the daily swing [degC]
WARMEST_HOUR = 14.0  # local hour of the daily maximum [h]
NOISE_C = 2.0  # amplitude of the weather noise (fronts, clouds) [degC]


class OutdoorTemperature:
    """Outdoor temperature at a site; ``seed`` fixes its weather noise."""

    def __init__(self, timezone: str, seed: int) -> None:
        self._hours = LocalHours(timezone)
        self._noise = SmoothNoise(seeded_rng(seed, "outdoor_temperature"), 3600.0, 4 * 86400.0)

    def temperature_c(self, ts_s: float) -> float:
        """Outdoor temperature at POSIX time ``ts_s`` [degC]."""
        doy = datetime.fromtimestamp(ts_s, UTC).timetuple().tm_yday
        season = math.cos(2 * math.pi * (doy - WARMEST_DAY) / 365.25)
        day = math.cos(2 * math.pi * (self._hours.hour_of_day(ts_s) - WARMEST_HOUR) / 24.0)
        noise = self._noise(ts_s)
        return MEAN_C + SEASON_AMPLITUDE_C * season + DAY_AMPLITUDE_C * day + NOISE_C * noise
