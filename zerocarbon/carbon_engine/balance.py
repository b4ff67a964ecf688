"""Hourly site balance: load, Scope 1 and 2, carbon-free energy, battery green stock.

One numba kernel over the hours of a site in time order; its plain-numpy twin is
:func:`zerocarbon.carbon_engine.balance_reference.balance_site_hours`, written
independently, and the tests hold the two (and the kernel's ``py_func``) to each other.

Attribution rules (conservative: never more carbon-free energy than the meters prove)
----------------------------------------------------------------------------------------
Within an hour, with on-site generation ``gen = pv + wind`` and
``load = import - export + gen + discharge - charge``:

1. Exports come from on-site generation first (``gen_export = min(gen, export)``), then
   from battery discharge; grid import is never assumed exported. Exported generation's
   attributes leave the site with it [1]_.
2. What generation has left serves the load (``gen_to_load = min(gen - gen_export,
   max(load, 0))``), then charges the battery: the green part of the charge is
   ``min(charge, gen - gen_export - gen_to_load)``. Charge beyond it came from the grid
   and is counted as not carbon-free, even if a contract covered that import.
3. The battery keeps a stock in metered kWh: ``total`` (charged minus discharged) and its
   ``green`` part. Discharge carries the green fraction ``green / total`` of the stock at
   the start of the hour (0 when the stock is empty or unknown: energy of unknown origin
   counts as not carbon-free); the stock never goes below zero and its green part never
   exceeds it. Round-trip losses are not modelled: they leave both parts in proportion.
4. Carbon-free energy of the hour [2]_:
   ``cfe = gen_to_load + green fraction x discharge_to_load + min(contract, import_to_load)``
   where ``discharge_to_load`` is discharge not exported (capped by the load left after
   generation) and ``import_to_load = load - gen_to_load - discharge_to_load``: contract
   kWh count only up to the grid import that served the load. So ``cfe <= load``; each
   hour stands alone (no surplus carried to another hour); GECs do not count (they are
   not hourly, see :mod:`zerocarbon.carbon_engine.instruments`).
5. Scope 2 location-based = import x location factor; market-based =
   ``max(import - contract - gec, 0)`` x market (residual-mix) factor [1]_. Exports are
   not netted against imports.
6. Intensities are Scope 2 per kWh of load (electricity consumption; Scope 1 fuel is not
   electricity); ``cfe_share``, intensities are NaN where ``load <= 0``.

References
----------
.. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 5 (boundaries: on-site
   generation, energy sold to the grid; no netting of exports) and ch. 6 (calculating
   location- and market-based emissions; residual mix).
.. [2] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021 (hourly CFE
   score: carbon-free supply matched to consumption hour by hour, capped at the hour's
   load; storage credited with the carbon-free energy it was charged with).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["balance_site_hours"]

_F = TypeVar("_F", bound=Callable[..., Any])

_Arr = NDArray[np.float64]


def _kernel(func: _F) -> _F:
    """``numba.njit(cache=True)`` with the function's own type for mypy (numba has none)."""
    return cast(_F, njit(cache=True)(func))


