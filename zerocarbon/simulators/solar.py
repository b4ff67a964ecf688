"""Sun position and clear-sky PV power, with seeded drifting clouds.

Pure functions over scalars, plus :class:`PvArray`, which binds them to one inverter's
nameplate, the site's coordinates and a seeded cloud process.

References
----------
.. [1] NOAA Global Monitoring Laboratory, "General Solar Position Calculations"
   (fractional year, equation of time, declination, hour angle).
.. [2] J. W. Spencer, "Fourier series representation of the position of the sun",
   Search 2(5), 172, 1971 (the Fourier coefficients used in [1]).
.. [3] B. Haurwitz, "Insolation in relation to cloudiness and cloud density",
   Journal of Meteorology 2, 154-166, 1945 (clear-sky global horizontal irradiance;
   also ``pvlib.clearsky.haurwitz``).
.. [4] F. Kasten and G. Czeplak, "Solar and terrestrial radiation dependent on the
   amount and type of cloud", Solar Energy 24(2), 177-189, 1980.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from zerocarbon.simulators.noise import SmoothNoise, seeded_rng

DEFAULT_PV_RATED_POWER_KW = 500.0  # nameplate used when a PV device has no rated_power_kw
STC_IRRADIANCE_W_M2 = 1000.0  # standard test condition irradiance [W/m2]


def solar_elevation_deg(latitude_deg: float, longitude_deg: float, ts_s: float) -> float:
    """Elevation of the sun's centre above the horizon, without refraction [deg].

    NOAA's general solar position algorithm [1]_ with Spencer's Fourier series [2]_;
    accuracy about 0.5 deg, enough for irradiance.

    Parameters
    ----------
    latitude_deg : float
        Latitude, north positive [deg].
    longitude_deg : float
        Longitude, east positive [deg].
    ts_s : float
        POSIX time (UTC) [s].
    """
    t = datetime.fromtimestamp(ts_s, UTC)
    days_in_year = 366 if (t.year % 4 == 0 and (t.year % 100 != 0 or t.year % 400 == 0)) else 365
    minutes = t.hour * 60.0 + t.minute + (t.second + t.microsecond * 1e-6) / 60.0
    gamma = (
        2.0 * math.pi / days_in_year * (t.timetuple().tm_yday - 1 + (minutes / 60.0 - 12.0) / 24.0)
    )
    eqtime_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl_rad = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_time_min = minutes + eqtime_min + 4.0 * longitude_deg
    hour_angle_rad = math.radians(true_solar_time_min / 4.0 - 180.0)
    lat_rad = math.radians(latitude_deg)
    cos_zenith = math.sin(lat_rad) * math.sin(decl_rad) + math.cos(lat_rad) * math.cos(
        decl_rad
    ) * math.cos(hour_angle_rad)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def clear_sky_ghi_w_m2(elevation_deg: float) -> float:
    """Clear-sky global horizontal irradiance by Haurwitz's model [3]_ [W/m2].

    ``GHI = 1098 cos(z) exp(-0.059 / cos(z))`` for zenith ``z < 90 deg``, else 0.
    """
    cos_zenith = math.sin(math.radians(elevation_deg))
    if cos_zenith <= 0.0:
        return 0.0
    return 1098.0 * cos_zenith * math.exp(-0.059 / cos_zenith)


def cloud_transmittance(cloud_cover: float) -> float:
    """Fraction of clear-sky irradiance reaching the ground under ``cloud_cover`` [0..1].

    Kasten and Czeplak [4]_: ``G / G_clear = 1 - 0.75 N**3.4`` with ``N`` the cloud
    cover fraction (octas / 8).
    """
    n = min(1.0, max(0.0, cloud_cover))
    return 1.0 - 0.75 * math.pow(n, 3.4)


def pv_ac_power_kw(
    rated_power_kw: float,
    ghi_w_m2: float,
    dc_ac_ratio: float = 1.2,
    system_efficiency: float = 0.78,
) -> float:
    """AC output of an array sized ``dc_ac_ratio`` times the inverter's nameplate [kW].

    ``P = dc_ac_ratio * rated * G / 1000 W/m2 * system_efficiency`` (horizontal
    plane; temperature, soiling, wiring and inverter losses lumped into
    ``system_efficiency``, about PVWatts' 14 % system losses plus summer cell heating),
    clipped at the inverter's ``rated_power_kw`` [kW].
    """
    dc_kw = dc_ac_ratio * rated_power_kw * ghi_w_m2 / STC_IRRADIANCE_W_M2 * system_efficiency
    return max(0.0, min(rated_power_kw, dc_kw))


class CloudCover:
    """Seeded cloud cover fraction ``N(t)`` in [0, 1] whose long-run mean is ``cloudiness``.

    ``u(t) = Phi(n(t) / sigma_n)`` maps a :class:`SmoothNoise` ``n`` (periods
    10 min .. 4 h) through the normal CDF to a roughly uniform value in (0, 1), and
    ``N = u**(1/c - 1)`` makes ``E[N] = 1 / (1 + (1/c - 1)) = c``: clear spells and
    passing clouds of every thickness, more of the latter as ``c`` grows (0: always
    clear, 1: always overcast).
    """

    def __init__(self, cloudiness: float, seed: int) -> None:
        self.cloudiness = min(1.0, max(0.0, cloudiness))
        self._noise = SmoothNoise(seeded_rng(seed, "clouds"), 600.0, 4 * 3600.0, terms=8)
        self._exponent = 1.0 / self.cloudiness - 1.0 if self.cloudiness > 0.0 else math.inf

    def __call__(self, ts_s: float) -> float:
        """Cloud cover fraction at ``ts_s`` [0..1]."""
        if self.cloudiness <= 0.0:
            return 0.0
        u = 0.5 * (1.0 + math.erf(self._noise(ts_s) / (self._noise.std * math.sqrt(2.0))))
        return math.pow(u, self._exponent)


class PvArray:
    """One PV inverter and its array at the site: AC power as a function of time."""

    def __init__(
        self,
        rated_power_kw: float,
        latitude_deg: float,
        longitude_deg: float,
        clouds: CloudCover,
    ) -> None:
        self.rated_power_kw = rated_power_kw
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.clouds = clouds

    def power_kw(self, ts_s: float) -> float:
        """AC power at ``ts_s`` [kW]: clear-sky power times the cloud transmittance."""
        elevation = solar_elevation_deg(self.latitude_deg, self.longitude_deg, ts_s)
        if elevation <= 0.0:
            return 0.0
        ghi = clear_sky_ghi_w_m2(elevation) * cloud_transmittance(self.clouds(ts_s))
        return pv_ac_power_kw(self.rated_power_kw, ghi)
