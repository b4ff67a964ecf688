"""Hourly channel energy -> the site's balance, emissions and per-line rows.

:class:`SiteAccounting` holds what the site file says about money-free carbon
accounting: grid factors (annual MEE, or an hourly series), fuels (GB/T 32150),
green-power contracts and certificates. :meth:`SiteAccounting.site_hours` takes the
engine's per-channel hourly sums of a run of held hours and computes, for all of them
at once, the balance (:func:`~zerocarbon.carbon_engine.balance.balance_site_hours`),
instrument allocations (:func:`~zerocarbon.carbon_engine.instruments.
allocate_instruments`) and line figures (:mod:`zerocarbon.carbon_engine.lines`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from zerocarbon.carbon_engine import balance, lines
from zerocarbon.carbon_engine.factors import (
    HourlyFactorSource,
    hourly_factor_source,
    resolve_grid_factors,
)
from zerocarbon.carbon_engine.fuels import fuel_factor
from zerocarbon.carbon_engine.instruments import allocate_instruments, load_contract_volumes
from zerocarbon.carbon_engine.series_model import Flow, SeriesModel
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.rows import HourlyCarbon, HourlyLine, sql_columns

__all__ = ["SiteAccounting", "SiteHours"]

HOUR_S = 3600


def _converters(row_type: type) -> list[tuple[str, Callable[[float], Any]]]:
    """(field, converter from a float column value) of every field after hour_start."""

    def optional(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    out: list[tuple[str, Callable[[float], Any]]] = []
    for name, sql_type, nullable in sql_columns(row_type)[1:]:
        if nullable:
            out.append((name, optional))
        elif sql_type == "integer":
            out.append((name, lambda x: int(x)))
        elif sql_type == "boolean":
            out.append((name, lambda x: bool(x)))
        elif sql_type == "text":
            out.append((name, str))
        else:
            out.append((name, float))
    return out


_CARBON_FIELDS = _converters(HourlyCarbon)
_LINE_FIELDS = [(n, f) for n, f in _converters(HourlyLine) if n != "line"]


class SiteHours:
    """Every figure of a run of hours (column j = hour j), keyed by the row types'
    field names, and the rows built from them."""

    def __init__(
        self,
        columns: dict[str, NDArray[np.float64]],
        line_columns: dict[str, dict[str, NDArray[np.float64]]],
    ) -> None:
        self.columns = columns
        self.lines = line_columns

    def carbon_row(self, j: int, when: datetime) -> HourlyCarbon:
        c = self.columns
        return HourlyCarbon(when, *(conv(c[name][j]) for name, conv in _CARBON_FIELDS))

    def line_rows(self, j: int, when: datetime) -> list[HourlyLine]:
        return [
            HourlyLine(when, line, *(conv(c[name][j]) for name, conv in _LINE_FIELDS))
            for line, c in self.lines.items()
        ]


class SiteAccounting:
    """Factors, fuels and instruments of one site, applied to hourly channel sums."""

    def __init__(
        self,
        site: SiteConfig,
        model: SeriesModel,
        *,
        factor_source: HourlyFactorSource | None = None,
    ) -> None:
        self.site = site
        self.model = model
        self.zone = ZoneInfo(site.site.timezone)
        self.grid = resolve_grid_factors(site)
        self.factor_source = factor_source or hourly_factor_source(site, self.grid)
        self.contracts = load_contract_volumes(site)
        self.certificates = list(site.certificates)
        chans = model.channels
        devices = {d.id: d for d in site.devices}
        self.flow_masks = {f: model.flow_mask(f) for f in Flow}
        # kg CO2 per unit of each fuel channel's quantity
        self.fuel_kg_per_unit = np.zeros(len(chans), np.float64)
        for i, ch in enumerate(chans):
            if ch.flow is Flow.FUEL:
                fuel = devices[ch.device].fuel
                assert fuel is not None
                self.fuel_kg_per_unit[i] = fuel_factor(site, fuel, ch.metric)

        # top-level sub-meters (no parent) make up "submetered"
        def top_level(device: str) -> bool:
            parent = devices[device].parent
            return parent is None or devices[parent].role is DeviceRole.GRID

        self.top_load = np.array(
            [c.flow is Flow.LOAD and top_level(c.device) for c in chans], np.bool_
        )
        # main meter channel -> its sub-meters' channels
        self.children: list[tuple[int, list[int]]] = []
        for i, ch in enumerate(chans):
            if devices[ch.device].role is DeviceRole.GRID:
                continue  # sub-meters of the grid connection are checked against load
            kids = [
                k
                for k, other in enumerate(chans)
                if devices[other.device].parent == ch.device and other.metric == ch.metric
            ]
            if kids:
                self.children.append((i, kids))
        self.energy_flows = np.array(
            [c.flow is not None and c.flow not in (Flow.PRODUCTION, Flow.FUEL) for c in chans],
            np.bool_,
        )
        self.device_of_channel = [c.device for c in chans]

        def mask(flow: Flow, members: tuple[str, ...]) -> NDArray[np.bool_]:
            return np.array([c.flow is flow and c.device in members for c in chans], np.bool_)

        # per line: its sub-meters', output counters' and fuel meters' channels
        self.line_masks = {
            m.line_id: (
                mask(Flow.LOAD, m.meters),
                mask(Flow.PRODUCTION, m.counters),
                mask(Flow.FUEL, m.fuel_meters),
            )
            for m in lines.line_members(site)
        }

    @property
    def monthly_instruments(self) -> bool:
        """Whether allocations spread over whole months (monthly contracts, certificates)."""
        return bool(self.certificates) or any(not c.is_hourly for c in self.contracts)

    def months_touched(
        self, held: NDArray[np.int64], wanted: NDArray[np.int64]
    ) -> NDArray[np.bool_]:
        """Held hours in the same site-local months as ``wanted`` hours, when the site
        has monthly instruments (their allocation spreads over the month)."""
        if not self.monthly_instruments:
            return np.zeros(held.shape, np.bool_)
        month_of = self._months(held)
        wanted_months = set(self._months(wanted).tolist())
        return np.isin(month_of, list(wanted_months))

    def _months(self, hours: NDArray[np.int64]) -> NDArray[np.int64]:
        out = np.empty(hours.shape, np.int64)
        for i, h in enumerate(hours.tolist()):
            local = datetime.fromtimestamp(h * HOUR_S, UTC).astimezone(self.zone)
            out[i] = local.year * 12 + local.month - 1
        return out

    def site_hours(
        self,
        hours: NDArray[np.int64],
        energy: NDArray[np.float64],
        estimated: NDArray[np.float64],
        covered: NDArray[np.bool_],
    ) -> SiteHours:
        """Figures of ``hours`` (POSIX hours, ascending) from channel sums of shape
        (n_channels, n_hours) [channel unit]."""
        fm = self.flow_masks

        def flow(f: Flow) -> NDArray[np.float64]:
            return np.asarray(energy[fm[f]].sum(axis=0), dtype=np.float64)

        hour_s = hours * HOUR_S
        imp = flow(Flow.GRID_IMPORT)
        exp = flow(Flow.GRID_EXPORT)
        pv = flow(Flow.PV)
        wind = flow(Flow.WIND)
        charge = flow(Flow.BATTERY_CHARGE)
        discharge = flow(Flow.BATTERY_DISCHARGE)
        scope1_by_channel = energy * self.fuel_kg_per_unit[:, None]
        scope1 = scope1_by_channel.sum(axis=0)
        loc_f, mkt_f, _from_series = self.factor_source.factors_for(hour_s)
        alloc = allocate_instruments(
            hour_s,
            imp,
            self.contracts,
            self.certificates,
            self.zone,
            by_coverage=True,
        )
        res = balance.balance_site_hours(
            imp,
            exp,
            pv,
            wind,
            charge,
            discharge,
            scope1,
            alloc.contract_kwh,
            alloc.gec_kwh,
            loc_f,
            mkt_f,
            0.0,
            0.0,
        )
        (load, scope1_kg, loc_kg, mkt_kg, cfe_kwh, cfe_share, int_loc, int_mkt) = res[:8]
        metered = np.abs(energy[self.energy_flows]).sum(axis=0)
        est = np.abs(estimated[self.energy_flows]).sum(axis=0)
        est_share = np.divide(est, metered, out=np.zeros_like(est), where=metered > 0)
        # devices that have channels but have not covered the hour
        missing = np.zeros(hours.shape, np.int64)
        by_device: dict[str, NDArray[np.bool_]] = {}
        for c, dev in enumerate(self.device_of_channel):
            prev = by_device.get(dev)
            by_device[dev] = covered[c] if prev is None else prev & covered[c]
        for ok in by_device.values():
            missing += ~ok
        mismatches = np.zeros(hours.shape, np.int64)
        tol = self.site.accounting.submeter_tolerance_pct / 100.0
        submetered = energy[self.top_load].sum(axis=0)
        mismatches += submetered > (1.0 + tol) * np.maximum(load, 0.0) + 1e-9
        for parent, kids in self.children:
            diff = np.abs(energy[kids].sum(axis=0) - energy[parent])
            mismatches += (diff > tol * np.abs(energy[parent])) & covered[parent]
        columns: dict[str, NDArray[np.float64]] = {
            "grid_import_kwh": imp,
            "grid_export_kwh": exp,
            "pv_kwh": pv,
            "wind_kwh": wind,
            "battery_charge_kwh": charge,
            "battery_discharge_kwh": discharge,
            "load_kwh": load,
            "submetered_kwh": submetered,
            "unmetered_kwh": load - submetered,
            "production_units": flow(Flow.PRODUCTION),
            "scope1_kg": scope1_kg,
            "scope2_location_kg": loc_kg,
            "scope2_market_kg": mkt_kg,
            "green_contract_kwh": alloc.contract_kwh,
            "certificate_kwh": alloc.gec_kwh,
            "cfe_kwh": cfe_kwh,
            "location_factor_kg_per_kwh": loc_f,
            "market_factor_kg_per_kwh": mkt_f,
            "intensity_kg_per_kwh": int_loc,
            "market_intensity_kg_per_kwh": int_mkt,
            "cfe_share": cfe_share,
            "estimated_share": est_share,
            "missing_devices": missing.astype(np.float64),
            "submeter_mismatches": mismatches.astype(np.float64),
            "complete": (missing == 0).astype(np.float64),
        }
        line_columns: dict[str, dict[str, NDArray[np.float64]]] = {}
        for ln, (meters, counters, fuel_meters) in self.line_masks.items():
            line_kwh = energy[meters].sum(axis=0)
            lr = lines.line_hours(
                line_kwh,
                energy[counters].sum(axis=0),
                load,
                loc_kg,
                mkt_kg,
                scope1_kg=scope1_by_channel[fuel_meters].sum(axis=0),
            )
            lest = estimated[meters].sum(axis=0)
            lr["estimated_share"] = np.divide(
                lest, line_kwh, out=np.zeros_like(lest), where=line_kwh > 0
            )
            line_columns[ln] = lr
        return SiteHours(columns, line_columns)
