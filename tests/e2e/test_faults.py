"""End to end with device faults: the simulated plant injects counter resets, a meter
replacement, a register rollover, a silent gap, late and duplicate MQTT messages and a
backward step; every device's hourly energy must still match the simulator's exact
energy (ground truth), and the hours the faults touched must say what happened."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.faults import FaultKind
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.runner import PlantSimulator

SPEED = 600.0  # simulated seconds per real second
# Local 07:30 in Shanghai; the compared hours are 08:00-13:00 local (00:00-05:00 UTC).
START = datetime(2026, 6, 21, 7, 30, tzinfo=UTC) - timedelta(hours=8)
FIRST_HOUR = START + timedelta(minutes=30)
HOURS = 5
TOLERANCE = 0.005  # 0.5 % of each hour's true value

# Offsets from START [simulated s]; hour k of the comparison is [1800 + 3600 k, +3600).
# line_a (MQTT, uint32 x 0.01 kWh register) starts ROLLOVER_BELOW_WRAP kWh under its
# wrap value: at ~400 kW it wraps near 08:25 local (hour 0).
ROLLOVER_BELOW_WRAP = 300.0
FAULTS: dict[str, Any] = {
    "rollovers": [
        {"device": "line_a", "metric": "energy_import_kwh", "below_wrap": ROLLOVER_BELOW_WRAP}
    ],
    # hour 0..4: duplicates on line_b throughout (5 %) plus one at 08:05
    "duplicates": [{"device": "line_b", "share": 0.05, "at_s": [2100.0]}],
    # hour 1: the PV inverter stops answering for 5 min (09:20-09:25)
    "gaps": [{"device": "pv_roof", "start_s": 6600.0, "duration_s": 300.0, "mode": "silent"}],
    # hour 2: line_a's meter is replaced at 10:30; the grid meter reads 12 kWh low at 10:35
    "meter_replacements": [{"device": "line_a", "at_s": 10800.0, "new_value": 50000.0}],
    "backward_steps": [
        # a minute long: the collector re-reads a backward value at once (its torn-read
        # guard) and keeps it only when the re-read agrees, so a step shorter than the
        # re-read's delay would be refused as transient rather than stored and flagged
        {
            "device": "grid_meter",
            "metric": "energy_import_kwh",
            "at_s": 11100.0,
            "step": 12.0,
            "duration_s": 60.0,
        }
    ],
    # hour 3: line_b's meter restarts from 0 at 11:25
    "counter_resets": [{"device": "line_b", "at_s": 14100.0}],
    # hour 4: line_b's messages of 12:15-12:20 arrive 2 min after the window, shuffled
    "late_data": [{"device": "line_b", "start_s": 17100.0, "duration_s": 300.0, "delay_s": 120.0}],
}
PV_TIMEOUT_S = 0.25  # real s: a timed-out poll of the silent inverter costs 150 simulated s

# Counter resolution [counter unit]: each end of an hour may be off by one step.
RESOLUTION = {
    "battery": 0.1,  # battery_controller profile: uint32 x 0.1 kWh
    "grid_meter": 0.125,  # SDM630 float32 registers near 1.1e6 kWh: one ulp
    "output_counter": 1.0,  # whole units
}
DEFAULT_RESOLUTION = 0.01


def faults_site(demo_site: SiteConfig) -> SiteConfig:
    """The demo site with line_a's energy on a uint32 x 0.01 kWh register and FAULTS."""
    data = demo_site.model_dump(mode="json", exclude_none=True)
    for device in data["devices"]:
        if device["id"] == "line_a":
            device["fields"]["energy_kwh"] = {
                "metric": "energy_import_kwh",
                "type": "uint32",
                "scale": 0.01,
            }
        if device["id"] == "pv_roof":
            device["timeout_s"] = PV_TIMEOUT_S
    data["simulation"]["faults"] = FAULTS
    return parse_site(data, "faults site", demo_site.base_dir)


@dataclass(frozen=True, slots=True)
class FaultRun:
    energy: dict[tuple[datetime, str, str], asyncpg.Record]  # (hour, device, metric) -> row
    carbon: dict[datetime, asyncpg.Record]
    truth: GroundTruth
    center: EnergyCenter


def compared_hours() -> list[datetime]:
    return [FIRST_HOUR + timedelta(hours=k) for k in range(HOURS)]


