"""What each series means to the engine, derived once from the site file.

For every device: which energy *channels* it has (a channel is a (device, counter
metric), e.g. the grid meter's ``energy_import_kwh``), whether a channel is fed by the
device's counter or by integrating its power (power-only devices), the register wrap
value of each counter (from the profile point's register type and scale, or the MQTT
mapping's), the largest plausible rate (1.5 x rated power) and the gap threshold.
Roles map channels to the site's flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import SeriesRegistry
from zerocarbon.carbon_engine.stream import COUNTER, IGNORED, POWER
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
from zerocarbon.metering.registers import counter_wrap

__all__ = ["Flow", "SeriesModel", "device_metrics"]

RATED_MARGIN = 1.5  # plausible power = this x rated power
MIN_GAP_S = 30.0  # smallest gap threshold [s]
GAP_INTERVALS = 3.0  # a gap: silence longer than this many poll/publish intervals

Device = AnyDevice
DLT645_ENERGY_WRAP_KWH = 1_000_000.0  # DL/T 645-2007 energy format XXXXXX.XX kWh [kWh]


class Flow(StrEnum):
    """Site-level quantities a channel adds to."""

    GRID_IMPORT = "grid_import_kwh"
    GRID_EXPORT = "grid_export_kwh"
    PV = "pv_kwh"
    WIND = "wind_kwh"
    BATTERY_CHARGE = "battery_charge_kwh"
    BATTERY_DISCHARGE = "battery_discharge_kwh"
    LOAD = "load_kwh"  # a sub-meter
    PRODUCTION = "production_units"
    FUEL = "fuel"  # a fuel quantity (Nm3, kg, l): Scope 1


# role -> (counter metric, flow) for positive power, and for negative power
_POWER_CHANNELS: dict[DeviceRole, tuple[tuple[str, Flow] | None, tuple[str, Flow] | None]] = {
    DeviceRole.GRID: (
        ("energy_import_kwh", Flow.GRID_IMPORT),
        ("energy_export_kwh", Flow.GRID_EXPORT),
    ),
    DeviceRole.PV: (("energy_generated_kwh", Flow.PV), None),
    DeviceRole.WIND: (("energy_generated_kwh", Flow.WIND), None),
    DeviceRole.BATTERY: (
        ("energy_discharged_kwh", Flow.BATTERY_DISCHARGE),
        ("energy_charged_kwh", Flow.BATTERY_CHARGE),
    ),
    DeviceRole.LOAD: (("energy_import_kwh", Flow.LOAD), None),
}

# (role, counter metric) -> flow, for counters: the energy counters the power channels
# stand in for, plus output and fuel counters
_COUNTER_FLOWS: dict[tuple[DeviceRole, str], Flow] = {
    **{
        (role, side[0]): side[1]
        for role, pair in _POWER_CHANNELS.items()
        for side in pair
        if side is not None
    },
    (DeviceRole.PRODUCTION, "production_count_units"): Flow.PRODUCTION,
    (DeviceRole.FUEL, "gas_volume_nm3"): Flow.FUEL,
    (DeviceRole.FUEL, "fuel_mass_kg"): Flow.FUEL,
    (DeviceRole.FUEL, "fuel_volume_l"): Flow.FUEL,
}


def device_metrics(site: SiteConfig, device: Device) -> dict[str, float]:
    """Metrics a device reports -> register wrap value of each (0: never wraps)."""
    out: dict[str, float] = {}
    if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
        for p in site.profile_of(device).metric_points:
            assert p.metric is not None
            out[p.metric] = counter_wrap(p.type, p.scale) if p.scale_factor is None else 0.0
    elif isinstance(device, Dlt645Device):
        for metric in device.metrics():  # its counters are energy XXXXXX.XX kWh
            counter = METRICS_BY_NAME[metric].kind is MetricKind.COUNTER
            out[metric] = DLT645_ENERGY_WRAP_KWH if counter else 0.0
    else:
        for key in device.fields:
            metric = device.field_metric(key)
            reg = device.counter_register(metric)
            out[metric] = 0.0 if reg is None else counter_wrap(reg[0], reg[1])
    return out


def _interval_s(device: Device) -> float:
    return device.interval_s if isinstance(device, MqttDevice) else device.poll_interval_s


@dataclass(frozen=True, slots=True)
class Channel:
    device: str
    metric: str
    flow: Flow | None


class SeriesModel:
    """Per-series arrays for :func:`~zerocarbon.carbon_engine.stream.stream_readings`
    and the list of channels, for one site."""

    def __init__(self, site: SiteConfig, registry: SeriesRegistry) -> None:
        n = registry.size
        self.kind: NDArray[np.int8] = np.full(n, IGNORED, np.int8)
        self.pos_channel: NDArray[np.int32] = np.full(n, -1, np.int32)
        self.neg_channel: NDArray[np.int32] = np.full(n, -1, np.int32)
        self.wrap: NDArray[np.float64] = np.zeros(n, np.float64)
        self.max_rate: NDArray[np.float64] = np.full(n, np.inf, np.float64)
        self.gap_us: NDArray[np.int64] = np.zeros(n, np.int64)
        self.channels: list[Channel] = []
        self.channel_of: dict[tuple[str, str], int] = {}

        def channel(device: str, metric: str, flow: Flow | None) -> int:
            self.channel_of[(device, metric)] = len(self.channels)
            self.channels.append(Channel(device, metric, flow))
            return len(self.channels) - 1

        for device in site.devices:
            metrics = device_metrics(site, device)
            gap_s = device.gap_s or max(GAP_INTERVALS * _interval_s(device), MIN_GAP_S)
            rated = device.rated_power_kw
            kwh_rate = np.inf if rated is None else RATED_MARGIN * rated / 3600.0
            counters = [m for m in metrics if METRICS_BY_NAME[m].kind is MetricKind.COUNTER]
            for m in counters:
                s = registry.id(device.id, m)
                self.kind[s] = COUNTER
                self.pos_channel[s] = channel(device.id, m, _COUNTER_FLOWS.get((device.role, m)))
                self.wrap[s] = metrics[m]
                self.max_rate[s] = kwh_rate if m.startswith("energy_") else np.inf
                self.gap_us[s] = int(gap_s * 1e6)
            power = _POWER_CHANNELS.get(device.role)
            if power is None or "active_power_kw" not in metrics:
                continue
            pos, neg = power
            missing_pos = pos is not None and pos[0] not in counters
            missing_neg = neg is not None and neg[0] not in counters
            if not (missing_pos or missing_neg):
                continue  # counters cover every flow: power is only shown, not integrated
            s = registry.id(device.id, "active_power_kw")
            self.kind[s] = POWER
            if missing_pos and pos is not None:
                self.pos_channel[s] = channel(device.id, pos[0], pos[1])
            if missing_neg and neg is not None:
                self.neg_channel[s] = channel(device.id, neg[0], neg[1])
            self.max_rate[s] = kwh_rate
            self.gap_us[s] = int(gap_s * 1e6)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def flow_mask(self, flow: Flow) -> NDArray[np.bool_]:
        return np.array([c.flow is flow for c in self.channels], dtype=np.bool_)
