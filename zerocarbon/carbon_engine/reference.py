"""Plain-numpy references of the carbon engine's kernels (no numba).

Same names, signatures and results as :mod:`zerocarbon.carbon_engine.kernels`, written
as whole-array numpy expressions rather than loops, so the two are independent
implementations of one definition; the tests hold them to each other. See the kernels
for the definitions, units and references; only how each is computed is noted here.
Results agree to rounding, not bit for bit (``split_by_hour`` sums in another order).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zerocarbon.carbon_engine.kernels import HOUR_S, ROLLOVER_WINDOW

__all__ = ["balance_hours", "counter_deltas", "integrate_power", "split_by_hour"]

_FloatArray = NDArray[np.float64]


def counter_deltas(
    values: _FloatArray,
    rollover_at: float = 0.0,
    rollover_window: float = ROLLOVER_WINDOW,
) -> tuple[_FloatArray, NDArray[np.int8]]:
    """Increase of a cumulative counter between consecutive readings (numpy reference).

    See :func:`zerocarbon.carbon_engine.kernels.counter_deltas`: a decrease is a
    rollover when ``rollover_at > 0`` and ``rollover_at - prev + new`` lies in
    ``[0, rollover_window * rollover_at]``, else a reset counted from 0.

    Parameters
    ----------
    values : ndarray of float64, shape (n,)
        Counter readings in time order [counter unit].
    rollover_at : float, default 0.0
        Register wrap value; ``<= 0``: never wraps [counter unit].
    rollover_window : float, default 0.1
        Largest believed wrapped increase, as a fraction of ``rollover_at`` [-].

    Returns
    -------
    deltas : ndarray of float64, shape (max(n - 1, 0),)
        Counter increase of each interval [counter unit].
    resets : ndarray of int8, shape (max(n - 1, 0),)
        1 where the interval contains a reset.
    """
    v = np.asarray(values, dtype=np.float64)
    prev = v[:-1]
    new = v[1:]
    down = new < prev
    wrapped = rollover_at - prev + new
    believable = (wrapped >= 0.0) & (wrapped <= rollover_window * rollover_at)
    rolled = down & (rollover_at > 0.0) & believable
    reset = down & ~rolled
    deltas = np.where(reset, np.maximum(new, 0.0), np.where(rolled, wrapped, new - prev))
    return deltas.astype(np.float64), reset.astype(np.int8)


def split_by_hour(
    t0_s: _FloatArray,
    t1_s: _FloatArray,
    amount: _FloatArray,
    first_hour_s: int,
    n_hours: int,
) -> _FloatArray:
    """Spread each interval's amount uniformly over the UTC hours it covers (numpy reference).

    See :func:`zerocarbon.carbon_engine.kernels.split_by_hour`. Computed without a loop:
    intervals within one hour go to their hour with ``bincount``; a longer interval
    adds its head to its first hour, its tail to its last hour and ``rate x 3600`` to
    each hour in between, through a difference array and a cumulative sum.

    Parameters
    ----------
    t0_s, t1_s : ndarray of float64, shape (n,)
        Interval starts and ends, POSIX time [s].
    amount : ndarray of float64, shape (n,)
        Quantity carried by each interval [any unit].
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
        If an interval ends before it starts (or is NaN) or falls outside the range.
    """
    t0 = np.asarray(t0_s, dtype=np.float64)
    t1 = np.asarray(t1_s, dtype=np.float64)
    a = np.asarray(amount, dtype=np.float64)
    out = np.zeros(n_hours, dtype=np.float64)
    if t0.size == 0:
        return out
    if not np.all(t1 >= t0):
        raise ValueError("split_by_hour: an interval ends before it starts (or is NaN)")
    origin = float(first_hour_s)
    k0 = np.floor((t0 - origin) / HOUR_S).astype(np.int64)
    k1 = np.where(t1 > t0, np.ceil((t1 - origin) / HOUR_S).astype(np.int64) - 1, k0)
    if k0.min() < 0 or k1.max() >= n_hours:
        raise ValueError("split_by_hour: an interval falls outside the hour range")

    single = k0 == k1
    out += np.bincount(k0[single], weights=a[single], minlength=n_hours)

    multi = ~single
    if np.any(multi):
        m0, m1 = k0[multi], k1[multi]
        rate = a[multi] / (t1[multi] - t0[multi])
        head = rate * (origin + HOUR_S * (m0 + 1) - t0[multi])
        tail = rate * (t1[multi] - (origin + HOUR_S * m1))
        out += np.bincount(m0, weights=head, minlength=n_hours)
        out += np.bincount(m1, weights=tail, minlength=n_hours)
        steps = np.bincount(m0 + 1, weights=rate, minlength=n_hours + 1)
        steps -= np.bincount(m1, weights=rate, minlength=n_hours + 1)
        out += np.cumsum(steps)[:n_hours] * HOUR_S
    return out


def integrate_power(ts_s: _FloatArray, power_kw: _FloatArray) -> _FloatArray:
    """Energy of each interval between power samples, trapezoid rule (numpy reference).

    Parameters
    ----------
    ts_s : ndarray of float64, shape (n,)
        Sample times, POSIX time [s].
    power_kw : ndarray of float64, shape (n,)
        Active power at those times [kW].

    Returns
    -------
    energy_kwh : ndarray of float64, shape (max(n - 1, 0),)
        Energy of each interval [kWh].
    """
    t = np.asarray(ts_s, dtype=np.float64)
    p = np.asarray(power_kw, dtype=np.float64)
    energy: _FloatArray = 0.5 * (p[:-1] + p[1:]) * np.diff(t) / HOUR_S
    return energy


def balance_hours(
    grid_import_kwh: _FloatArray,
    grid_export_kwh: _FloatArray,
    pv_kwh: _FloatArray,
    battery_charge_kwh: _FloatArray,
    battery_discharge_kwh: _FloatArray,
    location_factor: _FloatArray,
    market_factor: _FloatArray,
) -> tuple[_FloatArray, _FloatArray, _FloatArray, _FloatArray, _FloatArray]:
    """Site energy balance, Scope 2, intensity and CFE share per hour (numpy reference).

    See :func:`zerocarbon.carbon_engine.kernels.balance_hours`.

    Parameters
    ----------
    grid_import_kwh, grid_export_kwh : ndarray of float64, shape (n,)
        Grid import / export per hour [kWh].
    pv_kwh : ndarray of float64, shape (n,)
        On-site PV generation [kWh].
    battery_charge_kwh, battery_discharge_kwh : ndarray of float64, shape (n,)
        Battery charge / discharge [kWh].
    location_factor, market_factor : ndarray of float64, shape (n,)
        Location-based and residual-mix factors [kg CO2/kWh].

    Returns
    -------
    load_kwh, scope2_location_kg, scope2_market_kg, intensity_kg_per_kwh, cfe_share
        As the kernel: [kWh], [kg CO2], [kg CO2], [kg CO2/kWh], [-].
    """
    imp = np.asarray(grid_import_kwh, dtype=np.float64)
    exp = np.asarray(grid_export_kwh, dtype=np.float64)
    pv = np.asarray(pv_kwh, dtype=np.float64)
    load = imp - exp + pv + np.asarray(battery_discharge_kwh) - np.asarray(battery_charge_kwh)
    loc_kg = imp * np.asarray(location_factor, dtype=np.float64)
    mkt_kg = imp * np.asarray(market_factor, dtype=np.float64)
    positive = load > 0.0
    safe_load = np.where(positive, load, 1.0)
    intensity = np.where(positive, loc_kg / safe_load, np.nan)
    onsite = np.clip(pv - exp, 0.0, None)
    cfe = np.where(positive, np.minimum(onsite, safe_load) / safe_load, np.nan)
    return (
        load.astype(np.float64),
        loc_kg.astype(np.float64),
        mkt_kg.astype(np.float64),
        intensity.astype(np.float64),
        cfe.astype(np.float64),
    )
