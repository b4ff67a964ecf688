"""Every bundled profile loads, validates, and reads back through the simulator over
real Modbus TCP: register bank -> our server -> pymodbus -> the collector's decoder."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pymodbus.client import AsyncModbusTcpClient

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.ingest.modbus.decoder import decode_blocks, point_series
from zerocarbon.ingest.modbus.planner import ReadBlock, needed_points, plan_reads
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.metering.profile import PROFILES_DIR, DeviceProfile, RegisterTable, load_profile
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank

BUNDLED = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
REGISTRY = SeriesRegistry(["meter"])
MAX_GAP = 10  # the read planner's default gap

# A plausible value per metric (positive: every bundled counter is unsigned).
VALUES = {
    "active_power_kw": 123.456,
    "energy_import_kwh": 45_678.9,
    "energy_export_kwh": 1_234.5,
    "energy_generated_kwh": 98_765.4,
    "energy_charged_kwh": 2_345.6,
    "energy_discharged_kwh": 2_100.2,
    "state_of_charge_pct": 55.5,
    "voltage_v": 231.2,
    "frequency_hz": 50.02,
}


def test_bundled_profiles_are_the_expected_ones() -> None:
    assert {
        "eastron_sdm630",
        "janitza_umg96rm",
        "acrel_adl400",
        "acrel_dtsd1352",
        "schneider_pm5xxx",
        "sunspec_inverter_103",
        "sunspec_inverter_103_mppt",
        "sunspec_battery_802",
    } <= set(BUNDLED)


# What a site needs from a meter: power, both energies, voltage, frequency.
METER_METRICS = sorted(
    ["active_power_kw", "energy_import_kwh", "energy_export_kwh", "voltage_v", "frequency_hz"]
)
METERS = ["eastron_sdm630", "janitza_umg96rm", "acrel_adl400", "acrel_dtsd1352", "schneider_pm5xxx"]


@pytest.mark.parametrize("name", METERS)
def test_meter_profiles_give_what_a_site_needs(name: str) -> None:
    assert sorted(p.metric or "" for p in load_profile(name).metric_points) == METER_METRICS


@pytest.mark.parametrize("name", BUNDLED)
def test_no_metric_twice(name: str) -> None:
    metrics = [p.metric for p in load_profile(name).metric_points]
    assert len(metrics) == len(set(metrics))


@pytest.mark.parametrize("name", BUNDLED)
def test_profile_loads_and_cites_its_source(name: str) -> None:
    profile = load_profile(name)
    assert profile.profile.name == name
    assert profile.profile.reference, "a profile names the document its map comes from"
    assert profile.metric_points
    for point in profile.metric_points:
        assert point.metric in METRICS_BY_NAME


@pytest.mark.parametrize("name", BUNDLED)
async def test_profile_reads_back_through_the_simulator(name: str) -> None:
    profile = load_profile(name)
    bank = RegisterBank(profile, gap_fill_registers=MAX_GAP)  # as the simulator runs it
    values = {p.metric: VALUES[p.metric] for p in profile.metric_points if p.metric}
    bank.update(values)
    blocks = plan_reads(needed_points(profile), max_gap_registers=MAX_GAP)
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()
        try:
            registers: dict[ReadBlock, list[int]] = {}
            for block in blocks:
                read = (
                    client.read_input_registers
                    if block.table is RegisterTable.INPUT
                    else client.read_holding_registers
                )
                response = await read(block.address, count=block.count, device_id=1)
                assert not response.isError(), response
                registers[block] = list(response.registers)
                assert registers[block] == bank.read(block.table, block.address, block.count)
        finally:
            client.close()
    builder = BatchBuilder(REGISTRY)
    result = decode_blocks(
        point_series("meter", profile, REGISTRY), profile, blocks, registers, 0, builder
    )
    assert result.rejected == []
    got = {r.metric: r.value for r in builder.build().readings(REGISTRY)}
    assert set(got) == set(values)
    for point in profile.metric_points:
        assert point.metric is not None
        want = values[point.metric]
        assert got[point.metric] == pytest.approx(want, abs=bank.resolution(point, want)), point
        if METRICS_BY_NAME[point.metric].kind is MetricKind.COUNTER:
            assert got[point.metric] >= 0


def _static_addresses(profile: DeviceProfile) -> set[tuple[RegisterTable, int]]:
    return {(b.table, b.address + i) for b in profile.static for i in range(len(b.registers))}


@pytest.mark.parametrize("name", BUNDLED)
async def test_every_point_reads_back_through_the_simulator(name: str) -> None:
    """Helper points too (SunSpec MPPT modules, battery voltage, ...): each point that
    is not a fixed register gets a distinct value, read over Modbus TCP with the
    collector's plan (every point) and decoded with the profile's decode_raw and its
    scale factor."""
    profile = load_profile(name)
    bank = RegisterBank(profile)
    fixed = _static_addresses(profile)
    values: dict[str, float] = {}
    for i, point in enumerate(profile.points):
        if any((point.table, a) in fixed for a in range(point.address, point.end_address)):
            continue
        values[point.name] = (101 + 7 * i) * bank.unit_value(point)
    bank.set_points(values)
    blocks = plan_reads(list(profile.points), max_gap_registers=0)
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()
        try:
            words: dict[str, Sequence[int]] = {}
            for block in blocks:
                read = (
                    client.read_input_registers
                    if block.table is RegisterTable.INPUT
                    else client.read_holding_registers
                )
                response = await read(block.address, count=block.count, device_id=1)
                assert not response.isError(), (block, response)
                for point in block.points:
                    offset = point.address - block.address
                    words[point.name] = response.registers[offset : offset + point.register_count]
        finally:
            client.close()
    raw = {name: profile.decode_raw(profile.point(name), w) for name, w in words.items()}
    for point_name, want in values.items():
        point = profile.point(point_name)
        sf = raw[point.scale_factor] if point.scale_factor else 0.0
        got = raw[point_name] * point.scale * 10.0**sf * profile.ratio_of(point)
        assert got == pytest.approx(want, rel=1e-6), point_name
