"""The center's ingest: a batch of decoded uplink messages into the central database.

An ingest worker fetches a batch of messages of any sites and kinds and hands it to
:meth:`CenterStore.store`, which writes it in one transaction, idempotently: a message
stored twice (redelivered after a worker died before acking it, replayed by JetStream
sourcing) leaves every data table as storing it once did, and the counts returned say
what was new.

- ``sites`` and ``site_series`` rows are made on first sight (``INSERT .. ON CONFLICT
  DO NOTHING``, then read back) and their ids cached for the worker's life; a cached id
  is only one this worker saw committed.
- Readings: a message's catalog index maps to central series ids through one lookup
  array; the batch's readings are grouped per (site, ts) into sets
  (:mod:`zerocarbon.uplink.reading_sets`) and stored by
  :mod:`zerocarbon.uplink.center_readings`: each (site, ts, series) once (its first
  copy in the batch), new sets by one binary COPY, sets of messages found stored merged
  and what was new counted. ``bench/center_store.py`` measures the paths against a bare
  COPY.
- Hourly rows, alerts: upserted by key, a row replaced only by a copy of newer or equal
  revision (``computed_at``; the alert's ``revision``). Device events and issued
  accounts: inserted once by the gateway's id.
- Status: the site's name, time zone, page and last status, from the newest status.
- Each site's uplink state: ``last_seen`` (the center's clock), ``last_sent`` and
  ``uplink_lag_s`` (from the messages' send times), ``last_reading_ts`` and the count
  of readings stored, all only moving forward.

Concurrency: workers store readings, hourly rows, alerts, events and accounts side by
side, even for the same sites; each transaction locks its sites' rows (``FOR NO KEY
UPDATE``, in id order, so two cannot deadlock on them) only at its end, to move their
status and counters, so transactions on the same sites wait for each other's short
tail only (with the lock taken first, a group's workers, whose batches mix every site,
stored one at a time: ``bench/uplink.py`` measured two workers no faster than one).
Foreign keys to ``sites`` take only ``KEY SHARE`` locks, which do not wait on these. Two
workers given the same new rows at once (a redelivery while the first still holds
them) may wait on each other's keys; PostgreSQL then aborts one, whose worker leaves
its batch unacknowledged for redelivery.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, us_to_datetime
from zerocarbon.rows import HourlyCarbon, HourlyLine, sql_columns
from zerocarbon.uplink.center_readings import store_reading_sets
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
from zerocarbon.uplink.reading_sets import group_messages
from zerocarbon.uplink.subjects import check_site_id

__all__ = [
    "CenterStore",
    "InvalidMessage",
    "StoreResult",
]


class InvalidMessage(ValueError):
    """A message of a batch that cannot be stored (nothing of the batch was written).

    ``index`` is its position in the batch, so that a worker can drop that one message
    and store the others; ``site`` the site id it names.
    """

    def __init__(self, index: int, site: str, reason: str) -> None:
        super().__init__(f"message {index} of the batch (site {site!r}): {reason}")
        self.index = index
        self.site = site


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What one :meth:`CenterStore.store` call received and what of it was new."""

    readings_received: int  # readings in the batch's readings messages
    readings_stored: int  # new rows of site_readings
    duplicates: int  # readings already stored, or repeated inside the batch
    hourly_rows: int  # hourly carbon and line rows inserted or replaced (newer or equal)
    alerts: int  # alert rows inserted or replaced (revision newer or equal)
    events: int  # new device events
    accounts: int  # new issued accounts
    statuses: int  # sites whose metadata a newer status replaced
    new_readings_by_site: Mapping[str, int]  # site id -> new rows (sites with readings)


# --- SQL ------------------------------------------------------------------------------

CATALOG_CACHE_ENTRIES = 20_000  # (site, catalog) mappings a store keeps
_CatalogIds = tuple[tuple[tuple[str, str], ...], NDArray[np.int32]]

