"""The uplink's bytes: every message kind to a payload and back.

Readings travel as a compact binary columnar message; the other kinds (small and rare)
as JSON. :func:`decode` checks everything it reads: a malformed payload raises
:class:`WireError` naming the site, the kind and what is wrong, never an IndexError or
a struct.error.

Readings format, version 1 (little-endian)::

    header (12 bytes, never compressed)
      magic       4 bytes  b"ZCRD"
      version     u8       1
      codec       u8       0 none, 1 zlib, 2 zstd (the body's compression)
      reserved    u16      0
      body_bytes  u32      length of the body once decompressed
    body (compressed by the codec)
      rows        u32      readings in the message
      entries     u32      catalog entries (at most 65,536)
      text_bytes  u32      length of the catalog's text
      catalog     UTF-8 text: device, metric, device, metric, ... joined by "\n"
                  (a name is 1 to 64 bytes and holds no "\n")
      series      rows x u8 (catalog of at most 256 entries) or u16: catalog index
      quality     rows x u8: :class:`zerocarbon.batch.Quality` code
      ts          rows x 8 bytes: ts_us [us] delta-encoded from the previous row
                  (the first from 0), zigzag-mapped to unsigned, byte-shuffled
      value       rows x 8 bytes: IEEE 754 float64 as they are

The choice, measured by ``python bench/uplink_format.py --repeat 7`` (seeded plant
data: 200 series of 40 meters polled every 1 to 5 s with 20 ms of jitter, half of them
float32 registers, half scaled integers; rising counters, power with 1 % noise; quality
0 but for 0.5 %). Bytes a reading, then encode and decode speed [readings/s], for a
message of 1,000 | 20,000 readings (one run on a shared x86-64 server; speeds vary by
some 20 % from run to run)::

    candidate             B/reading      encode [M/s]     decode [M/s]
    JSON rows             60.3 | 60.2    1.1 | 1.0        1.7 | 1.5
    msgpack rows          43.7 | 43.7    2.9 | 2.3        2.3 | 1.6
    bare columns          23.8 | 19.2    73  | 625      303   | 1888
    columns + zlib 6       5.48 | 3.64   1.7 | 2.9       20   | 29
    columns + zstd 3       5.24 | 3.69   15  | 26        54   | 83
    columns + lz4          8.20 | 6.48   33  | 42       105   | 187
    this format, none     22.8 | 18.2    17  | 129       15   | 96
    this format + zlib 1   5.90 | 4.34   5.0 | 8.3       9.9 | 19
    this format + zlib 6   5.39 | 3.67   2.1 | 2.1       9.7 | 21
    this format + zstd 1   5.75 | 4.22   8.9 | 24        9.9 | 42
    this format + zstd 3   5.16 | 3.61   8.0 | 19        9.5 | 39   <- chosen
    this format + lz4      7.90 | 6.11   13  | 31        14   | 61

- The compressor does almost all the work: 19 bytes of bare columns become 3.6 to 5.2.
  zstd level 3 is the smallest, with zlib level 6 (2 to 4 % bigger), and encodes 4 to 9
  times as fast and decodes 2 times as fast; lz4 is faster still but 50 to 70 % bigger.
  Hence zstd 3 (``zstandard`` in the dependencies), codec byte 2; zlib (1) and none (0)
  stay decodable (the bench's candidates, and a way out should zstd ever not do).
- The ts transform (delta, zigzag, byte shuffle) with u8 series indexes and the text
  catalog gains only 1.5 to 2 % over bare columns under the same zstd, and halves the
  decode speed (the checks, the unshuffle and the cumulative sum): the values are the
  incompressible part (float noise, ~2.6 to 3.1 bytes a reading) and a poll's metrics
  share one time stamp, which a compressor finds by itself. It is kept for data whose
  times are not shared by a poll's metrics (not measured here). Delta-of-delta per
  series (T. Pelkonen et al., "Gorilla: a fast, scalable, in-memory time series
  database", VLDB 2015) and per-series XOR of values were tried on data of the same
  kind (a one-off measurement, not in the bench) and gained nothing more under zstd;
  XOR or byte-shuffling the values made them bigger, so values go as they are.
- The encoder's ceiling, one bare pass over the columns' memory (``tobytes``), runs at
  0.8 to 1.2 G readings/s: zstd 3 encodes at 1 to 2 % of it, 8 to 19 M readings/s,
  some 100,000 times what a 200-series plant produces (~100 readings/s), and replays a
  day of a plant's backlog (~9 M readings) in under a second.
- Validation (ranges, finiteness, the catalog) costs most of a small message's decode
  time (~100 us for 1,000 readings); the checks are what keep the center's store clean.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import types
import zlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from hashlib import blake2b
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import zstandard
from numpy.typing import NDArray

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, Quality, ReadingBatch, SeriesRegistry
from zerocarbon.uplink.messages import (
    AccountsMessage,
    AlertsMessage,
    EventsMessage,
    HourlyMessage,
    ReadingsMessage,
    StatusMessage,
    UplinkMessage,
)
from zerocarbon.uplink.subjects import Kind

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "JSON_VERSION",
    "MAX_NAME_BYTES",
    "MAX_ROWS_PER_MESSAGE",
    "READINGS_MAGIC",
    "READINGS_VERSION",
    "WORST_CASE_READINGS_BYTES",
    "Codec",
    "WireError",
    "decode",
    "encode",
    "encode_readings",
    "message_id",
    "message_kind",
    "readings_message",
    "split_readings",
]

READINGS_MAGIC = b"ZCRD"
READINGS_VERSION = 1
JSON_VERSION = 1  # the "v" of every JSON message

Codec = Literal["none", "zlib", "zstd"]
CODECS: dict[Codec, int] = {"none": 0, "zlib": 1, "zstd": 2}  # the header's codec byte
_CODEC_OF_BYTE: dict[int, Codec] = {b: c for c, b in CODECS.items()}
DEFAULT_CODEC: Codec = "zstd"
DEFAULT_LEVEL = 3  # zstd's own default level

MAX_CATALOG_ENTRIES = 1 << 16  # series indexes are uint16
# A device id of the site file is at most 63 characters and metric names are shorter;
# 64 bytes of UTF-8 bound either name, so that a catalog entry is at most 130 bytes.
MAX_NAME_BYTES = 64
_HEADER = struct.Struct("<4sBBHI")
_BODY_HEAD = struct.Struct("<III")
_ROW_BYTES_U16 = 2 + 1 + 8 + 8  # series (u16), quality, ts, value [bytes]
_ENTRY_BYTES_MAX = 2 * (MAX_NAME_BYTES + 1)  # names and "\n"s of one catalog entry [bytes]

# Rows of one readings message at most. NATS refuses payloads over max_payload (1 MiB by
# default), headers (the Nats-Msg-Id) included. The worst case is a message whose every
# row is a series of its own (a catalog entry of 130 bytes per row), with u16 indexes and
# data that does not compress: 19 + 130 = 149 bytes a row, plus zstd's worst expansion
# (its ZSTD_COMPRESSBOUND: n + n/256 + 64 KiB margin here) and the headers. 6,000 rows
# make at most ~0.92 MiB (WORST_CASE_READINGS_BYTES, tested): under 1 MiB with room for
# the message headers. A plant's real messages of 6,000 rows are ~25 KB (4 bytes a
# reading, measured), so this limit costs nothing in message count worth counting.
MAX_ROWS_PER_MESSAGE = 6_000
_BODY_BYTES_MAX_ROWS = _BODY_HEAD.size + MAX_ROWS_PER_MESSAGE * (_ROW_BYTES_U16 + _ENTRY_BYTES_MAX)
WORST_CASE_READINGS_BYTES = (
    _HEADER.size + _BODY_BYTES_MAX_ROWS + (_BODY_BYTES_MAX_ROWS >> 8) + (64 << 10)
)
# A decoder never inflates more than this, whatever a header claims [bytes].
MAX_BODY_BYTES = 64 << 20

_QUALITY_MAX = max(Quality)


class WireError(ValueError):
    """A payload (or a message to encode) that is not a valid uplink message."""


def _fail(site: str, kind: str, what: str) -> WireError:
    return WireError(f"{kind} message of site {site!r}: {what}")


# --- readings -------------------------------------------------------------------------


def readings_message(site: str, batch: ReadingBatch, registry: SeriesRegistry) -> ReadingsMessage:
    """The readings of ``batch`` as a message of ``site``, in batch order.

    The catalog names the series present, in the order of their gateway series ids,
    as (device id, metric name) from ``registry``; ``series`` indexes into it. Times
    stay POSIX microseconds [us] UTC, values in the metric's unit. A series id that
    ``registry`` does not know raises ValueError.
    """
    series = batch.series
    if series.size and not bool(registry.is_valid(series).all()):
        bad = np.unique(series[~registry.is_valid(series)])[:5].tolist()
        raise ValueError(f"site {site!r}: series ids {bad} are not in the site's registry")
    present = np.zeros(registry.size, dtype=np.bool_)
    present[series] = True
    ids = np.flatnonzero(present)
    if ids.size > MAX_CATALOG_ENTRIES:
        raise ValueError(f"site {site!r}: {ids.size} series in one batch (at most 65,536)")
    index_of = np.zeros(registry.size, dtype=np.uint16)
    index_of[ids] = np.arange(ids.size, dtype=np.uint16)
    return ReadingsMessage(
        site=site,
        catalog=tuple(registry.key(int(i)) for i in ids.tolist()),
        series=index_of[series],
        ts_us=np.ascontiguousarray(batch.ts_us, dtype=np.int64),
        value=np.ascontiguousarray(batch.value, dtype=np.float64),
        quality=batch.quality.astype(np.uint8),
    )


def split_readings(
    msg: ReadingsMessage, max_rows: int = MAX_ROWS_PER_MESSAGE
) -> list[ReadingsMessage]:
    """``msg`` cut into messages of at most ``max_rows`` rows, rows kept in order.

    Each part's catalog holds only the series present in it (in the order of ``msg``'s
    catalog). A cut falls where the ts changes, when the part holds such a place: the
    readings of one poll (one ts, side by side) stay in one message, so that the center
    stores them as one set without merging parts; a poll of more than ``max_rows``
    readings is cut. A message of ``max_rows`` rows or fewer is returned as it is; an
    empty message gives no parts.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    n = len(msg)
    if n == 0:
        return []
    if n <= max_rows:
        return [msg]
    parts: list[ReadingsMessage] = []
    new_ts = np.flatnonzero(msg.ts_us[1:] != msg.ts_us[:-1]) + 1  # rows starting a ts
    start = 0
    while start < n:
        stop = min(start + max_rows, n)
        if stop < n:
            k = int(np.searchsorted(new_ts, stop, side="right")) - 1
            if k >= 0 and int(new_ts[k]) > start:
                stop = int(new_ts[k])  # the last change of ts inside the part
        series = msg.series[start:stop]
        present = np.zeros(len(msg.catalog), dtype=np.bool_)
        present[series] = True
        kept = np.flatnonzero(present)
        index_of = np.zeros(len(msg.catalog), dtype=np.uint16)
        index_of[kept] = np.arange(kept.size, dtype=np.uint16)
        parts.append(
            ReadingsMessage(
                site=msg.site,
                catalog=tuple(msg.catalog[i] for i in kept.tolist()),
                series=index_of[series],
                ts_us=msg.ts_us[start:stop].copy(),
                value=msg.value[start:stop].copy(),
                quality=msg.quality[start:stop].copy(),
            )
        )
        start = stop
    return parts


