"""The carbon engine: readings in, hourly energy and carbon rows out (in memory).

:class:`CarbonEngine` groups counter readings by series, feeds them to a
:class:`~zerocarbon.carbon_engine.accumulator.CounterAccumulator`, and on request maps
the hourly counter increases to the site's energy flows by device role, balances each
hour and applies the grid factors. It holds no database: the caller stores the rows
of the hours :meth:`CarbonEngine.ingest` reports as changed (an upsert per hour).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike

from zerocarbon.carbon_engine.accounting import (
    HourlyCarbon,
    HourlyEnergy,
    account_hours,
    hour_start_utc,
)
from zerocarbon.carbon_engine.accumulator import CounterAccumulator, Series
from zerocarbon.carbon_engine.factors import GridFactors, grid_factors
from zerocarbon.carbon_engine.kernels import HOUR_S, ROLLOVER_WINDOW
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.ingest.reading import Reading
from zerocarbon.metering.metrics import METRICS, MetricKind

__all__ = ["CarbonEngine", "Flow"]

_HOUR = int(HOUR_S)
_GAUGE = -1  # series code of a gauge of a known device: ignored in v1
_UNKNOWN = -2  # series code of a device or metric the site does not have


class Flow(Enum):
    """A site-level quantity of :class:`HourlyCarbon`, filled from counters by role."""

    GRID_IMPORT = "grid_import_kwh"
    GRID_EXPORT = "grid_export_kwh"
    PV = "pv_kwh"
    BATTERY_CHARGE = "battery_charge_kwh"
    BATTERY_DISCHARGE = "battery_discharge_kwh"
    PRODUCTION = "production_units"


# (device role, counter metric) -> the flow it adds to; anything else is per-device only
_FLOW_OF_ROLE_METRIC: dict[tuple[DeviceRole, str], Flow] = {
    (DeviceRole.GRID, "energy_import_kwh"): Flow.GRID_IMPORT,
    (DeviceRole.GRID, "energy_export_kwh"): Flow.GRID_EXPORT,
    (DeviceRole.PV, "energy_generated_kwh"): Flow.PV,
    (DeviceRole.BATTERY, "energy_charged_kwh"): Flow.BATTERY_CHARGE,
    (DeviceRole.BATTERY, "energy_discharged_kwh"): Flow.BATTERY_DISCHARGE,
    (DeviceRole.PRODUCTION, "production_count_units"): Flow.PRODUCTION,
}


class CarbonEngine:
    """Hourly energy and Scope 2 carbon of one site, computed from counter readings.

    Counters (metric kind ``counter``) of the site's devices are accumulated per
    ``(device, metric)``; gauges are ignored in v1 (power-only devices are not
    integrated yet). Roles map counters to the site's flows: the grid device's
    ``energy_import_kwh`` / ``energy_export_kwh``; every PV device's
    ``energy_generated_kwh``; every battery's ``energy_charged_kwh`` /
    ``energy_discharged_kwh``; every production counter's ``production_count_units``.
    Load sub-meters appear only in the per-device :class:`HourlyEnergy` rows.

    An hour gets a :class:`HourlyCarbon` row only when the grid meter's import counter
    has data in it; any other flow without data in that hour counts as 0 until its data
    arrive (its next reading spreads its increase back over the hours since its last
    one, and :meth:`ingest` reports those hours again).

    Parameters
    ----------
    site : SiteConfig
        The site: devices with roles, and the grid region and data year for factors.
    rollover_at : mapping of Series to float, optional
        Register wrap value of counters that roll over [counter unit].
    rollover_window : float, default 0.1
        Largest believed wrapped increase, as a fraction of the wrap value [-].

    Attributes
    ----------
    factors : GridFactors
        The site's location-based and residual-mix factors [kg CO2/kWh].
    unknown_readings : int
        Readings dropped because the site has no such device or metric.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        rollover_at: Mapping[Series, float] | None = None,
        rollover_window: float = ROLLOVER_WINDOW,
    ) -> None:
        self.site = site
        g = site.grid
        self.factors: GridFactors = grid_factors(
            g.region, g.data_year, g.location_factor_kg_per_kwh, g.market_factor_kg_per_kwh
        )
        self._acc = CounterAccumulator(rollover_at, rollover_window)
        self._grid_import: Series = (
            site.devices_with_role(DeviceRole.GRID)[0].id,
            "energy_import_kwh",
        )
        self._series: list[Series] = []
        self._code: dict[Series, int] = {}
        self._flow_of: dict[Series, Flow] = {}
        for device in site.devices:
            for m in METRICS:
                key = (device.id, m.name)
                if m.kind is MetricKind.COUNTER:
                    self._code[key] = len(self._series)
                    self._series.append(key)
                    flow = _FLOW_OF_ROLE_METRIC.get((device.role, m.name))
                    if flow is not None:
                        self._flow_of[key] = flow
                else:
                    self._code[key] = _GAUGE
        self.unknown_readings = 0

    @property
    def late_points(self) -> int:
        """Counter points dropped as not newer than their series' last point."""
        return self._acc.late_points

    @property
    def resets(self) -> int:
        """Counter resets seen so far (rollovers are not resets)."""
        return self._acc.resets

    @property
    def invalid_points(self) -> int:
        """Counter points dropped for a non-finite time or value."""
        return self._acc.invalid_points

    @property
    def expired_parts(self) -> int:
        """Hourly parts discarded because their hour was already pruned."""
        return self._acc.expired_parts

    def ingest(self, readings: Sequence[Reading]) -> set[int]:
        """Take a batch of readings; return the hour starts whose results changed.

        Counter readings are grouped by series into arrays (generator passes over the
        batch to pull out series code, time and value; the grouping itself in numpy)
        and fed to the accumulator, one call per series; gauges are skipped;
        readings of devices or metrics the site does not have are counted in
        :attr:`unknown_readings`.

        Parameters
        ----------
        readings : sequence of Reading
            Any order, any mix of devices and metrics; ``ts`` aware UTC.

        Returns
        -------
        set of int
            Starts of the changed hours, POSIX time [s].
        """
        n = len(readings)
        if n == 0:
            return set()
        code_of = self._code
        codes = np.fromiter(
            (code_of.get((r.device, r.metric), _UNKNOWN) for r in readings), np.int64, n
        )
        self.unknown_readings += int(np.count_nonzero(codes == _UNKNOWN))
        picked = np.flatnonzero(codes >= 0)
        if picked.size == 0:
            return set()
        ts_s = np.fromiter((readings[i].ts.timestamp() for i in picked.tolist()), np.float64)
        values = np.fromiter((readings[i].value for i in picked.tolist()), np.float64)
        codes = codes[picked]
        order = np.argsort(codes, kind="stable")
        codes, ts_s, values = codes[order], ts_s[order], values[order]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), codes.size]
        changed: set[int] = set()
        for lo, hi in zip(starts, ends, strict=True):
            series = self._series[int(codes[lo])]
            changed |= self._acc.add(series, ts_s[lo:hi], values[lo:hi])
        return changed

    def ingest_series(
        self, device: str, metric: str, ts_s: ArrayLike, values: ArrayLike
    ) -> set[int]:
        """Take one series' readings as arrays (the columnar path); return changed hours.

        Parameters
        ----------
        device : str
            Device id of the site config.
        metric : str
            Counter metric name.
        ts_s : array_like of float, shape (n,)
            Reading times, POSIX time [s].
        values : array_like of float, shape (n,)
            Counter values [metric unit].

        Returns
        -------
        set of int
            Starts of the changed hours, POSIX time [s].

        Raises
        ------
        KeyError
            If the site has no such device, or the metric is not a counter.
        """
        key = (device, metric)
        if self._code.get(key, _UNKNOWN) < 0:
            raise KeyError(f"{device!r}/{metric!r} is not a counter of a device of this site")
        return self._acc.add(key, ts_s, values)

    def restore(
        self,
        device: str,
        metric: str,
        last_ts_s: float,
        last_value: float,
        hourly: Mapping[int, tuple[float, int]],
    ) -> bool:
        """Continue a counter series from a previous run's stored state (see
        :meth:`CounterAccumulator.restore`). Returns False, doing nothing, when the
        series is not a counter of this site (e.g. a device since removed)."""
        key = (device, metric)
        if self._code.get(key, _UNKNOWN) < 0:
            return False
        self._acc.restore(key, last_ts_s, last_value, hourly)
        return True

    def hours(self) -> list[int]:
        """Starts of the hours holding data, ascending, POSIX time [s]."""
        return self._acc.hours()

    def prune(self, before_s: float) -> int:
        """Forget hours starting before ``before_s`` [s]; return how many."""
        return self._acc.prune(before_s)

    def results(self, hour_starts: Iterable[int]) -> tuple[list[HourlyCarbon], list[HourlyEnergy]]:
        """Hourly carbon and per-device energy rows of the given hours.

        Parameters
        ----------
        hour_starts : iterable of int
            Hour starts, POSIX time, multiples of 3600 [s]; e.g. what :meth:`ingest`
            returned. Hours without data give no rows.

        Returns
        -------
        carbon : list of HourlyCarbon
            One per hour in which the grid import counter has data, ascending.
        energy : list of HourlyEnergy
            One per (hour, device, counter metric) with data, by hour, device, metric.
        """
        hours = sorted({int(h) for h in hour_starts})
        for h in hours:
            if h % _HOUR:
                raise ValueError(f"hour start {h} is not a multiple of {_HOUR} s")
        energy: list[HourlyEnergy] = []
        carbon_hours: list[int] = []
        flows: dict[Flow, list[float]] = {f: [] for f in Flow}
        for h in hours:
            sums = self._acc.hour_sums(h)
            if not sums:
                continue
            when = hour_start_utc(h)
            for (device, metric), (delta, resets) in sorted(sums.items()):
                energy.append(HourlyEnergy(when, device, metric, delta, resets))
            if self._grid_import not in sums:
                continue
            carbon_hours.append(h)
            totals = dict.fromkeys(Flow, 0.0)
            for series, (delta, _resets) in sums.items():
                flow = self._flow_of.get(series)
                if flow is not None:
                    totals[flow] += delta
            for f in Flow:
                flows[f].append(totals[f])
        carbon = account_hours(
            carbon_hours,
            grid_import_kwh=flows[Flow.GRID_IMPORT],
            grid_export_kwh=flows[Flow.GRID_EXPORT],
            pv_kwh=flows[Flow.PV],
            battery_charge_kwh=flows[Flow.BATTERY_CHARGE],
            battery_discharge_kwh=flows[Flow.BATTERY_DISCHARGE],
            production_units=flows[Flow.PRODUCTION],
            factors=self.factors,
        )
        return carbon, energy
