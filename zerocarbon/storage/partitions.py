"""The layout of ``readings``: native daily partitions on plain PostgreSQL, or a
TimescaleDB hypertable, behind one interface (:class:`ReadingsLayout`).

Plain PostgreSQL: ``readings`` is range-partitioned on ``ts`` by UTC day, one table
``readings_pYYYYMMDD`` a day, each with its part of the unique index on
``(device_id, metric_id, ts)`` that idempotent ingest relies on. :class:`DailyPartitions`

- makes sure the days of a batch have their partition before it is written
  (:meth:`~DailyPartitions.cover`, a set lookup when the days are known);
- makes ``partitions_ahead_days`` days ahead (:meth:`~DailyPartitions.ensure_ahead`);
- drops partitions wholly older than ``retention_days``
  (:meth:`~DailyPartitions.drop_expired`): whole days, no row-by-row DELETE.

**The DEFAULT partition.** ``readings_default`` takes any row whose day has no
partition, so a batch never fails for want of one: not when a late reading arrives for
a day nobody made, not when making it failed (a lock not granted in time), not when a
tool writes ``readings`` without calling :meth:`~DailyPartitions.cover`. Without it,
such a row fails its whole batch, and since the writer retries a failed batch with
everything after it, one unroutable row would stall ingest. The price is PostgreSQL's
rule that a new partition must not take rows the default partition holds: a partition
is therefore made as a separate table, the default's rows of its day are moved into it
and it is attached, in one transaction (:func:`create_partition`), so making a
partition never fails on that rule, and attaching checks the default partition
quickly because the maintenance job keeps it empty
(:meth:`~DailyPartitions.drain_default`). While empty it costs a query nothing (a
range covered by daily partitions prunes it).

TimescaleDB: chunks are made on insert and dropped by the retention policy, so
:class:`~zerocarbon.storage.timescale.Hypertable` implements the same calls as no-ops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

import asyncpg

from zerocarbon.batch import datetime_to_us
from zerocarbon.config import StorageConfig
from zerocarbon.storage.problems import ProblemLog
from zerocarbon.storage.timescale import Hypertable, hypertable_info, is_hypertable

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000  # one UTC day [us]
PARENT = "readings"
DEFAULT_PARTITION = "readings_default"
PARTITION_PREFIX = "readings_p"  # + YYYYMMDD of the UTC day
MAX_COVER_DAYS = 31  # a batch spanning more days gets its end days; the rest go to default
LOCK_TIMEOUT_MS = 5_000  # wait for locks when making a partition beside ingest [ms]
PARTITION_LOCK_KEY = 727_002  # advisory lock serialising partition DDL
# server errors that end the session: not a partition problem
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
_EPOCH = date(1970, 1, 1)
_LAST_DAY = (date.max - _EPOCH).days  # 9999-12-31


class LayoutError(RuntimeError):
    """``readings`` is not in a layout this program knows (schema not upgraded)."""


def day_of(ts_us: int) -> int:
    """UTC day number (days since 1970-01-01) of a POSIX time [us]."""
    return ts_us // DAY_US


def day_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def partition_name(day: int) -> str:
    d = day_date(day)
    return f"{PARTITION_PREFIX}{d.year:04d}{d.month:02d}{d.day:02d}"


def day_start(day: int) -> datetime | None:
    """Start of a UTC day; None past 9999-12-31."""
    try:
        return datetime.combine(day_date(day), time(0), UTC)
    except OverflowError:
        return None


def _day_literal(day: int) -> str:
    """``'YYYY-MM-DD 00:00:00+00'`` of a day start (the day after 9999-12-31 too)."""
    if day > _LAST_DAY:
        return "'10000-01-01 00:00:00+00'"
    d = day_date(day)
    return f"'{d.year:04d}-{d.month:02d}-{d.day:02d} 00:00:00+00'"


def _day_of_name(name: str) -> int | None:
    digits = name.removeprefix(PARTITION_PREFIX)
    if name == digits or len(digits) != 8 or not digits.isdigit():
        return None
    try:
        d = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return (d - _EPOCH).days


async def partition_days(conn: asyncpg.Connection) -> set[int]:
    """The days that have a partition of ``readings``."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = to_regclass($1)""",
        PARENT,
    )
    days = (_day_of_name(r["relname"]) for r in rows)
    return {d for d in days if d is not None}


