"""Profile features: byte orders, bit fields, PT/CT ratios, units; the simulator's
register bank and the collector's decoder are exact inverses for every type x layout."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.ingest.modbus.decoder import decode_blocks, point_series
from zerocarbon.ingest.modbus.planner import plan_reads
from zerocarbon.metering.profile import DeviceProfile, ProfileError, parse_profile
from zerocarbon.metering.registers import LAYOUTS, RegisterType
from zerocarbon.simulators.register_bank import RegisterBank, raw_limits

REGISTRY = SeriesRegistry(["meter"])
EXACT_64 = 2**53


def _profile(points: list[dict[str, Any]], **info: Any) -> DeviceProfile:
    return parse_profile({"profile": {"name": "test", **info}, "points": points}, "test")


def _collected(profile: DeviceProfile, bank: RegisterBank) -> dict[str, float]:
    """What the collector's decoder reads from the bank's registers (metric -> value)."""
    blocks = plan_reads(list(profile.points))
    registers = {}
    for block in blocks:
        words = bank.read(block.table, block.address, block.count)
        assert words is not None
        registers[block] = words
    builder = BatchBuilder(REGISTRY)
    series = point_series("meter", profile, REGISTRY)
    result = decode_blocks(series, profile, blocks, registers, 0, builder)
    assert result.rejected == []
    return {r.metric: r.value for r in builder.build().readings(REGISTRY)}


def _raw_values(register_type: RegisterType) -> st.SearchStrategy[float]:
    if register_type is RegisterType.FLOAT32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if register_type is RegisterType.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    lo, hi = raw_limits(register_type)
    lo, hi = max(lo, -EXACT_64), min(hi, EXACT_64)
    if register_type is RegisterType.INT16:
        lo = -32767  # -32768 is SunSpec's "not implemented", rejected by design
    if register_type is RegisterType.UINT16:
        hi = 65534  # likewise 0xFFFF
    return st.integers(min_value=int(lo), max_value=int(hi)).map(float)


@pytest.mark.parametrize("register_type", list(RegisterType))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@settings(max_examples=50)
@given(data=st.data())
def test_bank_and_decoder_are_exact_inverses(
    register_type: RegisterType, layout: str, data: st.DataObject
) -> None:
    word_order, byte_order = LAYOUTS[layout]
    profile = _profile(
        [{"name": "p", "metric": "active_power_kw", "address": 100, "type": register_type}],
        word_order=word_order,
        byte_order=byte_order,
    )
    value = data.draw(_raw_values(register_type))
    bank = RegisterBank(profile)
    bank.update({"active_power_kw": value})
    assert _collected(profile, bank) == {"active_power_kw": value}


def test_per_point_byte_order_overrides_the_profile() -> None:
    profile = _profile(
        [
            {"name": "a", "metric": "voltage_v", "address": 0, "type": "uint16"},
            {
                "name": "b",
                "metric": "frequency_hz",
                "address": 1,
                "type": "uint16",
                "byte_order": "little",
            },
        ]
    )
    bank = RegisterBank(profile)
    bank.update({"voltage_v": 0x1234, "frequency_hz": 0x1234})
    assert bank.read(profile.points[0].table, 0, 2) == [0x1234, 0x3412]
    assert _collected(profile, bank) == {"voltage_v": 0x1234, "frequency_hz": 0x1234}


STATUS_POINTS: list[dict[str, Any]] = [
    {"name": "power", "metric": "active_power_kw", "address": 0, "type": "int32", "unit": "W"},
    {"name": "relay_closed", "address": 2, "type": "uint16", "bit": 0},
    {"name": "tariff", "address": 2, "type": "uint16", "bit": 4, "bits": 2},
    {
        "name": "soc",
        "metric": "state_of_charge_pct",
        "address": 2,
        "type": "uint16",
        "bit": 8,
        "bits": 7,
    },
]


def test_bit_fields_share_a_register_and_keep_each_other() -> None:
    profile = _profile(STATUS_POINTS)
    bank = RegisterBank(profile)
    bank.set_points({"relay_closed": 1, "tariff": 3})
    bank.update({"state_of_charge_pct": 100, "active_power_kw": -5})
    status = profile.point("tariff")
    word = bank.read(status.table, 2, 1)
    assert word == [100 << 8 | 3 << 4 | 1]
    for name, want in (("relay_closed", 1), ("tariff", 3), ("soc", 100)):
        point = profile.point(name)
        assert profile.decode_raw(point, [word[0]]) == want
    assert _collected(profile, bank) == {"active_power_kw": -5, "state_of_charge_pct": 100}
    bank.set_points({"tariff": 0})
    assert bank.read(status.table, 2, 1) == [100 << 8 | 1]
    bank.update({"state_of_charge_pct": 130})  # a gauge saturates at the field's 127
    assert profile.decode_raw(profile.point("soc"), bank.read(status.table, 2, 1) or []) == 127


def test_a_bit_field_of_all_ones_is_not_the_not_implemented_sentinel() -> None:
    profile = _profile(
        [
            {
                "name": "s",
                "metric": "state_of_charge_pct",
                "address": 0,
                "type": "uint16",
                "bit": 0,
                "bits": 16,
            }
        ]
    )
    bank = RegisterBank(profile)
    bank.update({"state_of_charge_pct": 65535})
    assert _collected(profile, bank) == {"state_of_charge_pct": 65535}


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([{"name": "a", "address": 0, "type": "int16", "bit": 0}], "unsigned"),
        ([{"name": "a", "address": 0, "type": "uint16", "bit": 12, "bits": 5}], "do not fit"),
        ([{"name": "a", "address": 0, "type": "uint16", "bits": 2}], "bits needs bit"),
        (
            [{"name": "a", "address": 0, "type": "uint16", "bit": 0, "ratio": "ct"}],
            "no scale_factor or ratio",
        ),
        (
            [
                {"name": "a", "address": 0, "type": "uint16", "bit": 0, "bits": 4},
                {"name": "b", "address": 0, "type": "uint16", "bit": 3},
            ],
            "share bits",
        ),
        (
            [
                {"name": "a", "address": 0, "type": "uint16", "bit": 0},
                {"name": "b", "address": 0, "type": "uint16"},
            ],
            "overlap",
        ),
        (
            [
                {"name": "a", "address": 0, "type": "uint32", "bit": 0},
                {"name": "b", "address": 1, "type": "uint16", "bit": 1},
            ],
            "overlap",
        ),
        ([{"name": "a", "address": 0, "type": "uint16", "ratio": "kv"}], "ratio"),
        ([{"name": "a", "address": 0, "type": "uint16", "byte_order": "middle"}], "byte_order"),
    ],
)
def test_invalid_points_are_named(points: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _profile(points)


def test_pt_ct_ratios_scale_secondary_values() -> None:
    profile = _profile(
        [
            {
                "name": "u",
                "metric": "voltage_v",
                "address": 0,
                "type": "uint16",
                "scale": 0.1,
                "ratio": "pt",
                "unit": "0.1 V",
            },
            {
                "name": "p",
                "metric": "active_power_kw",
                "address": 1,
                "type": "int32",
                "scale": 0.001,
                "ratio": "pt_ct",
                "unit": "W",
            },
            {
                "name": "e",
                "metric": "energy_import_kwh",
                "address": 3,
                "type": "uint32",
                "scale": 0.01,
                "ratio": "pt_ct",
                "unit": "0.01 kWh",
            },
            {
                "name": "f",
                "metric": "frequency_hz",
                "address": 5,
                "type": "uint16",
                "scale": 0.01,
                "unit": "0.01 Hz",
            },
        ]
    )
    assert profile.point("e").unit == "0.01 kWh"
    installed = profile.with_ratios(pt_ratio=100.0, ct_ratio=40.0)  # 10 kV/100 V, 200 A/5 A
    assert (installed.profile.pt_ratio, installed.profile.ct_ratio) == (100.0, 40.0)
    assert profile.profile.pt_ratio == 1.0  # the bundled profile is unchanged
    assert installed.ratio_of(installed.point("u")) == 100.0
    assert installed.ratio_of(installed.point("p")) == 4000.0
    assert installed.ratio_of(installed.point("f")) == 1.0
    # Secondary 100.2 V, 1234 W, 12.34 kWh on the meter -> primary values.
    regs = [1002, 0, 1234, 0, 1234, 5000]
    blocks = plan_reads(list(installed.points))
    builder = BatchBuilder(REGISTRY)
    decode_blocks(
        point_series("meter", installed, REGISTRY), installed, blocks, {blocks[0]: regs}, 0, builder
    )
    got = {r.metric: r.value for r in builder.build().readings(REGISTRY)}
    assert got == pytest.approx(
        {
            "voltage_v": 10_020.0,
            "active_power_kw": 4936.0,
            "energy_import_kwh": 49_360.0,
            "frequency_hz": 50.0,
        }
    )
    bank = RegisterBank(installed)
    bank.update(got)
    assert bank.read(blocks[0].table, 0, 6) == regs  # the simulator serves secondary values


def test_with_ratios_validates() -> None:
    profile = _profile([{"name": "u", "metric": "voltage_v", "address": 0, "type": "uint16"}])
    with pytest.raises(ValueError, match="greater than 0"):
        profile.with_ratios(ct_ratio=0.0)
