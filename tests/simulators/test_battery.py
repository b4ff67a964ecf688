from __future__ import annotations

import pytest

from zerocarbon.simulators.battery import Battery, BatteryParams, DispatchPolicy

PARAMS = BatteryParams(rated_power_kw=250.0, capacity_kwh=800.0)


def test_charge_and_discharge_efficiency() -> None:
    battery = Battery(PARAMS, soc_pct=50.0)
    assert battery.apply(-100.0, 3600.0) == -100.0  # 100 kWh in, 95 kWh stored
    assert battery.soc_pct == pytest.approx(50.0 + 95.0 / 800 * 100)
    battery.apply(95.0 * 0.95, 3600.0)  # 90.25 kWh out draws 95 kWh
    assert battery.soc_pct == pytest.approx(50.0)


def test_power_is_clamped_to_rating_and_soc_window() -> None:
    battery = Battery(PARAMS, soc_pct=94.0)
    applied = battery.apply(-250.0, 3600.0)  # room for 1 % = 8 kWh stored only
    assert applied == pytest.approx(-8.0 / 0.95)
    assert battery.soc_pct == pytest.approx(95.0)
    assert battery.apply(-250.0, 5.0) == 0.0
    assert battery.apply(1000.0, 5.0) == 250.0
    empty = Battery(PARAMS, soc_pct=10.0)
    assert empty.apply(100.0, 5.0) == 0.0
    outside = Battery(PARAMS, soc_pct=99.0)  # initial SoC above the window: may only discharge
    assert outside.apply(-50.0, 5.0) == 0.0
    assert outside.apply(50.0, 5.0) == 50.0


def test_dispatch_policy() -> None:
    policy = DispatchPolicy()
    half = Battery(PARAMS, soc_pct=50.0)
    assert policy.target_kw(2.0, half, 0.0, 500.0) == pytest.approx(-100.0)  # valley charge
    assert policy.target_kw(12.0, half, 0.0, 500.0) == 0.0  # between peaks
    assert policy.target_kw(12.0, half, 80.0, 0.0) == pytest.approx(-80.0)  # PV surplus
    # Peak at 08:00: 30 % of 800 kWh * 0.95 spread over 7 peak hours left.
    assert policy.target_kw(8.0, half, 0.0, 500.0) == pytest.approx(240 * 0.95 / 7)
    assert policy.target_kw(8.0, half, 0.0, 10.0) == pytest.approx(10.0)  # no export
    full = Battery(PARAMS, soc_pct=90.0)
    assert policy.target_kw(2.0, full, 0.0, 500.0) == 0.0  # tapered to 0 at 90 %
    low = Battery(PARAMS, soc_pct=20.0)
    assert policy.target_kw(9.0, low, 0.0, 500.0) == 0.0  # tapered to 0 at 20 %


def test_power_ramps_to_zero_by_the_end_of_a_window() -> None:
    policy = DispatchPolicy()
    half = Battery(PARAMS, soc_pct=50.0)
    ramp = PARAMS.ramp_kw_per_s  # 250 kW per minute
    ten_s_before_11 = 11.0 - 10 / 3600
    assert policy.target_kw(ten_s_before_11, half, 0.0, 500.0) == pytest.approx(ramp * 10)
    ten_s_before_7 = 7.0 - 10 / 3600
    assert policy.target_kw(ten_s_before_7, half, 0.0, 500.0) == pytest.approx(-ramp * 10)
    # 23:59:50 is not the end of the valley: it goes on after midnight.
    assert policy.target_kw(24.0 - 10 / 3600, half, 0.0, 500.0) == pytest.approx(-100.0)