def _zigzag(x: NDArray[np.int64]) -> NDArray[np.uint64]:
    """Signed to unsigned, small magnitudes to small numbers (0, -1, 1, -2 -> 0, 1, 2,
    3), as protocol buffers' sint64 does: high bytes of small deltas become zero."""
    return ((x << np.int64(1)) ^ (x >> np.int64(63))).view(np.uint64)


def _unzigzag(z: NDArray[np.uint64]) -> NDArray[np.int64]:
    return ((z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))).view(np.int64)


def _shuffle(a: NDArray[np.uint64]) -> bytes:
    """Byte planes of 8-byte words: all first bytes, then all second bytes, ...

    The "shuffle" filter of Blosc (F. Alted, "Why modern CPUs are starving and what can
    be done about it", Computing in Science & Engineering 12(2), 2010): small deltas
    leave whole planes of zeros, which any compressor takes to almost nothing.
    """
    return a.view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(b: bytes | memoryview, rows: int) -> NDArray[np.uint64]:
    planes = np.frombuffer(b, dtype=np.uint8).reshape(8, rows)
    return np.ascontiguousarray(planes.T).view(np.uint64).reshape(rows)


def _check_names(site: str, names: list[str], text: bytes) -> None:
    """Catalog names are 1 to :data:`MAX_NAME_BYTES` bytes of UTF-8 without "\\n"."""
    if len(names) != text.count(b"\n") + (1 if names else 0):
        raise _fail(site, "readings", 'a catalog name holds a "\\n"')
    if text.isascii():  # the usual case: one character a byte, no loop in Python
        shortest, longest = (min(map(len, names)), max(map(len, names))) if names else (1, 1)
    else:
        sizes = [len(n.encode("utf-8")) for n in names]
        shortest, longest = min(sizes), max(sizes)
    if shortest < 1 or longest > MAX_NAME_BYTES:
        raise _fail(site, "readings", f"a catalog name is not 1..{MAX_NAME_BYTES} bytes")


