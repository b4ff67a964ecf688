"""The running gateway's health and counters, for ``/readyz``, ``/metrics`` and
``/api/v1/devices/{id}/health``.

:class:`GatewayTelemetry` reads the counters the parts already keep (pipeline,
admission, Modbus links, MQTT, spool forwarder, carbon service) at scrape time: no
second bookkeeping, nothing on the ingest path. Metric names follow Prometheus'
conventions (``_total`` counters, base units: seconds, bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zerocarbon.api.app import redact_url
from zerocarbon.api.telemetry import (
    BrokerState,
    CollectorState,
    DatabaseState,
    DeviceHealth,
    Readiness,
    SpoolState,
    UplinkState,
)
from zerocarbon.config import (
    Dlt645Device,
    ModbusDevice,
    ModbusRtuDevice,
    ModbusTcpDevice,
    MqttDevice,
)
from zerocarbon.ingest.dlt645.collector import DeviceStats as Dlt645Stats
from zerocarbon.ingest.modbus.collector import LATENCY_EWMA_ALPHA, DeviceStats
from zerocarbon.ingest.mqtt.collector import ONLINE_INTERVALS, MqttDeviceStats

if TYPE_CHECKING:
    from zerocarbon.runtime import EnergyCenter


class GatewayTelemetry:
    """Health and counters of one :class:`~zerocarbon.runtime.EnergyCenter`."""

    def __init__(self, center: EnergyCenter) -> None:
        self._center = center

    def readiness(self, database_ok: bool, database_detail: str) -> Readiness:
        center = self._center
        forwarder = center.forwarder
        h = forwarder.health() if forwarder is not None else None
        detail = database_detail
        if h is not None and not h.database_up:
            database_ok = False
            detail = detail or h.last_error
        database = DatabaseState(
            ok=database_ok, detail=detail, down_s=None if h is None else h.database_down_s
        )
        broker = None
        if center.mqtt is not None:
            stats = center.mqtt.stats
            broker = BrokerState(
                ok=stats.connected,
                detail="" if stats.connected else stats.last_error or "not connected",
                url=redact_url(center.mqtt_url) if center.mqtt_url else None,
            )
        spool = None
        if h is not None:
            problems = []
            if h.spool_full:
                problems.append("full: collection is held back")
            elif h.spool_alarm:
                problems.append("above its alarm level")
            if not center.forwarder_running:
                problems.append("the forwarder has stopped")
            spool = SpoolState(
                ok=not problems,
                detail="; ".join(problems),
                depth_readings=h.spool_depth_readings,
                depth_batches=h.spool_depth_batches,
                used_bytes=h.spool_used_bytes,
                quota_bytes=h.spool_quota_bytes,
                alarm=h.spool_alarm,
                full=h.spool_full,
                oldest_unreplayed_age_s=h.oldest_unreplayed_age_s,
            )
        collectors = [
            CollectorState(
                name=state.name,
                ok=state.running,
                detail="" if state.running else f"restarting after: {state.last_error}",
                restarts=state.restarts,
            )
            for state in center.collectors.values()
        ]
        ready = (
            database.ok
            and (broker is None or broker.ok)
            and (spool is None or spool.ok)
            and all(c.ok for c in collectors)
        )
        return Readiness(
            ready=ready,
            database=database,
            broker=broker,
            spool=spool,
            collectors=collectors,
            uplink=self.uplink(),
        )

    def uplink(self) -> UplinkState | None:
        """The uplink's state (None without ``[uplink]``)."""
        center = self._center
        publisher = center.uplink
        if publisher is None:
            return None
        s = publisher.stats
        dropped = publisher.outbox.stats.readings_dropped
        problems = []
        if not s.connected:
            problems.append(f"not connected to the local NATS server: {s.last_error or '-'}")
        elif s.last_error:
            problems.append(s.last_error)
        if dropped:
            problems.append(f"{dropped} stored readings could not be kept for the center")
        return UplinkState(
            ok=not problems,
            detail="; ".join(problems),
            connected=s.connected,
            last_error=s.last_error,
            readings_published=s.readings_published,
            outbox_readings=publisher.outbox.depth_readings,
            readings_dropped=dropped,
            backlog_messages=s.backlog_messages,
            backlog_bytes=s.backlog_bytes,
            center_seq=s.center_seq,
            leaf_running=None if center.leaf is None else center.leaf.running(),
        )

    def collector(self) -> Collector:
        return _GatewayCollector(self._center)

    def device_health(self, device_id: str) -> DeviceHealth | None:
        """The health of the site's device ``device_id`` (None: no such device). A
        device whose collector has not started yet shows zero counts, offline."""
        center = self._center
        device = next((d for d in center.site.devices if d.id == device_id), None)
        if device is None:
            return None
        now_s = center.clock.now_s()
        if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
            return _modbus_health(device, _modbus_stats(center, device_id), now_s)
        if isinstance(device, Dlt645Device):
            return _dlt645_health(device, _dlt645_stats(center, device_id))
        return _mqtt_health(device, _mqtt_stats(center, device), now_s)


