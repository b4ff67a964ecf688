"""MQTT mapping rules: topic filters, JSON paths, presets (decoded against their
simulators over a real broker), unmapped and malformed messages counted with topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ingest.clocks import ManualClock
from zerocarbon.batch import BatchBuilder, Reading, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.clock import ScaledClock
from zerocarbon.config import (
    MqttDevice,
    SiteConfig,
    SiteConfigError,
    load_site,
    parse_site,
    split_json_path,
)
from zerocarbon.ingest.mqtt.collector import MqttCollector
from zerocarbon.ingest.mqtt.mapping import MqttMapping, filter_matches
from zerocarbon.ingest.mqtt.payload import PayloadError, field_series, parse_payload
from zerocarbon.ingest.reading import Ack
from zerocarbon.simulators.mqtt_publisher import MqttPublisher
from zerocarbon.simulators.plant import PlantModel

ARRIVAL = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ARRIVAL_US = datetime_to_us(ARRIVAL)


def _site(devices: list[dict[str, Any]], timezone: str = "Asia/Shanghai") -> SiteConfig:
    grid: dict[str, Any] = {"id": "grid", "role": "grid", "protocol": "mqtt", "topic": "x/grid"}
    grid["fields"] = {"p": "active_power_kw"}
    return parse_site(
        {"site": {"timezone": timezone}, "mqtt": {}, "devices": [grid, *devices]}, "test.toml"
    )


def _decode(site: SiteConfig, messages: list[tuple[str, bytes]]) -> tuple[list[Any], list[Reading]]:
    registry = SeriesRegistry.for_site(site)
    mapping = MqttMapping(site.mqtt_devices, registry, site_timezone=site.site.timezone)
    out = BatchBuilder(registry)
    outcomes = [mapping.decode(t, p, ARRIVAL_US, out) for t, p in messages]
    return outcomes, list(out.build().readings(registry))


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a//c", True),  # an empty level is a level
        ("a/#", "a", True),  # '#' also matches the parent level (MQTT 3.1.1 §4.7.1.2)
        ("a/#", "a/b/c", True),
        ("#", "$SYS/broker", False),  # wildcards never match a first level with '$'
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker", True),
        ("tele/{device}/SENSOR", "tele/plug/SENSOR", True),
        ("tele/{device}/SENSOR", "tele/plug/STATE", False),
    ],
)
def test_filter_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert filter_matches(topic_filter.split("/"), topic.split("/")) is matches


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("ENERGY.Total", ("ENERGY", "Total")),
        ("emeters[0].power", ("emeters", 0, "power")),
        ("a[1][2]", ("a", 1, 2)),
        ("switch:0.apower", ("switch:0", "apower")),
    ],
)
def test_split_json_path(path: str, steps: tuple[str | int, ...]) -> None:
    assert split_json_path(path) == steps


@pytest.mark.parametrize("path", ["", "a..b", "a[x]", "a[1]b", "a]", "a[-1]", "a[1", ".a"])
def test_split_json_path_refuses(path: str) -> None:
    with pytest.raises(ValueError, match="JSON path"):
        split_json_path(path)


def test_config_errors_name_the_rule_and_field() -> None:
    rule: dict[str, Any] = {"path": "ENERGY..Total", "metric": "active_power_kw"}
    device: dict[str, Any] = {
        "id": "m",
        "role": "load",
        "protocol": "mqtt",
        "topic": "t",
        "rules": [rule],
    }
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.rules\[0\]\.path: .*JSON path"):
        _site([device])
    rule = {"path": "a", "metric": "power_watts"}
    device["rules"] = [{"path": "a", "metric": "active_power_kw"}, rule]
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.rules\[1\]\.metric: .*power_watts"):
        _site([device])
    device = {
        "id": "m",
        "role": "load",
        "protocol": "mqtt",
        "rules": [{"path": "a", "metric": "voltage_v"}],
    }
    with pytest.raises(SiteConfigError, match=r"devices\[1\]: rules\[0\]\.topic"):
        _site([device])
    device = {"id": "m", "role": "load", "protocol": "mqtt", "topic": "a/#/b"}
    device["fields"] = {"p": "active_power_kw"}
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.topic: .*'#' must be the last"):
        _site([device])
    device = {"id": "m", "role": "load", "protocol": "mqtt", "preset": "tasmota", "topic": "t"}
    with pytest.raises(SiteConfigError, match=r"devices\[1\]: preset: .*prefix"):
        _site([device])
    device = {
        "id": "m",
        "role": "load",
        "protocol": "mqtt",
        "preset": "tasmota",
        "timezone": "Mars/Olympus",
    }
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.timezone: unknown IANA"):
        _site([device])


def test_rules_and_presets_give_fields_for_the_rest_of_the_site() -> None:
    """Code that asks a device's metrics reads ``fields``: derived from rules and presets."""
    site = _site(
        [
            {"id": "plug", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
            {
                "id": "m",
                "role": "load",
                "protocol": "mqtt",
                "topic": "t/m",
                "rules": [
                    {
                        "path": "e[0].c",
                        "metric": "energy_import_kwh",
                        "type": "uint32",
                        "scale": 0.01,
                    }
                ],
            },
        ]
    )
    plug, m = site.mqtt_devices[1], site.mqtt_devices[2]
    assert {plug.field_metric(k) for k in plug.fields} == {
        "energy_import_kwh",
        "active_power_kw",
        "voltage_v",
    }
    assert m.counter_register("energy_import_kwh") == ("uint32", 0.01)
    assert plug.interval_s == 300.0 and m.interval_s == 10.0  # Tasmota's TelePeriod default
    dumped = site.model_dump(mode="json", exclude_none=True)
    assert parse_site(dumped, "again.toml").mqtt_devices == site.mqtt_devices


def test_exact_and_pattern_rules_with_paths_scale_and_time() -> None:
    site = _site(
        [
            {
                "id": "meter",
                "role": "load",
                "protocol": "mqtt",
                "topic": "plant/+/meter/#",
                "ts_field": "meta.time",
                "rules": [
                    {"path": "emeters[1].power", "metric": "active_power_kw", "scale": 0.001},
                    {"path": "emeters[1].total", "metric": "energy_import_kwh", "scale": 0.001},
                    {"topic": "plant/hall/v", "path": "v", "metric": "voltage_v"},
                ],
            },
            {
                "id": "hall",
                "role": "load",
                "protocol": "mqtt",
                "topic": "plant/hall/v",
                "fields": {"v": "voltage_v", "a.b": "active_power_kw"},
            },
        ]
    )
    doc = (
        b'{"meta":{"time":"2026-11-25T10:00:00Z"},'
        b'"emeters":[{"power":1},{"power":2500,"total":"x"}]}'
    )
    outcomes, readings = _decode(
        site,
        [
            ("plant/a/meter/x/y", doc),
            ("plant/hall/v", b'{"v": 230.5, "a.b": 7}'),  # both devices; "a.b" a literal key
            ("plant/a/other", b"{}"),
        ],
    )
    first, second, third = outcomes
    assert [(d.device_id, d.readings) for d in first.devices] == [("meter", 1)]
    assert (
        len(first.devices[0].problems) == 1 and "'emeters[1].total'" in first.devices[0].problems[0]
    )
    assert sorted((d.device_id, d.readings) for d in second.devices) == [("hall", 2), ("meter", 1)]
    assert third.unmapped == "topic 'plant/a/other': no device is mapped to it"
    got = {(r.device, r.metric): (r.value, r.ts) for r in readings}
    assert got[("meter", "active_power_kw")] == (2.5, datetime(2026, 11, 25, 10, tzinfo=UTC))
    assert got[("meter", "voltage_v")] == (230.5, ARRIVAL)  # no meta.time there: arrival
    assert got[("hall", "active_power_kw")] == (7.0, ARRIVAL)


def test_device_capture_resolves_configured_ids_only(caplog: pytest.LogCaptureFixture) -> None:
    site = _site(
        [
            {"id": "plug-1", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
            {"id": "plug-2", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
        ],
        timezone="Europe/Berlin",
    )
    registry = SeriesRegistry.for_site(site)
    mapping = MqttMapping(site.mqtt_devices, registry, site_timezone=site.site.timezone)
    assert "tele/+/SENSOR" in mapping.subscriptions and "tele/{device}/SENSOR" not in str(
        mapping.subscriptions
    )
    out = BatchBuilder(registry)
    tasmota = b'{"Time":"2026-07-01T12:00:00","ENERGY":{"Total":1.5,"Power":230,"Voltage":231}}'
    two = mapping.decode("tele/plug-2/SENSOR", tasmota, ARRIVAL_US, out)
    other = mapping.decode("tele/plug-9/SENSOR", tasmota, ARRIVAL_US, out)
    assert [(d.device_id, d.readings) for d in two.devices] == [("plug-2", 3)]
    assert other.devices == [] and other.unmapped is not None and "'plug-9'" in other.unmapped
    readings = {r.metric: r for r in out.build().readings(registry)}
    # Tasmota's Time is local (CEST in July, UTC+2): 12:00 local is 10:00 UTC
    assert readings["energy_import_kwh"].ts == datetime(2026, 7, 1, 10, tzinfo=UTC)
    assert readings["active_power_kw"].value == pytest.approx(0.23, rel=1e-15)
    # with SetOption52 1 Tasmota adds the offset: then it is used as is
    out2 = BatchBuilder(registry)
    mapping.decode(
        "tele/plug-1/SENSOR",
        b'{"Time":"2026-07-01T12:00:00+08:00","ENERGY":{"Power":1}}',
        ARRIVAL_US,
        out2,
    )
    assert next(out2.build().readings(registry)).ts == datetime(2026, 7, 1, 4, tzinfo=UTC)


def test_malformed_messages_cost_their_device_only() -> None:
    site = _site(
        [{"id": "sw", "role": "load", "protocol": "mqtt", "preset": "shelly", "prefix": "sh-1"}]
    )
    outcomes, readings = _decode(
        site,
        [
            ("sh-1/status/switch:0", b"{broken"),
            ("sh-1/status/switch:0", b"[1, 2]"),
            ("sh-1/status/switch:0", b'{"aenergy": {"total": 1e400}}'),
            ("sh-1/status/switch:0", b'{"apower": 5, "aenergy": {"total": true}}'),
            ("sh-1/status/switch:0", b"{" * 100_000),
        ],
    )
    problems = [o.devices[0].problems for o in outcomes]
    assert "payload is not JSON" in problems[0][0] and "'sh-1/status/switch:0'" in problems[0][0]
    assert "must be a JSON object, got list" in problems[1][0]
    assert "'aenergy.total' must be a finite number" in problems[2][0]
    assert len(problems[3]) == 1 and outcomes[3].devices[0].readings == 1
    assert "nested too deeply" in problems[4][0] or "not JSON" in problems[4][0]
    assert [(r.metric, r.value) for r in readings] == [("active_power_kw", 0.005)]


def test_a_flood_of_topics_keeps_the_route_cache_bounded() -> None:
    site = _site(
        [
            {
                "id": "m",
                "role": "load",
                "protocol": "mqtt",
                "topic": "a/#",
                "fields": {"p": "voltage_v"},
            }
        ]
    )
    mapping = MqttMapping(site.mqtt_devices, SeriesRegistry.for_site(site))
    for i in range(10_000):
        assert mapping.route(f"a/{i}").rule_sets
    assert len(mapping._cache) <= 4096


# --- presets against their simulators, through a real broker --------------------------

SPEED = 400.0  # 10 simulated seconds between publishes = 25 ms


class RecordingPlant:
    """The plant, remembering every value it gave the publisher per device and metric."""

    def __init__(self, plant: PlantModel, clock: ScaledClock) -> None:
        self.plant = plant
        self.clock = clock
        self.seen: dict[tuple[str, str], list[tuple[float, float]]] = {}

    @property
    def now_s(self) -> float:
        return self.plant.now_s

    def values(self, device_id: str) -> dict[str, float]:
        values = self.plant.values(device_id)
        for metric, value in values.items():
            self.seen.setdefault((device_id, metric), []).append((self.plant.now_s, value))
        return values

    def sync(self) -> None:
        self.plant.advance(self.clock.now_s())


def _preset_site(tag: str) -> SiteConfig:
    return _site(
        [
            {"id": f"plug-{tag}", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
            {
                "id": "press",
                "role": "load",
                "protocol": "mqtt",
                "preset": "shelly",
                "prefix": f"shellyplus1pm-{tag}",
            },
            {
                "id": f"em-{tag}",
                "role": "load",
                "protocol": "mqtt",
                "preset": "shelly_pro3em",
            },
            {
                "id": "mixer",
                "role": "load",
                "protocol": "mqtt",
                "topic": f"plant-{tag}/{{device}}/status",
                "ts_field": "meta.time",
                "rules": [
                    {"path": "emeters[1].power", "metric": "active_power_kw", "scale": 0.001},
                    {"path": "emeters[1].total", "metric": "energy_import_kwh", "scale": 0.001},
                ],
            },
        ]
    )


async def test_presets_decoded_against_their_simulators(
    mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tag = secrets.token_hex(3)
    site = _preset_site(tag)
    registry = SeriesRegistry.for_site(site)
    start = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: the lines run
    clock = ScaledClock(start, SPEED)
    source = RecordingPlant(PlantModel(site, clock.now_s()), clock)
    publisher = MqttPublisher(site, source, clock, url=mqtt_url, sync=source.sync)
    received: list[Reading] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        received.extend(batch.readings(registry))
        if ack is not None:
            ack()

    assert site.mqtt is not None
    collector = MqttCollector(
        site.mqtt,
        site.mqtt_devices,
        clock,
        sink,
        registry,
        url=mqtt_url,
        site_timezone=site.site.timezone,
    )
    devices = [d.id for d in site.mqtt_devices[1:]]
    collecting = asyncio.create_task(collector.run())
    publishing: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        publishing = asyncio.create_task(publisher.run())
        url = urlparse(mqtt_url)
        async with asyncio.timeout(15):
            while any(collector.device_stats[d].readings < 6 for d in devices):
                await asyncio.sleep(0.02)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            with caplog.at_level(logging.WARNING):
                await pub.publish(f"tele/nobody-{tag}/SENSOR", b"{}", qos=1)
                await pub.publish(f"shellyplus1pm-{tag}/status/switch:0", b"{oops", qos=1)
                async with asyncio.timeout(10):
                    while collector.stats.unknown_topics < 1 or collector.stats.bad_payloads < 1:
                        await asyncio.sleep(0.02)
    finally:
        for task in (publishing, collecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert collector.stats.bad_payloads == 1 and collector.stats.unknown_topics == 1
    assert f"'tele/nobody-{tag}/SENSOR'" in caplog.text and "no device 'nobody-" in caplog.text
    assert f"'shellyplus1pm-{tag}/status/switch:0'" in caplog.text and "not JSON" in caplog.text
    metrics = {
        f"plug-{tag}": {"energy_import_kwh", "active_power_kw", "voltage_v"},
        "press": {"energy_import_kwh", "active_power_kw", "voltage_v"},
        f"em-{tag}": {"energy_import_kwh", "energy_export_kwh", "active_power_kw", "voltage_v"},
        "mixer": {"energy_import_kwh", "active_power_kw"},
    }
    for device, names in metrics.items():
        assert {r.metric for r in received if r.device == device} == names, device
    for r in received:
        sent = source.seen[(r.device, r.metric)]
        if r.device == f"plug-{tag}":  # Tasmota: its local Time (whole s) stamps the values
            value = {math.floor(t): v for t, v in sent}[round(r.ts.timestamp())]
            assert r.value == pytest.approx(value, rel=1e-12, abs=1e-12)
        elif r.device == "mixer":  # rules: meta.time, ISO 8601 UTC to the microsecond
            sent_s, value = min(sent, key=lambda tv: abs(tv[0] - r.ts.timestamp()))
            assert abs(sent_s - r.ts.timestamp()) <= 1e-6
            assert r.value == pytest.approx(value, rel=1e-12, abs=1e-12)
        else:  # Shelly: no time in the payload, arrival time; the value is one it was sent
            assert any(v == pytest.approx(r.value, rel=1e-12, abs=1e-12) for _, v in sent)
    press_power = [
        r.value for r in received if (r.device, r.metric) == ("press", "active_power_kw")
    ]
    assert max(press_power) > 10.0  # kW: a running line, not W taken for kW


def test_manual_clock_is_the_arrival_time() -> None:
    """Without a time in the payload the collector's clock stamps the reading."""
    site = _site([{"id": "sw", "role": "load", "protocol": "mqtt", "preset": "shelly"}])
    registry = SeriesRegistry.for_site(site)
    clock = ManualClock(ARRIVAL)
    got: list[ReadingBatch] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        got.append(batch)

    assert site.mqtt is not None
    collector = MqttCollector(site.mqtt, site.mqtt_devices, clock, sink, registry)
    clock.advance(5.0)
    collector._handle("sw/status/switch:0", b'{"id":0,"apower":1500.0,"aenergy":{"total":2000}}')
    readings = {r.metric: r for r in collector._builder.build().readings(registry)}
    assert readings["active_power_kw"].value == 1.5 and readings["energy_import_kwh"].value == 2.0
    assert readings["active_power_kw"].ts == datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
    assert collector.device_stats["sw"].readings == 2  # no voltage in that message
    assert isinstance(site.mqtt_devices[1], MqttDevice)


@pytest.mark.parametrize(
    ("name", "topic", "payload", "device"),
    [
        (
            "mqtt-tasmota.toml",
            "tele/tasmota_8A3F2C/SENSOR",
            b'{"ENERGY":{"Power":5}}',
            "compressor",
        ),
        ("mqtt-shelly.toml", "shellypro3em-0cb815fc1234/status/emdata:0", b'{"total_act":1}', None),
        ("mqtt-rules.toml", "plant/line-2/meter", b'{"p_kw": 3}', "line-2"),
        ("mqtt-sparkplug.toml", "spBv1.0/plant1/NCMD/substation-gw", b"", None),
    ],
)
def test_example_site_files_load_and_map(
    name: str, topic: str, payload: bytes, device: str | None
) -> None:
    site = load_site(Path(__file__).parents[2] / "examples" / name)
    mapping = MqttMapping(site.mqtt_devices, SeriesRegistry.for_site(site))
    outcome = mapping.decode(
        topic, payload, ARRIVAL_US, BatchBuilder(SeriesRegistry.for_site(site))
    )
    assert outcome.unmapped is None
    if device is not None:
        assert [(d.device_id, d.readings) for d in outcome.devices] == [(device, 1)]


PARITY_PAYLOADS = [
    b'{"ts": "2026-06-21T03:00:05.5+00:00", "power_kw": 310.5, "energy_kwh": 1000}',
    b'{"ts": 1782014400, "power_kw": 1}',
    b'{"power_kw": "high", "energy_kwh": 5}',
    b'{"power_kw": 1' + b"0" * 400 + b', "energy_kwh": 5}',
    b"not json",
    b"[1, 2]",
    b'{"ts": "yesterday", "power_kw": 1}',
    b'{"ts": "2026-06-21T03:00:00", "power_kw": 1}',
    b'{"ts": 1e20, "power_kw": 1}',
    b'{"ts": true, "power_kw": 1}',
    b'{"other": 1}',
    b'{"power_kw": NaN}',
    b'{"power_kw": null, "energy_kwh": "x"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"power_kw": 1, "pad": "' + b"x" * 300_000 + b'"}',
]


@pytest.mark.parametrize("payload", PARITY_PAYLOADS, ids=range(len(PARITY_PAYLOADS)))
def test_simple_form_decodes_as_the_single_device_parser(
    demo_site: SiteConfig, payload: bytes
) -> None:
    """A ``fields`` device through the mapping gives what ``parse_payload`` gives: the
    same readings and the same problems, word for word."""
    device = demo_site.device("line_a")
    assert isinstance(device, MqttDevice)
    registry = SeriesRegistry.for_site(demo_site)
    single = BatchBuilder(registry)
    try:
        _count, expected = parse_payload(
            device, payload, ARRIVAL_US, field_series(device, registry), single
        )
    except PayloadError as exc:
        expected = [str(exc)]
    mapped = BatchBuilder(registry)
    mapping = MqttMapping(demo_site.mqtt_devices, registry)
    outcome = mapping.decode(device.topic, payload, ARRIVAL_US, mapped)
    [result] = outcome.devices
    assert result.problems == expected
    assert list(mapped.build().readings(registry)) == list(single.build().readings(registry))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["ENERGY", "Total", "Power", "Time", "emeters", "p"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_document_is_decoded_without_raising(doc: object) -> None:
    site = _site(
        [
            {"id": "plug", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
            {
                "id": "m",
                "role": "load",
                "protocol": "mqtt",
                "topic": "tele/plug/SENSOR",
                "ts_field": "Time",
                "rules": [{"path": "emeters[1].p", "metric": "voltage_v", "scale": 1e300}],
            },
        ]
    )
    payload = json.dumps(doc, allow_nan=True).encode()
    outcomes, readings = _decode(site, [("tele/plug/SENSOR", payload)])
    assert sorted(d.device_id for d in outcomes[0].devices) == ["m", "plug"]
    assert all(math.isfinite(r.value) for r in readings)


async def test_pattern_subscriptions_keep_a_persistent_session(
    mqtt_url: str, mqtt_broker_kind: str
) -> None:
    """With a client id the broker keeps what arrives on the rule patterns (here a
    Tasmota {device} filter) while the gateway is away, and delivers it on return."""
    if mqtt_broker_kind == "amqtt":
        pytest.skip("amqtt does not queue for a resumed session (Mosquitto is not installed)")
    tag = secrets.token_hex(3)
    site = _site(
        [
            {"id": f"a-{tag}", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
            {"id": f"b-{tag}", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
        ]
    )
    assert site.mqtt is not None
    mqtt = site.mqtt.model_copy(update={"client_id": f"zc-persist-{tag}"})
    registry = SeriesRegistry.for_site(site)
    received: list[Reading] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        received.extend(batch.readings(registry))
        if ack is not None:
            ack()

    async def session(until: Any) -> None:
        collector = MqttCollector(
            mqtt, site.mqtt_devices, ManualClock(ARRIVAL), sink, registry, url=mqtt_url
        )
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(10):
                await collector.subscribed.wait()
                while not until():
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    await session(lambda: True)  # the broker now knows the session and its filters
    url = urlparse(mqtt_url)
    async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
        for i in range(20):
            device = f"{'ab'[i % 2]}-{tag}"
            doc = {"Time": "2026-11-25T20:00:00", "ENERGY": {"Total": float(i)}}
            await pub.publish(f"tele/{device}/SENSOR", json.dumps(doc), qos=1)
    await session(lambda: len(received) >= 20)
    assert sorted(r.value for r in received) == [float(i) for i in range(20)]
    assert {r.device for r in received if r.value % 2} == {f"b-{tag}"}