_LOCK_SITES_NEW = """
INSERT INTO sites (site) SELECT s FROM unnest($1::text[]) AS s ORDER BY s
ON CONFLICT (site) DO NOTHING
"""
_SITE_IDS = """
SELECT id, site FROM sites WHERE site = ANY($1::text[])
"""
_LOCK_SITES = """
SELECT id FROM sites WHERE id = ANY($1::integer[]) ORDER BY id FOR NO KEY UPDATE
"""
_SERIES_NEW = """
INSERT INTO site_series (site_id, device, metric)
SELECT * FROM unnest($1::integer[], $2::text[], $3::text[]) AS k(site_id, device, metric)
ORDER BY site_id, device, metric
ON CONFLICT (site_id, device, metric) DO NOTHING
"""
_SERIES_IDS = """
SELECT s.id, s.site_id, s.device, s.metric FROM site_series s
JOIN unnest($1::integer[], $2::text[], $3::text[]) AS k(site_id, device, metric)
  USING (site_id, device, metric)
"""
_STATUS = """
UPDATE sites AS s
SET name = u.name, timezone = u.timezone, page_url = u.page_url, status = u.status
FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[])
  AS u(id, name, timezone, page_url, status, sent_at)
WHERE s.id = u.id
  AND (s.status ->> 'sent_at' IS NULL OR (s.status ->> 'sent_at')::timestamptz < u.sent_at)
"""
_UPLINK_STATE = """
UPDATE sites AS s
SET last_seen = GREATEST(s.last_seen, $2::timestamptz),
    uplink_lag_s = CASE WHEN u.sent IS NOT NULL AND (s.last_sent IS NULL OR u.sent > s.last_sent)
                        THEN u.lag_s ELSE s.uplink_lag_s END,
    last_sent = GREATEST(s.last_sent, u.sent),
    last_reading_ts = GREATEST(s.last_reading_ts, u.reading_ts),
    readings = s.readings + u.new_readings
FROM unnest($1::integer[], $3::timestamptz[], $4::double precision[], $5::timestamptz[],
            $6::bigint[]) AS u(id, sent, lag_s, reading_ts, new_readings)
WHERE s.id = u.id
"""


def _upsert_sql(
    table: str,
    columns: Sequence[tuple[str, str]],
    key: Sequence[str],
    revision: str | None,
) -> str:
    """``INSERT`` of one array parameter per column (``unnest``), with ``site_id``
    first; on a key already stored, nothing (``revision`` None) or an update of every
    other column when the incoming ``revision`` column is newer or equal."""
    cols = [("site_id", "integer"), *columns]
    names = ", ".join(name for name, _ in cols)
    arrays = ", ".join(f"${i}::{sql_type}[]" for i, (_, sql_type) in enumerate(cols, 1))
    head = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
    if revision is None:
        return f"{head} ON CONFLICT ({', '.join(key)}) DO NOTHING"
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name, _ in cols if name not in key)
    return (
        f"{head} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} "
        f"WHERE {table}.{revision} <= EXCLUDED.{revision}"
    )


_ARRAY_TYPES: dict[Any, str] = {
    int: "bigint",  # the gateway's ids are bigint; smaller columns take an assignment cast
    float: "double precision",
    bool: "boolean",
    str: "text",
    datetime: "timestamptz",
    dict: "jsonb",
}


