"""A load generator for the gateway's MQTT ingest: N devices publishing JSON readings
at QoS 1, each message retried until the broker acknowledges it.

Device ``i`` publishes message ``k`` stamped ``start + k / rate_hz + i / (rate_hz *
devices)`` (wall-clock time, so the gateway's admission window accepts it); its
readings are one value per metric of the plan. A message counts as *acknowledged*
once the broker's PUBACK has arrived; until then it is sent again, over a new
connection when the old one broke (a broker restart). A resent message may reach the
broker twice: the gateway's idempotent storage must keep one. The generator records
every acknowledged message, so the readings the tests expect in the database are
exactly :meth:`LoadGenerator.acknowledged`.

It runs in the tests' event loop: 50 devices x 24 messages/s x 10 readings (12k
readings/s) take about half a core, and keep to their schedule next to the gateway,
its database and the broker on two cores (as a process of its own it did no better).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import random
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt

# Metrics the gateway's admission accepts on any device role: gauges with plausible
# values, counters that only grow (from well inside the accepted counter range).
GAUGES = ("active_power_kw", "voltage_v", "frequency_hz", "state_of_charge_pct")
COUNTERS = (
    "energy_import_kwh",
    "energy_export_kwh",
    "energy_generated_kwh",
    "energy_charged_kwh",
    "energy_discharged_kwh",
    "production_count_units",
)
METRICS = GAUGES + COUNTERS


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What the devices publish: ``devices`` x ``rate_hz`` messages/s of
    ``len(metrics)`` readings each."""

    devices: int = 50
    rate_hz: float = 24.0  # messages per device per second
    metrics: tuple[str, ...] = METRICS  # one JSON key per metric, named after it
    seed: int = 20260621
    topic_prefix: str = "zc-load"

    @property
    def readings_per_s(self) -> float:
        return self.devices * self.rate_hz * len(self.metrics)

    def device_id(self, i: int) -> str:
        return f"load{i:03d}"

    def topic(self, i: int) -> str:
        return f"{self.topic_prefix}/{self.device_id(i)}"

    def site_devices(self) -> list[dict[str, Any]]:
        """The ``[[devices]]`` of a site file that collects these devices (device 0 is
        the grid meter: a site has exactly one)."""
        return [
            {
                "id": self.device_id(i),
                "role": "grid" if i == 0 else "load",
                "protocol": "mqtt",
                "topic": self.topic(i),
                "ts_field": "ts",
                "interval_s": 1.0 / self.rate_hz,
                "fields": {m: m for m in self.metrics},
            }
            for i in range(self.devices)
        ]


@dataclass(slots=True)
class LoadStats:
    published: int = 0  # PUBLISH packets sent, resends included
    acknowledged: int = 0  # messages the broker acknowledged (each once)
    resends: int = 0  # messages sent again after a failure
    connections: int = 0
    connection_failures: int = 0
    last_error: str = ""
    behind_max_s: float = 0.0  # the furthest any device fell behind its schedule [s]


@dataclass(slots=True)
class _Device:
    index: int
    rng: random.Random
    counters: list[float]
    acked_ts_us: list[int] = field(default_factory=list)
    acked_values: list[tuple[float, ...]] = field(default_factory=list)
    acked_wall_s: list[float] = field(default_factory=list)  # when each was acknowledged
    acked_attempts: list[int] = field(default_factory=list)  # sends it took
    next_k: int = 0  # the next message's number in the schedule
    held: tuple[int, bytes, tuple[float, ...]] | None = None  # (ts_us, payload, values)
    attempts: int = 0  # sends of the held message so far


