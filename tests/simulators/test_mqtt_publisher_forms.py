"""The publisher's message forms: rules and presets as JSON documents, Sparkplug B
edge nodes (births, data, seq, rebirth requests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.ingest.clocks import ManualClock
from zerocarbon.config import MqttDevice, SiteConfig, parse_site
from zerocarbon.ingest.mqtt.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    Payload,
    decode_payload,
    encode_payload,
    rebirth_request,
)
from zerocarbon.simulators.faults import FaultPlan
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.mqtt_publisher import (
    MqttPublisher,
    SparkplugEdge,
    json_messages,
    publish_topic,
)
from zerocarbon.simulators.plant import PlantModel

TS_S = datetime(2026, 7, 1, 10, 0, 5, tzinfo=UTC).timestamp()


def _site(*devices: dict[str, Any]) -> SiteConfig:
    grid = {
        "id": "grid",
        "role": "grid",
        "protocol": "mqtt",
        "topic": "g",
        "fields": {"p": "active_power_kw"},
    }
    return parse_site(
        {"site": {"timezone": "Europe/Berlin"}, "mqtt": {}, "devices": [grid, *devices]}
    )


def _device(site: SiteConfig, device_id: str) -> MqttDevice:
    device = site.device(device_id)
    assert isinstance(device, MqttDevice)
    return device


def test_publish_topic() -> None:
    assert publish_topic("tele/{device}/SENSOR", "plug") == "tele/plug/SENSOR"
    assert publish_topic("site/+/m/#", "m1") == "site/m1/m"
    assert publish_topic("a/b", "x") == "a/b"


def test_tasmota_document_has_local_time_and_units_of_tasmota() -> None:
    site = _site({"id": "plug", "role": "load", "protocol": "mqtt", "preset": "tasmota"})
    values = {"energy_import_kwh": 12.5, "active_power_kw": 2.3, "voltage_v": 230.0}
    [(topic, doc)] = json_messages(_device(site, "plug"), values, TS_S, site.site.timezone)
    assert topic == "tele/plug/SENSOR"
    assert doc["Time"] == "2026-07-01T12:00:05"  # CEST, no offset, as Tasmota sends it
    assert doc["ENERGY"]["Total"] == 12.5 and doc["ENERGY"]["Voltage"] == 230.0
    assert abs(doc["ENERGY"]["Power"] - 2300.0) < 1e-9  # W
    assert doc["ENERGY"]["Current"] == 10.0


def test_shelly_documents_per_component_topic() -> None:
    site = _site(
        {
            "id": "sw",
            "role": "load",
            "protocol": "mqtt",
            "preset": "shelly",
            "prefix": "shellyplus1pm-1",
        },
        {"id": "em", "role": "load", "protocol": "mqtt", "preset": "shelly_pro3em"},
    )
    values = {"energy_import_kwh": 2.0, "active_power_kw": 1.5, "voltage_v": 231.0}
    [(topic, doc)] = json_messages(_device(site, "sw"), values, TS_S)
    assert topic == "shellyplus1pm-1/status/switch:0"
    assert doc["id"] == 0 and doc["output"] is True and doc["aenergy"]["total"] == 2000.0
    assert doc["apower"] == 1500.0 and doc["voltage"] == 231.0 and "ts" not in doc
    em = json_messages(_device(site, "em"), {**values, "energy_export_kwh": 0.5}, TS_S)
    assert dict(em) == {
        "em/status/em:0": {"id": 0, "total_act_power": 1500.0, "a_voltage": 231.0},
        "em/status/emdata:0": {"id": 0, "total_act": 2000.0, "total_act_ret": 500.0},
    }


def test_rules_with_list_indexes_and_a_utc_time() -> None:
    rules = [
        {"path": "emeters[2].power", "metric": "active_power_kw", "scale": 0.001},
        {"path": "meta.total", "metric": "energy_import_kwh"},
    ]
    site = _site(
        {
            "id": "m",
            "role": "load",
            "protocol": "mqtt",
            "topic": "plant/{device}/status",
            "ts_field": "meta.time",
            "rules": rules,
        }
    )
    [(topic, doc)] = json_messages(
        _device(site, "m"), {"active_power_kw": 4.0, "energy_import_kwh": 9.0}, TS_S
    )
    assert topic == "plant/m/status"
    assert doc == {
        "emeters": [{}, {}, {"power": 4000.0}],
        "meta": {"total": 9.0, "time": "2026-07-01T10:00:05.000000+00:00"},
    }


def _edge() -> SparkplugEdge:
    site = _site(
        {
            "id": "chiller",
            "role": "load",
            "protocol": "mqtt",
            "sparkplug": {"group": "g", "edge_node": "e", "device": "m1"},
            "rules": [{"name": "Power", "metric": "active_power_kw", "scale": 0.001}],
        },
        {
            "id": "node",
            "role": "load",
            "protocol": "mqtt",
            "sparkplug": {"group": "g", "edge_node": "e"},
            "rules": [{"name": "Voltage", "metric": "voltage_v"}],
        },
    )
    return SparkplugEdge("g", "e", [_device(site, "chiller"), _device(site, "node")])


def _values(device_id: str) -> dict[str, float]:
    return {"chiller": {"active_power_kw": 2.5}, "node": {"voltage_v": 229.5}}[device_id]


def test_edge_births_then_data_with_aliases_and_seq() -> None:
    edge = _edge()
    will_topic, will = edge.new_session()
    assert will_topic == "spBv1.0/g/NDEATH/e"
    assert decode_payload(will).metrics == (Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, 0),)
    births = edge.birth(_values, 1000)
    assert [t for t, _ in births] == ["spBv1.0/g/NBIRTH/e", "spBv1.0/g/DBIRTH/e/m1"]
    nbirth, dbirth = (decode_payload(p) for _, p in births)
    assert (nbirth.seq, dbirth.seq) == (0, 1)
    assert [m.name for m in nbirth.metrics] == [BD_SEQ_METRIC, REBIRTH_METRIC, "Voltage"]
    assert [(m.name, m.alias, m.value) for m in dbirth.metrics] == [("Power", 1, 2500.0)]
    data = edge.data(_values, 2000)
    assert [t for t, _ in data] == ["spBv1.0/g/DDATA/e/m1", "spBv1.0/g/NDATA/e"]
    ddata = decode_payload(data[0][1])
    assert ddata.seq == 2 and ddata.metrics == (Metric(None, 1, 2000, DataType.DOUBLE, 2500.0),)
    edge.lose_messages(3)
    assert decode_payload(edge.data(_values, 3000)[0][1]).seq == 7
    for _ in range(300):
        edge.data(_values, 4000)
    assert 0 <= (decode_payload(edge.data(_values, 5000)[0][1]).seq or 0) < 256
    assert decode_payload(edge.birth(_values, 6000)[0][1]).seq == 0  # a rebirth starts over


def test_edge_answers_only_its_rebirth_command() -> None:
    edge = _edge()
    assert edge.wants_rebirth("spBv1.0/g/NCMD/e", rebirth_request(1000))
    assert not edge.wants_rebirth("spBv1.0/g/NCMD/other", rebirth_request(1000))
    no = encode_payload(
        Payload(1000, None, (Metric(REBIRTH_METRIC, None, None, DataType.BOOLEAN, False),))
    )
    assert not edge.wants_rebirth("spBv1.0/g/NCMD/e", no)
    assert not edge.wants_rebirth("spBv1.0/g/NCMD/e", b"\x12\x7f")


def test_faults_apply_to_each_topic_of_a_preset_device() -> None:
    """Faults see a preset device on each topic its form publishes on: a gap silences
    its messages, a duplicate doubles its message at the fault's time."""
    start_s = TS_S - 100.0
    site = _site(
        {"id": "em", "role": "load", "protocol": "mqtt", "preset": "shelly_pro3em"},
        {"id": "plug", "role": "load", "protocol": "mqtt", "preset": "tasmota"},
    )
    faults = {
        "gaps": [{"device": "plug", "start_s": 50, "duration_s": 100}],
        "duplicates": [{"device": "em", "at_s": [100]}],
    }
    data = site.model_dump(mode="json", exclude_none=True)
    for device in data["devices"]:
        device.pop("fields")  # derived from the presets, as in a site file
        device.pop("topic", None)
    data["devices"][0].update(topic="g", fields={"p": "active_power_kw"})
    site = parse_site({**data, "simulation": {"faults": faults}})
    plan = FaultPlan(site, start_s, GroundTruth())
    publisher = MqttPublisher(
        site,
        PlantModel(site, start_s),
        ManualClock(datetime.fromtimestamp(start_s, UTC)),
        faults=plan,
    )
    values = {"energy_import_kwh": 2.0, "active_power_kw": 1.5, "voltage_v": 231.0}
    messages = [
        (publisher._on_topic(d, topic), json.dumps(doc))
        for d in publisher.json_devices[1:]
        for topic, doc in json_messages(d, values, TS_S)
    ]
    sent = [topic for topic, _ in publisher._apply_faults(messages, TS_S)]
    # the plug's message withheld; the duplicate (one message at 100 s) is em's first
    assert sent == ["em/status/em:0", "em/status/em:0", "em/status/emdata:0"]
    assert publisher.stats.withheld == 1 and publisher.stats.duplicated == 1