def _record_columns(record_type: type) -> list[tuple[str, str]]:
    """(column, SQL array element type) of a message record type, in field order (its
    fields are its table's columns after ``site_id``)."""
    hints = get_type_hints(record_type)
    out: list[tuple[str, str]] = []
    for f in fields(record_type):
        hint = hints[f.name]
        if get_origin(hint) in (Union, types.UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        out.append((f.name, _ARRAY_TYPES[get_origin(hint) or hint]))
    return out


def _hourly_columns(row_type: type) -> list[tuple[str, str]]:
    return [(name, sql_type) for name, sql_type, _ in sql_columns(row_type)] + [
        ("computed_at", "timestamptz")
    ]


_CARBON_COLUMNS = _hourly_columns(HourlyCarbon)
_LINE_COLUMNS = _hourly_columns(HourlyLine)
_ALERT_COLUMNS = _record_columns(AlertRecord)
_EVENT_COLUMNS = _record_columns(DeviceEventRecord)
_ACCOUNT_COLUMNS = _record_columns(IssuedAccount)

_UPSERT_CARBON = _upsert_sql(
    "site_hourly_carbon", _CARBON_COLUMNS, ("site_id", "hour_start"), "computed_at"
)
_UPSERT_LINE = _upsert_sql(
    "site_hourly_line", _LINE_COLUMNS, ("site_id", "hour_start", "line"), "computed_at"
)
_UPSERT_ALERTS = _upsert_sql("site_alerts", _ALERT_COLUMNS, ("site_id", "alert_id"), "revision")
_INSERT_EVENTS = _upsert_sql("site_device_events", _EVENT_COLUMNS, ("site_id", "event_id"), None)
_INSERT_ACCOUNTS = _upsert_sql("site_accounts", _ACCOUNT_COLUMNS, ("site_id", "report_id"), None)


def _affected(status: str) -> int:
    """Rows of an ``INSERT 0 <n>`` / ``UPDATE <n>`` command status."""
    return int(status.split()[-1])


# --- the batch, checked and prepared before the transaction ----------------------------

_K = TypeVar("_K")
_R = TypeVar("_R")


def _newest(rows: Iterable[tuple[_K, _R, Any]]) -> list[tuple[_K, _R]]:
    """Per key, the row of the highest revision (ties: the later one): one row per key,
    as one ``INSERT .. ON CONFLICT DO UPDATE`` statement needs."""
    best: dict[_K, tuple[Any, _R]] = {}
    for key, row, revision in rows:
        kept = best.get(key)
        if kept is None or kept[0] <= revision:
            best[key] = (revision, row)
    return [(key, row) for key, (_, row) in best.items()]


def _aware(ts: datetime, what: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} {ts.isoformat()} has no time zone")
    return ts


def _json_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_shape(index: int, m: ReadingsMessage) -> None:
    """Columns of equal length, series and quality integer."""
    n = len(m.ts_us)
    for name in ("series", "value", "quality"):
        if len(getattr(m, name)) != n:
            raise InvalidMessage(
                index, m.site, f"{name} has {len(getattr(m, name))} rows, ts_us {n}"
            )
    if n and (
        not np.issubdtype(m.series.dtype, np.integer)
        or not np.issubdtype(m.quality.dtype, np.integer)
    ):
        raise InvalidMessage(index, m.site, "series and quality must be integer arrays")


def _check_ranges(index: int, m: ReadingsMessage) -> None:
    """Series inside the catalog, times in years 1..9999, quality a smallint."""
    if not len(m):
        return
    if int(m.series.min()) < 0 or int(m.series.max()) >= len(m.catalog):
        raise InvalidMessage(
            index, m.site, f"series index outside its catalog of {len(m.catalog)} series"
        )
    lo, hi = int(m.ts_us.min()), int(m.ts_us.max())
    if lo < MIN_TS_US or hi > MAX_TS_US:
        raise InvalidMessage(index, m.site, f"reading time {lo}..{hi} us outside years 1..9999")
    if int(m.quality.min()) < -32768 or int(m.quality.max()) > 32767:
        raise InvalidMessage(index, m.site, "quality outside smallint")


def _check_readings(readings: Sequence[tuple[int, ReadingsMessage]]) -> None:
    """:func:`_check_shape` and :func:`_check_ranges` of (batch index, message) pairs;
    the ranges of the whole batch at once (a worker's batch holds hundreds of small
    messages, and a check per message cost more than the rest of the store's work),
    message by message only to name the first that fails."""
    for index, m in readings:
        _check_shape(index, m)
    filled = [m for _, m in readings if len(m)]
    if not filled:
        return
    series = np.concatenate([m.series for m in filled]).astype(np.int64, copy=False)
    catalog_sizes = np.repeat([len(m.catalog) for m in filled], [len(m) for m in filled])
    ts_us = np.concatenate([m.ts_us for m in filled])
    quality = np.concatenate([m.quality for m in filled]).astype(np.int64, copy=False)
    if (
        int(series.min()) < 0
        or bool((series >= catalog_sizes).any())
        or int(ts_us.min()) < MIN_TS_US
        or int(ts_us.max()) > MAX_TS_US
        or int(quality.min()) < -32768
        or int(quality.max()) > 32767
    ):
        for index, m in readings:
            _check_ranges(index, m)


def _message_sent_times(
    messages: Sequence[UplinkMessage], sent_at: Sequence[datetime | None] | None
) -> list[datetime | None]:
    """Each message's send time: its header's when known, else a status' own
    ``sent_at`` (the gateway's clock either way)."""
    if sent_at is not None and len(sent_at) != len(messages):
        raise ValueError(f"sent_at has {len(sent_at)} times for {len(messages)} messages")
    out: list[datetime | None] = []
    for i, m in enumerate(messages):
        sent = sent_at[i] if sent_at is not None else None
        if sent is None and isinstance(m, StatusMessage):
            sent = m.sent_at
        out.append(None if sent is None else _aware(sent, f"sent time of message {i}"))
    return out


def _check(messages: Sequence[UplinkMessage]) -> list[str]:
    """Sorted site ids of a batch; :class:`InvalidMessage` for the first message that
    cannot be stored."""
    sites: set[str] = set()
    readings: list[tuple[int, ReadingsMessage]] = []
    for i, m in enumerate(messages):
        if not isinstance(
            m,
            ReadingsMessage
            | HourlyMessage
            | AlertsMessage
            | EventsMessage
            | AccountsMessage
            | StatusMessage,
        ):
            raise TypeError(f"message {i} of the batch is a {type(m).__name__}")
        try:
            check_site_id(m.site)
        except ValueError as exc:
            raise InvalidMessage(i, m.site, str(exc)) from None
        sites.add(m.site)
        if isinstance(m, ReadingsMessage):
            readings.append((i, m))
    _check_readings(readings)
    return sorted(sites)


# --- the store -------------------------------------------------------------------------


class CenterStore:
    """Stores batches of uplink messages in the center's database (one per worker; it
    caches the ids of sites and series it has seen)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._site_ids: dict[str, int] = {}  # site id -> sites.id
        self._series_ids: dict[tuple[int, str, str], int] = {}  # (sites.id, device, metric)
        # (sites.id, id(catalog)) -> (catalog, site_series.id of each entry): a site
        # repeats its catalog, and the wire decoder hands out one tuple per distinct
        # catalog, so the object's identity is the key (hashing a 200-entry tuple per
        # message cost more than the rest of the lookup); the entry keeps the catalog
        # alive, so its id cannot be reused by another object meanwhile
        self._catalog_ids: dict[tuple[int, int], _CatalogIds] = {}

    async def store(
        self,
        messages: Sequence[UplinkMessage],
        *,
        received_at: datetime,
        sent_at: Sequence[datetime | None] | None = None,
        source_seq: Sequence[int | None] | None = None,
    ) -> StoreResult:
        """Store a batch of messages in one transaction, each row once.

        ``received_at`` is the center's clock when the batch was fetched (aware);
        ``sent_at`` the gateway's send time of each message where its header gave one
        (a status message's own ``sent_at`` is used when it has none); ``source_seq``
        each message's sequence in its site's own stream (moves ``sites.source_seq``
        forward, what the gateway may drop). Raises
        :class:`InvalidMessage` (a ValueError) for a bad site id or malformed readings
        before anything is written, and the database's error when the transaction
        fails (then nothing of the batch was stored).
        """
        _aware(received_at, "received_at")
        sent_times = _message_sent_times(messages, sent_at)
        sites = _check(messages)
        prepared = _prepare(messages)
        if not messages:
            return StoreResult(0, 0, 0, 0, 0, 0, 0, 0, {})
        async with self._pool.acquire() as conn, conn.transaction():
            site_ids = await self._site_ids_of(conn, sites)
            series_ids = await self._series(conn, site_ids, prepared.readings)
            lookups = self._catalog_lookups(site_ids, series_ids, prepared.readings)
            new_by_site = await _store_readings(conn, prepared.readings, site_ids, lookups)
            hourly = await _store_hourly(conn, prepared, site_ids)
            alerts = await _store_keyed(
                conn, _UPSERT_ALERTS, _ALERT_COLUMNS, prepared.alerts, site_ids
            )
            events = await _store_keyed(
                conn, _INSERT_EVENTS, _EVENT_COLUMNS, prepared.events, site_ids
            )
            accounts = await _store_keyed(
                conn, _INSERT_ACCOUNTS, _ACCOUNT_COLUMNS, prepared.accounts, site_ids
            )
            # the sites' rows last, locked in id order: transactions of other workers on
            # the same sites wait only for this tail, not for each other's readings
            await conn.execute(_LOCK_SITES, sorted(site_ids.values()))
            statuses = await _store_statuses(conn, prepared.statuses, site_ids)
            await _store_uplink_state(
                conn, messages, sent_times, received_at, site_ids, new_by_site
            )
            if source_seq is not None:
                await _store_source_seq(conn, messages, source_seq, site_ids)
        # committed: what this transaction created exists for every worker now
        self._site_ids.update(site_ids)
        self._series_ids.update(series_ids)
        if len(self._catalog_ids) + len(lookups) > CATALOG_CACHE_ENTRIES:
            self._catalog_ids.clear()
        self._catalog_ids.update(lookups)
        received = sum(len(m) for m in prepared.readings)
        stored = sum(new_by_site.values())
        return StoreResult(
            readings_received=received,
            readings_stored=stored,
            duplicates=received - stored,
            hourly_rows=hourly,
            alerts=alerts,
            events=events,
            accounts=accounts,
            statuses=statuses,
            new_readings_by_site={m.site: new_by_site.get(m.site, 0) for m in prepared.readings},
        )

    async def source_seq(self, site: str) -> int:
        """The highest sequence of ``site``'s stream stored here (0: none yet)."""
        value = await self._pool.fetchval("SELECT source_seq FROM sites WHERE site = $1", site)
        return int(value or 0)

    async def _site_ids_of(self, conn: asyncpg.Connection, sites: list[str]) -> dict[str, int]:
        """sites.id of each site, its row made if missing."""
        missing = [s for s in sites if s not in self._site_ids]
        if missing:
            await conn.execute(_LOCK_SITES_NEW, missing)
        rows = await conn.fetch(_SITE_IDS, sites)
        found = {r["site"]: int(r["id"]) for r in rows}
        assert len(found) == len(sites), f"sites rows missing: {set(sites) - set(found)}"
        return found

    def _catalog_lookups(
        self,
        site_ids: Mapping[str, int],
        series_ids: Mapping[tuple[int, str, str], int],
        readings: Sequence[ReadingsMessage],
    ) -> dict[tuple[int, int], _CatalogIds]:
        """(sites.id, id(catalog)) -> the catalog and the site_series.id of each entry,
        for the batch's catalogs (mapped once, then looked up)."""
        out: dict[tuple[int, int], _CatalogIds] = {}
        for m in readings:
            key = (site_ids[m.site], id(m.catalog))
            if key in out:
                continue
            cached = self._known_catalog(key, m.catalog)
            if cached is None:
                site_id = key[0]
                cached = (
                    m.catalog,
                    np.array(
                        [series_ids[(site_id, device, metric)] for device, metric in m.catalog],
                        dtype=np.int32,
                    ),
                )
            out[key] = cached
        return out

    def _known_catalog(
        self, key: tuple[int, int], catalog: tuple[tuple[str, str], ...]
    ) -> _CatalogIds | None:
        entry = self._catalog_ids.get(key)
        return entry if entry is not None and entry[0] is catalog else None

    async def _series(
        self,
        conn: asyncpg.Connection,
        site_ids: Mapping[str, int],
        readings: Sequence[ReadingsMessage],
    ) -> dict[tuple[int, str, str], int]:
        """site_series.id of every catalog entry of the batch (rows made where missing);
        catalogs mapped before (:attr:`_catalog_ids`) are skipped."""
        unknown = {
            (site_ids[m.site], id(m.catalog)): m.catalog
            for m in readings
            if self._known_catalog((site_ids[m.site], id(m.catalog)), m.catalog) is None
        }  # each catalog once: a site sends the same one message after message
        keys = {
            (site_id, device, metric)
            for (site_id, _), catalog in unknown.items()
            for device, metric in catalog
        }
        known = {k: self._series_ids[k] for k in keys if k in self._series_ids}
        missing = sorted(keys - known.keys())
        if missing:
            columns = [list(c) for c in zip(*missing, strict=True)]
            await conn.execute(_SERIES_NEW, *columns)
            for r in await conn.fetch(_SERIES_IDS, *columns):
                known[(int(r["site_id"]), r["device"], r["metric"])] = int(r["id"])
        return known


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch sorted by kind, its non-readings rows as database parameters; one row
    per key where the statement upserts (the newest revision)."""

    readings: list[ReadingsMessage]
    carbon: list[tuple[str, HourlyCarbon, datetime]]  # (site, row, computed_at)
    lines: list[tuple[str, HourlyLine, datetime]]
    alerts: list[tuple[str, list[object]]]  # (site, column values)
    events: list[tuple[str, list[object]]]
    accounts: list[tuple[str, list[object]]]
    statuses: list[tuple[str, StatusMessage, str]]  # (site, message, status as JSON)


def _prepare(messages: Sequence[UplinkMessage]) -> _Prepared:
    """The batch by kind; JSON is encoded here, so that a value JSON cannot hold fails
    before the transaction."""
    prepared = _Prepared([], [], [], [], [], [], [])
    alerts: list[tuple[tuple[str, int], list[object], int]] = []
    statuses: list[tuple[str, StatusMessage, datetime]] = []
    for m in messages:
        if isinstance(m, ReadingsMessage):
            prepared.readings.append(m)
        elif isinstance(m, HourlyMessage):
            computed_at = _aware(m.computed_at, f"computed_at of site {m.site!r}")
            prepared.carbon.extend((m.site, row, computed_at) for row in m.carbon)
            prepared.lines.extend((m.site, row, computed_at) for row in m.lines)
        elif isinstance(m, AlertsMessage):
            alerts.extend(((m.site, a.alert_id), _record_values(a), a.revision) for a in m.alerts)
        elif isinstance(m, EventsMessage):
            prepared.events.extend((m.site, _record_values(e)) for e in m.events)
        elif isinstance(m, AccountsMessage):
            prepared.accounts.extend((m.site, _record_values(a)) for a in m.accounts)
        else:
            statuses.append((m.site, m, _aware(m.sent_at, f"status sent_at of {m.site!r}")))
    prepared.alerts.extend((site, values) for (site, _), values in _newest(alerts))
    prepared.statuses.extend((site, m, _status_json(m)) for site, m in _newest(statuses))
    return prepared


def _record_values(record: AlertRecord | DeviceEventRecord | IssuedAccount) -> list[object]:
    values: list[object] = []
    for f in fields(record):
        value = getattr(record, f.name)
        values.append(json.dumps(value, default=_json_value) if isinstance(value, dict) else value)
    return values


def _status_json(m: StatusMessage) -> str:
    body = {f.name: getattr(m, f.name) for f in fields(m) if f.name != "site"}
    return json.dumps(body, default=_json_value)


def _columns_of(
    rows: Sequence[tuple[str, Sequence[object]]], site_ids: Mapping[str, int], width: int
) -> list[list[object]]:
    """Per-column lists (``site_id`` first) of rows given as (site, values)."""
    out: list[list[object]] = [[site_ids[site] for site, _ in rows]]
    out.extend([values[c] for _, values in rows] for c in range(width))
    return out


async def _store_readings(
    conn: asyncpg.Connection,
    readings: Sequence[ReadingsMessage],
    site_ids: Mapping[str, int],
    lookups: Mapping[tuple[int, int], _CatalogIds],
) -> dict[str, int]:
    """Store the batch's readings as sets per (site, ts)
    (:mod:`zerocarbon.uplink.center_readings`); returns the new readings per site
    (sites without new readings may be left out)."""
    messages = [m for m in readings if len(m)]
    if not messages:
        return {}
    site_of_message = [site_ids[m.site] for m in messages]
    sets = group_messages(
        messages,
        site_of_message,
        [
            lookups[(site_id, id(m.catalog))][1]
            for site_id, m in zip(site_of_message, messages, strict=True)
        ],
    )
    message_of = np.repeat(np.arange(len(messages), dtype=np.int64), [len(m) for m in messages])
    probes = [
        (i, site_id, int(m.ts_us[j]))
        for i, (site_id, m) in enumerate(zip(site_of_message, messages, strict=True))
        for j in {0, len(m) - 1}
    ]
    site_of = {v: k for k, v in site_ids.items()}
    new = await store_reading_sets(conn, sets, message_of, probes)
    return {site_of[site_id]: n for site_id, n in new.items()}


async def _store_hourly(
    conn: asyncpg.Connection, prepared: _Prepared, site_ids: Mapping[str, int]
) -> int:
    """Hourly carbon and line rows inserted or replaced by a newer-or-equal copy."""
    done = 0
    plans: tuple[tuple[str, list[tuple[str, str]], list[Any]], ...] = (
        (
            _UPSERT_CARBON,
            _CARBON_COLUMNS,
            _newest(((site, r.hour_start), (site, r, at), at) for site, r, at in prepared.carbon),
        ),
        (
            _UPSERT_LINE,
            _LINE_COLUMNS,
            _newest(
                ((site, r.hour_start, r.line), (site, r, at), at) for site, r, at in prepared.lines
            ),
        ),
    )
    for sql, columns, newest in plans:
        if not newest:
            continue
        rows = [
            (site, [*(getattr(row, name) for name, _ in columns[:-1]), at])
            for _, (site, row, at) in newest
        ]
        done += _affected(await conn.execute(sql, *_columns_of(rows, site_ids, len(columns))))
    return done


async def _store_keyed(
    conn: asyncpg.Connection,
    sql: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[str, Sequence[object]]],
    site_ids: Mapping[str, int],
) -> int:
    if not rows:
        return 0
    return _affected(await conn.execute(sql, *_columns_of(rows, site_ids, len(columns))))


async def _store_statuses(
    conn: asyncpg.Connection,
    statuses: Sequence[tuple[str, StatusMessage, str]],
    site_ids: Mapping[str, int],
) -> int:
    """Sites whose metadata and status a newer status replaced."""
    if not statuses:
        return 0
    return _affected(
        await conn.execute(
            _STATUS,
            [site_ids[site] for site, _, _ in statuses],
            [m.name for _, m, _ in statuses],
            [m.timezone for _, m, _ in statuses],
            [m.page_url for _, m, _ in statuses],
            [body for _, _, body in statuses],
            [m.sent_at for _, m, _ in statuses],
        )
    )


_SOURCE_SEQ = """
UPDATE sites AS s SET source_seq = GREATEST(s.source_seq, u.seq)
FROM unnest($1::integer[], $2::bigint[]) AS u(id, seq)
WHERE s.id = u.id
"""


async def _store_source_seq(
    conn: asyncpg.Connection,
    messages: Sequence[UplinkMessage],
    source_seq: Sequence[int | None],
    site_ids: Mapping[str, int],
) -> None:
    """Each site's highest sequence of its own stream in the batch (from the header the
    center's sourcing adds), only ever moving forward."""
    newest: dict[int, int] = {}
    for m, seq in zip(messages, source_seq, strict=True):
        if seq is not None:
            site_id = site_ids[m.site]
            newest[site_id] = max(newest.get(site_id, 0), seq)
    if newest:
        await conn.execute(_SOURCE_SEQ, list(newest), list(newest.values()))


async def _store_uplink_state(
    conn: asyncpg.Connection,
    messages: Sequence[UplinkMessage],
    sent_times: Sequence[datetime | None],
    received_at: datetime,
    site_ids: Mapping[str, int],
    new_by_site: Mapping[str, int],
) -> None:
    """Each site's last_seen, last_sent and uplink_lag_s [s] (of its newest sent
    message), last_reading_ts and readings count."""
    newest_sent: dict[str, datetime | None] = dict.fromkeys(site_ids)
    newest_reading_us: dict[str, int] = {}
    for m, sent in zip(messages, sent_times, strict=True):
        kept = newest_sent[m.site]
        if sent is not None and (kept is None or sent > kept):
            newest_sent[m.site] = sent
        if isinstance(m, ReadingsMessage) and len(m):
            newest_reading_us[m.site] = max(
                newest_reading_us.get(m.site, MIN_TS_US), int(m.ts_us.max())
            )
    sites = sorted(site_ids)
    await conn.execute(
        _UPLINK_STATE,
        [site_ids[s] for s in sites],
        received_at,
        [newest_sent[s] for s in sites],
        [
            None if (sent := newest_sent[s]) is None else (received_at - sent).total_seconds()
            for s in sites
        ],
        [
            None if s not in newest_reading_us else us_to_datetime(newest_reading_us[s])
            for s in sites
        ],
        [new_by_site.get(s, 0) for s in sites],
    )