def _check_columns(
    site: str,
    rows: int,
    entries: int,
    series: NDArray[Any],
    ts_us: NDArray[np.int64],
    value: NDArray[np.float64],
    quality: NDArray[np.uint8],
) -> None:
    """The invariants a readings message holds, checked the same way by either end."""
    if rows and int(series.max()) >= entries:
        raise _fail(
            site,
            "readings",
            f"catalog index {int(series.max())} out of range (catalog of {entries})",
        )
    if rows and not bool(np.isfinite(value).all()):
        bad = int(np.flatnonzero(~np.isfinite(value))[0])
        raise _fail(site, "readings", f"value of row {bad} is {value[bad]} (not finite)")
    if rows and (int(ts_us.min()) < MIN_TS_US or int(ts_us.max()) > MAX_TS_US):
        raise _fail(site, "readings", "a timestamp is outside years 1..9999")
    if rows and int(quality.max()) > _QUALITY_MAX:
        raise _fail(site, "readings", f"unknown quality code {int(quality.max())}")


def encode_readings(
    msg: ReadingsMessage, codec: Codec = DEFAULT_CODEC, level: int | None = None
) -> bytes:
    """The binary payload of a readings message (format in the module docstring).

    ``level`` is the codec's compression level (None: :data:`DEFAULT_LEVEL` for zstd,
    6 for zlib). Raises :class:`WireError` for a message that breaks the format's
    rules (columns of unequal length, a catalog index out of range, a non-finite
    value, a name longer than :data:`MAX_NAME_BYTES`, ...).
    """
    site = msg.site
    rows = len(msg.ts_us)
    columns = (msg.series, msg.value, msg.quality)
    if any(c.shape != (rows,) for c in columns):
        shapes = [c.shape for c in (msg.series, msg.ts_us, msg.value, msg.quality)]
        raise _fail(site, "readings", f"columns of unequal shapes {shapes}")
    entries = len(msg.catalog)
    if entries > MAX_CATALOG_ENTRIES:
        raise _fail(site, "readings", f"catalog of {entries} entries (at most 65,536)")
    names = [name for entry in msg.catalog for name in entry]
    text = "\n".join(names).encode("utf-8")
    _check_names(site, names, text)
    if len(set(msg.catalog)) != entries:
        raise _fail(site, "readings", "catalog has duplicate entries")
    series = np.asarray(msg.series)
    ts_us = np.asarray(msg.ts_us, dtype=np.int64)
    value = np.asarray(msg.value, dtype=np.float64)
    quality = np.asarray(msg.quality, dtype=np.uint8)
    if rows and int(series.min()) < 0:
        raise _fail(site, "readings", "negative catalog index")
    _check_columns(site, rows, entries, series, ts_us, value, quality)
    index_type = np.uint8 if entries <= 256 else np.uint16
    ts_delta = np.diff(ts_us, prepend=np.int64(0))  # wraps around: undone by cumsum
    body = b"".join(
        (
            _BODY_HEAD.pack(rows, entries, len(text)),
            text,
            series.astype(index_type).tobytes(),
            quality.tobytes(),
            _shuffle(_zigzag(ts_delta)),
            value.astype("<f8", copy=False).tobytes(),
        )
    )
    if codec == "zstd":
        packed = zstandard.ZstdCompressor(level=DEFAULT_LEVEL if level is None else level)
        data = packed.compress(body)
    elif codec == "zlib":
        data = zlib.compress(body, 6 if level is None else level)
    elif codec == "none":
        data = body
    else:
        raise ValueError(f"unknown codec {codec!r}")
    header = _HEADER.pack(READINGS_MAGIC, READINGS_VERSION, CODECS[codec], 0, len(body))
    return header + data


