from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zerocarbon.config import MqttDevice, SiteConfig
from zerocarbon.ingest.mqtt.payload import PayloadError, parse_payload

ARRIVAL = datetime(2026, 6, 21, 4, 0, tzinfo=UTC)


def _line(demo_site: SiteConfig) -> MqttDevice:
    device = demo_site.device("line_a")
    assert isinstance(device, MqttDevice)
    return device


def test_fields_and_iso_timestamp(demo_site: SiteConfig) -> None:
    payload = b'{"ts": "2026-06-21T03:00:05.5+00:00", "power_kw": 310.5, "energy_kwh": 1000}'
    readings, problems = parse_payload(_line(demo_site), payload, ARRIVAL)
    assert problems == []
    assert {r.metric: r.value for r in readings} == {
        "active_power_kw": 310.5,
        "energy_import_kwh": 1000.0,
    }
    assert readings[0].ts == datetime(2026, 6, 21, 3, 0, 5, 500000, tzinfo=UTC)


def test_posix_timestamp_and_arrival_fallback(demo_site: SiteConfig) -> None:
    readings, _ = parse_payload(_line(demo_site), b'{"ts": 1782014400, "power_kw": 1}', ARRIVAL)
    assert readings[0].ts == datetime.fromtimestamp(1782014400, UTC)
    readings, _ = parse_payload(_line(demo_site), b'{"power_kw": 1}', ARRIVAL)
    assert readings[0].ts == ARRIVAL


def test_bad_key_costs_only_that_key(demo_site: SiteConfig) -> None:
    readings, problems = parse_payload(
        _line(demo_site), b'{"power_kw": "high", "energy_kwh": 5}', ARRIVAL
    )
    assert [r.metric for r in readings] == ["energy_import_kwh"]
    assert len(problems) == 1 and "'power_kw'" in problems[0] and "line_a" in problems[0]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"ts": "yesterday", "power_kw": 1}', "'ts'"),
        (b'{"ts": "2026-06-21T03:00:00", "power_kw": 1}', "no UTC offset"),
        (b'{"other": 1}', "none of the keys"),
        (b'{"power_kw": NaN}', "finite number"),
    ],
)
def test_bad_payloads_name_device_and_topic(
    demo_site: SiteConfig, payload: bytes, needle: str
) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(_line(demo_site), payload, ARRIVAL)
    assert needle in str(info.value)
    assert "factory/line_a/meter" in str(info.value)
