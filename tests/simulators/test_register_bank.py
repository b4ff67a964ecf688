from __future__ import annotations

import pytest

from zerocarbon.metering.profile import RegisterTable, load_profile
from zerocarbon.metering.registers import decode
from zerocarbon.simulators.register_bank import RegisterBank


def _decoded(bank: RegisterBank, name: str) -> float:
    point = bank.profile.point(name)
    registers = bank.read(point.table, point.address, point.register_count)
    assert registers is not None
    raw = decode(registers, point.type, bank.profile.word_order_of(point))
    return raw * point.scale * 10.0 ** bank.exponent(point)


@pytest.mark.parametrize(
    ("profile", "values"),
    [
        (
            "eastron_sdm630",
            {
                "voltage_v": 231.27,
                "active_power_kw": -412.345,
                "frequency_hz": 50.013,
                "energy_import_kwh": 1_234_567.891,
                "energy_export_kwh": 20_001.5,
            },
        ),
        (
            "sunspec_inverter_103",
            {
                "voltage_v": 229.87,
                "active_power_kw": 512.34,
                "frequency_hz": 49.987,
                "energy_generated_kwh": 812_345.678,
            },
        ),
        (
            "battery_controller",
            {
                "state_of_charge_pct": 63.27,
                "active_power_kw": -187.654,
                "energy_charged_kwh": 201_234.56,
                "energy_discharged_kwh": 180_987.65,
            },
        ),
    ],
)
def test_values_round_trip_within_resolution(profile: str, values: dict[str, float]) -> None:
    bank = RegisterBank(load_profile(profile))
    bank.update(values)
    for point in bank.profile.metric_points:
        assert point.metric is not None
        expected = values[point.metric]
        got = _decoded(bank, point.name)
        assert got == pytest.approx(expected, abs=bank.resolution(point, expected))


def test_sunspec_static_blocks_and_scale_factors() -> None:
    bank = RegisterBank(load_profile("sunspec_inverter_103"))
    assert bank.read(RegisterTable.HOLDING, 40000, 4) == [0x5375, 0x6E53, 1, 66]
    assert bank.exponent(bank.profile.point("W")) == 2
    assert bank.exponent(bank.profile.point("PhVphA")) == -1
    assert bank.resolution(bank.profile.point("W"), 500.0) == pytest.approx(0.1)  # 100 W


def test_unmapped_registers_and_gap_fill() -> None:
    strict = RegisterBank(load_profile("battery_controller"))
    assert strict.read(RegisterTable.HOLDING, 0, 1) is not None
    assert strict.read(RegisterTable.HOLDING, 0, 4) is None  # register 1 is not mapped
    assert strict.read(RegisterTable.INPUT, 0, 1) is None  # nothing in the input table
    tolerant = RegisterBank(load_profile("battery_controller"), gap_fill_registers=10)
    assert tolerant.read(RegisterTable.HOLDING, 0, 14) is not None
    assert tolerant.read(RegisterTable.HOLDING, 0, 15) is None  # beyond the last point


def test_counters_roll_over_and_gauges_saturate() -> None:
    battery = RegisterBank(load_profile("battery_controller"))
    span_kwh = 2**32 * 0.1
    battery.update({"energy_charged_kwh": span_kwh + 12.3})  # uint32 of 0.1 kWh wraps
    assert _decoded(battery, "charged_energy") == pytest.approx(12.3)
    inverter = RegisterBank(load_profile("sunspec_inverter_103"))
    inverter.update({"active_power_kw": 5000.0})  # int16 x 100 W tops out at 3276.7 kW
    assert _decoded(inverter, "W") == pytest.approx(3276.7)
    assert inverter.value_range(inverter.profile.point("W")) == pytest.approx((-3276.8, 3276.7))
