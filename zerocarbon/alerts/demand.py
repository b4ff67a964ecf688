"""Demand: the 15-minute average import power the two-part tariff bills on, and where the
running window is heading.

China's two-part tariff (两部制电价) bills capacity either on the transformer capacity or
on the month's *maximum demand* (最大需量): the largest average active power over a
demand interval of 15 minutes, which a demand meter takes as a sliding average
(DL/T 614-2007 "Multifunctional watt-hour meters", demand measurement: sliding window,
15 min interval, 1 min slide). Demand above 105 % of the contracted value (合同最大需量)
is charged at double the rate under the NDRC's 2023 notice on provincial transmission
and distribution tariffs (third regulatory period), so an energy manager wants to know
*before* a window closes.

:class:`DemandMeter` keeps the import power samples of the last interval and gives:

* ``average_kw``: the mean power over the last ``interval_s`` (time-weighted: each
  sample's power held until the next, the way a meter integrates its energy register);
* ``projected_kw``: the average the window ending ``interval_s`` after its start will
  reach if the present power holds: the energy of the window so far plus present power
  times the time left, over the interval. With a 1-minute slide a new window starts
  every minute; the projection is for the window that started ``interval_s - slide_s``
  ago, i.e. the next one to close.

Power in kW, times in POSIX seconds of the injected clock. Export (negative power)
counts as zero import.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEMAND_INTERVAL_S = 900.0  # DL/T 614: 15 min
DEMAND_SLIDE_S = 60.0  # 1 min


@dataclass(frozen=True, slots=True)
class DemandReading:
    ts_s: float
    average_kw: float  # mean import over the last interval (what the meter shows)
    projected_kw: float  # the next window to close, if the present power holds
    covered_s: float  # how much of the interval the samples cover [s]


class DemandMeter:
    """Sliding-window demand of one import meter; feed samples in time order."""

    def __init__(
        self, interval_s: float = DEMAND_INTERVAL_S, slide_s: float = DEMAND_SLIDE_S
    ) -> None:
        if not 0 < slide_s <= interval_s:
            raise ValueError(f"need 0 < slide_s <= interval_s, got {slide_s}, {interval_s}")
        self.interval_s = interval_s
        self.slide_s = slide_s
        self._samples: deque[tuple[float, float]] = deque()  # (ts_s, import_kw)

    def add(self, ts_s: float, power_kw: float) -> DemandReading:
        """Add a sample of active power at the grid connection (+ import, - export)."""
        if self._samples and ts_s <= self._samples[-1][0]:
            raise ValueError(
                f"demand samples must come in time order: {ts_s} after {self._samples[-1][0]}"
            )
        self._samples.append((ts_s, max(power_kw, 0.0)))
        horizon_s = ts_s - self.interval_s
        while len(self._samples) > 1 and self._samples[1][0] <= horizon_s:
            self._samples.popleft()
        return self.reading(ts_s)

    def _energy_kws(self, start_s: float, end_s: float) -> tuple[float, float]:
        """Energy [kW*s] in [start_s, end_s] with each sample held until the next (the
        newest held to end_s), and the seconds covered by samples."""
        energy = covered = 0.0
        samples = list(self._samples)
        for i, (t, p) in enumerate(samples):
            t_next = samples[i + 1][0] if i + 1 < len(samples) else end_s
            lo, hi = max(t, start_s), min(t_next, end_s)
            if hi > lo:
                energy += p * (hi - lo)
                covered += hi - lo
        return energy, covered

    def reading(self, now_s: float) -> DemandReading:
        """The demand at ``now_s`` (the time of the newest sample, or later)."""
        if not self._samples:
            return DemandReading(now_s, 0.0, 0.0, 0.0)
        energy, covered = self._energy_kws(now_s - self.interval_s, now_s)
        average = energy / self.interval_s
        # the window that closes next started interval - slide ago (rounded to the slide)
        window_start = (now_s // self.slide_s) * self.slide_s + self.slide_s - self.interval_s
        so_far, _ = self._energy_kws(window_start, now_s)
        remaining = window_start + self.interval_s - now_s
        present = self._samples[-1][1]
        projected = (so_far + present * remaining) / self.interval_s
        return DemandReading(now_s, average, projected, covered)
