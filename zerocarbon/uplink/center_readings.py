"""Readings into the center's ``site_reading_sets``: each (site, ts, series) stored
once, what was new counted exactly, whatever arrived before or arrives at once.

A worker's batch, grouped per (site, ts) (:func:`zerocarbon.uplink.reading_sets.
group_readings`), goes in by one of two paths:

- **straight**: the sets whose key is not stored yet are one binary COPY into
  ``site_reading_sets``, in a savepoint. The primary key (ts, site_id) refuses the
  COPY when a key exists after all (another worker stored it meanwhile; a probe
  missed it); then all of the batch takes the merge path.
- **merge**: the sets whose key a probe found stored (a redelivery, a replay, or a
  poll's readings cut across two messages that reached different batches) are copied
  into a session-local staging table, then

  1. inserted where their key is still free (``ON CONFLICT DO NOTHING``, which waits
     for a concurrent insert of the key to end); these are new as a whole;
  2. the keys of stored rows that lack some of the staged series are locked (a
     transaction-level advisory lock per (site, ts), taken in one order), in a
     statement of their own, so that no other merge changes them until this
     transaction ends (only merges change a stored row); a row that holds every
     staged series needs no lock (a set only ever grows, so it will hold them still):
     a redelivery reads and writes nothing more. Advisory locks, not row locks:
     TimescaleDB cannot lock the tuples of a compressed chunk;
  3. each locked key's row gets the staged readings of series it does not hold,
     merged in series order, by a statement whose snapshot, taken after the locks,
     sees the rows' last committed state: what it appends is exactly what was new.

The probe looks up the keys of each message's first and last reading: a replay or a
redelivery repeats whole messages, so every set holding a reading of a message found
stored takes the merge path, and the rest of the batch still goes straight in. A
stored key the probe misses is caught by the primary key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import us_to_datetime
from zerocarbon.uplink.center_schema import READINGS_TABLE
from zerocarbon.uplink.reading_sets import (
    READING_SET_COLUMNS,
    ReadingSets,
    encode_reading_sets,
)

__all__ = ["store_reading_sets"]

TABLE = READINGS_TABLE
STAGING = f"{READINGS_TABLE}_in"

_STAGING_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING} (LIKE {TABLE} INCLUDING DEFAULTS)
ON COMMIT DELETE ROWS
"""
_PROBE = f"""
SELECT k.i FROM unnest($1::integer[], $2::timestamptz[]) WITH ORDINALITY AS k(site_id, ts, i)
WHERE EXISTS (SELECT 1 FROM {TABLE} r WHERE r.ts = k.ts AND r.site_id = k.site_id)
"""
_COLUMNS = ", ".join(READING_SET_COLUMNS)
_INSERT_FREE = f"""
WITH stored AS (
    INSERT INTO {TABLE} ({_COLUMNS})
    SELECT {_COLUMNS} FROM {STAGING} ORDER BY ts, site_id
    ON CONFLICT (ts, site_id) DO NOTHING
    RETURNING site_id, ts, cardinality(series_id) AS n
), done AS (
    DELETE FROM {STAGING} i USING stored s WHERE i.ts = s.ts AND i.site_id = s.site_id
)
SELECT site_id, sum(n)::bigint AS n FROM stored GROUP BY site_id
"""
# a merge's lock on a (site, ts): a transaction-level advisory lock, not a row lock
# (TimescaleDB cannot lock the tuples of a compressed chunk: "locking compressed tuples
# is not supported"), in one order so that two merges cannot deadlock; two keys that
# share a lock only wait for each other
_LOCK_GROWING = f"""
SELECT pg_advisory_xact_lock(r.site_id, hashint8(k.ts_us))
FROM {TABLE} r JOIN {STAGING} i ON r.ts = i.ts AND r.site_id = i.site_id,
     LATERAL (SELECT (extract(epoch FROM r.ts) * 1000000)::bigint AS ts_us) k
WHERE EXISTS (SELECT 1 FROM unnest(i.series_id) AS u(s) WHERE u.s <> ALL (r.series_id))
ORDER BY r.site_id, hashint8(k.ts_us)
"""
_MERGE = f"""
WITH extra AS (
    SELECT i.site_id, i.ts,
           array_agg(u.series_id) AS series_id,
           array_agg(u.value) AS value,
           array_agg(u.quality) AS quality
    FROM {STAGING} i
    JOIN {TABLE} r ON r.ts = i.ts AND r.site_id = i.site_id
    CROSS JOIN LATERAL unnest(i.series_id, i.value, i.quality) AS u(series_id, value, quality)
    WHERE u.series_id <> ALL (r.series_id)
    GROUP BY i.site_id, i.ts
), merged AS (
    UPDATE {TABLE} r
    SET (series_id, value, quality) = (
        SELECT array_agg(m.s ORDER BY m.s), array_agg(m.v ORDER BY m.s),
               array_agg(m.q ORDER BY m.s)
        FROM unnest(r.series_id || e.series_id, r.value || e.value,
                    r.quality || e.quality) AS m(s, v, q)
    )
    FROM extra e
    WHERE r.ts = e.ts AND r.site_id = e.site_id
    RETURNING r.site_id, cardinality(e.series_id) AS n
)
SELECT site_id, sum(n)::bigint AS n FROM merged GROUP BY site_id
"""