@pytest.fixture(scope="module")
async def fault_run(
    pg_url: str,
    mqtt_url: str,
    demo_site: SiteConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> FaultRun:
    """Run the faulty plant once for the module; return the compared hourly rows."""
    conn = await asyncpg.connect(pg_url)
    await conn.execute(
        "TRUNCATE readings, latest_values, hourly_energy, hourly_carbon, devices RESTART IDENTITY"
    )
    site = on_free_ports(faults_site(demo_site), mqtt_url)
    warm_up_kernels(site)
    clock = ScaledClock(START, SPEED)
    end_s = (FIRST_HOUR + timedelta(hours=HOURS, minutes=2)).timestamp()
    # start-up and shutdown included: a hang fails here, with the stuck await's traceback
    async with (
        asyncio.timeout(HOURS * 3600 / SPEED * 3 + 150),
        PlantSimulator(site, clock, mqtt_url=mqtt_url) as sim,
        EnergyCenter(
            site,
            Settings(),
            clock,
            database_url=pg_url,
            mqtt_url=mqtt_url,
            spool_dir=tmp_path_factory.mktemp("spool"),  # module-scoped: no per-test data dir
        ) as center,
    ):
        while clock.now_s() < end_s:
            await asyncio.sleep(0.2)
    last = FIRST_HOUR + timedelta(hours=HOURS)
    try:
        energy_rows = await conn.fetch(
            "SELECT h.*, d.key AS device, m.name AS metric FROM hourly_energy h "
            "JOIN devices d ON d.id = h.device_id JOIN metrics m ON m.id = h.metric_id "
            "WHERE h.hour_start >= $1 AND h.hour_start < $2",
            FIRST_HOUR,
            last,
        )
        carbon_rows = await conn.fetch(
            "SELECT * FROM hourly_carbon WHERE hour_start >= $1 AND hour_start < $2",
            FIRST_HOUR,
            last,
        )
    finally:
        await conn.close()
    return FaultRun(
        energy={
            (r["hour_start"].astimezone(UTC), r["device"], r["metric"]): r for r in energy_rows
        },
        carbon={r["hour_start"].astimezone(UTC): r for r in carbon_rows},
        truth=sim.ground_truth,
        center=center,
    )


def _channels(truth: GroundTruth) -> list[tuple[str, str]]:
    return sorted(k for k in truth.keys() if isinstance(k, tuple))


def test_faults_happened(fault_run: FaultRun) -> None:
    """The plan did what the test relies on, in the hours it expects (else: test void)."""
    truth = fault_run.truth
    hours = compared_hours()
    expected = {
        ("line_a", FaultKind.ROLLOVER): hours[0],
        ("pv_roof", FaultKind.GAP): hours[1],
        ("line_a", FaultKind.METER_REPLACEMENT): hours[2],
        ("grid_meter", FaultKind.BACKWARD_STEP): hours[2],
        ("line_b", FaultKind.COUNTER_RESET): hours[3],
        ("line_b", FaultKind.LATE_DATA): hours[4],
    }
    for (device, kind), hour in expected.items():
        assert truth.fault_hours(device, kind) == [hour], f"{device} {kind}"
    duplicated = truth.fault_hours("line_b", FaultKind.DUPLICATE_DATA)
    assert hours[0] in duplicated and len(duplicated) >= 3, duplicated


def test_hourly_energy_matches_ground_truth(fault_run: FaultRun) -> None:
    truth = fault_run.truth
    worst: dict[str, tuple[float, float, datetime]] = {}
    failures: list[str] = []
    for device, metric in _channels(truth):
        replaced = set(truth.fault_hours(device, FaultKind.METER_REPLACEMENT))
        by_hour = truth.hourly((device, metric))
        step = RESOLUTION.get(device, DEFAULT_RESOLUTION)
        for hour in compared_hours():
            expected = by_hour.get(hour, 0.0)
            row = fault_run.energy.get((hour, device, metric))
            if row is None:
                failures.append(f"{device}/{metric} {hour:%H:%M}Z: no row (truth {expected:.3f})")
                continue
            got = row["delta"]
            error = abs(got - expected)
            if hour in replaced:
                # the swap interval's energy is estimated from the new meter's rate
                if not (row["estimated"] > 0 and row["replacements"] >= 1):
                    failures.append(
                        f"{device}/{metric} {hour:%H:%M}Z: meter replacement not flagged "
                        f"(estimated {row['estimated']:.3f}, replacements {row['replacements']})"
                    )
            if error > max(TOLERANCE * expected, 2 * step):
                failures.append(
                    f"{device}/{metric} {hour:%H:%M}Z: engine {got:.3f} vs truth {expected:.3f} "
                    f"({error / expected if expected else float('inf'):.3%})"
                )
            if expected > 10 * step:  # below that the resolution bound applies
                key = f"{device}/{metric}"
                rel = error / expected
                if rel >= worst.get(key, (-1.0, 0.0, hour))[0]:
                    worst[key] = (rel, got - expected, hour)
    print(
        "\nmax relative error per channel:",
        {
            k: f"{rel:.4%} ({diff:+.3f} at {h:%H:%M}Z)"
            for k, (rel, diff, h) in sorted(worst.items())
        },
    )
    assert not failures, "\n".join(failures)


def test_fault_hours_are_flagged(fault_run: FaultRun) -> None:
    truth = fault_run.truth
    hours = set(compared_hours())
    # fault kind -> row columns of which at least one must be set in the fault's hour
    flags = {
        FaultKind.GAP: ("gaps",),
        FaultKind.METER_REPLACEMENT: ("replacements",),
        FaultKind.COUNTER_RESET: ("resets",),
        FaultKind.ROLLOVER: ("rollovers",),
        FaultKind.BACKWARD_STEP: ("backsteps", "rejected"),
        FaultKind.LATE_DATA: ("late",),
        # a duplicated message inside the late window arrives late, and counts as such
        FaultKind.DUPLICATE_DATA: ("duplicates", "late"),
    }
    estimated_kinds = {FaultKind.GAP, FaultKind.METER_REPLACEMENT}
    failures: list[str] = []
    channels = _channels(truth)
    events = ("resets", "rollovers", "backsteps", "replacements", "rejected", "gaps", "late")
    for (hour, device, metric), row in sorted(fault_run.energy.items()):
        shown = {c: row[c] for c in (*events, "duplicates") if row[c]}
        if row["estimated"] or shown:
            print(
                f"{hour:%H:%M}Z {device}/{metric}: estimated {row['estimated']:.3f} {shown} "
                f"truth faults {sorted(truth.faults(device).get(hour, ()))}"
            )
    for device in truth.faulty_devices():
        metrics = [m for d, m in channels if d == device]
        for hour, kinds in truth.faults(device).items():
            if hour not in hours:
                continue
            for metric in metrics:
                row = fault_run.energy.get((hour, device, metric))
                if row is None or truth.hourly((device, metric)).get(hour, 0.0) <= 0.0:
                    continue  # a channel that did not move (e.g. export) shows nothing
                for kind in sorted(kinds):
                    columns = flags[FaultKind(kind)]
                    if not any(row[c] > 0 for c in columns):
                        failures.append(
                            f"{device}/{metric} {hour:%H:%M}Z: {kind} but "
                            + ", ".join(f"{c}={row[c]}" for c in columns)
                        )
                    if kind in estimated_kinds and not row["estimated"] > 0:
                        failures.append(
                            f"{device}/{metric} {hour:%H:%M}Z: {kind} but nothing estimated"
                        )
    # the MQTT device with late and duplicate data counted both
    line_b = [r for (_h, d, m), r in fault_run.energy.items() if d == "line_b"]
    assert sum(r["late"] for r in line_b) > 0, "line_b: no late reading counted"
    assert sum(r["duplicates"] for r in line_b) > 0, "line_b: no duplicate counted"
    # the site's hour with the PV gap carries an estimated share
    for hour in truth.fault_hours("pv_roof", FaultKind.GAP):
        carbon = fault_run.carbon.get(hour)
        assert carbon is not None, f"no hourly_carbon row at {hour:%H:%M}Z"
        if not carbon["estimated_share"] > 0:
            failures.append(f"hourly_carbon {hour:%H:%M}Z (pv_roof gap): estimated_share 0")
    assert not failures, "\n".join(failures)


def test_nothing_lost(fault_run: FaultRun) -> None:
    center = fault_run.center
    assert sorted(fault_run.carbon) == compared_hours()
    assert center.forwarder is not None and center.forwarder.stats.write_failures == 0
    stats = center.forwarder.stats
    assert stats.readings_forwarded == stats.readings_acknowledged
    assert center.pipeline is not None and center.pipeline.stats.sink_failures == 0
