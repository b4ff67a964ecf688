"""zerocarbon.uplink.wire: every kind's payload round trip, the readings format's rules,
message splitting and ids, and malformed payloads refused as WireError."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, ReadingBatch, SeriesRegistry
from zerocarbon.rows import HourlyCarbon, HourlyLine
from zerocarbon.uplink.messages import (
    AccountsMessage,
    AlertRecord,
    AlertsMessage,
    DeviceEventRecord,
    EventsMessage,
    HourlyMessage,
    IssuedAccount,
    ReadingsMessage,
    StatusMessage,
    UplinkMessage,
)
from zerocarbon.uplink.subjects import Kind
from zerocarbon.uplink.wire import (
    MAX_NAME_BYTES,
    MAX_ROWS_PER_MESSAGE,
    READINGS_MAGIC,
    WORST_CASE_READINGS_BYTES,
    Codec,
    WireError,
    decode,
    encode,
    encode_readings,
    message_id,
    message_kind,
    readings_message,
    split_readings,
)

SITE = "plant-a"
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
T0_US = 1_780_300_800_000_000  # 2026-06-01T08:00Z [us]


def _readings(
    catalog: tuple[tuple[str, str], ...],
    series: list[int],
    ts_us: list[int],
    value: list[float],
    quality: list[int] | None = None,
) -> ReadingsMessage:
    return ReadingsMessage(
        SITE,
        catalog,
        np.array(series, np.uint16),
        np.array(ts_us, np.int64),
        np.array(value, np.float64),
        np.array(quality if quality is not None else [0] * len(series), np.uint8),
    )


def assert_same_readings(a: ReadingsMessage, b: ReadingsMessage) -> None:
    assert a.site == b.site
    assert a.catalog == b.catalog
    assert a.series.dtype == np.uint16 and b.series.dtype == np.uint16
    assert a.ts_us.dtype == np.int64 and a.value.dtype == np.float64
    assert a.quality.dtype == np.uint8
    np.testing.assert_array_equal(a.series, b.series)
    np.testing.assert_array_equal(a.ts_us, b.ts_us)
    # bit for bit: -0.0 stays -0.0
    np.testing.assert_array_equal(a.value.view(np.uint64), b.value.view(np.uint64))
    np.testing.assert_array_equal(a.quality, b.quality)


def keys_of(msg: ReadingsMessage) -> list[tuple[str, str, int, float, int]]:
    """Every row as (device, metric, ts_us, value, quality), in order."""
    return [
        (*msg.catalog[s], t, v, q)
        for s, t, v, q in zip(
            msg.series.tolist(),
            msg.ts_us.tolist(),
            msg.value.tolist(),
            msg.quality.tolist(),
            strict=True,
        )
    ]


# --- readings --------------------------------------------------------------------------


def test_readings_message_catalogs_the_series_present_from_the_registry() -> None:
    registry = SeriesRegistry(["meter-1", "pv-1"])
    pv_power = registry.id("pv-1", "active_power_kw")
    grid_in = registry.id("meter-1", "energy_import_kwh")
    grid_out = registry.id("meter-1", "energy_export_kwh")
    batch = ReadingBatch.of(
        [pv_power, grid_in, pv_power, grid_out],
        [T0_US + 2, T0_US, T0_US + 1, T0_US + 3],
        [12.5, 1000.25, 13.0, 7.0],
        [0, 1, 2, 0],
    )
    msg = readings_message(SITE, batch, registry)
    # in order of the gateway's series ids: meter-1 (device 0) before pv-1
    assert msg.catalog == (
        ("meter-1", "energy_import_kwh"),
        ("meter-1", "energy_export_kwh"),
        ("pv-1", "active_power_kw"),
    )
    assert msg.series.dtype == np.uint16
    assert keys_of(msg) == [
        ("pv-1", "active_power_kw", T0_US + 2, 12.5, 0),
        ("meter-1", "energy_import_kwh", T0_US, 1000.25, 1),
        ("pv-1", "active_power_kw", T0_US + 1, 13.0, 2),
        ("meter-1", "energy_export_kwh", T0_US + 3, 7.0, 0),
    ]
    back = decode("readings", SITE, encode(msg))
    assert isinstance(back, ReadingsMessage)
    assert_same_readings(back, msg)


def test_readings_message_of_an_empty_batch_and_of_unknown_series() -> None:
    registry = SeriesRegistry(["meter-1", "pv-1"])
    empty = readings_message(SITE, ReadingBatch.empty(), registry)
    assert empty.catalog == () and len(empty) == 0
    with pytest.raises(ValueError, match="not in the site's registry"):
        readings_message(SITE, ReadingBatch.of([2 * 64 + 1], [T0_US], [1.0]), registry)
    with pytest.raises(ValueError, match="not in the site's registry"):
        readings_message(SITE, ReadingBatch.of([0], [T0_US], [1.0]), registry)  # slot 0


@st.composite
def readings_messages(draw: st.DrawFn) -> ReadingsMessage:
    entries = draw(st.sampled_from([0, 1, 3, 256, 257, 700]))
    rows = 0 if entries == 0 else draw(st.integers(0, 300))
    catalog = tuple(
        (f"dev-{i}", draw(st.sampled_from(["é", "active_power_kw", "x"]))) for i in range(entries)
    )
    series = draw(hnp.arrays(np.uint16, rows, elements=st.integers(0, max(entries - 1, 0))))
    ts_us = draw(hnp.arrays(np.int64, rows, elements=st.integers(MIN_TS_US, MAX_TS_US)))
    value = draw(
        hnp.arrays(np.float64, rows, elements=st.floats(allow_nan=False, allow_infinity=False))
    )
    quality = draw(hnp.arrays(np.uint8, rows, elements=st.integers(0, 2)))
    return ReadingsMessage(SITE, catalog, series, ts_us, value, quality)


@settings(max_examples=150, deadline=None)
@given(msg=readings_messages(), codec=st.sampled_from(["none", "zlib", "zstd"]))
def test_readings_round_trip(msg: ReadingsMessage, codec: Codec) -> None:
    payload = encode_readings(msg, codec)
    assert payload[:4] == READINGS_MAGIC
    back = decode("readings", SITE, payload)
    assert isinstance(back, ReadingsMessage)
    assert_same_readings(back, msg)


def test_readings_compress_plant_like_data() -> None:
    """Regular series (1 s apart, slowly rising counters) take far less than the 19
    bytes of their bare columns."""
    n, series_count = 6_000, 50
    i = np.arange(n)
    msg = ReadingsMessage(
        SITE,
        tuple((f"meter-{k}", "energy_import_kwh") for k in range(series_count)),
        (i % series_count).astype(np.uint16),
        T0_US + (i // series_count) * 1_000_000,
        np.round(1000 + i * 0.01, 2),
        np.zeros(n, np.uint8),
    )
    assert len(encode(msg)) / n < 6


def test_encode_refuses_what_the_center_would_refuse() -> None:
    cat = (("meter-1", "active_power_kw"),)
    for bad, what in [
        (_readings(cat, [0], [T0_US], [float("nan")]), "not finite"),
        (_readings(cat, [0], [T0_US], [float("inf")]), "not finite"),
        (_readings(cat, [1], [T0_US], [1.0]), "catalog index 1 out of range"),
        (_readings(cat, [0], [T0_US], [1.0], [3]), "unknown quality code 3"),
        (_readings(cat, [0], [MAX_TS_US + 1], [1.0]), "outside years"),
        (_readings((("m", "x\ny"),), [0], [T0_US], [1.0]), "holds a"),
        (_readings((("m" * (MAX_NAME_BYTES + 1), "x"),), [0], [T0_US], [1.0]), "1..64"),
        (_readings((("", "x"),), [0], [T0_US], [1.0]), "1..64"),
        (_readings(cat * 2, [0], [T0_US], [1.0]), "duplicate"),
    ]:
        with pytest.raises(WireError, match=what) as e:
            encode(bad)
        assert f"readings message of site {SITE!r}" in str(e.value)
    uneven = ReadingsMessage(
        SITE, cat, np.zeros(2, np.uint16), np.zeros(1, np.int64), np.zeros(2), np.zeros(2, np.uint8)
    )
    with pytest.raises(WireError, match="unequal"):
        encode(uneven)


# --- split and size ----------------------------------------------------------------------


def test_split_keeps_every_row_in_order_with_each_parts_own_catalog() -> None:
    rng = np.random.default_rng(3)
    n, entries = 2_503, 40
    catalog = tuple((f"meter-{k}", "active_power_kw") for k in range(entries))
    msg = ReadingsMessage(
        SITE,
        catalog,
        rng.integers(0, entries, n).astype(np.uint16),
        T0_US + np.arange(n, dtype=np.int64) * 10_000,
        rng.normal(100, 5, n),
        rng.integers(0, 3, n).astype(np.uint8),
    )
    parts = split_readings(msg, 500)
    assert [len(p) for p in parts] == [500, 500, 500, 500, 500, 3]
    assert [k for p in parts for k in keys_of(p)] == keys_of(msg)
    for p in parts:
        used = np.unique(p.series)
        np.testing.assert_array_equal(used, np.arange(len(p.catalog)))  # no unused entry
        back = decode("readings", SITE, encode(p))
        assert isinstance(back, ReadingsMessage)
        assert keys_of(back) == keys_of(p)
    assert split_readings(msg) == [msg]  # under MAX_ROWS_PER_MESSAGE: as it is
    assert split_readings(_readings((), [], [], [])) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_readings(msg, 0)


def test_split_keeps_a_poll_in_one_part_unless_it_is_too_big() -> None:
    """Polls of 7 readings sharing a ts: cut between polls; a poll of 1,200: cut."""
    catalog = tuple((f"meter-{k}", "active_power_kw") for k in range(7))
    polls = 300
    ts = np.repeat(T0_US + np.arange(polls, dtype=np.int64) * 1_000_000, 7)
    big = np.full(1_200, T0_US + polls * 1_000_000, dtype=np.int64)
    msg = ReadingsMessage(
        SITE,
        catalog,
        np.concatenate([np.tile(np.arange(7), polls), np.arange(1_200) % 7]).astype(np.uint16),
        np.concatenate([ts, big]),
        np.arange(polls * 7 + 1_200, dtype=np.float64),
        np.zeros(polls * 7 + 1_200, dtype=np.uint8),
    )
    parts = split_readings(msg, 500)
    assert [len(p) for p in parts] == [497] * 4 + [112, 500, 500, 200]
    assert [k for p in parts for k in keys_of(p)] == keys_of(msg)
    firsts = [int(p.ts_us[0]) for p in parts]
    lasts = [int(p.ts_us[-1]) for p in parts]
    assert all(a < b for a, b in zip(lasts[:4], firsts[1:5], strict=True))  # no poll cut


def test_worst_case_message_is_under_nats_max_payload() -> None:
    """MAX_ROWS_PER_MESSAGE rows, each a series of its own with names of the longest,
    random bits as values and times: the payload stays under 1 MiB."""
    n = MAX_ROWS_PER_MESSAGE
    rng = np.random.default_rng(5)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)
    text = rng.choice(letters, (n, 2, MAX_NAME_BYTES)).tobytes().decode()
    names = [text[i : i + MAX_NAME_BYTES] for i in range(0, len(text), MAX_NAME_BYTES)]
    catalog = tuple(zip(names[0::2], names[1::2], strict=True))
    value = rng.integers(0, 1 << 62, n, dtype=np.int64).view(np.float64)
    value[~np.isfinite(value)] = 1.0
    msg = ReadingsMessage(
        SITE,
        catalog,
        np.arange(n, dtype=np.uint16),
        rng.integers(MIN_TS_US, MAX_TS_US, n, dtype=np.int64),
        value,
        rng.integers(0, 3, n).astype(np.uint8),
    )
    sizes = {c: len(encode_readings(msg, c)) for c in ("none", "zlib", "zstd")}
    assert max(sizes.values()) <= WORST_CASE_READINGS_BYTES < 1 << 20
    # the bound is near: this case is the worst (but for compression)
    assert sizes["none"] > 0.9 * WORST_CASE_READINGS_BYTES


# --- JSON kinds ----------------------------------------------------------------------------


def _carbon(hour: datetime, complete: bool) -> HourlyCarbon:
    return HourlyCarbon(
        hour, 120.5, 3.25, 40.0, 0.0, 1.5, 2.0, 160.75, 150.0, 10.75, 42.0,
        12.0, 70.1, 55.2, 20.0, 5.0, 65.0, 0.5703, 0.6, 0.436, None, 0.404, 0.0,
        0 if complete else 2, 1, complete,
    )  # fmt: skip


def json_messages() -> list[UplinkMessage]:
    cst = timezone(timedelta(hours=8))
    return [
        HourlyMessage(
            SITE,
            T0 + timedelta(minutes=5, microseconds=7),
            (_carbon(T0, True), _carbon(T0 + timedelta(hours=1), False)),
            (HourlyLine(T0, "line-1", 80.0, 400.0, 0.2, 45.6, 48.0, None, 0.1),),
        ),
        HourlyMessage(SITE, T0, (), ()),
        AlertsMessage(
            SITE,
            (
                AlertRecord(
                    7,
                    31,
                    "peak-demand",
                    "demand",
                    "site",
                    2,
                    "critical",
                    "resolved",
                    T0,
                    T0 + timedelta(seconds=30),
                    T0 + timedelta(hours=1),
                    None,
                    "Demand over 900 kW",
                    "需量超过 900 kW",
                ),
            ),
        ),  # fmt: skip
        EventsMessage(
            SITE,
            (
                DeviceEventRecord(11, T0, "meter-1", "connection_lost", "timeout after 3 s"),
                DeviceEventRecord(12, T0 + timedelta(seconds=9), "meter-1", "back", ""),
            ),
        ),
        AccountsMessage(
            SITE,
            (
                IssuedAccount(
                    3,
                    "2026-Q2",
                    T0,
                    "auditor",
                    None,
                    {"scope1_kg": 12.5, "lines": [{"line": "line-1", "kwh": 8}], "ok": True},
                ),
                IssuedAccount(4, "2026-06", T0, "auditor", 2, {}),
            ),
        ),  # fmt: skip
        StatusMessage(
            SITE,
            datetime(2026, 6, 1, 16, 0, 1, 250_000, tzinfo=cst),  # 08:00:01.25Z
            "Plant A 工厂",
            "Asia/Shanghai",
            "https://plant-a.example/live",
            3,
            40_960,
            125,
            1_000_000_000_000,
            0,
            "0.1.0",
        ),
    ]


@pytest.mark.parametrize("msg", json_messages(), ids=lambda m: type(m).__name__)
def test_json_round_trip(msg: UplinkMessage) -> None:
    kind = message_kind(msg)
    payload = encode(msg)
    doc = json.loads(payload)
    assert doc["v"] == 1 and "site" not in doc  # the subject names the site
    back = decode(kind, SITE, payload)
    assert back == msg
    assert type(back) is type(msg)


def test_json_times_are_iso_utc_and_text_is_utf8() -> None:
    status = json_messages()[-1]
    doc = json.loads(encode(status).decode("utf-8"))
    assert doc["sent_at"] == "2026-06-01T08:00:01.250000Z"
    assert doc["name"] == "Plant A 工厂"
    back = decode("status", SITE, encode(status))
    assert isinstance(back, StatusMessage) and back.sent_at.tzinfo == UTC


def test_json_encode_refuses_non_finite_and_naive_times() -> None:
    hourly = json_messages()[0]
    assert isinstance(hourly, HourlyMessage)
    nan_row = HourlyLine(T0, "line-1", float("nan"), 1.0, None, 0.0, 0.0, None, 0.0)
    with pytest.raises(WireError, match=r"hourly message of site 'plant-a': lines\[0\]\.energy"):
        encode(HourlyMessage(SITE, T0, (), (nan_row,)))
    with pytest.raises(WireError, match="computed_at is not an aware datetime"):
        encode(HourlyMessage(SITE, datetime(2026, 6, 1), (), ()))
    with pytest.raises(WireError, match="not JSON-able"):
        encode(AccountsMessage(SITE, (IssuedAccount(1, "2026", T0, "a", None, {"x": {1, 2}}),)))


def test_message_ids_follow_the_payload() -> None:
    a = encode(_readings((("meter-1", "active_power_kw"),), [0], [T0_US], [1.0]))
    a_again = encode(_readings((("meter-1", "active_power_kw"),), [0], [T0_US], [1.0]))
    b = encode(_readings((("meter-1", "active_power_kw"),), [0], [T0_US], [1.5]))
    assert message_id(SITE, "readings", a) == message_id(SITE, "readings", a_again)
    assert message_id(SITE, "readings", a) != message_id(SITE, "readings", b)
    assert message_id(SITE, "readings", a) != message_id("plant-b", "readings", a)
    assert message_id(SITE, "readings", a) != message_id(SITE, "status", a)
    assert message_id(SITE, "readings", a).startswith("plant-a:readings:")
    assert len(message_id(SITE, "readings", a).rsplit(":", 1)[1]) == 32


# --- malformed payloads ---------------------------------------------------------------------


def _plain_one_row(value: float = 1.0, quality: int = 0, series_byte: int = 0) -> bytes:
    """An uncompressed readings payload of one row, with its bytes patched: one row's
    columns are the last 1 + 1 + 8 + 8 bytes (series, quality, ts planes, value)."""
    p = bytearray(encode_readings(_readings((("m", "p"),), [0], [T0_US], [1.0]), "none"))
    p[-18] = series_byte
    p[-17] = quality
    p[-8:] = struct.pack("<d", value)
    return bytes(p)


def _header(body: bytes, codec: int = 0, version: int = 1, magic: bytes = READINGS_MAGIC) -> bytes:
    return struct.pack("<4sBBHI", magic, version, codec, 0, len(body)) + body


_GOOD = encode_readings(_readings((("meter-1", "p"),) * 1, [0, 0], [T0_US, T0_US + 1], [1, 2]))
_PLAIN = encode_readings(_readings((("meter-1", "p"),), [0, 0], [T0_US, T0_US + 1], [1, 2]), "none")
_BODY = _PLAIN[12:]

READINGS_CASES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "truncated"),
    ("short header", _GOOD[:7], "truncated"),
    ("wrong magic", b"ZCRX" + _GOOD[4:], "wrong magic"),
    ("json sent as readings", b'{"v":1,"alerts":[]}', "wrong magic"),
    ("unknown version", _header(_BODY, version=2), "unknown format version 2"),
    ("unknown codec", _header(_BODY, codec=9), "unknown codec 9"),
    ("reserved set", _PLAIN[:6] + b"\x01\x00" + _PLAIN[8:], "reserved"),
    ("huge body claimed", _PLAIN[:8] + struct.pack("<I", 1 << 31) + _BODY, "at most 64 MiB"),
    ("zstd truncated", _GOOD[:-4], "zstd"),
    ("zstd trailing bytes", _GOOD + b"\x00", "zstd stream longer"),
    ("zlib garbage", _header(_BODY, codec=1), "zlib body does not decompress"),
    (
        "zlib shorter than claimed",
        struct.pack("<4sBBHI", READINGS_MAGIC, 1, 1, 0, len(_BODY) + 5) + zlib.compress(_BODY),
        f"body is {len(_BODY)} bytes, the header says {len(_BODY) + 5}",
    ),
    (
        "zlib longer than claimed",
        struct.pack("<4sBBHI", READINGS_MAGIC, 1, 1, 0, len(_BODY) - 5) + zlib.compress(_BODY),
        "zlib stream longer or shorter",
    ),
    ("body truncated", _PLAIN[:-3], "body is"),
    ("body longer", _PLAIN + b"\x00", "body is"),
    ("body head truncated", _header(_BODY[:5]), "truncated body"),
    ("rows disagree", _header(struct.pack("<I", 3) + _BODY[4:]), "make"),
    ("too many entries", _header(_BODY[:4] + struct.pack("<I", 70_000) + _BODY[8:]), "65,536"),
    ("catalog count", _header(_BODY[:4] + struct.pack("<I", 2) + _BODY[8:]), "names for 2"),
    ("catalog not utf-8", _header(_BODY[:12] + b"\xff" + _BODY[13:]), "not UTF-8"),
    ("catalog index out of range", _plain_one_row(series_byte=1), "index 1 out of range"),
    ("NaN value", _plain_one_row(float("nan")), "not finite"),
    ("infinite value", _plain_one_row(float("-inf")), "not finite"),
    ("unknown quality", _plain_one_row(quality=7), "unknown quality code 7"),
]


@pytest.mark.parametrize(
    ("payload", "what"), [c[1:] for c in READINGS_CASES], ids=[c[0] for c in READINGS_CASES]
)
def test_malformed_readings_raise_wire_error(payload: bytes, what: str) -> None:
    with pytest.raises(WireError, match=what) as e:
        decode("readings", SITE, payload)
    assert str(e.value).startswith(f"readings message of site {SITE!r}: ")


def test_the_patched_payloads_are_otherwise_valid() -> None:
    """The malformed cases above break one thing each: unpatched, they decode."""
    assert len(decode("readings", SITE, _plain_one_row())) == 1  # type: ignore[arg-type]
    assert len(decode("readings", SITE, _GOOD)) == 2  # type: ignore[arg-type]
    assert len(decode("readings", SITE, _header(_BODY, codec=1)[:12] + zlib.compress(_BODY))) == 2  # type: ignore[arg-type]


def _status_doc(**change: Any) -> bytes:
    doc = json.loads(encode(json_messages()[-1]))
    doc.update(change)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def _events_doc(**change: Any) -> bytes:
    doc = json.loads(encode(json_messages()[3]))
    doc["events"][0].update(change)
    doc["events"][0] = {k: v for k, v in doc["events"][0].items() if v is not ...}
    return json.dumps(doc).encode()


JSON_CASES: list[tuple[str, Kind, bytes, str]] = [
    ("empty", "status", b"", "bad JSON"),
    ("not JSON", "status", b"{'v': 1}", "bad JSON"),
    ("not UTF-8", "status", b'{"name":"\xff"}', "bad JSON"),
    ("readings sent as JSON", "alerts", _GOOD, "bad JSON"),
    ("a list", "alerts", b"[]", "not a JSON object"),
    ("no version", "status", _status_doc(v=...), "unknown format version None"),
    ("version 2", "status", _status_doc(v=2), "unknown format version 2"),
    ("version true", "status", _status_doc(v=True), "unknown format version True"),
    ("missing field", "status", _status_doc(version=...), "version: missing field"),
    ("unknown field", "status", _status_doc(color="red"), "color: unknown field"),
    ("NaN", "status", _status_doc(backlog_bytes=float("nan")), "NaN is not a JSON number"),
    ("float for int", "status", _status_doc(backlog_bytes=1.5), "backlog_bytes is not a 64-bit"),
    ("huge int", "status", _status_doc(backlog_bytes=1 << 70), "backlog_bytes is not a 64-bit"),
    ("bool for int", "status", _status_doc(backlog_bytes=True), "backlog_bytes is not a 64-bit"),
    ("null not allowed", "status", _status_doc(name=None), "name is null"),
    ("naive time", "status", _status_doc(sent_at="2026-06-01T08:00:00"), "no time zone"),
    ("bad time", "status", _status_doc(sent_at="yesterday"), "not an ISO 8601 time"),
    ("number as time", "status", _status_doc(sent_at=0), "not an ISO 8601 string"),
    ("row field missing", "events", _events_doc(device=...), r"events\[0\]\.device: missing"),
    ("row wrong type", "events", _events_doc(detail=3), r"events\[0\]\.detail is not a string"),
    ("rows not a list", "events", b'{"v":1,"events":{}}', "events is not a list"),
    ("row not an object", "events", b'{"v":1,"events":[1]}', r"events\[0\]\. is not a JSON"),
    ("account not an object", "accounts", b'{"v":1,"accounts":[{"report_id":1,"period":"2026",'
     b'"issued_at":"2026-01-01T00:00:00Z","issued_by":"a","supersedes":null,"account":[]}]}',
     r"accounts\[0\]\.account is not a JSON object"),
    ("deep nesting", "accounts", b"[" * 100_000, "bad JSON"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "payload", "what"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_malformed_json_raises_wire_error(kind: Kind, payload: bytes, what: str) -> None:
    with pytest.raises(WireError, match=what) as e:
        decode(kind, SITE, payload)
    assert str(e.value).startswith(f"{kind} message of site {SITE!r}: ")


def test_unknown_kind_names_the_site() -> None:
    with pytest.raises(WireError, match="site 'plant-a': unknown kind 'weather'"):
        decode("weather", SITE, b"{}")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([_GOOD, _PLAIN, encode(json_messages()[0]), encode(json_messages()[-1])]),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3),
)
def test_damaged_payloads_decode_or_raise_wire_error(
    base: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    """Whatever the damage (cut, bytes changed), decoding gives a message or WireError,
    never another exception."""
    data = bytearray(base[: max(0, len(base) - cut)] if cut % 2 else base)
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    kind: Kind = (
        "readings"
        if base[:4] == READINGS_MAGIC
        else ("hourly" if base is not _GOOD and b"carbon" in base else "status")
    )
    try:
        decode(kind, SITE, bytes(data))
    except WireError as e:
        assert SITE in str(e) and kind in str(e)
