"""Which DL/T 645-2007 data identifiers carry which of our metrics.

Device knowledge, beside the Modbus profiles: shared by the site file (which checks a
meter's identifiers), the collector and the simulator, so all three always agree.
Units match: the identifiers' formats (DL/T 645-2007 附录A) are in kWh, kW, V and Hz, as the metrics
are. The sign of ``active_power_kw`` is the meter's: positive is forward (import)
power, which is the grid meter's convention.
"""

from __future__ import annotations

from types import MappingProxyType

DataId = int
"""A data identifier DI3 DI2 DI1 DI0 as one integer, e.g. ``0x02030000``."""

__all__ = [
    "DataId",
    "COMBINED_ACTIVE_ENERGY",
    "DEFAULT_IDENTIFIERS",
    "METRIC_OF_IDENTIFIER",
    "metric_of",
]

FORWARD_ACTIVE_ENERGY: DataId = 0x0001_0000  # 附录A 表A.1, XXXXXX.XX kWh
REVERSE_ACTIVE_ENERGY: DataId = 0x0002_0000  # 附录A 表A.1, XXXXXX.XX kWh
COMBINED_ACTIVE_ENERGY: DataId = 0x0000_0000  # 附录A 表A.1, no metric of its own
PHASE_A_VOLTAGE: DataId = 0x0201_0100  # 附录A 表A.3, XXX.X V
TOTAL_ACTIVE_POWER: DataId = 0x0203_0000  # 附录A 表A.3, XX.XXXX kW, sign bit
GRID_FREQUENCY: DataId = 0x0280_0002  # 附录A 表A.3, XX.XX Hz

METRIC_OF_IDENTIFIER: MappingProxyType[DataId, str] = MappingProxyType(
    {
        FORWARD_ACTIVE_ENERGY: "energy_import_kwh",
        REVERSE_ACTIVE_ENERGY: "energy_export_kwh",
        TOTAL_ACTIVE_POWER: "active_power_kw",
        PHASE_A_VOLTAGE: "voltage_v",
        GRID_FREQUENCY: "frequency_hz",
    }
)

DEFAULT_IDENTIFIERS: tuple[DataId, ...] = tuple(METRIC_OF_IDENTIFIER)
"""What a meter is polled for unless its configuration says otherwise."""


def metric_of(data_id: DataId) -> str:
    """The metric an identifier carries; KeyError names identifiers that carry none."""
    try:
        return METRIC_OF_IDENTIFIER[data_id]
    except KeyError:
        known = ", ".join(f"{d:08X}" for d in METRIC_OF_IDENTIFIER)
        raise KeyError(f"data identifier {data_id:08X} carries no metric; known: {known}") from None