def _modbus_stats(center: EnergyCenter, device_id: str) -> DeviceStats:
    for link in center.modbus:
        stats = link.stats().get(device_id)
        if stats is not None:
            return stats
    return DeviceStats()


def _mqtt_stats(center: EnergyCenter, device: MqttDevice) -> MqttDeviceStats:
    stats = None if center.mqtt is None else center.mqtt.device_stats.get(device.id)
    return stats or MqttDeviceStats(offline_after_s=ONLINE_INTERVALS * device.interval_s)


def _seen(last_seen_s: float | None, now_s: float) -> tuple[datetime | None, float | None]:
    """``last_seen`` as a UTC datetime and its age [s] at ``now_s`` (None, None: never)."""
    if last_seen_s is None:
        return None, None
    return datetime.fromtimestamp(last_seen_s, UTC), max(0.0, now_s - last_seen_s)


def _modbus_health(device: ModbusDevice, s: DeviceStats, now_s: float) -> DeviceHealth:
    last_seen, age_s = _seen(s.last_seen_s, now_s)
    return DeviceHealth(
        device=device.id,
        protocol=device.protocol,
        online=s.available,
        last_seen=last_seen,
        age_s=age_s,
        poll_latency_s=s.latency_last_s,
        poll_latency_avg_s=s.latency_avg_s,
        polls=s.polls,
        readings=s.readings,
        timeouts=s.timeouts,
        errors=s.errors,
        skipped_cycles=s.skipped_cycles,
        consecutive_failures=s.consecutive_failures,
        went_offline=s.went_offline,
        came_online=s.came_online,
        last_error=s.last_error,
    )


def _dlt645_stats(center: EnergyCenter, device_id: str) -> Dlt645Stats:
    for link in center.dlt645:
        found: Dlt645Stats | None = link.stats().get(device_id)
        if found is not None:
            return found
    return Dlt645Stats()


def _dlt645_health(device: Dlt645Device, s: Dlt645Stats) -> DeviceHealth:
    """A DL/T 645 meter's counters (its collector keeps no last-seen time or latency)."""
    return DeviceHealth(
        device=device.id,
        protocol="dlt645",
        online=s.available,
        last_seen=None,
        age_s=None,
        poll_latency_s=None,
        poll_latency_avg_s=None,
        polls=s.polls,
        readings=s.readings,
        timeouts=s.timeouts,
        errors=s.errors,
        skipped_cycles=s.skipped_cycles,
        last_error=s.last_error,
    )


