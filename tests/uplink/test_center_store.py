"""CenterStore against a real PostgreSQL: batches of every kind stored once, whatever
is redelivered, replayed or stored by two workers at the same time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import MAX_TS_US, Quality, datetime_to_us, us_to_datetime
from zerocarbon.rows import HourlyCarbon, HourlyLine
from zerocarbon.storage.database import drop_database, ensure_database, open_pool
from zerocarbon.uplink import center_readings
from zerocarbon.uplink.center_schema import apply_center_policies, create_center_schema
from zerocarbon.uplink.center_store import CenterStore, InvalidMessage, StoreResult
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
from zerocarbon.uplink.reading_sets import ReadingSets

T0 = datetime(2026, 6, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
# "power_kw" is no metric of zerocarbon.metering.metrics: the center stores any name
CATALOG = (("main", "active_power_kw"), ("main", "energy_import_kwh"), ("line1", "power_kw"))
TABLES = (
    "sites",
    "site_series",
    "site_reading_sets",
    "site_hourly_carbon",
    "site_hourly_line",
    "site_alerts",
    "site_device_events",
    "site_accounts",
)


@pytest.fixture(scope="module")
async def center_url(pg_server_url: str) -> AsyncIterator[str]:
    """A database of this module's own with the center's schema."""
    name = f"zc_test_center_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        assert await create_center_schema(conn) is await _hypertables_installed(conn)
        assert await create_center_schema(conn) is await _hypertables_installed(conn)  # again
    finally:
        await conn.close()
    yield url
    await drop_database(pg_server_url, name)


async def _hypertables_installed(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)", "timescaledb"
        )
    )


@pytest.fixture
async def pool(center_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the center's database, its tables emptied."""
    pool = await open_pool(center_url, max_size=6)
    await pool.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    yield pool
    await pool.close()


def readings(
    site: str,
    n: int,
    *,
    catalog: tuple[tuple[str, str], ...] = CATALOG,
    start_s: int = 0,
    value0: float = 0.0,
) -> ReadingsMessage:
    """``n`` readings cycling through the catalog, one second apart per catalog pass,
    from ``start_s`` [s] after T0; a reading's value follows from its series and time,
    so that overlapping messages carry the same readings, as a redelivery does."""
    i = np.arange(n)
    second = start_s + i // len(catalog)
    series = i % len(catalog)
    return ReadingsMessage(
        site=site,
        catalog=catalog,
        series=series.astype(np.uint16),
        ts_us=datetime_to_us(T0) + second.astype(np.int64) * 1_000_000,
        value=(value0 + 1000.0 * series + 0.25 * second).astype(np.float64),
        quality=np.where((second + series) % 7 == 0, Quality.SUSPECT, Quality.GOOD).astype(
            np.uint8
        ),
    )


def expected_rows(messages: Sequence[ReadingsMessage]) -> set[tuple[object, ...]]:
    """(site, device, metric, ts, value, quality) of the first copy of each key."""
    rows: dict[tuple[str, str, str, int], tuple[object, ...]] = {}
    for m in messages:
        for s, t, v, q in zip(
            m.series.tolist(), m.ts_us.tolist(), m.value.tolist(), m.quality.tolist(), strict=True
        ):
            device, metric = m.catalog[s]
            key = (m.site, device, metric, t)
            rows.setdefault(key, (m.site, device, metric, us_to_datetime(t), v, q))
    return set(rows.values())


