"""The alert rules in the running gateway: inputs in, state changes stored and sent.

:class:`AlertService` is the runtime's glue around :class:`~zerocarbon.alerts.rules.RuleSet`:

* as a pipeline sink (:meth:`AlertService.write_batch`) it sees every admitted batch
  as it arrives: the devices it holds are alive (offline rule), the series the live
  rules watch are evaluated (threshold, demand), and the drift rules' relevant
  variables are averaged per hour. It never raises: a failure here must not withhold
  an MQTT acknowledgement;
* the carbon service hands it every hourly row it writes
  (:meth:`AlertService.hourly_written`); an hour is *closed* once readings reach
  ``[alerts] settle_s`` past its end (or at its end when every device covered it), and
  each closed hour is evaluated once, in order (data quality, drift);
* :meth:`AlertService.run` looks at the clock for silent devices, and writes each
  state change (:func:`zerocarbon.storage.alerts.record_change`: the alert, its
  history with the evidence, and the outbox rows of its channels, in one transaction).
  A database that is down delays the writes, which are retried; the changes are kept
  in memory meanwhile, in order.

Continuity across restarts: the newest stored episode of every alert is read at start
(an alert still firing stays firing, episodes count on), and the drift baselines and
CUSUMs are rebuilt from the stored hourly line rows, silently. Hours that closed while
the gateway was down are not evaluated after it (their data-quality alerts are lost;
drift sees them in the replay). A change recorded twice (a replay) is stored and
notified once: the store de-duplicates on (rule, subject, episode, state).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import numpy as np

from zerocarbon.alerts.drift_monitor import DriftPeriod
from zerocarbon.alerts.rules import HOUR_S, AlertEvent, ClosedHour, RuleSet
from zerocarbon.alerts.state import AlertState
from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.storage import alerts as store
from zerocarbon.storage.drift_periods import DriftPeriodRow, upsert_periods

log = logging.getLogger(__name__)

OFFLINE_GRACE_REAL_S = 2.0  # a silence shorter than this much real time is latency [s]
TICK_REAL_S = 0.5  # the clock is looked at for silent devices this often, at most [real s]
RETRY_REAL_S = 2.0  # a failed write of state changes is retried after [real s]
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(slots=True)
class AlertStats:
    events: int = 0  # state changes decided
    recorded: int = 0  # of them stored (new)
    replays: int = 0  # of them already stored (not notified again)
    write_failures: int = 0
    hours_evaluated: int = 0
    evaluation_errors: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _OpenHour:
    carbon: HourlyCarbon | None = None
    energy: dict[tuple[str, str], HourlyEnergy] = field(default_factory=dict)
    lines: dict[str, HourlyLine] = field(default_factory=dict)


def period_row(rule: str, p: DriftPeriod) -> DriftPeriodRow:
    """A drift period as a ``drift_periods`` row."""
    return DriftPeriodRow(
        rule=rule,
        line=p.line,
        period_start=p.start,
        period_end=p.end,
        energy_kwh=p.energy_kwh,
        units=p.units,
        expected_kwh=p.expected_kwh,
        residual_kwh=p.residual_kwh,
        residual_share=p.residual_share,
        cusum_high=p.cusum_high,
        cusum_low=p.cusum_low,
        limit_value=p.limit,
        chart_unit=p.chart_unit,
        signal=p.signal,
        in_baseline=p.in_baseline,
    )


class AlertService:
    name = "alerts"

    def __init__(
        self,
        site: SiteConfig,
        pool: asyncpg.Pool,
        registry: SeriesRegistry,
        clock: Clock,
        *,
        channels: Sequence[str] = (),
    ) -> None:
        self.site = site
        self.rules = RuleSet(site, min_silence_s=OFFLINE_GRACE_REAL_S * clock.speed)
        self._pool = pool
        self._registry = registry
        self._clock = clock
        self._channels = tuple(channels)
        self._settle_s = site.alerts.settle_s
        self.stats = AlertStats()
        self._pending: deque[AlertEvent] = deque()
        self._periods: list[DriftPeriodRow] = []  # drift periods to write
        self._wake = asyncio.Event()
        self._watched = {
            registry.id(d, m): (d, m) for d, m in self.rules.watched_series()
        }  # the site file checked the devices; metrics are names of the vocabulary
        self._variables = {registry.id(*v.split(":", 1)): v for v in self.rules.variables()}
        self._means: dict[tuple[str, int], list[float]] = {}  # (variable, hour s) -> sum, n
        self._open: dict[int, _OpenHour] = {}  # hour start [s] -> its newest rows
        self._closed_through_s = -math.inf  # hour starts at or before this are evaluated

    @property
    def active(self) -> bool:
        """Whether the site has any alert rule."""
        return bool(self.site.alerts.rules)

    # -- start -------------------------------------------------------------------------

    async def restore(self) -> None:
        """Continue from the stored alerts and hourly line rows (see the module doc)."""
        async with self._pool.acquire() as conn:
            states = await store.latest_states(conn)
            rows = await conn.fetch(
                """SELECT hour_start, line, energy_kwh, production_units FROM hourly_line
                   WHERE hour_start < (SELECT max(hour_start) FROM hourly_line)
                   ORDER BY hour_start, line"""
            )
        replayed = self._replay_drift(rows)
        self.rules.continue_from(
            (s.rule, s.subject, s.episode, s.state, s.ts.timestamp()) for s in states
        )
        if rows:
            self._closed_through_s = rows[-1]["hour_start"].timestamp()
        if states or replayed:
            log.info(
                "alerts: continued %d stored alerts; drift replayed over %d hours",
                len(states),
                replayed,
            )

    def _replay_drift(self, rows: Sequence[asyncpg.Record]) -> int:
        hours = 0
        previous: datetime | None = None
        for row in rows:
            hours += row["hour_start"] != previous
            previous = row["hour_start"]
            for drift in self.rules.drift:
                if drift.config.variables:
                    continue  # the relevant variables' past means are not kept
                monitor = drift.monitors.get(row["line"])
                if monitor is None:
                    continue
                for p in monitor.add_hour(
                    row["hour_start"], row["energy_kwh"], row["production_units"], ()
                ):
                    since = 0 if p.signal else drift.periods_since_signal.get(row["line"], 0) + 1
                    drift.periods_since_signal[row["line"]] = since
        return hours

    # -- inputs ------------------------------------------------------------------------

    async def write_batch(self, batch: ReadingBatch) -> None:
        """Pipeline sink: evaluate the live rules on an admitted batch."""
        if not self.active or not len(batch):
            return
        try:
            self._readings(batch, self._clock.now_s())
        except Exception as exc:  # never fail the pipeline (it would withhold acks)
            self.stats.evaluation_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("alert rules failed on a batch")

    def _readings(self, batch: ReadingBatch, now_s: float) -> None:
        series = batch.series
        present = np.unique(series)
        if self.rules.offline:
            devices = np.unique(self._registry.device_index_of[present]).tolist()
            self.rules.seen([self._registry.device_ids[i] for i in devices], now_s)
        for sid in present.tolist():
            key = self._watched.get(sid)
            variable = self._variables.get(sid)
            if key is None and variable is None:
                continue
            mask = series == sid
            ts_us, values = batch.ts_us[mask], batch.value[mask]
            order = np.argsort(ts_us, kind="stable")
            ts_s = ts_us[order] / 1e6
            values = values[order]
            if key is not None:
                self._emit(self.rules.on_readings(key[0], key[1], ts_s, values))
            if variable is not None:
                hours = (ts_s // HOUR_S).astype(np.int64) * int(HOUR_S)
                for hour, value in zip(hours.tolist(), values.tolist(), strict=True):
                    acc = self._means.setdefault((variable, hour), [0.0, 0.0])
                    acc[0] += value
                    acc[1] += 1

    def hourly_written(
        self,
        carbon: Sequence[HourlyCarbon],
        energy: Sequence[HourlyEnergy],
        lines: Sequence[HourlyLine],
        newest_reading_s: float,
    ) -> None:
        """The carbon service wrote these hourly rows; readings reach ``newest_reading_s``.
        Evaluates every hour that is now closed, in order. Never raises."""
        if not (self.rules.quality or self.rules.drift):
            return
        try:
            for c in carbon:
                self._hour(c.hour_start).carbon = c
            for e in energy:
                self._hour(e.hour_start).energy[(e.device, e.metric)] = e
            for ln in lines:
                self._hour(ln.hour_start).lines[ln.line] = ln
            self._close_hours(newest_reading_s)
        except Exception as exc:
            self.stats.evaluation_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("alert rules failed on the hourly rows")

    def _hour(self, hour_start: datetime) -> _OpenHour:
        return self._open.setdefault(int(hour_start.timestamp()), _OpenHour())

    def _close_hours(self, newest_s: float) -> None:
        for start_s in sorted(self._open):
            if start_s <= self._closed_through_s:
                del self._open[start_s]  # evaluated already; late data does not re-alert
                continue
            hour = self._open[start_s]
            end_s = start_s + HOUR_S
            complete = hour.carbon is not None and hour.carbon.complete
            if not (newest_s >= end_s + self._settle_s or (complete and newest_s >= end_s)):
                break
            del self._open[start_s]
            self._closed_through_s = start_s
            closed = ClosedHour(
                datetime.fromtimestamp(start_s, UTC),
                hour.carbon,
                tuple(hour.energy.values()),
                tuple(hour.lines.values()),
                self._hour_means(start_s),
            )
            self.stats.hours_evaluated += 1
            self._emit(self.rules.on_hour(closed))
            self._periods.extend(period_row(rule, p) for rule, p in self.rules.take_periods())
            if self._periods:
                self._wake.set()

    def _hour_means(self, start_s: int) -> dict[str, float]:
        means = {}
        for key in [k for k in self._means if k[1] <= start_s]:
            total, n = self._means.pop(key)
            if key[1] == start_s and n:
                means[key[0]] = total / n
        return means

    def tick(self) -> None:
        """Look at the clock for silent devices."""
        self._emit(self.rules.on_tick(self._clock.now_s()))

    # -- output ------------------------------------------------------------------------

    def _emit(self, events: Sequence[AlertEvent]) -> None:
        if events:
            self.stats.events += len(events)
            self._pending.extend(events)
            self._wake.set()

    def change_of(self, event: AlertEvent) -> store.AlertChange:
        t = event.transition
        return store.AlertChange(
            rule=t.rule,
            kind=event.kind,
            subject=t.subject,
            episode=t.episode,
            state="firing" if t.state.value == "firing" else "resolved",
            severity=event.severity,
            ts=datetime.fromtimestamp(t.ts_s, UTC),
            since=datetime.fromtimestamp(t.since_s, UTC),
            message_en=event.message_en,
            message_zh=event.message_zh,
            evidence=t.evidence,
        )

    def channels_of(self, event: AlertEvent) -> tuple[str, ...]:
        return self._channels if event.channels is None else event.channels

    async def flush(self) -> None:
        """Store the pending state changes, in order, and the drift periods; on a
        database error the rest stay pending (raises nothing)."""
        if self._periods:
            rows, self._periods = self._periods, []
            try:
                async with self._pool.acquire() as conn:
                    await upsert_periods(conn, rows)
            except _DB_ERRORS as exc:
                self._periods = rows + self._periods
                self.stats.write_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("storing drift periods failed (%s); will retry", exc)
                return
        while self._pending:
            event = self._pending[0]
            try:
                async with self._pool.acquire() as conn:
                    now = datetime.fromtimestamp(self._clock.now_s(), UTC)
                    alert_id = await store.record_change(
                        conn, self.change_of(event), self.channels_of(event), now
                    )
            except _DB_ERRORS as exc:
                self.stats.write_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("storing an alert change failed (%s); will retry", exc)
                return
            self._pending.popleft()
            if alert_id is None:
                self.stats.replays += 1
            else:
                self.stats.recorded += 1
                t = event.transition
                log.info("alert %s %s: %s", t.key, event.severity, event.message_en)

    async def run(self) -> None:
        """Look for silent devices and store state changes until cancelled."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            if self.rules.offline and loop.time() >= next_tick:
                self.tick()
                next_tick = loop.time() + TICK_REAL_S
            await self.flush()
            wait_s = RETRY_REAL_S if self.pending else TICK_REAL_S
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._periods)

    @property
    def firing(self) -> int:
        """Alerts firing now (as this process knows them)."""
        return sum(
            t.state is AlertState.FIRING for r in self.rules.rules() for t in r.trackers.values()
        )