@asynccontextmanager
async def _partition_ddl(
    conn: asyncpg.Connection, lock_timeout_ms: int | None
) -> AsyncIterator[None]:
    """A transaction (a savepoint inside the caller's) holding the partition DDL lock,
    with locks waited for at most ``lock_timeout_ms`` (the caller's setting restored):
    a DDL statement queued behind a long query would hold up every writer behind it."""
    async with conn.transaction():
        previous = None
        if lock_timeout_ms is not None:
            previous = await conn.fetchval("SELECT current_setting('lock_timeout')")
            await conn.execute(
                "SELECT set_config('lock_timeout', $1, true)", f"{lock_timeout_ms}ms"
            )
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        yield
        if previous is not None:
            await conn.execute("SELECT set_config('lock_timeout', $1, true)", previous)


async def create_partition(
    conn: asyncpg.Connection, day: int, *, lock_timeout_ms: int | None = LOCK_TIMEOUT_MS
) -> int:
    """Make ``day``'s partition unless it exists, moving the default partition's rows of
    that day into it; returns how many rows moved. One transaction (a savepoint inside
    the caller's): the table is made apart, filled from the default partition and
    attached, so the default partition never blocks it.

    ``lock_timeout_ms`` bounds the wait for locks (attaching locks the default partition
    exclusively for a moment); ``None`` waits as long as it takes."""
    name = partition_name(day)
    lo, hi = _day_literal(day), _day_literal(day + 1)
    async with _partition_ddl(conn, lock_timeout_ms):
        if await conn.fetchval("SELECT to_regclass($1)", name) is not None:
            return 0
        # writes into the default partition wait until the day has moved out of it
        await conn.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN EXCLUSIVE MODE")
        await conn.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
        # lets ATTACH skip scanning the new table for rows outside the day
        await conn.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_day CHECK (ts >= {lo} AND ts < {hi})"
        )
        status = await conn.execute(
            f"""WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= {lo} AND ts < {hi}
                    RETURNING ts, device_id, metric_id, value, quality)
                INSERT INTO {name} (ts, device_id, metric_id, value, quality)
                SELECT * FROM moved"""
        )
        await conn.execute(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"
        )
        await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_day")
    return int(status.split()[-1])


async def drop_partition(
    conn: asyncpg.Connection, day: int, *, lock_timeout_ms: int | None = LOCK_TIMEOUT_MS
) -> None:
    """Drop ``day``'s partition (and its rows) if it exists."""
    async with _partition_ddl(conn, lock_timeout_ms):
        await conn.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")


async def create_partitioned_readings(conn: asyncpg.Connection) -> None:
    """``readings`` as a table partitioned by range of ``ts``, with its unique index and
    its default partition (no daily partitions yet)."""
    await conn.execute(
        f"""CREATE TABLE {PARENT} (
                ts timestamptz NOT NULL,
                device_id smallint NOT NULL,
                metric_id smallint NOT NULL,
                value double precision NOT NULL,
                quality smallint NOT NULL DEFAULT 0
            ) PARTITION BY RANGE (ts);
            -- one row per (series, time): a reading delivered twice is stored once
            CREATE UNIQUE INDEX readings_series_ts_key ON {PARENT} (device_id, metric_id, ts);
            CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT;"""
    )