async def stored_rows(pool: asyncpg.Pool) -> set[tuple[object, ...]]:
    records = await pool.fetch(
        """SELECT s.site, ss.device, ss.metric, r.ts, r.value, r.quality
           FROM site_readings r JOIN sites s ON s.id = r.site_id
           JOIN site_series ss ON ss.id = r.series_id AND ss.site_id = r.site_id"""
    )
    return {tuple(r) for r in records}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every row of every center table, as text, sorted."""
    return {
        table: [r[0] for r in await pool.fetch(f"SELECT t::text FROM {table} t ORDER BY 1")]
        for table in TABLES
    }


async def site_row(pool: asyncpg.Pool, site: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM sites WHERE site = $1", site)
    assert row is not None
    return row


def carbon(hour: int, load_kwh: float) -> HourlyCarbon:
    fields: dict[str, Any] = {f.name: 0.0 for f in dataclasses.fields(HourlyCarbon)}
    fields.update(
        hour_start=T0 + timedelta(hours=hour),
        load_kwh=load_kwh,
        grid_import_kwh=load_kwh,
        intensity_kg_per_kwh=None,
        market_intensity_kg_per_kwh=0.5,
        cfe_share=None,
        missing_devices=1,
        submeter_mismatches=0,
        complete=False,
    )
    return HourlyCarbon(**fields)


def line(hour: int, name: str, energy_kwh: float) -> HourlyLine:
    return HourlyLine(
        hour_start=T0 + timedelta(hours=hour),
        line=name,
        energy_kwh=energy_kwh,
        production_units=10.0,
        kwh_per_unit=energy_kwh / 10.0,
        scope2_location_kg=energy_kwh * 0.5,
        scope2_market_kg=energy_kwh * 0.4,
        kg_per_unit=None,
        estimated_share=0.0,
    )


def alert(alert_id: int, revision: int, state: str) -> AlertRecord:
    return AlertRecord(
        alert_id=alert_id,
        revision=revision,
        rule="demand",
        kind="threshold",
        subject="main",
        episode=1,
        severity="warning",
        state=state,
        since=T0,
        fired_at=T0 + timedelta(minutes=1),
        resolved_at=T0 + timedelta(minutes=9) if state == "resolved" else None,
        acked_at=None,
        message_en=f"demand {state}",
        message_zh="需量",
    )


def status(site: str, sent_at: datetime, name: str) -> StatusMessage:
    return StatusMessage(
        site=site,
        sent_at=sent_at,
        name=name,
        timezone="Asia/Shanghai",
        page_url=f"https://{site}.example/",
        backlog_messages=3,
        backlog_bytes=4096,
        outbox_readings=12,
        readings_published=1000,
        readings_dropped=0,
        version="1.2.3",
    )


async def test_readings_of_three_sites_are_stored_once_and_read_back(pool: asyncpg.Pool) -> None:
    batch = [readings("plant-a", 600), readings("plant-b", 300, value0=1e6), readings("plant_c", 9)]
    batch.append(readings("plant-a", 300, start_s=200))  # its next 100 s
    store = CenterStore(pool)

    result = await store.store(batch, received_at=RECEIVED)

    assert result == StoreResult(
        readings_received=1209,
        readings_stored=1209,
        duplicates=0,
        hourly_rows=0,
        alerts=0,
        events=0,
        accounts=0,
        statuses=0,
        new_readings_by_site={"plant-a": 900, "plant-b": 300, "plant_c": 9},
    )
    assert await stored_rows(pool) == expected_rows(batch)
    assert await pool.fetchval("SELECT count(*) FROM site_series") == 9  # 3 sites x 3
    before = await snapshot(pool)

    again = await store.store(batch, received_at=RECEIVED)  # a redelivery

    assert (again.readings_received, again.readings_stored, again.duplicates) == (1209, 0, 1209)
    assert again.new_readings_by_site == {"plant-a": 0, "plant-b": 0, "plant_c": 0}
    assert await snapshot(pool) == before

    # a new worker (empty caches) storing it later: only the center's clock moves
    later = RECEIVED + timedelta(minutes=5)
    third = await CenterStore(pool).store(batch[::-1], received_at=later)
    assert third.readings_stored == 0
    after = await snapshot(pool)
    assert {t: rows for t, rows in after.items() if t != "sites"} == {
        t: rows for t, rows in before.items() if t != "sites"
    }
    assert (await site_row(pool, "plant-b"))["last_seen"] == later


async def test_duplicates_inside_a_batch_are_stored_once(pool: asyncpg.Pool) -> None:
    first = readings("plant-a", 30)
    repeated = ReadingsMessage(  # its own key twice, the second with another value
        site="plant-a",
        catalog=CATALOG,
        series=np.array([2, 2, 0], dtype=np.uint16),
        ts_us=np.array([datetime_to_us(T0) + 50_000_000] * 2 + [datetime_to_us(T0)]),
        value=np.array([7.0, 8.0, -1.0]),
        quality=np.zeros(3, dtype=np.uint8),
    )
    # the first message's rows again, its catalog in another order
    reordered = CATALOG[::-1]
    remap = np.array([reordered.index(k) for k in CATALOG], dtype=np.uint16)
    same = dataclasses.replace(first, catalog=reordered, series=remap[first.series])
    batch = [first, repeated, same]

    result = await CenterStore(pool).store(batch, received_at=RECEIVED)

    assert (result.readings_received, result.readings_stored, result.duplicates) == (63, 31, 32)
    assert await stored_rows(pool) == expected_rows(batch)
    assert len(expected_rows(batch)) == 31
    ts = us_to_datetime(datetime_to_us(T0) + 50_000_000)
    assert await pool.fetchval("SELECT value FROM site_readings WHERE ts = $1", ts) == 7.0
    assert await pool.fetchval("SELECT count(*) FROM site_series") == 3
    assert (await site_row(pool, "plant-a"))["readings"] == 31


async def test_new_redelivered_and_partly_stored_messages_in_one_batch(
    pool: asyncpg.Pool,
) -> None:
    store = CenterStore(pool)
    stored = readings("plant-a", 30, start_s=100)  # seconds 100..109
    await store.store([stored], received_at=RECEIVED)
    # a new site's message and a redelivery: one COPY of the new, the other skipped
    batch = [readings("plant-c", 30), stored]
    result = await store.store(batch, received_at=RECEIVED)
    assert result.new_readings_by_site == {"plant-c": 30, "plant-a": 0}
    # new first and last readings around stored ones (seconds 95..114)
    around = readings("plant-a", 60, start_s=95)
    batch = [readings("plant-b", 30), stored, around]
    result = await store.store(batch, received_at=RECEIVED)
    assert result.new_readings_by_site == {"plant-b": 30, "plant-a": 30}
    assert (result.readings_stored, result.duplicates) == (60, 60)
    everything = [stored, readings("plant-c", 30), *batch]
    assert await stored_rows(pool) == expected_rows(everything)
    assert (await site_row(pool, "plant-a"))["readings"] == 60


async def test_hourly_rows_keep_the_newest_computation(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)
    at = [T0 + timedelta(hours=2, minutes=m) for m in range(4)]

    def hourly(computed_at: datetime, load_kwh: float) -> HourlyMessage:
        return HourlyMessage(
            "plant-a",
            computed_at,
            (carbon(0, load_kwh), carbon(1, load_kwh + 1)),
            (line(0, "l1", load_kwh / 2), line(0, "l2", load_kwh / 4)),
        )

    async def loads() -> list[tuple[object, ...]]:
        carbon_rows = await pool.fetch(
            "SELECT hour_start, load_kwh, computed_at FROM site_hourly_carbon ORDER BY 1"
        )
        lines = await pool.fetch(
            "SELECT line, energy_kwh, computed_at FROM site_hourly_line ORDER BY 1"
        )
        return [tuple(r) for r in carbon_rows] + [tuple(r) for r in lines]

    assert (await store.store([hourly(at[2], 100.0)], received_at=RECEIVED)).hourly_rows == 4
    newest = await loads()
    assert newest[0] == (T0, 100.0, at[2])
    row = await pool.fetchrow("SELECT * FROM site_hourly_carbon WHERE hour_start = $1", T0)
    assert row is not None
    stored = HourlyCarbon(**{f.name: row[f.name] for f in dataclasses.fields(HourlyCarbon)})
    assert stored == carbon(0, 100.0)

    older = await store.store([hourly(at[1], 50.0)], received_at=RECEIVED)  # arrives late
    assert older.hourly_rows == 0
    assert await loads() == newest

    # a newer one and an older one in the same batch: the newer wins
    both = await store.store([hourly(at[3], 300.0), hourly(at[0], 1.0)], received_at=RECEIVED)
    assert both.hourly_rows == 4
    assert await loads() == [
        (T0, 300.0, at[3]),
        (T0 + timedelta(hours=1), 301.0, at[3]),
        ("l1", 150.0, at[3]),
        ("l2", 75.0, at[3]),
    ]
    before = await snapshot(pool)
    assert (await store.store([hourly(at[3], 300.0)], received_at=RECEIVED)).hourly_rows == 4
    assert await snapshot(pool) == before  # equal computed_at: the same row again


async def test_alerts_keep_the_highest_revision(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)

    async def states() -> list[tuple[object, ...]]:
        rows = await pool.fetch("SELECT alert_id, revision, state, resolved_at FROM site_alerts")
        return sorted(tuple(r) for r in rows)

    firing = AlertsMessage("plant-a", (alert(1, 10, "firing"), alert(2, 11, "firing")))
    assert (await store.store([firing], received_at=RECEIVED)).alerts == 2
    resolved = AlertsMessage("plant-a", (alert(1, 12, "resolved"),))
    assert (await store.store([resolved], received_at=RECEIVED)).alerts == 1
    assert (await store.store([firing], received_at=RECEIVED)).alerts == 1  # only alert 2
    assert await states() == [
        (1, 12, "resolved", T0 + timedelta(minutes=9)),
        (2, 11, "firing", None),
    ]
    # two revisions of one alert in a batch (in either order): the higher one
    mixed = AlertsMessage("plant-a", (alert(2, 14, "resolved"), alert(2, 13, "firing")))
    assert (await store.store([mixed], received_at=RECEIVED)).alerts == 1
    assert (await states())[1][:3] == (2, 14, "resolved")
    # the same alert id at another site is another alert
    other = AlertsMessage("plant-b", (alert(1, 1, "firing"),))
    assert (await store.store([other], received_at=RECEIVED)).alerts == 1
    assert len(await states()) == 3


async def test_events_and_accounts_are_stored_once(pool: asyncpg.Pool) -> None:
    events = EventsMessage(
        "plant-a",
        tuple(
            DeviceEventRecord(i, T0 + timedelta(seconds=i), "main", "connection_lost", f"#{i}")
            for i in range(1, 6)
        ),
    )
    account = {"period": "2026-05", "scope2_location_kg": 1234.5, "lines": ["l1", "l2"]}
    accounts = AccountsMessage(
        "plant-a",
        (
            IssuedAccount(7, "2026-05", T0, "ops", None, account),
            IssuedAccount(8, "2026-05", T0 + timedelta(days=1), "ops", 7, {"revised": True}),
        ),
    )
    store = CenterStore(pool)

    first = await store.store([events, accounts], received_at=RECEIVED)
    assert (first.events, first.accounts) == (5, 2)
    before = await snapshot(pool)
    overlapping = EventsMessage(
        "plant-a", events.events[3:] + (dataclasses.replace(events.events[0], event_id=6),)
    )
    again = await store.store([accounts, overlapping, events], received_at=RECEIVED)
    assert (again.events, again.accounts) == (1, 0)
    assert await pool.fetchval("SELECT count(*) FROM site_device_events") == 6
    assert await snapshot(pool) != before
    stored = await pool.fetchrow(
        "SELECT period, issued_by, supersedes, account FROM site_accounts WHERE report_id = 7"
    )
    assert stored is not None
    assert (stored["period"], stored["issued_by"], stored["supersedes"]) == ("2026-05", "ops", None)
    assert json.loads(stored["account"]) == account
    assert await pool.fetchval("SELECT supersedes FROM site_accounts WHERE report_id = 8") == 7


async def test_status_updates_the_site_only_when_newer(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)
    sent = RECEIVED - timedelta(seconds=2)
    result = await store.store([status("plant-a", sent, "Plant A")], received_at=RECEIVED)
    assert result.statuses == 1
    row = await site_row(pool, "plant-a")
    assert (row["name"], row["timezone"], row["page_url"]) == (
        "Plant A",
        "Asia/Shanghai",
        "https://plant-a.example/",
    )
    body = json.loads(row["status"])
    assert body["backlog_messages"] == 3 and body["version"] == "1.2.3"
    assert datetime.fromisoformat(body["sent_at"]) == sent
    # without a header, a status' own sent_at is its send time
    assert (row["last_sent"], row["uplink_lag_s"]) == (sent, 2.0)

    old = await store.store(
        [status("plant-a", sent - timedelta(hours=1), "Old name")], received_at=RECEIVED
    )
    assert old.statuses == 0
    assert (await site_row(pool, "plant-a"))["name"] == "Plant A"

    # two in one batch: the newest
    newer = [
        status("plant-a", sent + timedelta(seconds=30), "A2"),
        status("plant-a", sent + timedelta(seconds=20), "A1"),
    ]
    assert (await store.store(newer, received_at=RECEIVED)).statuses == 1
    assert (await site_row(pool, "plant-a"))["name"] == "A2"


async def test_uplink_state_moves_forward_only(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)
    first = readings("plant-a", 30)  # 10 s of 3 series
    sent = [RECEIVED - timedelta(seconds=5)]
    await store.store([first], received_at=RECEIVED, sent_at=sent)
    row = await site_row(pool, "plant-a")
    assert row["last_seen"] == RECEIVED
    assert row["last_sent"] == sent[0]
    assert row["uplink_lag_s"] == 5.0
    assert row["last_reading_ts"] == T0 + timedelta(seconds=9)
    assert row["readings"] == 30

    # later: an older message redelivered (its send time is older) with a newer one
    newer = readings("plant-a", 30, start_s=5)  # half of it stored already
    received = RECEIVED + timedelta(seconds=60)
    sent_newer = RECEIVED + timedelta(seconds=59, microseconds=500_000)
    result = await store.store(
        [first, newer, EventsMessage("plant-a", ())],
        received_at=received,
        sent_at=[sent[0], sent_newer, None],
    )
    assert result.new_readings_by_site == {"plant-a": 15}
    row = await site_row(pool, "plant-a")
    assert (row["last_seen"], row["last_sent"], row["uplink_lag_s"]) == (received, sent_newer, 0.5)
    assert row["last_reading_ts"] == T0 + timedelta(seconds=14)
    assert row["readings"] == 45

    # a worker whose batch was fetched earlier commits after: nothing moves back
    await store.store([first], received_at=RECEIVED, sent_at=sent)
    row = await site_row(pool, "plant-a")
    assert (row["last_seen"], row["last_sent"], row["uplink_lag_s"]) == (received, sent_newer, 0.5)
    assert row["last_reading_ts"] == T0 + timedelta(seconds=14)
    assert row["readings"] == 45
    assert await pool.fetchval("SELECT count(*) FROM site_readings") == 45

    # a site only heard from by events: seen, no lag known, no readings
    await store.store([EventsMessage("plant-b", ())], received_at=received)
    b = await site_row(pool, "plant-b")
    assert (b["last_seen"], b["last_sent"], b["uplink_lag_s"], b["readings"]) == (
        received,
        None,
        None,
        0,
    )


async def test_two_workers_storing_overlapping_batches_store_each_row_once(
    pool: asyncpg.Pool,
) -> None:
    workers = (CenterStore(pool), CenterStore(pool))
    everything: list[ReadingsMessage] = []
    stored = 0
    for round_ in range(4):
        sites = [f"r{round_}-{k}" for k in range(3)] + ["shared"]  # new sites every round
        chunks = [readings(s, 600, start_s=100 * round_ + 50 * j) for s in sites for j in range(3)]
        # worker 0 the first two chunks of each site, worker 1 the last two, in reverse
        a = [c for i, c in enumerate(chunks) if i % 3 < 2]
        b = [c for i, c in enumerate(chunks) if i % 3 > 0][::-1]
        ev = EventsMessage("shared", (DeviceEventRecord(round_, T0, "main", "lost", ""),))
        results = await asyncio.gather(
            workers[0].store([*a, ev], received_at=RECEIVED),
            workers[1].store([ev, *b], received_at=RECEIVED),
        )
        everything.extend(chunks)
        stored += sum(r.readings_stored for r in results)
        assert sum(r.events for r in results) == 1
        assert sum(r.duplicates for r in results) == sum(len(c) for c in a + b) - sum(
            r.readings_stored for r in results
        )

    expected = expected_rows(everything)
    assert stored == len(expected)
    assert await stored_rows(pool) == expected
    assert await pool.fetchval("SELECT count(*) FROM sites") == 13
    assert await pool.fetchval("SELECT count(*) FROM site_series") == 13 * len(CATALOG)
    counters = await pool.fetch(
        "SELECT s.readings, (SELECT count(*) FROM site_readings r WHERE r.site_id = s.id) AS n "
        "FROM sites s"
    )
    assert all(r["readings"] == r["n"] for r in counters)


async def test_an_invalid_site_id_is_refused_before_anything_is_written(
    pool: asyncpg.Pool,
) -> None:
    store = CenterStore(pool)
    good = readings("plant-a", 30)
    batch: list[UplinkMessage] = [good, EventsMessage("Plant.B", ()), status("plant-a", T0, "A")]
    with pytest.raises(InvalidMessage, match="Plant.B") as refused:
        await store.store(batch, received_at=RECEIVED)
    assert (refused.value.index, refused.value.site) == (1, "Plant.B")
    assert isinstance(refused.value, ValueError)

    bad_series = dataclasses.replace(good, series=np.full(30, 3, dtype=np.uint16))
    with pytest.raises(InvalidMessage, match="catalog"):
        await store.store([good, bad_series], received_at=RECEIVED)
    short = dataclasses.replace(good, value=good.value[:-1])
    with pytest.raises(InvalidMessage, match="value has 29 rows"):
        await store.store([short], received_at=RECEIVED)
    # the ranges are checked over the whole batch at once; the error still names the
    # first message out of range, whichever column it is in
    late_ts = good.ts_us.copy()
    late_ts[7] = MAX_TS_US + 1
    late = dataclasses.replace(good, ts_us=late_ts)
    bad_quality = dataclasses.replace(good, quality=np.full(30, 40_000, dtype=np.int32))
    other = readings("plant-b", 10)
    for batch, index, reason in (
        ([good, other, late, bad_quality], 2, "outside years 1..9999"),
        ([other, bad_quality, late], 1, "quality outside smallint"),
        ([other, good, bad_quality], 2, "quality outside smallint"),
        ([late, other], 0, "outside years 1..9999"),
        ([other, good, bad_series], 2, "outside its catalog"),
    ):
        with pytest.raises(InvalidMessage, match=reason) as refused:
            await store.store(batch, received_at=RECEIVED)
        assert refused.value.index == index
    assert all(not rows for rows in (await snapshot(pool)).values())


async def test_a_failed_transaction_leaves_nothing_and_no_stale_cache(pool: asyncpg.Pool) -> None:
    """PostgreSQL refuses a NUL in jsonb: the batch fails after the site and its
    series were made in the transaction; the same store then stores the readings."""
    store = CenterStore(pool)
    poison = AccountsMessage(
        "plant-a", (IssuedAccount(1, "2026-05", T0, "ops", None, {"x": "\0"}),)
    )
    batch: list[UplinkMessage] = [readings("plant-a", 30), poison]
    with pytest.raises(asyncpg.PostgresError):
        await store.store(batch, received_at=RECEIVED)
    assert all(not rows for rows in (await snapshot(pool)).values())

    result = await store.store([readings("plant-a", 30)], received_at=RECEIVED)
    assert result.readings_stored == 30
    assert await stored_rows(pool) == expected_rows([readings("plant-a", 30)])


async def test_an_empty_batch_writes_nothing(pool: asyncpg.Pool) -> None:
    result = await CenterStore(pool).store([], received_at=RECEIVED)
    assert result.readings_received == 0 and result.new_readings_by_site == {}
    assert all(not rows for rows in (await snapshot(pool)).values())


def poll(site: str, second: int, series: Sequence[int], value0: float = 0.0) -> ReadingsMessage:
    """One poll's readings of ``series`` (indexes into CATALOG), all at one ts."""
    idx = np.array(series, dtype=np.uint16)
    return ReadingsMessage(
        site=site,
        catalog=CATALOG,
        series=idx,
        ts_us=np.full(idx.shape[0], datetime_to_us(T0) + second * 1_000_000, dtype=np.int64),
        value=value0 + idx.astype(np.float64),
        quality=np.zeros(idx.shape[0], dtype=np.uint8),
    )