# A site sends the same catalog message after message: parsed catalogs are kept by
# their bytes, so a repeat is one dict lookup, and the same tuple object lets the center
# map it to its series ids once (zerocarbon.uplink.center_store).
_CATALOGS: dict[bytes, tuple[tuple[str, str], ...]] = {}
CATALOG_CACHE_ENTRIES = 4_096


def _catalog(site: str, text: bytes, entries: int) -> tuple[tuple[str, str], ...]:
    """The catalog of ``entries`` (device, metric) pairs in ``text``, checked."""
    cached = _CATALOGS.get(text)
    if cached is not None and len(cached) == entries:
        return cached
    try:
        names = text.decode("utf-8").split("\n") if text else []
    except UnicodeDecodeError:
        raise _fail(site, "readings", "catalog is not UTF-8") from None
    if len(names) != 2 * entries:
        raise _fail(site, "readings", f"catalog of {len(names)} names for {entries} entries")
    _check_names(site, names, text)
    catalog = tuple(zip(names[0::2], names[1::2], strict=True))
    if len(set(catalog)) != entries:
        raise _fail(site, "readings", "catalog has duplicate entries")
    if len(_CATALOGS) >= CATALOG_CACHE_ENTRIES:
        _CATALOGS.clear()
    _CATALOGS[bytes(text)] = catalog
    return catalog


