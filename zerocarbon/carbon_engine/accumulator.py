"""Streaming state of the carbon engine: counter series -> hourly sums.

The kernels are pure; what must survive from one batch of readings to the next lives
here: the last accepted point of each counter series, and the running per-hour sums
of counter increase and resets. Hours are POSIX seconds [s], multiples of 3600.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from zerocarbon.carbon_engine.kernels import HOUR_S, ROLLOVER_WINDOW, counter_deltas, split_by_hour

__all__ = ["CounterAccumulator", "Series"]

Series = tuple[str, str]
"""One counter: (device id from the site config, metric name)."""

_HOUR = int(HOUR_S)


@dataclass(slots=True)
class _LastPoint:
    ts_s: float
    value: float


@dataclass(slots=True)
class _HourSum:
    delta: float = 0.0
    resets: int = 0


class CounterAccumulator:
    """Per-series hourly sums of counter increase, fed batch by batch.

    For each series it keeps the last accepted point ``(ts_s, value)``. A batch is
    sorted by time; each new point is paired with the one before it (the last point of
    the previous batch for the first), :func:`~zerocarbon.carbon_engine.kernels.
    counter_deltas` turns the pairs into increases (resets and rollovers handled
    there), and :func:`~zerocarbon.carbon_engine.kernels.split_by_hour` spreads each
    increase over the UTC hours its interval covers. A reset is counted in the last
    hour its interval touches (where the reading that showed it falls).

    Rules
    -----
    * First reading: the very first point of a series only sets the baseline; no
      increase is known before it.
    * Late and duplicate points: a point not strictly newer than the last accepted one
      (of the series, or earlier in the same batch) is dropped and counted in
      :attr:`late_points`. Re-aggregating the hours a late point touches (from the
      stored readings) is a later issue; until then late data never changes a sum.
    * Non-finite times or values are dropped and counted in :attr:`invalid_points`.
    * Gaps: the increase over a gap is spread uniformly over it, however long
      (estimated, not flagged yet).
    * Pruned hours are closed: after :meth:`prune`, parts of increases that fall
      before the prune horizon (a series back after a long gap) are discarded and
      counted in :attr:`expired_parts`, so that a fresh, partial sum never replaces
      the complete row already stored for such an hour.

    Parameters
    ----------
    rollover_at : mapping of Series to float, optional
        Register wrap value of the series whose counters roll over [counter unit];
        other series never wrap (every decrease is a reset).
    rollover_window : float, default 0.1
        Largest believed wrapped increase, as a fraction of the wrap value [-].
    """

    def __init__(
        self,
        rollover_at: Mapping[Series, float] | None = None,
        rollover_window: float = ROLLOVER_WINDOW,
    ) -> None:
        self._rollover_at: dict[Series, float] = dict(rollover_at or {})
        self._rollover_window = float(rollover_window)
        self._last: dict[Series, _LastPoint] = {}
        self._sums: dict[int, dict[Series, _HourSum]] = {}
        self.late_points = 0  # points dropped as not newer than the last accepted one
        self.invalid_points = 0  # points dropped for a non-finite time or value
        self.resets = 0  # counter resets seen (rollovers are not resets)
        self.accepted_points = 0  # points used, baselines included
        self.expired_parts = 0  # (series, hour) parts discarded: hour before the horizon
        self._horizon_s = -math.inf  # hours starting before this were pruned [s]

    def add(self, series: Series, ts_s: ArrayLike, values: ArrayLike) -> set[int]:
        """Feed a batch of one series' readings; return the hour starts that changed.

        Parameters
        ----------
        series : Series
            (device id, metric name) of the counter.
        ts_s : array_like of float, shape (n,)
            Reading times, POSIX time, any order [s].
        values : array_like of float, shape (n,)
            Counter values [counter unit, e.g. kWh].

        Returns
        -------
        set of int
            Starts of the hours whose sums this batch touched, POSIX time [s]
            (an hour touched with zero increase is included: it now has data).
        """
        ts = np.asarray(ts_s, dtype=np.float64).ravel()
        vals = np.asarray(values, dtype=np.float64).ravel()
        if ts.shape != vals.shape:
            raise ValueError(f"series {series}: {ts.size} timestamps but {vals.size} values")
        finite = np.isfinite(ts) & np.isfinite(vals)
        n_finite = int(np.count_nonzero(finite))
        self.invalid_points += ts.size - n_finite
        if n_finite == 0:
            return set()
        if n_finite < ts.size:
            ts, vals = ts[finite], vals[finite]
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]

        last = self._last.get(series)
        if last is None:  # first reading of the series: baseline only
            last = _LastPoint(float(ts[0]), float(vals[0]))
            self._last[series] = last
            self.accepted_points += 1
            ts, vals = ts[1:], vals[1:]
            if ts.size == 0:
                return set()

        newer = ts > last.ts_s
        newer[1:] &= ts[1:] > ts[:-1]
        n_new = int(np.count_nonzero(newer))
        self.late_points += ts.size - n_new
        if n_new == 0:
            return set()
        t = np.concatenate(([last.ts_s], ts[newer]))
        v = np.concatenate(([last.value], vals[newer]))
        self.accepted_points += n_new

        deltas, resets = counter_deltas(
            v, float(self._rollover_at.get(series, 0.0)), self._rollover_window
        )
        t0, t1 = t[:-1], t[1:]
        first_hour_s = math.floor(t[0] / HOUR_S) * _HOUR
        n_hours = math.ceil((t[-1] - first_hour_s) / HOUR_S)
        energy = split_by_hour(t0, t1, deltas, first_hour_s, n_hours)

        reset_at = resets != 0
        n_resets = int(np.count_nonzero(reset_at))
        reset_counts = np.zeros(n_hours, dtype=np.int64)
        if n_resets:
            self.resets += n_resets
            # the last hour the interval touches: that of the reading showing the reset
            k_last = np.ceil((t1[reset_at] - first_hour_s) / HOUR_S).astype(np.int64) - 1
            reset_counts = np.bincount(k_last, minlength=n_hours)

        changed: set[int] = set()
        per_hour = zip(energy.tolist(), reset_counts.tolist(), strict=True)
        for k, (delta, n_reset) in enumerate(per_hour):
            hour_start_s = first_hour_s + _HOUR * k
            if hour_start_s < self._horizon_s:
                self.expired_parts += 1
                continue
            acc = self._sums.setdefault(hour_start_s, {}).setdefault(series, _HourSum())
            acc.delta += delta
            acc.resets += n_reset
            changed.add(hour_start_s)

        last.ts_s = float(t[-1])
        last.value = float(v[-1])
        return changed

    def restore(
        self,
        series: Series,
        last_ts_s: float,
        last_value: float,
        hourly: Mapping[int, tuple[float, int]],
    ) -> None:
        """Set a series' state from what an earlier run stored, before any new point.

        ``last_ts_s``/``last_value`` become the baseline the next reading is paired
        with; ``hourly`` maps hour starts [s] to the (increase, resets) already
        accounted, so the hours the earlier run left open keep growing instead of
        being restarted from zero.
        """
        if series in self._last:
            raise ValueError(f"series {series} already has data; restore it first")
        self._last[series] = _LastPoint(float(last_ts_s), float(last_value))
        for hour_start_s, (delta, resets) in hourly.items():
            if hour_start_s % _HOUR:
                raise ValueError(f"hour start {hour_start_s} is not a multiple of {_HOUR} s")
            self._sums.setdefault(int(hour_start_s), {})[series] = _HourSum(
                float(delta), int(resets)
            )

    def hourly(self, series: Series, hour_start_s: int) -> tuple[float, int]:
        """Counter increase and resets of one series in one hour.

        Parameters
        ----------
        series : Series
            (device id, metric name).
        hour_start_s : int
            Start of the hour, POSIX time, a multiple of 3600 [s].

        Returns
        -------
        delta : float
            Counter increase in the hour [counter unit].
        resets : int
            Resets counted in the hour.

        Raises
        ------
        KeyError
            If the series has no data covering that hour (not the same as zero).
        """
        try:
            acc = self._sums[hour_start_s][series]
        except KeyError:
            raise KeyError(f"no data for series {series} in hour {hour_start_s}") from None
        return acc.delta, acc.resets

    def hour_sums(self, hour_start_s: int) -> dict[Series, tuple[float, int]]:
        """Every series with data in one hour -> (increase, resets); empty if none."""
        return {s: (a.delta, a.resets) for s, a in self._sums.get(hour_start_s, {}).items()}

    def hours(self) -> list[int]:
        """Starts of the hours holding any sums, ascending, POSIX time [s]."""
        return sorted(self._sums)

    def series(self) -> list[Series]:
        """Every series seen so far (those with only a baseline included)."""
        return sorted(self._last)

    def last_point(self, series: Series) -> tuple[float, float] | None:
        """The last accepted ``(ts_s, value)`` of a series, or None if never seen."""
        last = self._last.get(series)
        return None if last is None else (last.ts_s, last.value)

    def prune(self, before_s: float) -> int:
        """Drop the sums of hours starting before ``before_s`` [s]; return how many hours.

        The last point of each series is kept, so the next batch still continues from
        it; a later increase falling into a pruned hour is discarded (see the class
        notes). The horizon only moves forward.
        """
        self._horizon_s = max(self._horizon_s, before_s)
        old = [h for h in self._sums if h < before_s]
        for h in old:
            del self._sums[h]
        return len(old)