async def sets_of(pool: asyncpg.Pool) -> list[tuple[int, list[int], list[float]]]:
    """(second after T0, series ids, values) of every stored set, in key order."""
    rows = await pool.fetch(
        "SELECT ts, series_id, value FROM site_reading_sets ORDER BY ts, site_id"
    )
    return [
        (int((r["ts"] - T0).total_seconds()), list(r["series_id"]), list(r["value"])) for r in rows
    ]


async def test_a_poll_cut_across_two_batches_is_merged_into_one_set(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)
    # a poll cut at a message's end, its parts fetched in two batches (a probe finds
    # the key: the merge path)
    first = await store.store(
        [poll("plant-a", 1, [0]), poll("plant-a", 2, [2])], received_at=RECEIVED
    )
    assert first.readings_stored == 2
    second = await store.store(
        [poll("plant-a", 2, [0, 1], value0=50.0), poll("plant-a", 3, [1])], received_at=RECEIVED
    )
    assert (second.readings_stored, second.duplicates) == (3, 0)
    rows = await pool.fetch("SELECT device, metric, id FROM site_series")
    by_key = {(r["device"], r["metric"]): int(r["id"]) for r in rows}
    ids = [by_key[k] for k in CATALOG]  # site_series.id of each CATALOG index

    def set_of(second: int, values: dict[int, float]) -> tuple[int, list[int], list[float]]:
        """The stored set expected: series ascending by id (values by CATALOG index)."""
        pairs = sorted((ids[i], v) for i, v in values.items())
        return (second, [p[0] for p in pairs], [p[1] for p in pairs])

    assert await sets_of(pool) == [
        set_of(1, {0: 0.0}),
        set_of(2, {0: 50.0, 1: 51.0, 2: 2.0}),  # one set
        set_of(3, {1: 1.0}),
    ]
    # a replay of the second batch with one more reading in a stored set: only it is
    # new, and the stored copies keep their values
    again = await store.store(
        [poll("plant-a", 2, [0, 1, 2], value0=99.0), poll("plant-a", 3, [0, 1], value0=99.0)],
        received_at=RECEIVED,
    )
    assert (again.readings_stored, again.duplicates) == (1, 4)
    assert (await sets_of(pool))[1:] == [
        set_of(2, {0: 50.0, 1: 51.0, 2: 2.0}),
        set_of(3, {0: 99.0, 1: 1.0}),
    ]
    assert (await site_row(pool, "plant-a"))["readings"] == 6
    assert await pool.fetchval("SELECT count(*) FROM site_readings") == 6


