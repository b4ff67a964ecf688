from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.simulators.solar import (
    CloudCover,
    PvArray,
    clear_sky_ghi_w_m2,
    cloud_transmittance,
    pv_ac_power_kw,
    solar_elevation_deg,
)

LAT, LON = 31.3, 120.6  # the demo site (Suzhou)


def test_solstice_noon_elevation_and_time() -> None:
    # At solar noon on the June solstice the sun stands 90 - (lat - 23.44) deg high.
    samples = [
        (MIDNIGHT_S + m * 60, solar_elevation_deg(LAT, LON, MIDNIGHT_S + m * 60))
        for m in range(1440)
    ]
    noon_s, top = max(samples, key=lambda s: s[1])
    assert top == pytest.approx(90.0 - (LAT - 23.44), abs=0.3)
    # Solar noon at 120.6 E: 12:00 - 120.6 * 4 min, then the equation of time (-1.7 min).
    noon = datetime.fromtimestamp(noon_s, UTC)
    assert (noon.hour, noon.minute) in {(3, 58), (3, 59), (4, 0)}


def test_equinox_equator_noon_is_near_zenith() -> None:
    ts = datetime(2026, 3, 20, 12, 7, tzinfo=UTC).timestamp()  # 0 E, eq. of time ~ -7 min
    assert solar_elevation_deg(0.0, 0.0, ts) == pytest.approx(90.0, abs=0.6)


def test_sun_is_down_at_local_midnight() -> None:
    assert solar_elevation_deg(LAT, LON, MIDNIGHT_S) < -30.0


def test_haurwitz_clear_sky() -> None:
    assert clear_sky_ghi_w_m2(90.0) == pytest.approx(1098.0 * math.exp(-0.059))
    assert clear_sky_ghi_w_m2(0.0) == 0.0
    assert clear_sky_ghi_w_m2(-10.0) == 0.0


def test_kasten_czeplak_transmittance() -> None:
    assert cloud_transmittance(0.0) == 1.0
    assert cloud_transmittance(1.0) == pytest.approx(0.25)
    assert cloud_transmittance(0.5) == pytest.approx(1 - 0.75 * 0.5**3.4)


def test_pv_power_is_clipped_at_nameplate() -> None:
    assert pv_ac_power_kw(600.0, 0.0) == 0.0
    assert pv_ac_power_kw(600.0, 500.0) == pytest.approx(600 * 1.2 * 0.5 * 0.78)
    assert pv_ac_power_kw(600.0, 1200.0) == 600.0


def test_pv_zero_at_night_positive_at_noon() -> None:
    array = PvArray(600.0, LAT, LON, CloudCover(0.3, seed=42))
    assert array.power_kw(MIDNIGHT_S) == 0.0
    assert array.power_kw(MIDNIGHT_S + 22 * 3600) == 0.0  # 22:00 local
    assert array.power_kw(MIDNIGHT_S + 12 * 3600) > 100.0
    clear = PvArray(600.0, LAT, LON, CloudCover(0.0, seed=42))
    assert clear.power_kw(MIDNIGHT_S + 12 * 3600) > 500.0
    powers = [array.power_kw(MIDNIGHT_S + m * 60) for m in range(1440)]
    assert min(powers) >= 0.0 and max(powers) <= 600.0


def test_cloud_cover_mean_range_and_smoothness() -> None:
    clouds = CloudCover(0.3, seed=7)
    values = [clouds(MIDNIGHT_S + k * 60) for k in range(60 * 24 * 20)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert sum(values) / len(values) == pytest.approx(0.3, abs=0.05)
    steps = [abs(clouds(MIDNIGHT_S + k * 5 + 5) - clouds(MIDNIGHT_S + k * 5)) for k in range(17280)]
    assert max(steps) < 0.05  # no jumps from one 5-s tick to the next
    assert CloudCover(0.3, seed=7)(MIDNIGHT_S + 123.0) == clouds(MIDNIGHT_S + 123.0)
    assert CloudCover(0.3, seed=8)(MIDNIGHT_S + 123.0) != clouds(MIDNIGHT_S + 123.0)
    assert CloudCover(0.0, seed=7)(MIDNIGHT_S) == 0.0
    assert CloudCover(1.0, seed=7)(MIDNIGHT_S) == 1.0
