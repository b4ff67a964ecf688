"""The metric vocabulary: every value the product stores has one of these names.

Sign conventions of ``active_power_kw`` depend on the device role:
grid meter + import / - export; PV + generation; battery + discharge / - charge;
load meter + consumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MetricKind(StrEnum):
    COUNTER = "counter"  # monotonically increasing total (energy, units produced)
    GAUGE = "gauge"  # instantaneous value (power, state of charge)


@dataclass(frozen=True, slots=True)
class Metric:
    id: int  # stable small integer stored in the readings table
    name: str
    unit: str
    kind: MetricKind
    description: str


METRICS: tuple[Metric, ...] = (
    Metric(1, "active_power_kw", "kW", MetricKind.GAUGE, "Active power, sign by device role"),
    Metric(2, "energy_import_kwh", "kWh", MetricKind.COUNTER, "Energy imported / consumed"),
    Metric(3, "energy_export_kwh", "kWh", MetricKind.COUNTER, "Energy exported to the grid"),
    Metric(4, "energy_generated_kwh", "kWh", MetricKind.COUNTER, "AC energy generated"),
    Metric(5, "energy_charged_kwh", "kWh", MetricKind.COUNTER, "Energy into the battery"),
    Metric(6, "energy_discharged_kwh", "kWh", MetricKind.COUNTER, "Energy out of the battery"),
    Metric(7, "state_of_charge_pct", "%", MetricKind.GAUGE, "Battery state of charge"),
    Metric(8, "production_count_units", "units", MetricKind.COUNTER, "Units produced"),
    Metric(9, "voltage_v", "V", MetricKind.GAUGE, "Phase voltage"),
    Metric(10, "frequency_hz", "Hz", MetricKind.GAUGE, "Grid frequency"),
    Metric(11, "gas_volume_nm3", "Nm3", MetricKind.COUNTER, "Gas volume at normal conditions"),
    Metric(12, "fuel_mass_kg", "kg", MetricKind.COUNTER, "Fuel mass consumed"),
    Metric(13, "fuel_volume_l", "l", MetricKind.COUNTER, "Liquid fuel volume consumed"),
    # a relevant variable of energy use (ISO 50006 clause 4.2): outdoor or process
    Metric(14, "temperature_c", "°C", MetricKind.GAUGE, "Temperature (outdoor or process)"),
)

METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
METRICS_BY_ID: dict[int, Metric] = {m.id: m for m in METRICS}


def metric(name: str) -> Metric:
    """Look a metric up by name; the error lists the known names."""
    try:
        return METRICS_BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(METRICS_BY_NAME))
        raise KeyError(f"unknown metric {name!r}; known metrics: {known}") from None
