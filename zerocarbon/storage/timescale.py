"""TimescaleDB: whether it can be used, the chunk interval of ``readings``, and the
hypertable's compression and retention policies.

TimescaleDB is used when the server offers the extension (``pg_available_extensions``)
and loads it at start (``shared_preload_libraries``): ``CREATE EXTENSION timescaledb``
on a server that does not preload it ends the session with a FATAL error, so it is
never tried there. Everything else falls back to native daily partitions
(:mod:`zerocarbon.storage.partitions`).

References
----------
.. [1] Tiger Data (Timescale) docs, "Size hypertable chunks":
   https://www.tigerdata.com/docs/learn/hypertables/sizing-hypertable-chunks —
   "Set chunk_interval so that the indexes of chunks currently being ingested into
   fit within 25% of main memory (shared_buffers)"; default interval 7 days.
.. [2] Tiger Data docs, compression / columnstore: ``segmentby`` columns the queries
   filter on, ``orderby`` the time column; ``add_compression_policy``,
   ``add_retention_policy``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from zerocarbon.config import (
    Dlt645Device,
    ModbusRtuDevice,
    ModbusTcpDevice,
    SiteConfig,
    StorageConfig,
)

log = logging.getLogger(__name__)

EXTENSION = "timescaledb"

ROW_BYTES = 100
"""Bytes one reading takes in a chunk with its unique index [B]. Heap: a 23 B tuple
header padded to 24 + 26 B of columns (ts 8, device 2, metric 2, padding 4, value 8,
quality 2) padded to 56, + a 4 B line pointer = 60 B. Index (device_id, metric_id, ts):
8 B header + 16 B key + 4 B line pointer = 28 B, at about 70 % leaf fill (inserts land
at each series' end, inside the index, so pages split in the middle) ≈ 40 B."""

DEFAULT_CHUNK_INTERVAL = timedelta(days=7)  # TimescaleDB's own default [1]
# chunk intervals offered: whole hours that divide a day, then whole days up to a week
CHUNK_INTERVAL_STEPS_H = (1, 2, 3, 4, 6, 8, 12, 24, 48, 72, 96, 120, 144, 168)


@dataclass(frozen=True, slots=True)
class TimescaleAvailability:
    """What the server says about the extension."""

    available_version: str | None  # offered by the server (pg_available_extensions)
    installed_version: str | None  # created in this database (pg_extension)
    preloaded: bool  # in shared_preload_libraries

    @property
    def usable(self) -> bool:
        """Created already, or offered and preloaded (so that it can be created)."""
        return self.installed_version is not None or (
            self.available_version is not None and self.preloaded
        )

    def reason(self) -> str:
        """Why it is not used (empty when it can be)."""
        if self.usable:
            return ""
        if self.available_version is None:
            return "the server does not offer the timescaledb extension"
        return (
            f"timescaledb {self.available_version} is installed on the server but not in "
            "shared_preload_libraries (add it there and restart PostgreSQL to use it)"
        )


async def timescaledb_availability(conn: asyncpg.Connection) -> TimescaleAvailability:
    row = await conn.fetchrow(
        """SELECT (SELECT default_version FROM pg_available_extensions WHERE name = $1)
                      AS available,
                  (SELECT extversion FROM pg_extension WHERE extname = $1) AS installed,
                  current_setting('shared_preload_libraries') AS preload""",
        EXTENSION,
    )
    assert row is not None
    preload = {p.strip().strip('"') for p in (row["preload"] or "").split(",")}
    return TimescaleAvailability(row["available"], row["installed"], EXTENSION in preload)


async def enable_timescaledb(conn: asyncpg.Connection) -> bool:
    """Create the extension when it is usable; False (and why, logged) when not."""
    availability = await timescaledb_availability(conn)
    if availability.installed_version is not None:
        return True
    if not availability.usable:
        log.info("native daily partitions: %s", availability.reason())
        return False
    try:
        await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    except asyncpg.PostgresError as exc:
        log.warning(
            "native daily partitions: CREATE EXTENSION %s failed (%s: %s)",
            EXTENSION,
            type(exc).__name__,
            exc,
        )
        return False
    return True


def expected_rows_per_day(site: SiteConfig) -> float:
    """Readings the site stores per day [rows/day]: per device, its metrics times its
    polls (or publishes) per day; Modbus devices count their profile's metric points."""
    total = 0.0
    for device in site.devices:
        if isinstance(device, ModbusTcpDevice | ModbusRtuDevice):
            profile = site.profile_of(device)
            metrics = sum(1 for p in profile.points if p.metric is not None)
            total += metrics * 86_400.0 / device.poll_interval_s
        elif isinstance(device, Dlt645Device):
            total += len(device.metrics()) * 86_400.0 / device.poll_interval_s
        else:
            total += len(device.fields) * 86_400.0 / device.interval_s
    return total


def chunk_interval(
    rows_per_day: float | None,
    memory_budget_bytes: int,
    *,
    override_h: float | None = None,
    row_bytes: int = ROW_BYTES,
) -> timedelta:
    """The chunk interval of ``readings`` for an ingest rate.

    Following [1]_, the chunk being written, with its index, should fit in a quarter of
    the server's memory, which is what ``shared_buffers`` is set to on a tuned server
    (the docs' example: 64 GB of memory, shared_buffers ~16 GB); this sizes heap and
    index, not the index alone, to leave room for the chunk before it and for queries.
    The interval is the longest of :data:`CHUNK_INTERVAL_STEPS_H` whose rows fit::

        interval [d] <= memory_budget_bytes / (rows_per_day * row_bytes)

    between 1 hour and 7 days (TimescaleDB's default, also used when the rate is
    unknown).

    Parameters
    ----------
    rows_per_day : float or None
        Expected readings per day [rows/day] (:func:`expected_rows_per_day`).
    memory_budget_bytes : int
        Memory a chunk may take [B]: the server's ``shared_buffers``.
    override_h : float or None
        The site file's ``[storage] chunk_interval_h`` [h]: used as given.
    row_bytes : int
        Bytes per reading in a chunk with its index [B] (:data:`ROW_BYTES`).
    """
    if override_h is not None:
        return timedelta(hours=override_h)
    if not rows_per_day or rows_per_day <= 0:
        return DEFAULT_CHUNK_INTERVAL
    fits_h = memory_budget_bytes / (rows_per_day * row_bytes) * 24.0
    steps = [h for h in CHUNK_INTERVAL_STEPS_H if h <= fits_h]
    return timedelta(hours=steps[-1] if steps else CHUNK_INTERVAL_STEPS_H[0])


async def memory_budget(conn: asyncpg.Connection) -> int:
    """The server's ``shared_buffers`` [B] (a quarter of its memory when tuned)."""
    value = await conn.fetchval("SELECT pg_size_bytes(current_setting('shared_buffers'))")
    return int(value)


async def readings_chunk_interval(
    conn: asyncpg.Connection, storage: StorageConfig, rows_per_day: float | None
) -> timedelta:
    """:func:`chunk_interval` for this server and site."""
    return chunk_interval(
        rows_per_day, await memory_budget(conn), override_h=storage.chunk_interval_h
    )


async def make_hypertable(conn: asyncpg.Connection, interval: timedelta) -> None:
    """Turn ``readings`` into a hypertable on ``ts`` (rows kept) with compression set up:
    segments by series (the queries filter on device and metric), ordered by time [2]_."""
    await conn.execute(
        "SELECT create_hypertable('readings', by_range('ts', $1::interval), migrate_data => true)",
        interval,
    )
    await conn.execute(
        "ALTER TABLE readings SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'device_id, metric_id', "
        "timescaledb.compress_orderby = 'ts')"
    )


@dataclass(frozen=True, slots=True)
class HypertableInfo:
    """The hypertable as the server has it."""

    version: str  # extension version
    chunk_interval: timedelta
    chunks: int
    compressed_chunks: int
    first: datetime | None  # start of the oldest chunk
    last: datetime | None  # end of the newest chunk
    compress_after: timedelta | None  # the compression policy's age, None: no policy
    drop_after: timedelta | None  # the retention policy's age, None: no policy


async def is_hypertable(conn: asyncpg.Connection, table: str = "readings") -> bool:
    if await conn.fetchval("SELECT to_regclass('timescaledb_information.hypertables')") is None:
        return False
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = $1 AND hypertable_schema = current_schema())",
            table,
        )
    )


