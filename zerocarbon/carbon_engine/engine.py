"""The carbon engine: reading batches in, hourly rows out. Pure: no database, no network.

:class:`CarbonEngine` keeps the streaming state of one site (per series: last point,
held candidate, since when its counter stands still; per energy channel and hour:
energy, estimated part, events) in numpy arrays sized by the site and by the ring of
hours, and feeds each batch to the compiled kernel
:func:`~zerocarbon.carbon_engine.stream.stream_readings` in one pass.
The ring spans the accepted time window (``site.ingest.accept_past_h``), so no input
makes the state grow beyond it.

Late readings (older than their series' last point) are handed back by
:meth:`CarbonEngine.ingest`; the caller, which owns storage, fetches the stored
readings around them and calls :meth:`CarbonEngine.recompute`, which rebuilds the
hours they touch from scratch: recomputing is idempotent.

:meth:`CarbonEngine.results` turns hours into rows (:mod:`zerocarbon.rows`): energy
per channel, the site's balance and emissions, and per production line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine import stream as st
from zerocarbon.carbon_engine.accounting import SiteAccounting
from zerocarbon.carbon_engine.series_model import SeriesModel
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

__all__ = ["CarbonEngine", "EngineStats", "HourlyResults", "IngestResult"]

HOUR_S = 3600
MONTH_MAX_H = 31 * 24  # hours of the longest calendar month

# HourlyEnergy's event-count columns and the kernel's event codes they hold
_EVENT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("resets", st.EV_RESET),
    ("rollovers", st.EV_ROLLOVER),
    ("backsteps", st.EV_BACKSTEP),
    ("replacements", st.EV_REPLACED),
    ("rejected", st.EV_REJECTED),
    ("gaps", st.EV_GAP),
    ("late", st.EV_LATE),
    ("duplicates", st.EV_DUPLICATE),
)
_ALL_HOURS = (-(2**62), 2**62)


@dataclass(slots=True)
class EngineStats:
    readings: int = 0  # readings fed
    used: int = 0  # readings that moved a series on (baselines included)
    late: int = 0  # readings older than their series' last point
    expired: int = 0  # hourly parts dropped: their hour had left the ring
    recomputed_hours: int = 0


@dataclass(frozen=True, slots=True)
class IngestResult:
    changed_hours_s: list[int]  # hour starts whose rows changed [POSIX s]
    late: ReadingBatch  # readings to recompute from storage (see CarbonEngine.recompute)


@dataclass(frozen=True, slots=True)
class HourlyResults:
    carbon: list[HourlyCarbon] = field(default_factory=list)
    energy: list[HourlyEnergy] = field(default_factory=list)
    lines: list[HourlyLine] = field(default_factory=list)


def _hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


class CarbonEngine:
    """Hourly energy and carbon of one site.

    Parameters
    ----------
    site : SiteConfig
        Devices with roles, lines, fuels, factors, instruments, accepted window.
    registry : SeriesRegistry
        The series ids batches carry (shared with the collectors and the writer).
    accounting : SiteAccounting, optional
        Factors and instruments; built from ``site`` when not given.
    n_slots : int, optional
        Hours held in memory; default: the accepted window plus two hours (plus the
        longest month when the site has monthly instruments).
    kernel : callable, optional
        The streaming kernel; default the compiled
        :func:`~zerocarbon.carbon_engine.stream.stream_readings` (its numpy reference
        :func:`~zerocarbon.carbon_engine.stream_reference.stream_readings` has the same
        signature, for comparisons).
    """

    def __init__(
        self,
        site: SiteConfig,
        registry: SeriesRegistry,
        *,
        accounting: SiteAccounting | None = None,
        n_slots: int | None = None,
        kernel: Callable[..., tuple[int, int, int]] = st.stream_readings,
    ) -> None:
        self.site = site
        self._kernel = kernel
        self.registry = registry
        self.model = SeriesModel(site, registry)
        self.accounting = accounting if accounting is not None else SiteAccounting(site, self.model)
        # the ring spans the accepted window, and with monthly allocations also the
        # longest month, so a month that accepted data can touch is always held whole
        month_h = MONTH_MAX_H if self.accounting.monthly_instruments else 0
        self.n_slots = n_slots or math.ceil(site.ingest.accept_past_h) + month_h + 2
        n = registry.size
        nc = max(self.model.n_channels, 1)
        self.last_ts = np.full(n, st.NO_TS, np.int64)
        self.last_value = np.zeros(n, np.float64)
        self.cand_ts = np.full(n, st.NO_TS, np.int64)
        self.cand_value = np.zeros(n, np.float64)
        self.last_rate = np.zeros(n, np.float64)
        self.moved_ts = np.full(n, st.NO_TS, np.int64)  # stood still since (see stream)
        self.ring_hour = np.full(self.n_slots, -1, np.int64)
        self.energy = np.zeros((nc, self.n_slots), np.float64)
        self.estimated = np.zeros((nc, self.n_slots), np.float64)
        self.events = np.zeros((nc, self.n_slots, st.N_EVENTS), np.int32)
        self.dirty = np.zeros(self.n_slots, np.bool_)
        # the series that feeds each channel (for "has the device covered the hour")
        self.channel_series = np.full(nc, -1, np.int64)
        m = self.model
        for s in np.flatnonzero(m.kind != st.IGNORED).tolist():
            for c in (int(m.pos_channel[s]), int(m.neg_channel[s])):
                if c >= 0:
                    self.channel_series[c] = s
        self.stats = EngineStats()

    # --- feeding -------------------------------------------------------------------

    def ingest(self, batch: ReadingBatch) -> IngestResult:
        """Feed one batch (arrival order); return the changed hours and late readings.

        Which readings are acceptable at all (time window, value range) is the
        pipeline's admission step; whatever arrives, the work and memory here are
        bounded by the ring.
        """
        n = len(batch)
        self.stats.readings += n
        if n == 0:
            return IngestResult([], ReadingBatch.empty())
        late_idx = np.empty(n, np.int64)
        n_late, n_used, n_expired = self._run(batch, late_idx, *_ALL_HOURS)
        self.stats.used += n_used
        self.stats.late += n_late
        self.stats.expired += n_expired
        return IngestResult(self.take_dirty(), batch.take(late_idx[:n_late]))

    def _run(
        self,
        batch: ReadingBatch,
        late_idx: NDArray[np.int64],
        hour_lo: int,
        hour_hi: int,
        state: tuple[
            NDArray[np.int64],
            NDArray[np.float64],
            NDArray[np.int64],
            NDArray[np.float64],
            NDArray[np.float64],
            NDArray[np.int64],
        ]
        | None = None,
    ) -> tuple[int, int, int]:
        m = self.model
        last_ts, last_value, cand_ts, cand_value, last_rate, moved_ts = state or (
            self.last_ts,
            self.last_value,
            self.cand_ts,
            self.cand_value,
            self.last_rate,
            self.moved_ts,
        )
        result: tuple[int, int, int] = self._kernel(
            batch.series,
            batch.ts_us,
            batch.value,
            m.kind,
            m.pos_channel,
            m.neg_channel,
            m.wrap,
            m.max_rate,
            m.gap_us,
            last_ts,
            last_value,
            cand_ts,
            cand_value,
            last_rate,
            moved_ts,
            self.ring_hour,
            self.energy,
            self.estimated,
            self.events,
            self.dirty,
            late_idx,
            hour_lo,
            hour_hi,
        )
        return result

    def take_dirty(self) -> list[int]:
        """Hour starts [s] changed since the last call, ascending; clears the marks."""
        slots = np.flatnonzero(self.dirty)
        self.dirty[slots] = False
        return sorted(int(h) * HOUR_S for h in self.ring_hour[slots].tolist() if h >= 0)

    def recompute(
        self,
        series_id: int,
        ts_us: NDArray[np.int64],
        values: NDArray[np.float64],
        first_hour_s: int,
        last_hour_s: int,
    ) -> list[int]:
        """Rebuild one series' hours ``[first_hour_s, last_hour_s]`` from its readings.

        ``ts_us``/``values`` must hold every stored reading of the series inside those
        hours plus the last one before and the first one after them (any order,
        duplicates allowed), and should hold the later ones up to the series' newest
        point: a candidate or a stuck counter's catch-up after the hours settles what
        they get (only parts inside the hours are added). The hours' sums and events of
        the series' channels are reset and recomputed with the same rules as streaming;
        the streaming state (last point) is untouched. Idempotent. Returns the changed
        hour starts [s].
        """
        s = int(series_id)
        channels = [c for c in (self.model.pos_channel[s], self.model.neg_channel[s]) if c >= 0]
        if not channels or self.model.kind[s] == st.IGNORED:
            return []
        h_lo, h_hi = first_hour_s // HOUR_S, last_hour_s // HOUR_S
        h_lo = max(h_lo, h_hi - self.n_slots + 1)  # older hours are not held anyway
        for h in range(h_lo, h_hi + 1):
            slot = h % self.n_slots
            if self.ring_hour[slot] != h:
                continue
            for c in channels:
                self.energy[c, slot] = 0.0
                self.estimated[c, slot] = 0.0
                # late and duplicate counts are evidence of what arrived: kept
                kept = self.events[c, slot, [st.EV_LATE, st.EV_DUPLICATE]].copy()
                self.events[c, slot, :] = 0
                self.events[c, slot, [st.EV_LATE, st.EV_DUPLICATE]] = kept
            self.dirty[slot] = True
        order = np.argsort(ts_us, kind="stable")
        t = np.asarray(ts_us, np.int64)[order]
        v = np.asarray(values, np.float64)[order]
        keep = np.ones(t.shape, np.bool_)
        keep[1:] = t[1:] != t[:-1]
        t, v = t[keep], v[keep]
        n = self.registry.size
        state = (
            np.full(n, st.NO_TS, np.int64),
            np.zeros(n, np.float64),
            np.full(n, st.NO_TS, np.int64),
            np.zeros(n, np.float64),
            np.zeros(n, np.float64),
            np.full(n, st.NO_TS, np.int64),
        )
        batch = ReadingBatch.of(np.full(t.shape, s, np.int32), t, v)
        self._run(batch, np.empty(len(batch), np.int64), h_lo, h_hi, state)
        self.stats.recomputed_hours += h_hi - h_lo + 1
        return self.take_dirty()

    def restore_series(
        self,
        series_id: int,
        last_ts_us: int,
        last_value: float,
        moved_ts_us: int | None = None,
    ) -> None:
        """Continue a series from a previous run's newest stored reading.

        ``moved_ts_us`` is when the counter's value last changed (the first stored
        reading of the run of equal values that ends at the newest one) [us]; without
        it the series is taken to have moved at its newest reading, so a catch-up
        after the restart is judged over the still time since the restart only.
        """
        self.last_ts[series_id] = last_ts_us
        self.last_value[series_id] = last_value
        moved = last_ts_us
        if moved_ts_us is not None and moved_ts_us < last_ts_us:
            moved = moved_ts_us
        self.moved_ts[series_id] = moved
        self.last_rate[series_id] = 0.0  # unknown: the still time counts from moved_ts

    def restore_hour(self, row: HourlyEnergy) -> bool:
        """Put back a stored hourly energy row (hours of the ring only); False if the
        channel or hour is not held."""
        c = self.model.channel_of.get((row.device, row.metric))
        hour = int(row.hour_start.timestamp()) // HOUR_S
        if c is None:
            return False
        slot = hour % self.n_slots
        if self.ring_hour[slot] > hour:
            return False
        if self.ring_hour[slot] != hour:
            self.ring_hour[slot] = hour
            self.energy[:, slot] = 0.0
            self.estimated[:, slot] = 0.0
            self.events[:, slot, :] = 0
        self.energy[c, slot] = row.delta
        self.estimated[c, slot] = row.estimated
        ev = self.events[c, slot]
        for column, code in _EVENT_COLUMNS:
            ev[code] = getattr(row, column)
        ev[st.EV_SAMPLES] = max(1, int(ev[st.EV_SAMPLES]))
        return True

    # --- results ---------------------------------------------------------------------

    def hours(self) -> list[int]:
        """Hour starts [s] held in memory, ascending."""
        return sorted(int(h) * HOUR_S for h in self.ring_hour.tolist() if h >= 0)

    def results(self, hour_starts_s: Iterable[int]) -> HourlyResults:
        """Rows of the given hours (those held in memory), oldest first.

        Every held hour of the same site-local months is recomputed with them (monthly
        contract and certificate allocations depend on the whole month), and the
        battery's green stock runs through the held hours in order.
        """
        wanted = sorted({int(h) // HOUR_S for h in hour_starts_s})
        held = np.sort(self.ring_hour[self.ring_hour >= 0])
        if not wanted or held.size == 0:
            return HourlyResults()
        slots = held % self.n_slots
        present = self.events[:, slots, st.EV_SAMPLES] > 0  # (channels, hours)
        energy = self.energy[:, slots]
        estimated = self.estimated[:, slots]
        hour_end_us = (held + 1) * st.HOUR_US
        covered = np.zeros(present.shape, np.bool_)
        for c, s in enumerate(self.channel_series.tolist()):
            if s >= 0:
                covered[c] = self.last_ts[s] >= hour_end_us
        site = self.accounting.site_hours(held, energy, estimated, covered)
        asked = np.isin(held, np.asarray(wanted, np.int64))
        want = asked | self.accounting.months_touched(held, np.asarray(wanted, np.int64))
        out = HourlyResults([], [], [])
        for j in np.flatnonzero(want).tolist():
            hour = int(held[j])
            when = _hour_start(hour)
            slot = int(slots[j])
            if present[:, j].any():
                out.carbon.append(site.carbon_row(j, when))
                out.lines.extend(site.line_rows(j, when))
            if not asked[j]:
                continue  # only the site's allocations changed, not its channels
            for c, ch in enumerate(self.model.channels):
                ev = self.events[c, slot]
                if not present[c, j] and not ev.any():
                    continue
                out.energy.append(
                    HourlyEnergy(
                        hour_start=when,
                        device=ch.device,
                        metric=ch.metric,
                        delta=float(energy[c, j]),
                        estimated=float(estimated[c, j]),
                        complete=bool(covered[c, j]),
                        **{column: int(ev[code]) for column, code in _EVENT_COLUMNS},
                    )
                )
        return out

    def channel_energy(self, device: str, metric: str, hour_start_s: int) -> tuple[float, float]:
        """(energy, estimated part) of one channel in one held hour; KeyError if none."""
        c = self.model.channel_of[(device, metric)]
        hour = hour_start_s // HOUR_S
        slot = hour % self.n_slots
        if self.ring_hour[slot] != hour or self.events[c, slot, st.EV_SAMPLES] == 0:
            raise KeyError(f"no data for {device}/{metric} in hour {_hour_start(hour)}")
        return float(self.energy[c, slot]), float(self.estimated[c, slot])
