"""SunSpec: model layout, discovery over real Modbus TCP at each base address, with
models absent or unknown, a broken chain, and the discovered profile decoding the
simulated device's values with the collector's decoder."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from pymodbus.client import AsyncModbusTcpClient

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.ingest.modbus.decoder import decode_blocks, point_series
from zerocarbon.ingest.modbus.planner import ReadBlock, needed_points, plan_reads
from zerocarbon.metering.profile import DeviceProfile, load_profile, parse_profile
from zerocarbon.metering.profile_writer import profile_to_toml
from zerocarbon.metering.sunspec import (
    MODELS,
    SUNS_MARKER,
    CommonInfo,
    ModelHeader,
    ReadHolding,
    SunSpecError,
    SunSpecMap,
    build_profile,
    decode_string,
    discover,
    encode_string,
    layout,
    read_common,
    read_scale_factors,
)
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.sunspec_device import (
    DEFAULT_COMMON,
    sunspec_device_profile,
    sunspec_register_bank,
)

REGISTRY = SeriesRegistry(["dev"])
VALUES = {
    "active_power_kw": 123.456,
    "energy_generated_kwh": 98_765.4,
    "voltage_v": 231.2,
    "frequency_hz": 50.02,
    "state_of_charge_pct": 55.5,
}


@asynccontextmanager
async def served(bank: RegisterBank, unit_id: int = 1) -> AsyncIterator[ReadHolding]:
    """``bank`` behind our Modbus TCP server; yields a pymodbus-backed holding reader."""
    async with ModbusTcpServer("127.0.0.1", 0, {unit_id: bank}) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()

        async def read(address: int, count: int) -> Sequence[int] | None:
            response = await client.read_holding_registers(address, count=count, device_id=unit_id)
            return None if response.isError() else list(response.registers)

        try:
            yield read
        finally:
            client.close()


def _with_statics(profile: DeviceProfile, statics: list[dict[str, object]]) -> DeviceProfile:
    data = profile.model_dump(mode="json")
    return parse_profile({**data, "static": statics}, "test")


def test_model_lengths_and_layout() -> None:
    assert {m: MODELS[m].length for m in (1, 101, 102, 103, 111, 112, 113, 124, 160, 802)} == {
        1: 66, 101: 50, 102: 50, 103: 50, 111: 60, 112: 60, 113: 60, 124: 24, 160: 8, 802: 62,
    }  # fmt: skip
    sunspec_map = layout([1, 103, 160, 802], 40000, mppt_modules=3)
    assert [(h.model_id, h.address, h.length) for h in sunspec_map.models] == [
        (1, 40002, 66),
        (103, 40070, 50),
        (160, 40122, 8 + 3 * 20),
        (802, 40192, 62),
    ]
    with pytest.raises(SunSpecError, match="model 64"):
        layout([1, 64])
    with pytest.raises(SunSpecError, match="base address"):
        layout([1], 30000)


def test_built_profile_agrees_with_the_hand_written_103_profile() -> None:
    """Two independent readings of model 103: the bundled file and the definitions."""
    built = build_profile(layout([1, 103]), name="x")
    bundled = load_profile("sunspec_inverter_103")
    for point in bundled.points:
        assert built.point(f"m103_{point.name}").address == point.address, point.name
    assert [b.registers for b in built.static if b.address == 40122] == [(0xFFFF, 0)]


def test_each_metric_goes_to_the_first_model_that_gives_it() -> None:
    profile = build_profile(layout([1, 113, 802, 124]), name="x")
    owners = {p.metric: p.name for p in profile.metric_points}
    assert owners == {
        "voltage_v": "m113_PhVphA",
        "active_power_kw": "m113_W",
        "frequency_hz": "m113_Hz",
        "energy_generated_kwh": "m113_WH",
        "state_of_charge_pct": "m802_SoC",
    }
    assert profile.point("m802_W").metric is None
    assert profile.point("m124_ChaState").metric is None


def test_strings_round_trip() -> None:
    assert encode_string("SunSpec", 4) == [0x5375, 0x6E53, 0x7065, 0x6300]
    assert decode_string(encode_string("Acme Solar", 16)) == "Acme Solar"
    assert decode_string(encode_string("x" * 40, 16)) == "x" * 32


@pytest.mark.parametrize("base_address", [40000, 0, 50000])
async def test_discovery_at_each_base_address(base_address: int) -> None:
    models = [1, 103, 160]
    bank = sunspec_register_bank(models, base_address=base_address, mppt_modules=3)
    async with served(bank) as read:
        found = await discover(read)
        assert found is not None
        common = await read_common(read, found.models[0])
    assert found == layout(models, base_address, mppt_modules=3)
    assert found.complete and found.base_address == base_address
    assert common == DEFAULT_COMMON
    mppt = build_profile(found, name="x")
    assert mppt.point("m160_module3_DCWH").address == found.models[2].address + 10 + 40 + 12


async def test_discovery_without_sunspec_returns_none() -> None:
    async with served(RegisterBank(load_profile("eastron_sdm630"))) as read:
        assert await discover(read) is None


async def test_a_marker_at_40000_wins_over_one_at_0() -> None:
    profile = sunspec_device_profile([1, 802], base_address=40000)
    statics = [b.model_dump(mode="json") for b in profile.static] + [
        {"address": 0, "registers": list(SUNS_MARKER)},
        {"address": 2, "registers": [0xFFFF, 0]},
    ]
    async with served(RegisterBank(_with_statics(profile, statics))) as read:
        found = await discover(read)
    assert found is not None and found.base_address == 40000 and found.model_ids == (1, 802)


async def test_models_absent_give_no_points() -> None:
    """A battery without inverter: its profile has 802's points and none of 103's."""
    async with served(sunspec_register_bank([1, 802])) as read:
        found = await discover(read)
    assert found is not None and found.model_ids == (1, 802)
    profile = build_profile(found, name="battery")
    assert {p.metric for p in profile.metric_points} == {"state_of_charge_pct", "active_power_kw"}
    assert not any(p.name.startswith("m103") for p in profile.points)


async def test_unknown_models_are_walked_over() -> None:
    """Model 120 (nameplate, not defined here) sits between 1 and 103: its header is
    followed, its registers are not read, and 103 after it is found."""
    base = sunspec_device_profile([1, 103])
    shifted = build_profile(
        SunSpecMap(
            40000,
            (
                ModelHeader(1, 40002, 66),
                ModelHeader(120, 40070, 26),
                ModelHeader(103, 40098, 50),
            ),
        ),
        name="x",
        sf_exponents={"W_SF": 1, "V_SF": -1, "Hz_SF": -2, "WH_SF": 0},
    )
    assert shifted.point("m103_W").address == 40098 + 14
    async with served(RegisterBank(shifted)) as read:
        found = await discover(read)
    assert found is not None and found.model_ids == (1, 120, 103) and found.complete
    assert not found.models[1].known
    assert build_profile(found, name="y").point("m103_W").address == 40112
    assert base.point("m103_W").address == 40084


async def test_a_broken_chain_keeps_the_models_before_the_break() -> None:
    profile = sunspec_device_profile([1, 103])
    statics = [
        b.model_dump(mode="json")
        for b in profile.static
        if b.registers[:2] != (0xFFFF, 0)  # no end model: the next header is unmapped
    ]
    async with served(RegisterBank(_with_statics(profile, statics))) as read:
        found = await discover(read)
    assert found is not None and found.model_ids == (1, 103) and not found.complete
    assert not any(b.registers[:1] == (0xFFFF,) for b in build_profile(found, name="x").static)


@pytest.mark.parametrize("models", [[1, 103, 160], [1, 113], [1, 101, 802], [1, 124]])
async def test_discovered_profile_decodes_the_device(models: list[int]) -> None:
    """The collector's planner and decoder, with the profile discovery built, read what
    the simulated device holds (its scale factors read from the device)."""
    bank = sunspec_register_bank(models, values=VALUES)
    async with served(bank) as read:
        found = await discover(read)
        assert found is not None
        profile = build_profile(found, name="found")
        blocks = plan_reads(needed_points(profile), max_gap_registers=10)
        registers: dict[ReadBlock, Sequence[int]] = {}
        for block in blocks:
            words = await read(block.address, block.count)
            assert words is not None, block
            registers[block] = words
    builder = BatchBuilder(REGISTRY)
    series = point_series("dev", profile, REGISTRY)
    result = decode_blocks(series, profile, blocks, registers, 0, builder)
    assert result.rejected == []
    got = {r.metric: r.value for r in builder.build().readings(REGISTRY)}
    assert set(got) == {p.metric for p in profile.metric_points}
    assert got
    served_profile = bank.profile
    for point in profile.metric_points:
        assert point.metric is not None
        twin = served_profile.point(point.name)
        want = VALUES[point.metric]
        assert got[point.metric] == pytest.approx(want, abs=bank.resolution(twin, want))


def test_generated_profiles_write_and_load_back() -> None:
    for models in ([1, 103, 160], [1, 802, 124], [1, 111]):
        profile = sunspec_device_profile(models, common=CommonInfo('Acme "Solar"', "Ä-1", "7"))
        text = profile_to_toml(profile, "a comment\nover two lines")
        assert text.startswith("# a comment\n# over two lines\n[profile]\n")
        assert parse_profile(tomllib.loads(text), "written") == profile


async def test_scale_factors_read_from_the_device() -> None:
    """One read per model; a "not implemented" exponent (0x8000) is left out."""
    exponents = {"W_SF": 1, "V_SF": -1, "Hz_SF": -2, "WH_SF": 0, "SoC_SF": -1, "A_SF": -32768}
    profile = sunspec_device_profile([1, 103, 802], sf_exponents=exponents)
    async with served(RegisterBank(profile, gap_fill_registers=125)) as read:
        found = await discover(read)
        assert found is not None
        got = await read_scale_factors(read, found)
    assert got["m103_W_SF"] == 1 and got["m103_Hz_SF"] == -2 and got["m802_SoC_SF"] == -1
    assert got["m802_W_SF"] == 1  # by the model's point name: every model with W_SF
    assert "m802_A_SF" not in got
    assert got["m802_SoH_SF"] == 0  # not given: the register reads 0
    pinned = build_profile(found, name="x", sf_exponents={**got, "m802_W_SF": 2})
    words = {b.address: b.registers for b in pinned.static}
    assert words[pinned.point("m802_W_SF").address] == (2,)
    assert words[pinned.point("m103_W_SF").address] == (1,)
