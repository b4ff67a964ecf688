"""Production lines: energy, output, energy per unit (EnPI) and carbon per unit, by hour.

Pure numpy functions over arrays of hours. A line's energy is the sum of its sub-meters
(devices of role ``load`` whose ``line`` names it), its output the sum of its production
counters (role ``production``), its Scope 1 the sum of its fuel meters (role ``fuel``).

Scope 2 allocation rule: each hour, a line carries the site's Scope 2 (location- and
market-based) in proportion to its share of the site load,
``share = line_energy_kwh / site_load_kwh``. Every kWh consumed on site in an hour thus
carries the same emissions, on-site PV and instruments included (the site's average
intensity of that hour), so the lines' shares add up to the site's figure when the
sub-meters cover the whole load. The share is 0 where the site load is <= 0 (nothing
consumed to share it with; that Scope 2 stays with the site) and is not capped: lines
metering more than the site load show a metering problem (see ``[accounting]
submeter_tolerance_pct``) rather than hide it.

Energy per unit of output is the energy performance indicator (EnPI) of ISO 50006 [1]_;
emissions per unit follow the allocation by physical relationship of the GHG Protocol
Product Standard [2]_. Over a period, ratios are ratios of sums, never means of hourly
ratios (the API's roll-ups compute them so).

References
----------
.. [1] ISO 50006:2014, "Energy management systems — Measuring energy performance using
   energy baselines and energy performance indicators", sec. 4.4 (EnPI as a ratio of
   energy consumption to output).
.. [2] WRI/WBCSD, "GHG Protocol Product Life Cycle Accounting and Reporting Standard",
   2011, ch. 8.3 (allocation based on physical relationships, e.g. energy use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from zerocarbon.config import DeviceRole, SiteConfig

__all__ = [
    "LINE_COLUMNS",
    "LineMembers",
    "line_hours",
    "line_members",
]

_Arr = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LineMembers:
    """The devices of one production line."""

    line_id: str
    meters: tuple[str, ...]  # role "load": sub-meters [kWh]
    counters: tuple[str, ...]  # role "production": output counters [units]
    fuel_meters: tuple[str, ...]  # role "fuel": Scope 1


def line_members(site: SiteConfig) -> list[LineMembers]:
    """Each production line of the site with its sub-meters, counters and fuel meters."""
    out = []
    for line_id in site.line_ids():

        def ids(role: DeviceRole, line: str = line_id) -> tuple[str, ...]:
            return tuple(d.id for d in site.devices if d.line == line and d.role is role)

        out.append(
            LineMembers(
                line_id, ids(DeviceRole.LOAD), ids(DeviceRole.PRODUCTION), ids(DeviceRole.FUEL)
            )
        )
    return out


# Keys of :func:`line_hours` results (per line and hour); the names of HourlyLine's
# columns where it has them.
LINE_COLUMNS = (
    "energy_kwh",  # sum of the line's sub-meters [kWh]
    "production_units",  # sum of the line's output counters [units]
    "kwh_per_unit",  # EnPI [kWh/unit]; NaN where units <= 0
    "load_share",  # line energy / site load [-]; 0 where site load <= 0
    "scope1_kg",  # the line's fuel meters [kg CO2]
    "scope2_location_kg",  # share x site Scope 2 location-based [kg CO2]
    "scope2_market_kg",  # share x site Scope 2 market-based [kg CO2]
    "kg_per_unit_location",  # (scope1 + scope2 location) / units [kg CO2/unit]; NaN: no units
    "kg_per_unit_market",  # (scope1 + scope2 market) / units [kg CO2/unit]; NaN: no units
    "kg_per_unit",  # = kg_per_unit_location (the hourly_line row's column)
)


def _ratio(num: _Arr, den: _Arr) -> _Arr:
    den = np.broadcast_to(den, np.broadcast_shapes(np.shape(num), np.shape(den)))
    safe = np.where(den > 0.0, den, 1.0)
    return np.where(den > 0.0, num / safe, np.nan)


def _per_unit(
    energy: _Arr, units: _Arr, scope1: _Arr, s2_loc: _Arr, s2_mkt: _Arr, share: _Arr | None
) -> dict[str, _Arr]:
    out = {
        "energy_kwh": energy,
        "production_units": units,
        "kwh_per_unit": _ratio(energy, units),
        "scope1_kg": scope1,
        "scope2_location_kg": s2_loc,
        "scope2_market_kg": s2_mkt,
        "kg_per_unit_location": _ratio(scope1 + s2_loc, units),
        "kg_per_unit_market": _ratio(scope1 + s2_mkt, units),
    }
    out["kg_per_unit"] = out["kg_per_unit_location"]
    if share is not None:
        out["load_share"] = share
    return out


def line_hours(
    energy_kwh: _Arr,
    units: _Arr,
    site_load_kwh: _Arr,
    scope2_location_kg: _Arr,
    scope2_market_kg: _Arr,
    scope1_kg: _Arr | None = None,
) -> dict[str, _Arr]:
    """Energy, output, EnPI and emissions of production lines, hour by hour.

    Works on one line (arrays of shape (n,)) or several (shape (n_lines, n)).

    Parameters
    ----------
    energy_kwh : ndarray of float64, shape (n,) or (n_lines, n)
        The line's energy: sum of its sub-meters in each hour [kWh].
    units : ndarray of float64, same shape
        The line's output: sum of its production counters [units].
    site_load_kwh : ndarray of float64, shape (n,)
        Site load of each hour (:func:`.balance.balance_site_hours`) [kWh].
    scope2_location_kg, scope2_market_kg : ndarray of float64, shape (n,)
        The site's Scope 2 of each hour [kg CO2].
    scope1_kg : ndarray of float64, same shape as ``energy_kwh``, optional
        Scope 1 of the line's fuel meters [kg CO2]; default none.

    Returns
    -------
    dict of str to ndarray
        The columns of :data:`LINE_COLUMNS`, each the shape of ``energy_kwh``. The share
        of site load is 0 where the site load is <= 0 (the hour's Scope 2, e.g. grid
        energy charged into the battery, stays with the site, unallocated).

    References
    ----------
    .. [1] ISO 50006:2014, sec. 4.4.
    .. [2] GHG Protocol Product Standard, 2011, ch. 8.3.
    """
    energy = np.asarray(energy_kwh, dtype=np.float64)
    out_units = np.asarray(units, dtype=np.float64)
    if out_units.shape != energy.shape:
        raise ValueError("energy_kwh and units must have the same shape")
    load = np.asarray(site_load_kwh, dtype=np.float64)
    scope1 = np.zeros_like(energy) if scope1_kg is None else np.asarray(scope1_kg, dtype=np.float64)
    share = np.nan_to_num(_ratio(energy, load), nan=0.0)
    s2_loc = share * np.asarray(scope2_location_kg, dtype=np.float64)
    s2_mkt = share * np.asarray(scope2_market_kg, dtype=np.float64)
    return _per_unit(energy, out_units, scope1, s2_loc, s2_mkt, share)
