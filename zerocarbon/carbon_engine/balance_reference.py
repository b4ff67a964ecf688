"""Plain-numpy twin of :func:`zerocarbon.carbon_engine.balance.balance_site_hours`.

Written separately from the kernel (array expressions for everything that does not depend
on the battery stock, a short Python loop for the stock), with the same signature,
rules and results; the tests hold the two to each other. Rules and references: see
:mod:`zerocarbon.carbon_engine.balance`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["balance_site_hours"]

_Arr = NDArray[np.float64]


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
    """Same as :func:`zerocarbon.carbon_engine.balance.balance_site_hours` (numpy only).

    References
    ----------
    .. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 5-6.
    .. [2] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021.
    """
    imp = np.asarray(grid_import_kwh, dtype=np.float64)
    exp = np.asarray(grid_export_kwh, dtype=np.float64)
    gen = np.asarray(pv_kwh, dtype=np.float64) + np.asarray(wind_kwh, dtype=np.float64)
    chg = np.asarray(battery_charge_kwh, dtype=np.float64)
    dis = np.asarray(battery_discharge_kwh, dtype=np.float64)
    contract = np.asarray(contract_kwh, dtype=np.float64)

    load = imp - exp + gen + dis - chg
    served = load > 0.0
    demand = np.where(served, load, 0.0)
    scope2_location = imp * location_factor
    scope2_market = np.clip(imp - contract - gec_kwh, 0.0, None) * market_factor

    # flows of generation and discharge (independent of the stock)
    gen_export = np.minimum(gen, exp)
    gen_to_load = np.minimum(gen - gen_export, demand)
    green_charge = np.clip(np.minimum(chg, gen - gen_export - gen_to_load), 0.0, None)
    dis_export = np.minimum(dis, exp - gen_export)
    dis_to_load = np.clip(np.minimum(dis - dis_export, demand - gen_to_load), 0.0, None)
    import_to_load = np.clip(demand - gen_to_load - dis_to_load, 0.0, None)

    # the battery's green fraction at the start of each hour
    n = imp.shape[0]
    frac = np.zeros(n)
    total = max(float(total_kwh_stored), 0.0)
    green = min(max(float(green_kwh_stored), 0.0), total)
    for i in range(n):
        frac[i] = green / total if total > 0.0 else 0.0
        total = max(total - float(dis[i]) + float(chg[i]), 0.0)
        green = min(max(green - float(dis[i]) * frac[i] + float(green_charge[i]), 0.0), total)

    cfe = gen_to_load + dis_to_load * frac + np.minimum(contract, import_to_load)
    cfe = np.where(served, np.minimum(cfe, demand), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(served, cfe / load, np.nan)
        intensity_location = np.where(served, scope2_location / load, np.nan)
        intensity_market = np.where(served, scope2_market / load, np.nan)
    return (
        load,
        np.asarray(fuel_scope1_kg, dtype=np.float64).copy(),
        scope2_location,
        scope2_market,
        cfe,
        share,
        intensity_location,
        intensity_market,
        green,
        total,
    )
