"""Numba kernels of the carbon engine: pure functions over sorted float64 arrays.

Every kernel has a plain-numpy twin with the same signature and results in
:mod:`zerocarbon.carbon_engine.reference`; the tests run both on the same inputs, and
the kernels once more in their undecorated Python form (``kernel.py_func``).

The kernels keep no state: the last counter value of a series, carried from one batch
to the next, lives in :mod:`zerocarbon.carbon_engine.accumulator`. They are compiled on
first call with ``cache=True``; where the cache goes is the user's business
(``NUMBA_CACHE_DIR``), nothing here sets a global.

Time is POSIX seconds [s] (UTC); hour buckets start at multiples of 3600 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = [
    "HOUR_S",
    "ROLLOVER_WINDOW",
    "balance_hours",
    "counter_deltas",
    "integrate_power",
    "split_by_hour",
]

HOUR_S = 3600.0  # length of an accounting hour [s]
ROLLOVER_WINDOW = 0.1  # default: a wrap may add at most this fraction of the register range

_F = TypeVar("_F", bound=Callable[..., Any])


def _kernel(func: _F) -> _F:
    """``numba.njit(cache=True)`` with the function's own type for mypy (numba has none)."""
    return cast(_F, njit(cache=True)(func))


@_kernel
def counter_deltas(
    values: NDArray[np.float64],
    rollover_at: float = 0.0,
    rollover_window: float = ROLLOVER_WINDOW,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Increase of a cumulative counter between consecutive readings.

    For each pair ``(values[i], values[i + 1])`` the increase is ``new - prev``. A
    counter never runs backwards, so a decrease is one of two things:

    * a **rollover** (the register overflowed and restarted at 0): only when
      ``rollover_at > 0`` and the wrapped increase ``rollover_at - prev + new`` lies in
      ``[0, rollover_window * rollover_at]``, i.e. the counter was near the top of its
      range and is now near the bottom, and the step it implies is at most
      ``rollover_window`` of the whole range. The delta is that wrapped increase.
    * otherwise a **reset** (meter replaced or cleared): the counter restarted from 0,
      so the delta is the new value (``max(new, 0)``: never negative energy); the energy
      between the previous reading and the reset instant is unknown and lost. The
      pair is marked in ``resets``.

    Parameters
    ----------
    values : ndarray of float64, shape (n,)
        Counter readings in time order [counter unit, e.g. kWh]. Must be finite.
    rollover_at : float, default 0.0
        Value at which the register wraps to 0, e.g. ``2**32 * scale`` for a uint32
        register read with ``scale`` [counter unit]. ``<= 0``: the register never wraps
        and every decrease is a reset.
    rollover_window : float, default 0.1
        Largest wrapped increase that is believed, as a fraction of ``rollover_at`` [-].

    Returns
    -------
    deltas : ndarray of float64, shape (max(n - 1, 0),)
        Counter increase of each interval, never negative [counter unit].
    resets : ndarray of int8, shape (max(n - 1, 0),)
        1 where the interval contains a reset, else 0 (a rollover is not a reset).

    References
    ----------
    .. [1] Prometheus documentation, "Query functions: increase()": breaks in
       monotonicity (counter resets) are adjusted for by counting from zero.
    .. [2] IETF RFC 2578 (SMIv2), sec. 7.1.6: a Counter32 that reaches its maximum
       value wraps around and starts increasing again from zero.
    """
    n = values.shape[0]
    m = n - 1 if n > 1 else 0
    deltas = np.empty(m, dtype=np.float64)
    resets = np.zeros(m, dtype=np.int8)
    limit = rollover_window * rollover_at
    for i in range(m):
        prev = values[i]
        new = values[i + 1]
        if new >= prev:
            deltas[i] = new - prev
            continue
        wrapped = rollover_at - prev + new
        if rollover_at > 0.0 and 0.0 <= wrapped <= limit:
            deltas[i] = wrapped
        else:
            deltas[i] = new if new > 0.0 else 0.0
            resets[i] = 1
    return deltas, resets


@_kernel
def split_by_hour(
    t0_s: NDArray[np.float64],
    t1_s: NDArray[np.float64],
    amount: NDArray[np.float64],
    first_hour_s: int,
    n_hours: int,
) -> NDArray[np.float64]:
    """Spread each interval's amount uniformly in time over the UTC hours it covers.

    Interval ``i`` is ``[t0_s[i], t1_s[i])`` and carries ``amount[i]`` at a constant
    rate (the counter is interpolated linearly between two readings, i.e. constant
    mean power). The part falling in hour ``k`` (``[first_hour_s + 3600 k,
    first_hour_s + 3600 (k + 1))``) is added to ``out[k]``. A zero-length interval puts
    its whole amount in the hour of ``t0``. The part in the last hour an interval
    touches is computed as the rest of its amount, so each interval's amount is
    conserved exactly up to one rounding.

    Parameters
    ----------
    t0_s, t1_s : ndarray of float64, shape (n,)
        Interval starts and ends, POSIX time [s]; ``t1_s >= t0_s``.
    amount : ndarray of float64, shape (n,)
        Quantity carried by each interval [any unit, e.g. kWh].
    first_hour_s : int
        Start of bucket 0, POSIX time, a multiple of 3600 [s].
    n_hours : int
        Number of hour buckets.

    Returns
    -------
    out : ndarray of float64, shape (n_hours,)
        Sum of the parts falling in each hour [unit of ``amount``].

    Raises
    ------
    ValueError
        If an interval ends before it starts (or a time is NaN), or any part of an
        interval falls outside ``[first_hour_s, first_hour_s + 3600 n_hours)``: that is
        a caller error, nothing is clipped.

    References
    ----------
    .. [1] EnergyTag, "Granular Certificate Scheme Standard" (2022): energy is
       accounted in production and consumption intervals of at most one hour.
    """
    out = np.zeros(n_hours, dtype=np.float64)
    origin = float(first_hour_s)
    for i in range(t0_s.shape[0]):
        t0 = t0_s[i]
        t1 = t1_s[i]
        a = amount[i]
        if not t1 >= t0:
            raise ValueError("split_by_hour: an interval ends before it starts (or is NaN)")
        k0 = int(math.floor((t0 - origin) / HOUR_S))
        if t1 == t0:
            k1 = k0
        else:
            k1 = int(math.ceil((t1 - origin) / HOUR_S)) - 1
        if k0 < 0 or k1 >= n_hours:
            raise ValueError("split_by_hour: an interval falls outside the hour range")
        if k0 == k1:
            out[k0] += a
            continue
        rate = a / (t1 - t0)
        done = 0.0
        start = t0
        for k in range(k0, k1):
            end = origin + HOUR_S * (k + 1)
            part = rate * (end - start)
            out[k] += part
            done += part
            start = end
        out[k1] += a - done
    return out


@_kernel
def integrate_power(
    ts_s: NDArray[np.float64],
    power_kw: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Energy of each interval between power samples, by the trapezoid rule.

    ``energy[i] = (power[i] + power[i + 1]) / 2 * (ts[i + 1] - ts[i]) / 3600``. The
    sign follows the power's sign convention (see :mod:`zerocarbon.metering.metrics`):
    an interval whose power changes sign yields the net energy.

    Parameters
    ----------
    ts_s : ndarray of float64, shape (n,)
        Sample times, POSIX time, non-decreasing [s].
    power_kw : ndarray of float64, shape (n,)
        Active power at those times [kW].

    Returns
    -------
    energy_kwh : ndarray of float64, shape (max(n - 1, 0),)
        Energy of each interval ``[ts[i], ts[i + 1])`` [kWh].

    References
    ----------
    .. [1] W. H. Press et al., "Numerical Recipes", 3rd ed., Cambridge University
       Press, 2007, sec. 4.1 (trapezoidal rule).
    """
    n = ts_s.shape[0]
    m = n - 1 if n > 1 else 0
    energy = np.empty(m, dtype=np.float64)
    for i in range(m):
        energy[i] = 0.5 * (power_kw[i] + power_kw[i + 1]) * (ts_s[i + 1] - ts_s[i]) / HOUR_S
    return energy


@_kernel
def balance_hours(
    grid_import_kwh: NDArray[np.float64],
    grid_export_kwh: NDArray[np.float64],
    pv_kwh: NDArray[np.float64],
    battery_charge_kwh: NDArray[np.float64],
    battery_discharge_kwh: NDArray[np.float64],
    location_factor: NDArray[np.float64],
    market_factor: NDArray[np.float64],
) -> tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    """Site energy balance, Scope 2 emissions, intensity and CFE share, hour by hour.

    * load = import - export + pv + discharge - charge (energy balance at the site's
      point of common coupling; unmetered consumption is in the load).
    * Scope 2 location-based = import x grid-average factor; market-based = import x
      residual-mix factor (no contractual instruments yet) [1]_. Exported energy is
      not netted against imports [1]_.
    * intensity = location-based kg / load kWh: carbon intensity of consumption.
    * cfe_share = hourly-matched on-site carbon-free share of the load:
      ``min(max(pv - export, 0), load) / load``. On-site PV consumed on site in the
      hour is PV minus what was exported (exports are taken from PV first, the
      conservative attribution); battery discharge counts as not carbon-free (what
      charged it is not tracked yet); grid electricity counts as not carbon-free (no
      grid CFE share, no contracts). Each hour stands alone: a surplus in one hour
      never covers another, and the share is capped at 1, as in the hourly CFE score
      of [2]_ and hourly matching of [3]_.

    ``intensity`` and ``cfe_share`` are NaN where load <= 0 (no consumption, or meters
    that do not balance: the load itself is returned unchanged so that shows).

    Parameters
    ----------
    grid_import_kwh, grid_export_kwh : ndarray of float64, shape (n,)
        Energy imported from / exported to the grid in each hour [kWh].
    pv_kwh : ndarray of float64, shape (n,)
        On-site PV generation [kWh].
    battery_charge_kwh, battery_discharge_kwh : ndarray of float64, shape (n,)
        Energy into / out of on-site batteries [kWh].
    location_factor : ndarray of float64, shape (n,)
        Location-based grid emission factor of each hour [kg CO2/kWh].
    market_factor : ndarray of float64, shape (n,)
        Market-based (residual-mix) factor of each hour [kg CO2/kWh].

    Returns
    -------
    load_kwh : ndarray of float64, shape (n,)
        Site consumption [kWh].
    scope2_location_kg, scope2_market_kg : ndarray of float64, shape (n,)
        Scope 2 emissions, location- and market-based [kg CO2].
    intensity_kg_per_kwh : ndarray of float64, shape (n,)
        Location-based emissions per kWh consumed [kg CO2/kWh]; NaN where load <= 0.
    cfe_share : ndarray of float64, shape (n,)
        On-site carbon-free share of the load, in [0, 1] [-]; NaN where load <= 0.

    References
    ----------
    .. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 4 (location- and
       market-based methods), ch. 5 (boundary: on-site generation, grid sales) and
       ch. 6 (calculating emissions; residual mix where no instrument is claimed).
    .. [2] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021 (hourly
       CFE score, capped per hour).
    .. [3] EnergyTag, "Granular Certificate Scheme Standard", 2022 (hourly matching).
    """
    n = grid_import_kwh.shape[0]
    load = np.empty(n, dtype=np.float64)
    loc_kg = np.empty(n, dtype=np.float64)
    mkt_kg = np.empty(n, dtype=np.float64)
    intensity = np.empty(n, dtype=np.float64)
    cfe = np.empty(n, dtype=np.float64)
    for i in range(n):
        imp = grid_import_kwh[i]
        exp = grid_export_kwh[i]
        site_load = imp - exp + pv_kwh[i] + battery_discharge_kwh[i] - battery_charge_kwh[i]
        load[i] = site_load
        loc_kg[i] = imp * location_factor[i]
        mkt_kg[i] = imp * market_factor[i]
        if site_load > 0.0:
            intensity[i] = loc_kg[i] / site_load
            onsite = pv_kwh[i] - exp
            if onsite < 0.0:
                onsite = 0.0
            if onsite > site_load:
                onsite = site_load
            cfe[i] = onsite / site_load
        else:
            intensity[i] = np.nan
            cfe[i] = np.nan
    return load, loc_kg, mkt_kg, intensity, cfe