@_kernel
def balance_site_hours(
    grid_import_kwh: _Arr,
    grid_export_kwh: _Arr,
    pv_kwh: _Arr,
    wind_kwh: _Arr,
    battery_charge_kwh: _Arr,
    battery_discharge_kwh: _Arr,
    fuel_scope1_kg: _Arr,
    contract_kwh: _Arr,
    gec_kwh: _Arr,
    location_factor: _Arr,
    market_factor: _Arr,
    green_kwh_stored: float,
    total_kwh_stored: float,
) -> tuple[_Arr, _Arr, _Arr, _Arr, _Arr, _Arr, _Arr, _Arr, float, float]:
    """Balance the site hour by hour: load, Scope 1/2, CFE, intensities, battery stock.

    The rules are in the module docstring.

    Parameters
    ----------
    grid_import_kwh, grid_export_kwh : ndarray of float64, shape (n,)
        Energy from / to the grid in each hour, >= 0 [kWh]. Hours in time order.
    pv_kwh, wind_kwh : ndarray of float64, shape (n,)
        On-site generation [kWh].
    battery_charge_kwh, battery_discharge_kwh : ndarray of float64, shape (n,)
        Energy into / out of the batteries [kWh].
    fuel_scope1_kg : ndarray of float64, shape (n,)
        Scope 1 CO2 of fuel combustion in the hour (see :mod:`.fuels`) [kg CO2].
    contract_kwh, gec_kwh : ndarray of float64, shape (n,)
        Import covered by green-power contracts / certificates (see :mod:`.instruments`),
        each at most the import [kWh].
    location_factor, market_factor : ndarray of float64, shape (n,)
        Grid average and residual-mix factors of each hour [kg CO2/kWh].
    green_kwh_stored, total_kwh_stored : float
        Battery stock before the first hour: its carbon-free part and total [kWh].

    Returns
    -------
    load_kwh : ndarray of float64, shape (n,)
        Site consumption: import - export + pv + wind + discharge - charge [kWh].
    scope1_kg : ndarray of float64, shape (n,)
        Scope 1 CO2 [kg CO2] (the fuel input).
    scope2_location_kg, scope2_market_kg : ndarray of float64, shape (n,)
        Scope 2, location- and market-based, >= 0 [kg CO2].
    cfe_kwh : ndarray of float64, shape (n,)
        Carbon-free energy consumed, in [0, max(load, 0)] [kWh].
    cfe_share : ndarray of float64, shape (n,)
        cfe / load, in [0, 1] [-]; NaN where load <= 0.
    intensity_location_kg_per_kwh, intensity_market_kg_per_kwh : ndarray, shape (n,)
        Scope 2 per kWh of load [kg CO2/kWh]; NaN where load <= 0.
    green_kwh_stored, total_kwh_stored : float
        Battery stock after the last hour [kWh].

    References
    ----------
    .. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 5-6.
    .. [2] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021.
    """
    n = grid_import_kwh.shape[0]
    load_out = np.empty(n, dtype=np.float64)
    s1_out = np.empty(n, dtype=np.float64)
    loc_out = np.empty(n, dtype=np.float64)
    mkt_out = np.empty(n, dtype=np.float64)
    cfe_out = np.empty(n, dtype=np.float64)
    share_out = np.empty(n, dtype=np.float64)
    int_loc_out = np.empty(n, dtype=np.float64)
    int_mkt_out = np.empty(n, dtype=np.float64)
    green = green_kwh_stored if green_kwh_stored > 0.0 else 0.0
    total = total_kwh_stored if total_kwh_stored > 0.0 else 0.0
    if green > total:
        green = total
    for i in range(n):
        imp = grid_import_kwh[i]
        exp = grid_export_kwh[i]
        gen = pv_kwh[i] + wind_kwh[i]
        chg = battery_charge_kwh[i]
        dis = battery_discharge_kwh[i]
        load = imp - exp + gen + dis - chg
        load_out[i] = load
        s1_out[i] = fuel_scope1_kg[i]
        loc_kg = imp * location_factor[i]
        uncovered = imp - contract_kwh[i] - gec_kwh[i]
        if uncovered < 0.0:
            uncovered = 0.0
        mkt_kg = uncovered * market_factor[i]
        loc_out[i] = loc_kg
        mkt_out[i] = mkt_kg

        # 1-2: generation -> export, load, charge
        gen_export = min(gen, exp)
        gen_left = gen - gen_export
        pos_load = load if load > 0.0 else 0.0
        gen_to_load = min(gen_left, pos_load)
        green_charge = min(chg, gen_left - gen_to_load)
        if green_charge < 0.0:
            green_charge = 0.0
        # discharge -> export (what generation did not cover), then load
        dis_export = min(dis, exp - gen_export)
        dis_to_load = min(dis - dis_export, pos_load - gen_to_load)
        if dis_to_load < 0.0:
            dis_to_load = 0.0
        # 3: stock fraction at the start of the hour
        frac = green / total if total > 0.0 else 0.0
        green_dis_to_load = dis_to_load * frac
        # 4: carbon-free energy
        if load > 0.0:
            import_to_load = load - gen_to_load - dis_to_load
            if import_to_load < 0.0:
                import_to_load = 0.0
            cfe = gen_to_load + green_dis_to_load + min(contract_kwh[i], import_to_load)
            if cfe > load:
                cfe = load
            cfe_out[i] = cfe
            share_out[i] = cfe / load
            int_loc_out[i] = loc_kg / load
            int_mkt_out[i] = mkt_kg / load
        else:
            cfe_out[i] = 0.0
            share_out[i] = np.nan
            int_loc_out[i] = np.nan
            int_mkt_out[i] = np.nan
        # stock update
        green = green - dis * frac + green_charge
        total = total - dis + chg
        if total < 0.0:
            total = 0.0
        if green < 0.0:
            green = 0.0
        if green > total:
            green = total
    return (
        load_out,
        s1_out,
        loc_out,
        mkt_out,
        cfe_out,
        share_out,
        int_loc_out,
        int_mkt_out,
        green,
        total,
    )
