"""One physically consistent simulated plant: loads, PV, battery, grid and counters.

Every step of ``simulation.tick_s`` (the last step of an :meth:`PlantModel.advance`
may be shorter) holds each power constant, sampled at the step's **midpoint**, and

* site load = unmetered base load + every line (``role="load"``) [kW];
* PV from :mod:`zerocarbon.simulators.solar` [kW];
* battery from :mod:`zerocarbon.simulators.battery`, + discharge [kW];
* grid = load - PV - battery, + import / - export [kW];

so ``load = grid + pv + battery`` holds exactly in every step. Counters grow by exactly
the step's energy (power x time), and :class:`~.ground_truth.GroundTruth` records the
same amounts split by UTC hour. The same site, ``start_s`` and sequence of
:meth:`~PlantModel.advance` calls give the same values.

Faults (``simulation.faults``, :mod:`.faults`) change only what the devices report
(:meth:`PlantModel.values`), never the physics or the ground truth, except the plant
faults: a line degradation multiplies a line's power (its production counter still
counts the undegraded energy) and a demand peak adds to the base load; both are real
energy and the ground truth includes them.

Line efficiency (``simulation.line_idle_fraction``, ``line_efficiency_noise``,
:meth:`.loads.LineLoad.drawn_kw`): a line's meter counts its idle load plus its process
output times a seeded hourly efficiency factor, while its production counter counts the
process output x ``units_per_kwh``; so the energy per unit of a line varies as a real
line's does, and a baseline fit on it has an intercept and a residual spread. The ground
truth records what the meters count, as for every other counter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from zerocarbon.config import (
    AnyDevice,
    DeviceRole,
    Dlt645Device,
    ModbusRtuDevice,
    ModbusTcpDevice,
    MqttDevice,
    SiteConfig,
)
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.simulators.battery import (
    DEFAULT_BATTERY_RATED_POWER_KW,
    Battery,
    BatteryParams,
    DispatchPolicy,
)
from zerocarbon.simulators.faults import FaultPlan
from zerocarbon.simulators.ground_truth import GroundTruth, SiteQuantity
from zerocarbon.simulators.loads import (
    DEFAULT_LOAD_RATED_POWER_KW,
    PATTERNS,
    LineLoad,
    LocalHours,
    Ramp,
)
from zerocarbon.simulators.noise import SmoothNoise, seeded_rng
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.solar import DEFAULT_PV_RATED_POWER_KW, CloudCover, PvArray
from zerocarbon.simulators.weather import OutdoorTemperature

NOMINAL_VOLTAGE_V = 230.0
NOMINAL_FREQUENCY_HZ = 50.0

# Typical counter readings of a plant a few years in service, before seeded jitter
# (x 0.8 .. 1.25); kept far below every register type's range.
_COUNTER_MAGNITUDES: dict[tuple[DeviceRole, str], float] = {
    (DeviceRole.GRID, "energy_import_kwh"): 1.2e6,
    (DeviceRole.GRID, "energy_export_kwh"): 2.0e4,
    (DeviceRole.PV, "energy_generated_kwh"): 8.0e5,
    (DeviceRole.BATTERY, "energy_charged_kwh"): 2.0e5,
    (DeviceRole.BATTERY, "energy_discharged_kwh"): 1.8e5,
    (DeviceRole.LOAD, "energy_import_kwh"): 4.0e5,
    (DeviceRole.PRODUCTION, "production_count_units"): 1.0e6,
}
_DEFAULT_COUNTER_MAGNITUDE = 1.0e4
_MAX_FRACTION_OF_RANGE = 0.25  # initial counters stay below this share of their register


@dataclass(frozen=True, slots=True)
class PlantPower:
    """The powers held constant over one step [kW] (an instant when the step is empty)."""

    start_s: float
    end_s: float
    base_load_kw: float
    line_kw: Mapping[str, float]  # per load device, + consumption
    pv_kw: Mapping[str, float]  # per PV device, + generation
    battery_kw: Mapping[str, float]  # per battery, + discharge / - charge
    grid_kw: float  # + import / - export

    @property
    def load_kw(self) -> float:
        """Site load: base load and every line [kW]."""
        return self.base_load_kw + sum(self.line_kw.values())

    @property
    def pv_total_kw(self) -> float:
        return sum(self.pv_kw.values())

    @property
    def battery_total_kw(self) -> float:
        return sum(self.battery_kw.values())


def _exposed_metrics(site: SiteConfig, device: AnyDevice) -> tuple[str, ...]:
    if isinstance(device, MqttDevice):
        names = [device.field_metric(key) for key in device.fields]
    elif isinstance(device, Dlt645Device):
        names = list(device.metrics())
    else:
        names = [p.metric for p in site.profile_of(device).metric_points if p.metric is not None]
    return tuple(dict.fromkeys(names))


class PlantModel:
    """The simulated plant of ``site``, starting at POSIX time ``start_s`` [s].

    Devices get their behaviour from their role: load devices alternate between the
    three-shift and the day-shift pattern in config order (first: three shifts); PV
    devices share the sky (one cloud process); several batteries share surplus and
    deficit by rating; a production counter counts the energy of the load devices of
    its ``line`` (all loads when it has none) times ``simulation.units_per_kwh``.
    Values of a device are the metrics it exposes (its profile's points or its MQTT
    fields); a metric its role does not model reads 0 (gauge) or stays at its initial
    value (counter).
    """

    def __init__(self, site: SiteConfig, start_s: float) -> None:
        self.site = site
        sim = site.simulation
        self.tick_s = sim.tick_s
        self.now_s = float(start_s)
        self.steps = 0
        self.ground_truth = GroundTruth()
        self.faults = FaultPlan(site, self.now_s, self.ground_truth)
        self._hours = LocalHours(site.site.timezone)
        self._policy = DispatchPolicy()
        self._roles = {d.id: d.role for d in site.devices}
        grids = [d.id for d in site.devices_with_role(DeviceRole.GRID)]
        if len(grids) != 1:
            raise ValueError(
                f"the simulated plant has one grid connection; the site file has {grids}"
            )

        self._lines: dict[str, LineLoad] = {}
        for i, d in enumerate(site.devices_with_role(DeviceRole.LOAD)):
            rated = d.rated_power_kw or DEFAULT_LOAD_RATED_POWER_KW
            self._lines[d.id] = LineLoad(
                rated,
                PATTERNS[i % len(PATTERNS)],
                sim.seed,
                d.id,
                idle_fraction=sim.line_idle_fraction,
                efficiency_noise=sim.line_efficiency_noise,
            )
        self._base_noise = SmoothNoise(seeded_rng(sim.seed, "base_load"), 120.0, 3600.0)

        clouds = CloudCover(sim.cloudiness, sim.seed)
        self._pv = {
            d.id: PvArray(
                d.rated_power_kw or DEFAULT_PV_RATED_POWER_KW,
                sim.latitude_deg,
                sim.longitude_deg,
                clouds,
            )
            for d in site.devices_with_role(DeviceRole.PV)
        }

        self._batteries: dict[str, Battery] = {}
        self._battery_ramps: dict[str, Ramp] = {}
        for d in site.devices_with_role(DeviceRole.BATTERY):
            params = BatteryParams(
                rated_power_kw=d.rated_power_kw or DEFAULT_BATTERY_RATED_POWER_KW,
                capacity_kwh=sim.battery_capacity_kwh,
            )
            self._batteries[d.id] = Battery(params, sim.initial_soc_pct)
            self._battery_ramps[d.id] = Ramp(params.ramp_kw_per_s, 0.0)
        self._battery_rating_kw = sum(b.params.rated_power_kw for b in self._batteries.values())

        self._production_lines: dict[str, tuple[str, ...]] = {}
        for d in site.devices_with_role(DeviceRole.PRODUCTION):
            loads = site.devices_with_role(DeviceRole.LOAD)
            self._production_lines[d.id] = tuple(
                x.id for x in loads if d.line is None or x.line == d.line
            )
        self._units_exact: dict[str, float] = dict.fromkeys(self._production_lines, 0.0)
        self._line_output_kw: dict[str, float] = {}  # undegraded line power [kW]

        self._metrics = {d.id: _exposed_metrics(site, d) for d in site.devices}
        self._counters: list[tuple[str, str]] = [
            (device_id, m)
            for device_id, names in self._metrics.items()
            for m in names
            if METRICS_BY_NAME[m].kind is MetricKind.COUNTER
        ]
        self._counter_start = {
            key: self.faults.initial_counter(key, self._initial_counter(*key))
            for key in self._counters
        }
        self._integral = dict.fromkeys(self._counters, 0.0)

        self._voltage_noise = SmoothNoise(seeded_rng(sim.seed, "voltage"), 30.0, 1800.0)
        self._frequency_noise = SmoothNoise(seeded_rng(sim.seed, "frequency"), 20.0, 600.0)
        self._outdoor = OutdoorTemperature(site.site.timezone, sim.seed)
        offsets = seeded_rng(sim.seed, "voltage_offsets")
        self._voltage_offset_v = {d.id: offsets.uniform(-1.5, 1.5) for d in site.devices}

        hour = self._hours.hour_of_day(self.now_s)
        for line in self._lines.values():
            line.start(hour)
        self.power = self._sample(self.now_s, self.now_s, 0.0)

    # --- set-up ----------------------------------------------------------------------

    def _initial_counter(self, device_id: str, metric: str) -> float:
        device = self.site.device(device_id)
        rng = seeded_rng(self.site.simulation.seed, "counter", device_id, metric)
        magnitude = _COUNTER_MAGNITUDES.get((device.role, metric), _DEFAULT_COUNTER_MAGNITUDE)
        value = magnitude * rng.uniform(0.8, 1.25)
        if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
            bank = RegisterBank(self.site.profile_of(device))
            for point in bank.profile.metric_points:
                if point.metric == metric:
                    value = min(value, _MAX_FRACTION_OF_RANGE * bank.value_range(point)[1])
        else:
            register = self.faults.registers.get((device_id, metric))
            if register is not None:
                value = min(value, _MAX_FRACTION_OF_RANGE * register.top)
        if metric == "production_count_units":
            return float(math.floor(value))
        return round(value, 1)

    # --- physics ---------------------------------------------------------------------

    def _sample(self, start_s: float, end_s: float, interval_s: float) -> PlantPower:
        """Powers for the step [start_s, end_s), sampled at its midpoint; moves the state."""
        mid_s = start_s + interval_s / 2.0
        hour = self._hours.hour_of_day(mid_s)
        output_kw = {i: line.step(mid_s, hour, interval_s) for i, line in self._lines.items()}
        self._line_output_kw = output_kw
        faults = self.faults
        line_kw = {
            i: self._lines[i].drawn_kw(mid_s, p) * faults.line_factor(i, start_s, end_s)
            for i, p in output_kw.items()
        }
        base_kw = self.site.simulation.base_load_kw * (1.0 + 0.03 * self._base_noise(mid_s))
        base_kw += faults.extra_load_kw(start_s, end_s)
        pv_kw = {i: array.power_kw(mid_s) for i, array in self._pv.items()}
        net_kw = base_kw + sum(line_kw.values()) - sum(pv_kw.values())
        battery_kw: dict[str, float] = {}
        for i, battery in self._batteries.items():
            share = battery.params.rated_power_kw / self._battery_rating_kw
            target = self._policy.target_kw(
                hour, battery, max(0.0, -net_kw) * share, max(0.0, net_kw) * share
            )
            ramp = self._battery_ramps[i]
            ramp.value = battery.apply(ramp.step(target, interval_s), interval_s)
            battery_kw[i] = ramp.value
        grid_kw = net_kw - sum(battery_kw.values())
        return PlantPower(start_s, end_s, base_kw, line_kw, pv_kw, battery_kw, grid_kw)

    def _counter_rate(self, device_id: str, metric: str, power: PlantPower) -> float:
        """Rate of a counter during ``power``'s step [kWh/h or units/h]."""
        role = self._roles[device_id]
        if role is DeviceRole.GRID:
            if metric == "energy_import_kwh":
                return max(0.0, power.grid_kw)
            if metric == "energy_export_kwh":
                return max(0.0, -power.grid_kw)
        elif role is DeviceRole.PV and metric == "energy_generated_kwh":
            return power.pv_kw[device_id]
        elif role is DeviceRole.BATTERY:
            if metric == "energy_charged_kwh":
                return max(0.0, -power.battery_kw[device_id])
            if metric == "energy_discharged_kwh":
                return max(0.0, power.battery_kw[device_id])
        elif role is DeviceRole.LOAD and metric == "energy_import_kwh":
            return power.line_kw[device_id]
        return 0.0

    def _step(self, start_s: float, end_s: float) -> None:
        interval_s = end_s - start_s
        hours = interval_s / 3600.0
        power = self._sample(start_s, end_s, interval_s)
        truth = self.ground_truth
        units_total = 0.0
        for device_id, lines in self._production_lines.items():
            output_kw = sum(self._line_output_kw[x] for x in lines)  # undegraded
            rate = output_kw * self.site.simulation.units_per_kwh
            before = self._units_exact[device_id]
            after = before + rate * hours
            self._units_exact[device_id] = after
            produced = float(math.floor(after) - math.floor(before))  # whole units counted
            units_total += produced
            key = (device_id, "production_count_units")
            if key in self._integral:
                self._count(key, start_s, end_s, produced)
        for key in self._counters:
            if key[1] == "production_count_units" and key[0] in self._production_lines:
                continue
            self._count(key, start_s, end_s, self._counter_rate(key[0], key[1], power) * hours)
        self.faults.mark_step(start_s, end_s)
        charge = sum(max(0.0, -p) for p in power.battery_kw.values()) * hours
        discharge = sum(max(0.0, p) for p in power.battery_kw.values()) * hours
        truth.add(SiteQuantity.GRID_IMPORT_KWH, start_s, end_s, max(0.0, power.grid_kw) * hours)
        truth.add(SiteQuantity.GRID_EXPORT_KWH, start_s, end_s, max(0.0, -power.grid_kw) * hours)
        truth.add(SiteQuantity.PV_KWH, start_s, end_s, power.pv_total_kw * hours)
        truth.add(SiteQuantity.BATTERY_CHARGE_KWH, start_s, end_s, charge)
        truth.add(SiteQuantity.BATTERY_DISCHARGE_KWH, start_s, end_s, discharge)
        truth.add(SiteQuantity.LOAD_KWH, start_s, end_s, power.load_kw * hours)
        truth.add(SiteQuantity.PRODUCTION_UNITS, start_s, end_s, units_total)
        self.power = power
        self.steps += 1

    def _count(self, key: tuple[str, str], start_s: float, end_s: float, amount: float) -> None:
        before = self._integral[key]
        self._integral[key] = before + amount
        self.ground_truth.add(key, start_s, end_s, amount)
        self.faults.on_counter_step(key, self._counter_start[key], start_s, end_s, before, amount)

    def advance(self, to_s: float) -> None:
        """Integrate up to POSIX time ``to_s`` [s] in steps of at most ``tick_s``.

        Does nothing when ``to_s`` is not after :attr:`now_s` (time never goes back).
        """
        while self.now_s < to_s:
            end_s = self.now_s + self.tick_s
            if end_s >= to_s:
                end_s = float(to_s)
            self._step(self.now_s, end_s)
            self.now_s = end_s

    # --- readings --------------------------------------------------------------------

    def device_metrics(self, device_id: str) -> tuple[str, ...]:
        """The metrics ``device_id`` exposes (profile points or MQTT fields)."""
        return self._metrics[device_id]

    def counter_start(self, device_id: str, metric: str) -> float:
        """The counter's value at ``start_s`` (seeded; near its wrap for a rollover)."""
        return self._counter_start[(device_id, metric)]

    def counted(self, device_id: str, metric: str) -> float:
        """What the counter truly counted since ``start_s`` (faults aside)."""
        return self._integral[(device_id, metric)]

    def soc_pct(self, device_id: str) -> float:
        return self._batteries[device_id].soc_pct

    def _gauge(self, device_id: str, metric: str) -> float:
        role = self._roles[device_id]
        power = self.power
        if metric == "active_power_kw":
            if role is DeviceRole.GRID:
                return power.grid_kw
            if role is DeviceRole.PV:
                return power.pv_kw[device_id]
            if role is DeviceRole.BATTERY:
                return power.battery_kw[device_id]
            if role is DeviceRole.LOAD:
                return power.line_kw[device_id]
            return 0.0
        if metric == "state_of_charge_pct":
            battery = self._batteries.get(device_id)
            return battery.soc_pct if battery is not None else 0.0
        if metric == "voltage_v":
            noise = self._voltage_noise(self.now_s)
            return NOMINAL_VOLTAGE_V + self._voltage_offset_v[device_id] + 2.5 * noise
        if metric == "frequency_hz":
            return NOMINAL_FREQUENCY_HZ + 0.04 * self._frequency_noise(self.now_s)
        if metric == "temperature_c":
            return self._outdoor.temperature_c(self.now_s)
        return 0.0

    def values(self, device_id: str) -> dict[str, float]:
        """Current values of the metrics ``device_id`` exposes (metric name -> value),
        as the device reports them: counters with their faults applied, stuck values
        held."""
        out: dict[str, float] = {}
        for metric in self._metrics[device_id]:
            key = (device_id, metric)
            if key in self._integral:
                value = self.faults.report(
                    key, self._counter_start[key], self._integral[key], self.now_s
                )
            else:
                value = self._gauge(device_id, metric)
            out[metric] = self.faults.stuck(device_id, metric, self.now_s, value)
        return out