async def store_reading_sets(
    conn: asyncpg.Connection,
    sets: ReadingSets,
    message_of: NDArray[np.int64],
    probes: Sequence[tuple[int, int, int]],
) -> dict[int, int]:
    """Store ``sets`` (each key once, as :func:`group_readings` gives them) in the
    transaction ``conn`` is in; returns the new readings per site id (sites without
    new readings may be left out).

    ``message_of``: the message of each row the sets were grouped from (indexed by
    :attr:`ReadingSets.source`); ``probes``: (message, site id, ts [us]) of each
    message's first and last reading, looked up first.
    """
    if not len(sets):
        return {}
    stored = await _stored_keys(conn, [(site_id, ts_us) for _, site_id, ts_us in probes])
    hit = sorted({m for m, site_id, ts_us in probes if (site_id, ts_us) in stored})
    seen = np.zeros(len(sets), dtype=np.bool_)
    if hit:  # the sets holding a reading of a message found stored
        of_hit = np.isin(message_of[sets.source], hit)
        seen = np.logical_or.reduceat(of_hit, sets.start)
    new: dict[int, int] = {}
    staged = sets.take(seen) if hit else None
    if not bool(seen.all()):
        fresh = sets.take(~seen) if hit else sets
        try:
            async with conn.transaction():  # a savepoint: refused if any key is stored
                await conn.copy_to_table(
                    TABLE,
                    source=encode_reading_sets(fresh),
                    columns=READING_SET_COLUMNS,
                    format="binary",
                )
        except asyncpg.UniqueViolationError:
            staged = sets  # nothing of it was stored: all of it
        else:
            new = fresh.readings_by_site()
    if staged is not None and len(staged):
        for site_id, n in (await _merge(conn, staged)).items():
            new[site_id] = new.get(site_id, 0) + n
    return new


async def _stored_keys(
    conn: asyncpg.Connection, probes: Iterable[tuple[int, int]]
) -> set[tuple[int, int]]:
    """The probed (site id, ts [us]) keys that ``site_reading_sets`` holds."""
    keys = sorted(set(probes))
    if not keys:
        return set()
    rows = await conn.fetch(
        _PROBE, [site_id for site_id, _ in keys], [us_to_datetime(ts_us) for _, ts_us in keys]
    )
    return {keys[int(r["i"]) - 1] for r in rows}


async def _merge(conn: asyncpg.Connection, staged: ReadingSets) -> dict[int, int]:
    """The merge path (module docstring): new readings per site id."""
    await conn.execute(_STAGING_DDL)
    await conn.copy_to_table(
        STAGING, source=encode_reading_sets(staged), columns=READING_SET_COLUMNS, format="binary"
    )
    new: dict[int, int] = {}
    for r in await conn.fetch(_INSERT_FREE):
        new[int(r["site_id"])] = int(r["n"])
    await conn.execute(_LOCK_GROWING)
    for r in await conn.fetch(_MERGE):
        site_id = int(r["site_id"])
        new[site_id] = new.get(site_id, 0) + int(r["n"])
    return new
