from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zerocarbon.batch import BatchBuilder, Reading, SeriesRegistry, datetime_to_us
from zerocarbon.config import MqttDevice, SiteConfig
from zerocarbon.ingest.mqtt.payload import PayloadError, field_series
from zerocarbon.ingest.mqtt.payload import parse_payload as _parse_into

ARRIVAL = datetime(2026, 6, 21, 4, 0, tzinfo=UTC)


def _line(demo_site: SiteConfig) -> MqttDevice:
    device = demo_site.device("line_a")
    assert isinstance(device, MqttDevice)
    return device


def parse_payload(
    device: MqttDevice, payload: bytes, arrival: datetime
) -> tuple[list[Reading], list[str]]:
    """The parser into a fresh builder, its rows as Reading views for the checks."""
    registry = SeriesRegistry([device.id])
    builder = BatchBuilder(registry)
    count, problems = _parse_into(
        device, payload, datetime_to_us(arrival), field_series(device, registry), builder
    )
    readings = list(builder.build().readings(registry))
    assert count == len(readings)
    return readings, problems


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
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"power_kw": 1, "pad": "' + b"x" * 300_000 + b'"}', "larger than the 262,144"),
    ],
)
def test_bad_payloads_name_device_and_topic(
    demo_site: SiteConfig, payload: bytes, needle: str
) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(_line(demo_site), payload, ARRIVAL)
    assert needle in str(info.value)
    assert "factory/line_a/meter" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"2099-01-01T00:00:00Z"', datetime(2099, 1, 1, tzinfo=UTC)),
        ('"9999-12-31T23:59:59.999999+00:00"', datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)),
        ('"0001-01-01T00:00:00+00:00"', datetime(1, 1, 1, tzinfo=UTC)),
        ('"0001-01-01T05:00:00+05:00"', datetime(1, 1, 1, tzinfo=UTC)),
        ("-62135596800", datetime(1, 1, 1, tzinfo=UTC)),
        ("253402300799.5", datetime(9999, 12, 31, 23, 59, 59, 500000, UTC)),
        ("1782014400.000001", datetime(2026, 6, 21, 4, 0, 0, 1, UTC)),
    ],
)
def test_extreme_but_representable_timestamps_parse_exactly(
    demo_site: SiteConfig, raw: str, expected: datetime
) -> None:
    """Years 1 and 9999 parse (to the microsecond); admission, not the parser, drops
    them for lying outside the accepted window."""
    payload = f'{{"ts": {raw}, "power_kw": 1}}'.encode()
    readings, _ = parse_payload(_line(demo_site), payload, ARRIVAL)
    assert readings[0].ts == expected


@pytest.mark.parametrize(
    "raw",
    [
        '"9999-12-31T23:59:59-01:00"',  # after year 9999 in UTC: overflows a datetime
        '"0001-01-01T00:00:00+01:00"',  # before year 1 in UTC
        '"10000-01-01T00:00:00Z"',
        "253402300800",  # POSIX seconds of 10000-01-01
        "-62135596801",
        "1e20",
        "-1e20",
        "1e308",
        "100000000000000000000000000000000",  # an int beyond int64 microseconds
        "true",
        '"NaN"',
    ],
)
def test_unrepresentable_timestamps_are_a_clean_payload_error(
    demo_site: SiteConfig, raw: str
) -> None:
    payload = f'{{"ts": {raw}, "power_kw": 1}}'.encode()
    with pytest.raises(PayloadError) as info:
        parse_payload(_line(demo_site), payload, ARRIVAL)
    message = str(info.value)
    assert "'line_a'" in message and "factory/line_a/meter" in message and "'ts'" in message


def test_huge_integer_value_is_a_problem_not_a_crash(demo_site: SiteConfig) -> None:
    readings, problems = parse_payload(
        _line(demo_site), b'{"power_kw": 1' + b"0" * 400 + b', "energy_kwh": 5}', ARRIVAL
    )
    assert [r.metric for r in readings] == ["energy_import_kwh"]
    assert len(problems) == 1 and "'power_kw'" in problems[0] and len(problems[0]) < 300