_ZSTD = threading.local()


def _zstd() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (one per message cost as much as the decompression)."""
    d: zstandard.ZstdDecompressor | None = getattr(_ZSTD, "d", None)
    if d is None:
        d = _ZSTD.d = zstandard.ZstdDecompressor()
    return d


def _inflate(site: str, codec: Codec, data: memoryview, body_bytes: int) -> bytes:
    """The body of a readings payload, at most ``body_bytes`` of it."""
    try:
        if codec == "none":
            return bytes(data)
        if codec == "zlib":
            z = zlib.decompressobj()
            body = z.decompress(data, body_bytes)
            if z.unconsumed_tail or not z.eof or z.unused_data:
                raise _fail(site, "readings", "zlib stream longer or shorter than its header")
            return body
        # the frame header's content size is what zstd allocates: check it first
        if zstandard.frame_content_size(data) != body_bytes:
            raise _fail(site, "readings", "zstd frame size differs from its header's")
        try:
            body = _zstd().decompress(data, max_output_size=body_bytes, allow_extra_data=False)
        except zstandard.ZstdError as e:
            if "unused data" in str(e):
                raise _fail(site, "readings", "zstd stream longer than its header") from None
            raise
        if len(body) != body_bytes:
            raise _fail(site, "readings", "zstd stream longer or shorter than its header")
        return body
    except (zlib.error, zstandard.ZstdError) as e:
        raise _fail(site, "readings", f"{codec} body does not decompress: {e}") from None


def _decode_readings(site: str, payload: bytes) -> ReadingsMessage:
    view = memoryview(payload)
    if len(view) < _HEADER.size:
        raise _fail(site, "readings", f"truncated: {len(view)} bytes, a header is 12")
    magic, version, codec_byte, reserved, body_bytes = _HEADER.unpack_from(view)
    if magic != READINGS_MAGIC:
        raise _fail(site, "readings", f"wrong magic {bytes(magic)!r} (not {READINGS_MAGIC!r})")
    if version != READINGS_VERSION:
        raise _fail(site, "readings", f"unknown format version {version}")
    codec = _CODEC_OF_BYTE.get(codec_byte)
    if codec is None:
        raise _fail(site, "readings", f"unknown codec {codec_byte}")
    if reserved != 0:
        raise _fail(site, "readings", f"reserved header field is {reserved}, not 0")
    if body_bytes > MAX_BODY_BYTES:
        raise _fail(site, "readings", f"body of {body_bytes} bytes claimed (at most 64 MiB)")
    body = _inflate(site, codec, view[_HEADER.size :], body_bytes)
    if len(body) != body_bytes:
        raise _fail(site, "readings", f"body is {len(body)} bytes, the header says {body_bytes}")
    if len(body) < _BODY_HEAD.size:
        raise _fail(site, "readings", f"truncated body of {len(body)} bytes")
    rows, entries, text_bytes = _BODY_HEAD.unpack_from(body)
    if entries > MAX_CATALOG_ENTRIES:
        raise _fail(site, "readings", f"catalog of {entries} entries (at most 65,536)")
    pos = _BODY_HEAD.size
    index_size = 1 if entries <= 256 else 2
    expected = pos + text_bytes + rows * (index_size + 1 + 8 + 8)
    if len(body) != expected:
        raise _fail(
            site,
            "readings",
            f"body is {len(body)} bytes; {rows} rows and a catalog of {entries} "
            f"entries make {expected}",
        )
    text = body[pos : pos + text_bytes]
    pos += text_bytes
    catalog = _catalog(site, text, entries)
    index_type = np.uint8 if index_size == 1 else np.uint16
    series = np.frombuffer(body, dtype=index_type, count=rows, offset=pos).astype(np.uint16)
    pos += rows * index_size
    quality = np.frombuffer(body, dtype=np.uint8, count=rows, offset=pos).copy()
    pos += rows
    ts_us = np.cumsum(_unzigzag(_unshuffle(memoryview(body)[pos : pos + 8 * rows], rows)))
    pos += 8 * rows
    value = np.frombuffer(body, dtype="<f8", count=rows, offset=pos).astype(np.float64)
    _check_columns(site, rows, entries, series, ts_us, value, quality)
    return ReadingsMessage(site, catalog, series, ts_us, value, quality)


# --- JSON kinds -----------------------------------------------------------------------

_JSON_TYPES: dict[Kind, type] = {
    "hourly": HourlyMessage,
    "alerts": AlertsMessage,
    "events": EventsMessage,
    "accounts": AccountsMessage,
    "status": StatusMessage,
}
_KIND_OF_TYPE: dict[type, Kind] = {t: k for k, t in _JSON_TYPES.items()}
_KIND_OF_TYPE[ReadingsMessage] = "readings"

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

_FieldType = Literal["datetime", "float", "int", "bool", "str", "object", "rows"]


@dataclass(frozen=True, slots=True)
class _Field:
    """How one dataclass field goes to JSON: its type, whether None is allowed, and
    for ``rows`` (a tuple of dataclasses) the row type."""

    name: str
    json_type: _FieldType
    optional: bool
    row_type: type | None = None


_SCALARS: dict[Any, _FieldType] = {
    datetime: "datetime",
    float: "float",
    int: "int",
    bool: "bool",
    str: "str",
}


@cache
def _fields_of(cls: type) -> tuple[_Field, ...]:
    """The JSON fields of a message or row dataclass, from its type hints (the
    dataclass is the one definition; ``site`` travels in the subject)."""
    hints = get_type_hints(cls)
    out: list[_Field] = []
    for f in fields(cls):
        if f.name == "site":
            continue
        hint = hints[f.name]
        optional = False
        if get_origin(hint) in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not type(None)]
            optional = len(args) < len(get_args(hint))
            (hint,) = args
        if hint in _SCALARS:
            out.append(_Field(f.name, _SCALARS[hint], optional))
        elif get_origin(hint) is dict:
            out.append(_Field(f.name, "object", optional))
        elif get_origin(hint) is tuple:
            out.append(_Field(f.name, "rows", optional, get_args(hint)[0]))
        else:  # a new field type: teach this module first
            raise TypeError(f"{cls.__name__}.{f.name}: no JSON mapping for {hint!r}")
    return tuple(out)


def _to_json(obj: Any, site: str, kind: Kind, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls: type = type(obj)
    for f in _fields_of(cls):
        v = getattr(obj, f.name)
        where = f"{path}{f.name}"
        if v is None:
            if not f.optional:
                raise _fail(site, kind, f"{where} is None")
            out[f.name] = None
        elif f.json_type == "datetime":
            if not isinstance(v, datetime) or v.tzinfo is None:
                raise _fail(site, kind, f"{where} is not an aware datetime: {v!r}")
            out[f.name] = v.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif f.json_type == "float":
            x = float(v)
            if not math.isfinite(x):
                raise _fail(site, kind, f"{where} is {x} (not finite)")
            out[f.name] = x
        elif f.json_type == "int":
            out[f.name] = int(v)
        elif f.json_type == "bool":
            out[f.name] = bool(v)
        elif f.json_type == "rows":
            out[f.name] = [_to_json(r, site, kind, f"{where}[{i}].") for i, r in enumerate(v)]
        else:  # str, object: as they are
            out[f.name] = v
    return out


def _from_json(cls: type, obj: Any, site: str, kind: Kind, path: str) -> dict[str, Any]:
    """The keyword arguments of ``cls`` from a decoded JSON object, every field checked.

    Unknown keys are refused as missing ones are: a field added to a message is a new
    format version, so that nothing a gateway sends is silently dropped.
    """
    if not isinstance(obj, dict):
        raise _fail(site, kind, f"{path or 'payload'} is not a JSON object")
    specs = _fields_of(cls)
    names = {f.name for f in specs}
    extra = sorted(set(obj) - names - ({"v"} if not path else set()))
    if extra:
        raise _fail(site, kind, f"{path}{extra[0]}: unknown field")
    out: dict[str, Any] = {}
    for f in specs:
        where = f"{path}{f.name}"
        if f.name not in obj:
            raise _fail(site, kind, f"{where}: missing field")
        v = obj[f.name]
        if v is None:
            if not f.optional:
                raise _fail(site, kind, f"{where} is null")
            out[f.name] = None
        elif f.json_type == "datetime":
            out[f.name] = _parse_ts(v, site, kind, where)
        elif f.json_type == "float":
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _fail(site, kind, f"{where} is not a number: {v!r}")
            out[f.name] = float(v)
        elif f.json_type == "int":
            if isinstance(v, bool) or not isinstance(v, int) or not _INT64_MIN <= v <= _INT64_MAX:
                raise _fail(site, kind, f"{where} is not a 64-bit integer: {v!r}")
            out[f.name] = v
        elif f.json_type == "bool":
            if not isinstance(v, bool):
                raise _fail(site, kind, f"{where} is not true or false: {v!r}")
            out[f.name] = v
        elif f.json_type == "str":
            if not isinstance(v, str):
                raise _fail(site, kind, f"{where} is not a string: {v!r}")
            out[f.name] = v
        elif f.json_type == "object":
            if not isinstance(v, dict):
                raise _fail(site, kind, f"{where} is not a JSON object")
            out[f.name] = v
        else:
            assert f.row_type is not None
            if not isinstance(v, list):
                raise _fail(site, kind, f"{where} is not a list")
            out[f.name] = tuple(
                f.row_type(**_from_json(f.row_type, r, site, kind, f"{where}[{i}]."))
                for i, r in enumerate(v)
            )
    return out


def _parse_ts(v: Any, site: str, kind: Kind, where: str) -> datetime:
    if not isinstance(v, str):
        raise _fail(site, kind, f"{where} is not an ISO 8601 string: {v!r}")
    try:
        ts = datetime.fromisoformat(v)
    except ValueError:
        raise _fail(site, kind, f"{where} is not an ISO 8601 time: {v!r}") from None
    if ts.tzinfo is None:
        raise _fail(site, kind, f"{where} has no time zone: {v!r}")
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        raise _fail(site, kind, f"{where} is out of range in UTC: {v!r}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _encode_json(msg: UplinkMessage, kind: Kind) -> bytes:
    doc = {"v": JSON_VERSION, **_to_json(msg, msg.site, kind, "")}
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:  # an account that is not JSON-able
        raise _fail(msg.site, kind, f"not JSON-able: {e}") from None
    return text.encode("utf-8")


def _decode_json(kind: Kind, site: str, payload: bytes) -> UplinkMessage:
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _fail(site, kind, f"bad JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _fail(site, kind, "payload is not a JSON object")
    version = doc.get("v")
    if isinstance(version, bool) or version != JSON_VERSION:
        raise _fail(site, kind, f"unknown format version {version!r} (not {JSON_VERSION})")
    cls = _JSON_TYPES[kind]
    result: UplinkMessage = cls(site=site, **_from_json(cls, doc, site, kind, ""))
    return result


# --- all kinds ------------------------------------------------------------------------


def message_kind(msg: UplinkMessage) -> Kind:
    """The kind (and subject suffix) of a message."""
    return _KIND_OF_TYPE[type(msg)]


def encode(msg: UplinkMessage) -> bytes:
    """The payload of a message: readings binary (:func:`encode_readings` with
    :data:`DEFAULT_CODEC`), the other kinds JSON with ``"v": 1``. The site is not in
    the payload: the subject ``zc.<site>.<kind>`` names it."""
    if isinstance(msg, ReadingsMessage):
        return encode_readings(msg)
    return _encode_json(msg, message_kind(msg))


def decode(kind: Kind, site: str, payload: bytes) -> UplinkMessage:
    """The message of ``kind`` of ``site`` (both from the subject) in ``payload``;
    :class:`WireError` names the site, the kind and the fault of a malformed one."""
    if kind == "readings":
        return _decode_readings(site, payload)
    if kind not in _JSON_TYPES:
        raise WireError(f"message of site {site!r}: unknown kind {kind!r}")
    return _decode_json(kind, site, payload)


def message_id(site: str, kind: Kind, payload: bytes) -> str:
    """JetStream's ``Nats-Msg-Id`` of a payload: ``<site>:<kind>:<hash>``, the hash a
    128-bit BLAKE2b of the payload, so that a payload published twice (a retry after a
    lost ack) is stored once within the stream's duplicate window."""
    return f"{site}:{kind}:{blake2b(payload, digest_size=16).hexdigest()}"