async def policy_interval(
    conn: asyncpg.Connection, proc: str, key: str, table: str = "readings"
) -> timedelta | None:
    """The interval ``key`` of ``table``'s policy job ``proc`` (``policy_compression``:
    ``compress_after``; ``policy_retention``: ``drop_after``); None: no such policy."""
    value = await conn.fetchval(
        """SELECT (config ->> $2)::interval FROM timescaledb_information.jobs
           WHERE proc_name = $1 AND hypertable_name = $3
             AND hypertable_schema = current_schema()
           ORDER BY job_id LIMIT 1""",
        proc,
        key,
        table,
    )
    return value if isinstance(value, timedelta) else None


async def hypertable_info(conn: asyncpg.Connection) -> HypertableInfo:
    row = await conn.fetchrow(
        """SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS version,
                  (SELECT time_interval FROM timescaledb_information.dimensions
                    WHERE hypertable_name = 'readings' AND column_name = 'ts'
                      AND hypertable_schema = current_schema()) AS interval,
                  count(*) AS chunks, count(*) FILTER (WHERE is_compressed) AS compressed,
                  min(range_start) AS first, max(range_end) AS last
           FROM timescaledb_information.chunks
           WHERE hypertable_name = 'readings' AND hypertable_schema = current_schema()"""
    )
    assert row is not None
    return HypertableInfo(
        version=row["version"],
        chunk_interval=row["interval"],
        chunks=row["chunks"],
        compressed_chunks=row["compressed"],
        first=row["first"],
        last=row["last"],
        compress_after=await policy_interval(conn, "policy_compression", "compress_after"),
        drop_after=await policy_interval(conn, "policy_retention", "drop_after"),
    )


