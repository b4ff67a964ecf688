from __future__ import annotations

from pathlib import Path

import pytest

from zerocarbon.metering.profile import RegisterTable, load_profile, load_profile_file
from zerocarbon.metering.registers import decode
from zerocarbon.simulators.register_bank import RegisterBank, ServedFault, TornMode


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


# --- device faults ---------------------------------------------------------------------

CENTI_METER = Path(__file__).parent / "profiles" / "uint32_centi_meter.toml"
CARRY_KWH = 65536 * 0.01  # one high-word step of a uint32 x 0.01 kWh counter


def _centi_bank() -> RegisterBank:
    return RegisterBank(load_profile_file(CENTI_METER))


def _read_point(bank: RegisterBank, name: str) -> list[int]:
    point = bank.profile.point(name)
    registers = bank.read(point.table, point.address, point.register_count)
    assert registers is not None
    return registers


def test_word_swap_reverses_the_words_of_wide_points_only() -> None:
    bank = _centi_bank()
    bank.update({"energy_import_kwh": 123_456.78, "active_power_kw": 321.5})
    straight = _read_point(bank, "import_energy")
    assert straight == [12345678 >> 16, 12345678 & 0xFFFF]
    bank.set_word_swaps({"energy_import_kwh"})
    assert _read_point(bank, "import_energy") == straight[::-1]  # re-encoded at once
    assert _decoded(bank, "active_power") == pytest.approx(321.5)  # not listed: as it was
    swapped_kwh = _decoded(bank, "import_energy")
    assert swapped_kwh == pytest.approx(((straight[1] << 16) | straight[0]) * 0.01)
    bank.update({"energy_import_kwh": 123_457.00})
    assert _read_point(bank, "import_energy") == [12345700 & 0xFFFF, 12345700 >> 16]
    bank.set_word_swaps(())
    assert _decoded(bank, "import_energy") == pytest.approx(123_457.00)


@pytest.mark.parametrize(
    ("mode", "torn_raw"),
    [("old_high", 0x0006_0004), ("old_low", 0x0007_FFFF)],
)
def test_torn_read_after_a_carry_mixes_old_and_new_words_once(
    mode: TornMode, torn_raw: int
) -> None:
    bank = _centi_bank()
    served: list[ServedFault] = []
    bank.on_served = served.append
    carry_at = 7 * CARRY_KWH  # raw 0x0007_0000
    bank.set_torn_reads({"energy_import_kwh": mode})
    bank.update({"energy_import_kwh": carry_at - 0.03})  # 0x0006_FFFD
    bank.update({"energy_import_kwh": carry_at - 0.01})  # no carry: nothing torn
    assert _decoded(bank, "import_energy") == pytest.approx(carry_at - 0.01)
    bank.update({"energy_import_kwh": carry_at + 0.04})  # carry: 0x0006_FFFF -> 0x0007_0004
    torn = _decoded(bank, "import_energy")
    # old_high: 0x0006_0004 (one carry low); old_low: 0x0007_FFFF (almost one carry high)
    assert torn == pytest.approx(torn_raw * 0.01)
    assert abs(torn - (carry_at + 0.04)) > CARRY_KWH - 1.0
    assert _decoded(bank, "import_energy") == pytest.approx(carry_at + 0.04)  # once only
    assert [(f.kind, f.metric) for f in served] == [("torn_read", "energy_import_kwh")]
    assert served[0].served_value == pytest.approx(torn)
    assert served[0].true_value == pytest.approx(carry_at + 0.04)


def test_torn_read_is_served_to_the_first_read_even_after_later_updates() -> None:
    bank = _centi_bank()
    bank.set_torn_reads({"energy_import_kwh": "old_high"})
    bank.update({"energy_import_kwh": 2 * CARRY_KWH - 0.5})
    bank.update({"energy_import_kwh": 2 * CARRY_KWH + 0.5})  # carry
    bank.update({"energy_import_kwh": 2 * CARRY_KWH + 1.5})  # the meter moves on
    assert _decoded(bank, "import_energy") == pytest.approx(CARRY_KWH + 1.5)
    bank.set_torn_reads({})
    bank.update({"energy_import_kwh": 3 * CARRY_KWH + 0.5})  # carry, but no fault now
    assert _decoded(bank, "import_energy") == pytest.approx(3 * CARRY_KWH + 0.5)
    [fault] = bank.served
    assert fault.kind == "torn_read"
    assert fault.served_value == pytest.approx(CARRY_KWH + 1.5)
    assert fault.true_value == pytest.approx(2 * CARRY_KWH + 1.5)


def test_a_read_not_covering_the_whole_point_does_not_use_up_the_torn_read() -> None:
    bank = _centi_bank()
    bank.set_torn_reads({"energy_import_kwh": "old_high"})
    bank.update({"energy_import_kwh": CARRY_KWH - 0.5})
    bank.update({"energy_import_kwh": CARRY_KWH + 0.5})
    point = bank.profile.point("import_energy")
    assert bank.read(point.table, point.address, 1) == [1]  # the new high word alone
    assert bank.read(RegisterTable.INPUT, 0, 2) is not None  # another point
    block = bank.read(RegisterTable.INPUT, 10, 4)  # both counters in one block
    assert block is not None and block[:2] == [0, 50]  # old high 0, new low 50
    assert len(bank.served) == 1


def test_spike_is_served_to_one_read() -> None:
    bank = _centi_bank()
    bank.update({"active_power_kw": 250.0, "energy_import_kwh": 10.0})
    bank.spike_once("active_power_kw", 10.0)
    assert _decoded(bank, "active_power") == pytest.approx(2500.0)
    assert _decoded(bank, "active_power") == pytest.approx(250.0)
    bank.spike_once("active_power_kw", 10.0, value=-99_999.0)
    assert _decoded(bank, "active_power") == pytest.approx(-99_999.0)
    assert [(f.kind, f.served_value, f.true_value) for f in bank.served] == [
        ("spike", 2500.0, 250.0),
        ("spike", -99_999.0, 250.0),
    ]
