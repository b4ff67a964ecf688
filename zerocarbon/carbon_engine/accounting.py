"""Hourly accounting rows: what the carbon engine hands to storage.

:class:`HourlyCarbon` has exactly the columns of table ``hourly_carbon`` and
:class:`HourlyEnergy` those of ``hourly_energy`` (device and metric by name; storage
maps them to its small integer keys), both without ``computed_at`` (the database's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zerocarbon.carbon_engine.factors import GridFactors
from zerocarbon.carbon_engine.kernels import balance_hours

__all__ = ["HourlyCarbon", "HourlyEnergy", "account_hours", "hour_start_utc"]


def hour_start_utc(hour_start_s: int) -> datetime:
    """The aware UTC datetime of an hour start given in POSIX seconds [s]."""
    return datetime.fromtimestamp(hour_start_s, UTC)


@dataclass(frozen=True, slots=True)
class HourlyEnergy:
    """One counter's increase in one hour: a row of ``hourly_energy``."""

    hour_start: datetime  # aware UTC, on the hour
    device: str  # device id of the site config
    metric: str  # metric name (zerocarbon.metering.metrics)
    delta: float  # counter increase in the metric's unit
    resets: int  # counter resets seen in the hour


@dataclass(frozen=True, slots=True)
class HourlyCarbon:
    """The site's energy balance and Scope 2 emissions of one hour: a row of ``hourly_carbon``."""

    hour_start: datetime  # aware UTC, on the hour
    grid_import_kwh: float
    grid_export_kwh: float
    pv_kwh: float
    battery_charge_kwh: float
    battery_discharge_kwh: float
    load_kwh: float  # import - export + pv + discharge - charge
    production_units: float
    scope2_location_kg: float  # import x location factor [kg CO2]
    scope2_market_kg: float  # import x residual-mix factor [kg CO2]
    location_factor_kg_per_kwh: float
    market_factor_kg_per_kwh: float
    intensity_kg_per_kwh: float | None  # location-based kg per kWh of load; None if load <= 0
    cfe_share: float | None  # on-site carbon-free share of load, 0..1; None if load <= 0


def _column(name: str, values: ArrayLike, n: int) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} hourly values, got shape {arr.shape}")
    return arr


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def account_hours(
    hour_starts_s: Sequence[int],
    *,
    grid_import_kwh: ArrayLike,
    grid_export_kwh: ArrayLike,
    pv_kwh: ArrayLike,
    battery_charge_kwh: ArrayLike,
    battery_discharge_kwh: ArrayLike,
    production_units: ArrayLike,
    factors: GridFactors,
) -> list[HourlyCarbon]:
    """Balance each hour and apply the grid factors; one :class:`HourlyCarbon` an hour.

    Calls :func:`~zerocarbon.carbon_engine.kernels.balance_hours` (definitions and
    references there) with the site's constant factors; NaN results become None.

    Parameters
    ----------
    hour_starts_s : sequence of int, length n
        Hour starts, POSIX time, multiples of 3600 [s].
    grid_import_kwh, grid_export_kwh : array_like, shape (n,)
        Grid import / export [kWh].
    pv_kwh : array_like, shape (n,)
        On-site PV generation [kWh].
    battery_charge_kwh, battery_discharge_kwh : array_like, shape (n,)
        Battery charge / discharge [kWh].
    production_units : array_like, shape (n,)
        Units produced [units].
    factors : GridFactors
        Location-based and residual-mix factors [kg CO2/kWh].

    Returns
    -------
    list of HourlyCarbon
        In the order of ``hour_starts_s``.
    """
    n = len(hour_starts_s)
    imp = _column("grid_import_kwh", grid_import_kwh, n)
    exp = _column("grid_export_kwh", grid_export_kwh, n)
    pv = _column("pv_kwh", pv_kwh, n)
    charge = _column("battery_charge_kwh", battery_charge_kwh, n)
    discharge = _column("battery_discharge_kwh", battery_discharge_kwh, n)
    units = _column("production_units", production_units, n)
    loc_f = np.full(n, factors.location_kg_per_kwh, dtype=np.float64)
    mkt_f = np.full(n, factors.market_kg_per_kwh, dtype=np.float64)
    load, loc_kg, mkt_kg, intensity, cfe = balance_hours(
        imp, exp, pv, charge, discharge, loc_f, mkt_f
    )
    columns = zip(
        hour_starts_s,
        imp.tolist(),
        exp.tolist(),
        pv.tolist(),
        charge.tolist(),
        discharge.tolist(),
        load.tolist(),
        units.tolist(),
        loc_kg.tolist(),
        mkt_kg.tolist(),
        intensity.tolist(),
        cfe.tolist(),
        strict=True,
    )
    return [
        HourlyCarbon(
            hour_start=hour_start_utc(h),
            grid_import_kwh=i,
            grid_export_kwh=e,
            pv_kwh=p,
            battery_charge_kwh=c,
            battery_discharge_kwh=d,
            load_kwh=ld,
            production_units=u,
            scope2_location_kg=lk,
            scope2_market_kg=mk,
            location_factor_kg_per_kwh=factors.location_kg_per_kwh,
            market_factor_kg_per_kwh=factors.market_kg_per_kwh,
            intensity_kg_per_kwh=_or_none(it),
            cfe_share=_or_none(cf),
        )
        for h, i, e, p, c, d, ld, u, lk, mk, it, cf in columns
    ]