async def apply_policies(
    conn: asyncpg.Connection, storage: StorageConfig, interval: timedelta
) -> list[str]:
    """Make the chunk interval and the compression and retention policies those of the
    site file (run at each start: the file may have changed). Returns what changed.

    A new chunk interval applies to chunks made from now on; existing chunks keep
    theirs."""
    info = await hypertable_info(conn)
    changes: list[str] = []
    if info.chunk_interval != interval:
        await conn.execute("SELECT set_chunk_time_interval('readings', $1::interval)", interval)
        changes.append(f"chunk interval {info.chunk_interval} -> {interval}")
    compress_after = timedelta(days=storage.compress_after_days)
    if info.compress_after != compress_after:
        await conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        await conn.execute(
            "SELECT add_compression_policy('readings', compress_after => $1::interval)",
            compress_after,
        )
        changes.append(f"compression after {info.compress_after} -> {compress_after}")
    drop_after = None if storage.retention_days is None else timedelta(days=storage.retention_days)
    if info.drop_after != drop_after:
        await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        if drop_after is not None:
            await conn.execute(
                "SELECT add_retention_policy('readings', drop_after => $1::interval)",
                drop_after,
            )
        changes.append(f"retention {info.drop_after} -> {drop_after}")
    return changes


class Hypertable:
    """``readings`` as a TimescaleDB hypertable: chunks are made on insert and dropped by
    the retention policy, so the layout calls of the writer and the maintenance job
    have nothing to do."""

    kind = "timescaledb"

    async def cover(self, conn: asyncpg.Connection, min_ts_us: int, max_ts_us: int) -> None:
        return None

    async def ensure_ahead(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        return []

    async def drop_expired(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        return []

    async def drain_default(self, conn: asyncpg.Connection) -> int:
        return 0