class ReadingsLayout(Protocol):
    """What the writer and the maintenance job ask of the layout of ``readings``."""

    @property
    def kind(self) -> str:
        """``"native"`` (daily partitions) or ``"timescaledb"`` (a hypertable)."""
        ...

    async def cover(self, conn: asyncpg.Connection, min_ts_us: int, max_ts_us: int) -> None:
        """Make sure rows with times in ``[min_ts_us, max_ts_us]`` [us] have a place."""
        ...

    async def ensure_ahead(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        """Make the partitions of today and of the days ahead; their names."""
        ...

    async def drop_expired(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        """Drop partitions wholly older than the retention; their names."""
        ...

    async def drain_default(self, conn: asyncpg.Connection) -> int:
        """Move rows out of the default partition into daily ones; how many."""
        ...


class DailyPartitions:
    """Native daily partitions of ``readings``: see the module docstring.

    One object per process, shared by the writer (:meth:`cover`) and the maintenance
    job: it remembers the days that have a partition, so :meth:`cover` asks the
    database only for a day it has not seen.
    """

    kind = "native"

    def __init__(
        self,
        days: set[int],
        storage: StorageConfig,
        *,
        lock_timeout_ms: int | None = LOCK_TIMEOUT_MS,
    ) -> None:
        self._days = set(days)
        self._ahead_days = storage.partitions_ahead_days
        self._retention_days = storage.retention_days
        self._lock_timeout_ms = lock_timeout_ms
        self.problems = ProblemLog(log)
        self.created = 0  # partitions made by this object
        self.dropped = 0  # partitions dropped by retention
        self.moved_rows = 0  # rows moved out of the default partition

    @classmethod
    async def load(cls, conn: asyncpg.Connection, storage: StorageConfig) -> DailyPartitions:
        return cls(await partition_days(conn), storage)

    @property
    def days(self) -> frozenset[int]:
        """Days known to have a partition."""
        return frozenset(self._days)

    async def cover(self, conn: asyncpg.Connection, min_ts_us: int, max_ts_us: int) -> None:
        """Make the partitions of the days from ``min_ts_us`` to ``max_ts_us`` [us]
        (UTC days) that this object has not seen; nearly free when it has seen them.

        Call it before writing a batch. Inside the writer's transaction, a partition is
        made in a savepoint and commits with the batch (should that transaction roll
        back, the day stays remembered and its rows go to the default partition until
        :meth:`drain_default` makes it). A day that cannot be made now is logged (once)
        and counted, and its rows go to the default partition: the batch does not fail
        for it. Over :data:`MAX_COVER_DAYS` days, only the first and last day are made
        here (a batch holding a reading from long ago); the days between that hold rows
        are made by :meth:`drain_default`. Connection errors propagate (the batch could
        not be written either)."""
        first, last = day_of(min_ts_us), day_of(max_ts_us)
        if first in self._days and last in self._days and last - first <= 1:
            return
        days = range(first, last + 1) if last - first <= MAX_COVER_DAYS else (first, last)
        for day in days:
            if day not in self._days:
                await self._create(conn, day)

    async def _create(self, conn: asyncpg.Connection, day: int) -> bool:
        try:
            moved = await create_partition(conn, day, lock_timeout_ms=self._lock_timeout_ms)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, _CONNECTION_LOST):
                raise
            self.problems.failed("partition", f"making partition {partition_name(day)}", exc)
            return False
        self.problems.succeeded("partition", "making partitions")
        if day not in self._days:
            self.created += 1
        self._days.add(day)
        self.moved_rows += moved
        if moved:
            log.info(
                "partition %s made, %d rows moved from the default", partition_name(day), moved
            )
        return True

    async def ensure_ahead(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        """Partitions of ``now``'s UTC day and ``partitions_ahead_days`` days after it;
        returns the names made (already existing ones are not listed)."""
        today = day_of(datetime_to_us(now))
        made = []
        for day in range(today, today + self._ahead_days + 1):
            if day not in self._days and await self._create(conn, day):
                made.append(partition_name(day))
        return made

    def _cutoff_day(self, now: datetime) -> int | None:
        """First day kept by retention: every day before it ends at or before
        ``now - retention_days``."""
        if self._retention_days is None:
            return None
        return day_of(datetime_to_us(now) - self._retention_days * DAY_US + 1)

    async def drop_expired(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        """Drop the partitions of days that ended ``retention_days`` or more before
        ``now`` (and such rows of the default partition); names dropped, oldest first.
        Nothing without a retention."""
        keep_from = self._cutoff_day(now)
        if keep_from is None:
            return []
        self._days = await partition_days(conn)  # another process may have changed them
        old = sorted(d for d in self._days if d < keep_from)
        dropped = []
        for day in old:
            await drop_partition(conn, day, lock_timeout_ms=self._lock_timeout_ms)
            self._days.discard(day)
            dropped.append(partition_name(day))
        self.dropped += len(dropped)
        await conn.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE ts < {_day_literal(keep_from)}")
        if dropped:
            log.info(
                "retention (%d days): dropped %d partitions, %s .. %s",
                self._retention_days,
                len(dropped),
                dropped[0],
                dropped[-1],
            )
        return dropped

    async def drain_default(self, conn: asyncpg.Connection) -> int:
        """Give each day holding rows in the default partition its own partition (the
        rows move with it); returns the rows moved."""
        rows = await conn.fetch(
            f"SELECT DISTINCT floor(extract(epoch FROM ts) / 86400)::bigint AS day "
            f"FROM {DEFAULT_PARTITION} ORDER BY 1"
        )
        before = self.moved_rows
        for r in rows:
            await self._create(conn, int(r["day"]))
        return self.moved_rows - before


async def open_layout(conn: asyncpg.Connection, storage: StorageConfig) -> ReadingsLayout:
    """The layout object of this database's ``readings`` (after the migrations ran)."""
    if await is_hypertable(conn):
        return Hypertable()
    relkind = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", PARENT
    )
    if relkind == "p":
        return await DailyPartitions.load(conn, storage)
    raise LayoutError(
        "readings is neither partitioned nor a hypertable: the schema migrations have not "
        "run (zerocarbon db upgrade)"
    )


@dataclass(frozen=True, slots=True)
class LayoutStatus:
    """How ``readings`` is kept, for ``zerocarbon db status``."""

    layout: str  # "timescaledb 2.28.3", "native daily partitions" or "not partitioned"
    parts: int  # daily partitions or chunks
    first: datetime | None  # start of the oldest
    last: datetime | None  # end of the newest
    default_rows: int | None = None  # rows in the default partition (native)
    compressed: int | None = None  # compressed chunks (TimescaleDB)
    chunk_interval: timedelta | None = None  # TimescaleDB
    compress_after: timedelta | None = None  # TimescaleDB compression policy
    drop_after: timedelta | None = None  # TimescaleDB retention policy


async def layout_status(conn: asyncpg.Connection) -> LayoutStatus:
    if await is_hypertable(conn):
        info = await hypertable_info(conn)
        return LayoutStatus(
            layout=f"timescaledb {info.version}",
            parts=info.chunks,
            first=info.first,
            last=info.last,
            compressed=info.compressed_chunks,
            chunk_interval=info.chunk_interval,
            compress_after=info.compress_after,
            drop_after=info.drop_after,
        )
    relkind = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", PARENT
    )
    if relkind != "p":
        return LayoutStatus(layout="not partitioned", parts=0, first=None, last=None)
    days = sorted(await partition_days(conn))
    default_rows = await conn.fetchval(f"SELECT count(*) FROM {DEFAULT_PARTITION}")
    return LayoutStatus(
        layout="native daily partitions",
        parts=len(days),
        first=day_start(days[0]) if days else None,
        last=day_start(days[-1] + 1) if days else None,
        default_rows=default_rows,
    )