async def test_only_the_sets_of_a_replayed_message_are_merged(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CenterStore(pool)
    replayed = readings("plant-a", 30, start_s=100)  # 10 sets of 3
    await store.store([replayed], received_at=RECEIVED)
    merged: list[int] = []
    merge = center_readings._merge

    async def counting_merge(conn: asyncpg.Connection, staged: ReadingSets) -> dict[int, int]:
        merged.append(len(staged))
        return await merge(conn, staged)

    monkeypatch.setattr(center_readings, "_merge", counting_merge)
    fresh = [readings("plant-a", 60, start_s=200), readings("plant-b", 30)]
    result = await store.store([fresh[0], replayed, fresh[1]], received_at=RECEIVED)
    assert merged == [10]  # the replayed message's sets; the 30 new ones went straight in
    assert result.new_readings_by_site == {"plant-a": 60, "plant-b": 30}
    assert await stored_rows(pool) == expected_rows([replayed, *fresh])


async def test_a_stored_key_the_probe_misses_is_merged_exactly(pool: asyncpg.Pool) -> None:
    store = CenterStore(pool)
    await store.store([poll("plant-a", 5, [1])], received_at=RECEIVED)
    # the stored key is neither the first nor the last of the message: the primary key
    # refuses the straight COPY and the whole batch is merged
    middle = ReadingsMessage(
        site="plant-a",
        catalog=CATALOG,
        series=np.array([0, 0, 2, 1, 0], dtype=np.uint16),
        ts_us=datetime_to_us(T0) + np.array([4, 5, 5, 5, 6], dtype=np.int64) * 1_000_000,
        value=np.array([4.0, 5.0, 5.2, 9.9, 6.0]),
        quality=np.zeros(5, dtype=np.uint8),
    )
    result = await store.store([middle, poll("plant-b", 5, [0, 1])], received_at=RECEIVED)
    assert result.new_readings_by_site == {"plant-a": 4, "plant-b": 2}
    assert result.duplicates == 1
    assert await stored_rows(pool) == expected_rows(
        [poll("plant-a", 5, [1]), middle, poll("plant-b", 5, [0, 1])]
    )


async def test_a_poll_of_many_registers_is_stored_and_read_back(pool: asyncpg.Pool) -> None:
    # 1,500 readings at one ts: a row PostgreSQL compresses (TOAST), read back whole
    catalog = tuple((f"meter{i // 10}", f"reg{i % 10}") for i in range(1_500))
    m = ReadingsMessage(
        site="plant-a",
        catalog=catalog,
        series=np.arange(1_500, dtype=np.uint16),
        ts_us=np.full(1_500, datetime_to_us(T0), dtype=np.int64),
        value=np.random.default_rng(7).normal(100.0, 10.0, 1_500),
        quality=np.zeros(1_500, dtype=np.uint8),
    )
    result = await CenterStore(pool).store([m], received_at=RECEIVED)
    assert result.readings_stored == 1_500
    assert await stored_rows(pool) == expected_rows([m])
    assert await pool.fetchval("SELECT count(*) FROM site_reading_sets") == 1


async def test_a_version_1_center_is_regrouped_into_sets(pg_server_url: str) -> None:
    """A center database of schema 1 (a row per reading) keeps every reading."""
    name = f"zc_test_center_v1_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
CREATE TABLE center_migrations (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO center_migrations (version) VALUES (1);
CREATE TABLE sites (id serial PRIMARY KEY, site text NOT NULL UNIQUE);
CREATE TABLE site_readings (
    site_id integer NOT NULL, series_id integer NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (ts, site_id, series_id));
INSERT INTO site_readings
SELECT 1 + g % 3, 10 + g % 7, '2026-01-01Z'::timestamptz + (g / 21) * interval '1 s',
       g * 0.5, g % 2
FROM generate_series(0, 2099) AS g;
"""
        )
        query = "SELECT site_id, series_id, ts, value, quality FROM site_readings ORDER BY 1, 2, 3"
        before = [tuple(r) for r in await conn.fetch(query)]
        await create_center_schema(conn)
        assert [tuple(r) for r in await conn.fetch(query)] == before
        assert len(before) == 2_100
        assert await conn.fetchval("SELECT count(*) FROM site_reading_sets") == 300
        assert await conn.fetchval("SELECT max(version) FROM center_migrations") == 2
        assert await conn.fetchval("SELECT to_regclass('site_readings_v1')") is None
    finally:
        await conn.close()
        await drop_database(pg_server_url, name)


async def test_policies_on_plain_postgresql_change_nothing_and_say_so(
    center_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(center_url)
    try:
        if await _hypertables_installed(conn):
            pytest.skip("site_reading_sets is a hypertable here")
        with caplog.at_level("WARNING"):
            changes = await apply_center_policies(conn, compress_after_days=7, retention_days=30)
        assert changes == []
        assert "center.retention_days = 30 is not applied" in caplog.text
    finally:
        await conn.close()