class LoadGenerator:
    """Publishes the plan's messages to ``host:port`` until :meth:`run`'s ``stop`` is
    set; then each device finishes (gets acknowledged) the message it holds and stops."""

    def __init__(
        self,
        plan: LoadPlan,
        host: str,
        port: int,
        *,
        publish_timeout_s: float = 3.0,
        reconnect_delay_s: float = 0.2,
    ) -> None:
        self.plan = plan
        self.host = host
        self.port = port
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.stats = LoadStats()
        self.started_s: float | None = None  # wall time of the schedule's start
        self.ack_wall_s: list[float] = []  # wall time of each acknowledgement, in order
        self._devices = [
            _Device(i, random.Random(plan.seed * 100_003 + i), [0.0] * len(plan.metrics))
            for i in range(plan.devices)
        ]
        for d in self._devices:
            for j, metric in enumerate(plan.metrics):
                if metric in COUNTERS:
                    d.counters[j] = round(d.rng.uniform(1_000.0, 100_000.0), 3)

    # -- results ---------------------------------------------------------------------

    @property
    def readings_acknowledged(self) -> int:
        return self.stats.acknowledged * len(self.plan.metrics)

    def readings_acknowledged_between(self, t0_s: float, t1_s: float) -> int:
        """Readings whose acknowledgement arrived in [t0_s, t1_s) (wall time)."""
        lo = bisect.bisect_left(self.ack_wall_s, t0_s)
        hi = bisect.bisect_left(self.ack_wall_s, t1_s)
        return (hi - lo) * len(self.plan.metrics)

    def acknowledged(self) -> Iterator[tuple[str, str, int, float]]:
        """Every acknowledged reading: (device id, metric, ts [us since 1970], value)."""
        for d in self._devices:
            device_id = self.plan.device_id(d.index)
            for ts_us, values in zip(d.acked_ts_us, d.acked_values, strict=True):
                for metric, value in zip(self.plan.metrics, values, strict=True):
                    yield device_id, metric, ts_us, value

    def message_history(self, device_id: str, ts_us: int) -> tuple[float, int] | None:
        """(wall time of the acknowledgement, sends it took) of one message."""
        d = self._devices[int(device_id.removeprefix("load"))]
        try:
            k = d.acked_ts_us.index(ts_us)
        except ValueError:
            return None
        return d.acked_wall_s[k], d.acked_attempts[k]

    # -- publishing ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set and every held message is acknowledged."""
        self.started_s = time.time()
        async with asyncio.TaskGroup() as group:
            for d in self._devices:
                group.create_task(self._publish_device(d, stop), name=f"loadgen {d.index}")

    def _message(self, d: _Device, ts_us: int) -> tuple[bytes, tuple[float, ...]]:
        rng = d.rng
        values: list[float] = []
        power_kw = round(rng.uniform(20.0, 400.0), 3)
        for j, metric in enumerate(self.plan.metrics):
            if metric == "active_power_kw":
                v = power_kw
            elif metric == "voltage_v":
                v = round(rng.uniform(225.0, 235.0), 2)
            elif metric == "frequency_hz":
                v = round(rng.uniform(49.95, 50.05), 3)
            elif metric == "state_of_charge_pct":
                v = round(rng.uniform(20.0, 80.0), 1)
            else:
                hours = 1.0 / self.plan.rate_hz / 3600.0  # one publish interval [h]
                step = 1.0 if metric == "production_count_units" else power_kw * hours
                d.counters[j] = round(d.counters[j] + step, 3)
                v = d.counters[j]
            values.append(v)
        ts = datetime.fromtimestamp(ts_us // 1_000_000, UTC).replace(microsecond=ts_us % 1_000_000)
        doc: dict[str, Any] = {"ts": ts.isoformat()}
        doc.update(zip(self.plan.metrics, values, strict=True))
        return json.dumps(doc).encode(), tuple(values)

    async def _publish_device(self, d: _Device, stop: asyncio.Event) -> None:
        """One device: connect, publish its schedule; after a failure, connect again and
        send the held message again."""
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    port=self.port,
                    identifier=f"{self.plan.topic_prefix}-{d.index}",
                    timeout=self.publish_timeout_s,
                ) as client:
                    self.stats.connections += 1
                    await self._until_disconnected(client, self._publish_schedule(client, d, stop))
                    return
            except aiomqtt.MqttError as exc:
                self.stats.connection_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self.reconnect_delay_s)

    @staticmethod
    async def _until_disconnected(client: aiomqtt.Client, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``; when the connection breaks first, cancel it and raise
        :class:`aiomqtt.MqttError` (aiomqtt itself would only time the PUBACK out)."""
        task = asyncio.create_task(work)
        disconnected = client._disconnected  # set (with the error) when the socket breaks
        try:
            await asyncio.wait({task, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
            raise
        if task.done():
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
        error = disconnected.exception()
        raise aiomqtt.MqttError(f"connection lost: {error}")

    async def _publish_schedule(
        self, client: aiomqtt.Client, d: _Device, stop: asyncio.Event
    ) -> None:
        assert self.started_s is not None
        period_s = 1.0 / self.plan.rate_hz
        first_s = self.started_s + period_s * d.index / self.plan.devices
        topic = self.plan.topic(d.index)
        while True:
            if d.held is None:
                if stop.is_set():
                    return
                due_s = first_s + d.next_k * period_s
                now_s = time.time()
                if due_s > now_s:
                    await asyncio.sleep(due_s - now_s)
                else:
                    self.stats.behind_max_s = max(self.stats.behind_max_s, now_s - due_s)
                ts_us = math.floor(due_s * 1_000_000)
                payload, values = self._message(d, ts_us)
                d.held = (ts_us, payload, values)
                d.next_k += 1
                d.attempts = 0
            if d.attempts:
                self.stats.resends += 1
            d.attempts += 1
            self.stats.published += 1
            await client.publish(topic, d.held[1], qos=1)
            acked_s = time.time()
            d.acked_ts_us.append(d.held[0])
            d.acked_values.append(d.held[2])
            d.acked_wall_s.append(acked_s)
            d.acked_attempts.append(d.attempts)
            self.stats.acknowledged += 1
            self.ack_wall_s.append(acked_s)
            d.held = None