def _mqtt_health(device: MqttDevice, s: MqttDeviceStats, now_s: float) -> DeviceHealth:
    last_seen, age_s = _seen(s.last_seen_s, now_s)
    return DeviceHealth(
        device=device.id,
        protocol="mqtt",
        online=s.online(now_s),
        last_seen=last_seen,
        age_s=age_s,
        messages=s.messages,
        readings=s.readings,
        bad_payloads=s.bad_payloads,
        offline_after_s=s.offline_after_s,
        last_error=s.last_error,
    )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class _GatewayCollector(Collector):
    def __init__(self, center: EnergyCenter) -> None:
        self._center = center

    def collect(self) -> Iterator[Metric]:
        center = self._center
        if center.collectors:
            up = GaugeMetricFamily(
                "zerocarbon_collector_up", "1 while the collector task runs", labels=["collector"]
            )
            restarts = CounterMetricFamily(
                "zerocarbon_collector_restarts",
                "Times the collector task died and was started again",
                labels=["collector"],
            )
            for name, state in sorted(center.collectors.items()):
                up.add_metric([name], state.running)
                restarts.add_metric([name], state.restarts)
            yield up
            yield restarts
        if center.pipeline is not None:
            p = center.pipeline.stats
            yield _counter(
                "zerocarbon_pipeline_readings_in",
                "Readings handed over by collectors",
                p.readings_in,
            )
            yield _counter(
                "zerocarbon_pipeline_readings_admitted",
                "Readings past admission, handed to the spool",
                p.readings_out,
            )
            yield _counter(
                "zerocarbon_pipeline_queue_full_waits",
                "Collector hand-overs that waited for a full pipeline queue",
                p.queue_full_waits,
            )
            yield _counter(
                "zerocarbon_pipeline_sink_failures", "Batches a sink failed on", p.sink_failures
            )
        if center.admission is not None:
            drops = CounterMetricFamily(
                "zerocarbon_admission_dropped_readings",
                "Readings admission refused, per device and reason",
                labels=["device", "reason"],
            )
            for device, d in sorted(center.admission.stats.by_device.items()):
                for reason in ("unknown_series", "not_finite", "out_of_window", "counter_range"):
                    drops.add_metric([device, reason], getattr(d, reason))
            yield drops
        if center.forwarder is not None:
            yield from self._store()
        if center.mqtt is not None:
            m = center.mqtt.stats
            yield _gauge("zerocarbon_mqtt_connected", "1 when connected to the broker", m.connected)
            yield _counter("zerocarbon_mqtt_messages", "MQTT messages received", m.messages)
            yield _counter(
                "zerocarbon_mqtt_acknowledged",
                "MQTT messages acknowledged (PUBACK) after their readings were spooled",
                m.acked,
            )
            yield _counter(
                "zerocarbon_mqtt_bad_payloads",
                "MQTT payloads that could not be read",
                m.bad_payloads,
            )
            yield _counter(
                "zerocarbon_mqtt_connection_failures",
                "Lost or refused broker connections",
                m.connection_failures,
            )
        if center.mqtt is not None:
            yield from self._mqtt_devices()
        if center.modbus:
            yield from self._modbus()
        yield from self._device_health()
        if center.maintenance is not None:
            failures = CounterMetricFamily(
                "zerocarbon_storage_maintenance_failures",
                "Storage maintenance steps that failed (partitions, retention, rollups)",
                labels=["kind"],
            )
            for kind, count in sorted(center.maintenance.problems.counts.items()):
                failures.add_metric([kind], count)
            yield failures
            yield _counter(
                "zerocarbon_storage_maintenance_rounds",
                "Storage maintenance rounds run",
                center.maintenance.rounds,
            )
        if center.carbon is not None:
            c = center.carbon
            yield _counter(
                "zerocarbon_carbon_hour_upserts", "Hourly carbon rows written", c.upserts
            )
            yield _counter(
                "zerocarbon_carbon_flush_failures",
                "Hourly result writes that failed (retried)",
                c.flush_failures,
            )
        yield from self._alerts()
        yield from self._uplink()

    def _uplink(self) -> Iterator[Metric]:
        publisher = self._center.uplink
        if publisher is None:
            return
        s = publisher.stats
        yield _counter(
            "zerocarbon_uplink_readings_published",
            "Readings the local JetStream stream acknowledged for the center",
            s.readings_published,
        )
        yield _counter(
            "zerocarbon_uplink_readings_dropped",
            "Stored readings that could not be kept for the center (uplink outbox full)",
            publisher.outbox.stats.readings_dropped,
        )
        yield _counter(
            "zerocarbon_uplink_publish_failures",
            "Uplink rounds that failed (local NATS server away, database), retried",
            s.publish_failures,
        )
        yield _gauge(
            "zerocarbon_uplink_outbox_readings",
            "Stored readings waiting for the local JetStream stream",
            publisher.outbox.depth_readings,
        )
        yield _gauge(
            "zerocarbon_uplink_backlog_messages",
            "Messages in the local stream the center has not been sent",
            s.backlog_messages,
        )
        yield _gauge(
            "zerocarbon_uplink_connected", "1 when connected to the local NATS server", s.connected
        )

    def _alerts(self) -> Iterator[Metric]:
        center = self._center
        if center.alerts is not None:
            a = center.alerts
            st = a.stats
            yield _gauge("zerocarbon_alerts_firing", "Alerts firing now", a.firing)
            yield _counter("zerocarbon_alert_changes", "Alert state changes decided", st.events)
            yield _counter(
                "zerocarbon_alert_changes_recorded", "Alert state changes stored", st.recorded
            )
            yield _gauge(
                "zerocarbon_alert_changes_pending",
                "Alert state changes waiting for the database",
                a.pending,
            )
            yield _counter(
                "zerocarbon_alert_write_failures",
                "Failed writes of alert changes (retried)",
                st.write_failures,
            )
            yield _counter(
                "zerocarbon_alert_evaluation_errors",
                "Evaluations of alert rules that failed (logged; other rules went on)",
                st.evaluation_errors + a.rules.errors,
            )
            yield _counter(
                "zerocarbon_alert_hours_evaluated",
                "Closed hours evaluated by the data-quality and drift rules",
                st.hours_evaluated,
            )
        if center.dispatcher is not None:
            d = center.dispatcher.stats
            yield _counter("zerocarbon_notifications_sent", "Alert notifications delivered", d.sent)
            yield _counter(
                "zerocarbon_notification_failed_attempts",
                "Delivery attempts a channel refused or missed (retried with back-off)",
                d.failed_attempts,
            )

    def _store(self) -> Iterator[Metric]:
        forwarder = self._center.forwarder
        assert forwarder is not None
        s = forwarder.stats
        h = forwarder.health()
        yield _counter(
            "zerocarbon_readings_acknowledged",
            "Readings appended to the spool (acknowledged to their source)",
            s.readings_acknowledged,
        )
        yield _counter(
            "zerocarbon_readings_stored", "New rows stored in readings", s.readings_stored
        )
        yield _counter(
            "zerocarbon_readings_duplicates_skipped",
            "Readings already stored (redelivered or replayed), not stored again",
            s.duplicates_skipped,
        )
        yield _counter(
            "zerocarbon_readings_replayed",
            "Readings forwarded from what an earlier run left in the spool",
            s.replayed_readings,
        )
        yield _counter(
            "zerocarbon_readings_quarantined",
            "Readings set aside because the database kept refusing them",
            s.quarantined_readings,
        )
        yield _gauge(
            "zerocarbon_database_up", "1 when the last database write worked", h.database_up
        )
        yield _counter("zerocarbon_database_outages", "Times the database went away", s.outages)
        yield _counter(
            "zerocarbon_database_write_failures", "Database writes that failed", s.write_failures
        )
        yield _gauge(
            "zerocarbon_spool_depth_readings",
            "Readings acknowledged but not yet in the database",
            h.spool_depth_readings,
        )
        yield _gauge(
            "zerocarbon_spool_depth_batches",
            "Spooled batches not yet forwarded",
            h.spool_depth_batches,
        )
        yield _gauge("zerocarbon_spool_used_bytes", "Disk used by the spool", h.spool_used_bytes)
        yield _gauge("zerocarbon_spool_quota_bytes", "The spool's disk quota", h.spool_quota_bytes)
        yield _gauge("zerocarbon_spool_alarm", "1 above the spool's alarm level", h.spool_alarm)
        yield _gauge(
            "zerocarbon_spool_full", "1 while collection waits for spool space", h.spool_full
        )
        yield _gauge(
            "zerocarbon_spool_oldest_unreplayed_age_seconds",
            "How long the oldest spooled batch has waited (0 when empty)",
            h.oldest_unreplayed_age_s or 0.0,
        )
        yield _counter(
            "zerocarbon_spool_full_waits",
            "Times collection was held back by a full spool",
            s.full_waits,
        )
        yield _counter(
            "zerocarbon_spool_full_wait_seconds",
            "Time collection was held back by a full spool",
            forwarder.full_wait_s(),
        )
        yield _counter(
            "zerocarbon_spool_errors", "Spool appends that failed (disk), retried", s.spool_errors
        )

    def _modbus(self) -> Iterator[Metric]:
        names = {
            "polls": "Poll cycles",
            "readings": "Readings decoded",
            "timeouts": "Requests that timed out",
            "errors": "Exception responses and connection failures",
            "skipped_cycles": "Poll cycles skipped because the link was late",
            "rejected_values": "Values the decoder rejected",
            "torn_reads": "Counter values refused as torn (words of different moments)",
            "retried_requests": "Requests sent again after a timeout",
            "went_offline": "Times the device changed from available to unavailable",
            "came_online": "Times the device changed from unavailable to available",
        }
        families = {
            key: CounterMetricFamily(f"zerocarbon_modbus_{key}", doc, labels=["device"])
            for key, doc in names.items()
        }
        available = GaugeMetricFamily(
            "zerocarbon_modbus_device_available", "1 when the device answers", labels=["device"]
        )
        for link in self._center.modbus:
            for device, stats in sorted(link.stats().items()):
                for key, family in families.items():
                    family.add_metric([device], getattr(stats, key))
                available.add_metric([device], stats.available)
        yield from families.values()
        yield available
        consecutive = GaugeMetricFamily(
            "zerocarbon_modbus_consecutive_failures",
            "Failed polls since the last good one",
            labels=["device"],
        )
        latency = GaugeMetricFamily(
            "zerocarbon_device_poll_latency_seconds",
            f"Moving average (EWMA, weight {LATENCY_EWMA_ALPHA} on the newest) of a good "
            "poll's duration, first request sent to last block decoded",
            labels=["device"],
        )
        for link in self._center.modbus:
            for device, stats in sorted(link.stats().items()):
                consecutive.add_metric([device], stats.consecutive_failures)
                if stats.latency_avg_s is not None:
                    latency.add_metric([device], stats.latency_avg_s)
        yield consecutive
        yield latency

    def _mqtt_devices(self) -> Iterator[Metric]:
        mqtt = self._center.mqtt
        assert mqtt is not None
        names = {
            "messages": "MQTT messages on the device's topic",
            "readings": "Readings taken from the device's messages",
            "bad_payloads": "Problems in the device's payloads",
        }
        families = {
            key: CounterMetricFamily(f"zerocarbon_mqtt_device_{key}", doc, labels=["device"])
            for key, doc in names.items()
        }
        for device, stats in sorted(mqtt.device_stats.items()):
            for key, family in families.items():
                family.add_metric([device], getattr(stats, key))
        yield from families.values()

    def _device_health(self) -> Iterator[Metric]:
        """Online state and last-seen time of every device, whatever its protocol."""
        online = GaugeMetricFamily(
            "zerocarbon_device_online",
            "1 when the device answers (Modbus: its last poll was good; MQTT: a message "
            f"with readings within {ONLINE_INTERVALS} of its intervals)",
            labels=["device", "protocol"],
        )
        last_seen = GaugeMetricFamily(
            "zerocarbon_device_last_seen_timestamp_seconds",
            "When the device last gave readings (Unix time); absent before the first",
            labels=["device", "protocol"],
        )
        telemetry = self._center.telemetry
        for device in self._center.site.devices:
            health = telemetry.device_health(device.id)
            assert health is not None
            online.add_metric([device.id, device.protocol], health.online)
            if health.last_seen is not None:
                last_seen.add_metric([device.id, device.protocol], health.last_seen.timestamp())
        yield online
        yield last_seen
