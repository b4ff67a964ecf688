from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zerocarbon.batch import BatchBuilder, Reading, SeriesRegistry, datetime_to_us
from zerocarbon.ingest.modbus.decoder import DecodeResult, decode_blocks, point_series
from zerocarbon.ingest.modbus.planner import ReadBlock, needed_points, plan_reads
from zerocarbon.metering.profile import PROFILES_DIR, DeviceProfile, load_profile
from zerocarbon.metering.registers import RegisterType, WordOrder, decode, encode

TS = datetime(2026, 6, 21, 4, 0, tzinfo=UTC)
REGISTRY = SeriesRegistry(["pv", "battery", "grid"])
Bank = tuple[DeviceProfile, list[ReadBlock], dict[ReadBlock, list[int]]]


def _decode(device: str, bank: Bank) -> tuple[DecodeResult, list[Reading]]:
    """decode_blocks into a fresh builder; the rows as Reading views for the checks."""
    profile, blocks, registers = bank
    builder = BatchBuilder(REGISTRY)
    series = point_series(device, profile, REGISTRY)
    result = decode_blocks(series, profile, blocks, registers, datetime_to_us(TS), builder)
    readings = list(builder.build().readings(REGISTRY))
    assert result.readings == len(readings)
    return result, readings


@pytest.mark.parametrize("rtype", list(RegisterType))
@pytest.mark.parametrize("order", list(WordOrder))
def test_encode_decode_round_trip(rtype: RegisterType, order: WordOrder) -> None:
    value = -1234.0 if rtype.value.startswith(("int", "float")) else 54321.0
    assert decode(encode(value, rtype, order), rtype, order) == value


def test_word_order_little_swaps_words() -> None:
    assert encode(0x12345678, RegisterType.UINT32, WordOrder.BIG) == [0x1234, 0x5678]
    assert encode(0x12345678, RegisterType.UINT32, WordOrder.LITTLE) == [0x5678, 0x1234]


def test_encode_out_of_range_names_type() -> None:
    with pytest.raises(ValueError, match="int16"):
        encode(40000, RegisterType.INT16, WordOrder.BIG)


def _bank(profile_name: str, raw: dict[int, list[int]]) -> Bank:
    profile = load_profile(profile_name)
    blocks = plan_reads(needed_points(profile))
    registers: dict[ReadBlock, list[int]] = {}
    for block in blocks:
        regs = [0] * block.count
        for address, words in raw.items():
            for i, w in enumerate(words):
                if block.address <= address + i < block.end_address:
                    regs[address + i - block.address] = w
        registers[block] = regs
    return profile, blocks, registers


def test_sunspec_scale_factors_apply() -> None:
    raw = {
        40080: [2301],  # PhVphA, V_SF -1 -> 230.1 V
        40083: encode(-1, RegisterType.INT16, WordOrder.BIG),
        40084: [4215],  # W, W_SF 2 -> 421500 W = 421.5 kW
        40085: [2],
        40086: [5001],
        40087: encode(-2, RegisterType.INT16, WordOrder.BIG),
        40094: encode(812_345_678, RegisterType.UINT32, WordOrder.BIG),
        40096: [0],
    }
    result, readings = _decode("pv", _bank("sunspec_inverter_103", raw))
    values = {r.metric: r.value for r in readings}
    assert values["voltage_v"] == pytest.approx(230.1)
    assert values["active_power_kw"] == pytest.approx(421.5)
    assert values["frequency_hz"] == pytest.approx(50.01)
    assert values["energy_generated_kwh"] == pytest.approx(812_345.678)
    assert result.rejected == []


def test_sunspec_not_implemented_value_is_rejected_not_stored() -> None:
    raw = {40084: [0x8000], 40085: [2], 40083: [0], 40087: [0], 40096: [0]}
    result, readings = _decode("pv", _bank("sunspec_inverter_103", raw))
    assert "W" in result.rejected
    assert "active_power_kw" not in {r.metric for r in readings}


def test_battery_little_endian_words() -> None:
    raw = {
        0: [655],
        2: encode(-150_000, RegisterType.INT32, WordOrder.LITTLE),
        10: encode(123_456, RegisterType.UINT32, WordOrder.LITTLE),
        12: encode(98_765, RegisterType.UINT32, WordOrder.LITTLE),
    }
    _, readings = _decode("battery", _bank("battery_controller", raw))
    values = {r.metric: r.value for r in readings}
    assert values == pytest.approx(
        {
            "state_of_charge_pct": 65.5,
            "active_power_kw": -150.0,
            "energy_charged_kwh": 12_345.6,
            "energy_discharged_kwh": 9_876.5,
        }
    )
    assert all(r.ts == TS and r.device == "battery" for r in readings)


def test_failed_block_yields_no_readings_from_it() -> None:
    profile, blocks, registers = _bank("eastron_sdm630", {})
    del registers[blocks[0]]
    _, readings = _decode("grid", (profile, blocks, registers))
    assert "voltage_v" not in {r.metric for r in readings}
    assert "energy_import_kwh" in {r.metric for r in readings}


def test_series_ids_are_resolved_once_per_point() -> None:
    profile = load_profile("battery_controller")
    series = point_series("battery", profile, REGISTRY)
    assert series == {
        p.name: REGISTRY.id("battery", p.metric) for p in profile.metric_points if p.metric
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
def test_device_decoder_gives_the_values_of_decode_points(name: str) -> None:
    """The per-device decoder (formats worked out once) against the generic path, on
    seeded random registers (NaN, sentinels and extremes included by chance)."""
    import math
    import random

    from zerocarbon.ingest.modbus.decoder import DeviceDecoder, decode_points

    profile = load_profile(name)
    blocks = plan_reads(needed_points(profile), max_gap_registers=10)
    decoder = DeviceDecoder(profile, blocks)
    rng = random.Random(20261125)
    for trial in range(300):
        regs = [
            [
                rng.choice((0, 0xFFFF, 0x8000, 0x7FC0, rng.randrange(0x10000)))
                for _ in range(b.count)
            ]
            for b in blocks
        ]
        if trial % 3 == 0:
            regs[0] = [rng.randrange(0x10000) for _ in range(blocks[0].count)]
        read = [None if trial % 5 == 1 and i == 0 else r for i, r in enumerate(regs)]
        done = {b: r for b, r in zip(blocks, read, strict=True) if r is not None}
        want = decode_points(profile, blocks, done)
        got = decoder.decode(read)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert (math.isnan(got[key].raw) and math.isnan(value.raw)) or got[key] == value


def test_rows_batch_holds_the_rows_append_rows_adds() -> None:
    from zerocarbon.ingest.modbus.decoder import PointValue, append_rows, rows_batch

    profile = load_profile("battery_controller")
    series = point_series("battery", profile, REGISTRY)
    values = {
        "soc": PointValue(615.0, 61.5),
        "active_power": PointValue(-120250.0, -120.25),
        "charged_energy": PointValue(512345.0, 51234.5),
        "discharged_energy": PointValue(0.0, None),  # not implemented
    }
    builder = BatchBuilder(REGISTRY)
    want = append_rows(series, values, 1_000_000, builder, refused=["charged_energy"])
    expected = builder.build()
    batch, result = rows_batch(series, values, 1_000_000, refused=["charged_energy"])
    assert (
        (result.readings, result.rejected)
        == (want.readings, want.rejected)
        == (
            2,
            ["discharged_energy"],
        )
    )
    for column in ("series", "ts_us", "value", "quality"):
        got, wanted = getattr(batch, column), getattr(expected, column)
        assert got.dtype == wanted.dtype and got.tolist() == wanted.tolist()
