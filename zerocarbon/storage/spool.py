"""On-disk store-and-forward spool: admitted batches wait here until the database has them.

Every batch of readings the gateway admits is appended to the spool first; the
collectors consider it acknowledged once :meth:`Spool.append` returns. A forwarder
reads the records in order (:meth:`Spool.read`), writes them to the database and then
calls :meth:`Spool.commit`. While the database is away the spool grows (up to a quota);
it survives a killed process and, with ``fsync="always"``, a power cut, and replays in
order after a restart. Delivery is at least once: a record may be forwarded again after
a restart (the database side is idempotent), an acknowledged record is never dropped.

Files
-----
One directory holds::

    00000000000000000001.seg   segments, named by the seq of their first record (20 digits)
    00000000000000000734.seg
    cursor                     the commit cursor
    LOCK                       flock()ed while a Spool has the directory open

All integers are little-endian.

*Segment* = a 24-byte file header, then records back to back::

    magic   8 bytes  b"ZCSPSEG\\0"
    version u32      FORMAT_VERSION (1)
    first   u64      seq of the first record (equals the file name)
    crc     u32      zlib.crc32 of the 20 bytes above

A new segment is started when the current one would grow beyond ``segment_bytes``;
a record larger than that gets a segment of its own.

*Record* = a 32-byte header, then the payload::

    magic       4 bytes  b"ZCRD"
    length      u32      payload length [bytes] = 21 * rows
    seq         u64      1, 2, 3, ... strictly increasing over the whole spool, never reused
    appended_us i64      wall-clock time of the append, POSIX time [us]
    rows        u32      readings in the batch
    crc         u32      zlib.crc32 of the 28 header bytes above, continued over the payload

    payload: series int32[rows], ts_us int64[rows], value float64[rows], quality int8[rows]
             (each array's raw bytes, one after the other)

*Cursor* (``cursor``, 24 bytes): magic ``b"ZCSPCUR\\0"``, version u32, committed seq
u64, crc32 of those 20 bytes. A new spool writes it (0) before its first segment; every
commit replaces it atomically (written to ``cursor.tmp``, fsynced under
``fsync="always"``, ``os.replace``d). Records ``<=`` the committed seq are stored in the
database; a segment whose records are all committed is deleted (never the segment being
appended to).

fsync policies
--------------
``"always"``
    the segment is fsynced before :meth:`Spool.append` returns (and the directory when
    a segment was created); the cursor file and the directory on every commit (and
    the parent when the spool creates its directory). An acknowledged batch survives a
    power cut.
``"interval"``
    :meth:`Spool.append` fsyncs when the last fsync is ``fsync_interval_s`` old or
    older; :meth:`Spool.sync` (called by the gateway's timer) and :meth:`Spool.close`
    fsync too, and a full segment is fsynced when the next one starts. Survives a
    killed process; a power cut loses at most about the last interval.
``"never"``
    fsync only in :meth:`Spool.close`. Survives a killed process (the data is in the
    page cache), not a power cut.

Recovery at open
----------------
Segments are scanned in seq order and every record is validated (magic, payload length
against the row count and the file size, CRC, seq strictly increasing). The valid ones
form an in-memory index (seq -> segment, offset, rows, appended_us; about 32 bytes per
record) so depth and :meth:`Spool.read` are cheap; ``read`` reads the files (page cache),
the spool keeps no copy of the data in memory.

- An invalid or short record at the tail of the *last* segment is a write torn by a
  crash: the file is truncated there (``torn_tail_bytes``, a warning naming file and
  offset). A last segment left without records is deleted.
- An invalid record inside an *earlier* segment is corruption: logged as an error with
  file and offset, counted (``corrupt_records`` +1, ``corrupt_bytes`` the rest of the
  file), the rest of that segment is skipped and the scan goes on with the next
  segment. The file stays until the records before the damage are committed.
- A segment of another format version is not guessed at: :class:`SpoolError`.
- A missing or garbled cursor is logged; the committed seq is then the largest one the
  files prove: the first segment's first seq - 1 (segments are only ever deleted once
  committed), else 0. A cursor ahead of the last record (records lost in a power cut
  under a lax policy) moves the next seq past it, so new records are never taken as
  committed.
- Appends after an open always start a new segment, named ``last seq + 1``; nothing is
  ever appended behind a truncated region.

Threads
-------
``append`` is called from one thread, ``read``/``commit`` may run in another. A short
lock guards the index and counters; file writes and fsyncs hold only the appenders'
lock, so a slow fsync never blocks ``read`` or ``commit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import re
import struct
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import ReadingBatch

__all__ = [
    "FORMAT_VERSION",
    "RECORD_HEADER_BYTES",
    "ROW_BYTES",
    "SEGMENT_HEADER_BYTES",
    "FsyncPolicy",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolRecord",
    "SpoolStats",
    "record_bytes",
]

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
FORMAT_VERSION = 1

_SEGMENT_MAGIC = b"ZCSPSEG\x00"
_SEGMENT_HEADER = struct.Struct("<8sIQI")  # magic, version, first seq, crc
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size  # 24

_RECORD_MAGIC = b"ZCRD"
_RECORD_HEAD = struct.Struct("<4sIQqI")  # magic, payload length, seq, appended_us, rows
_RECORD_HEADER = struct.Struct("<4sIQqII")  # the same, then crc
RECORD_HEADER_BYTES = _RECORD_HEADER.size  # 32

_CURSOR_MAGIC = b"ZCSPCUR\x00"
_CURSOR = struct.Struct("<8sIQI")  # magic, version, committed seq, crc

_SERIES = np.dtype("<i4")
_TS = np.dtype("<i8")
_VALUE = np.dtype("<f8")
_QUALITY = np.dtype("<i1")
ROW_BYTES = _SERIES.itemsize + _TS.itemsize + _VALUE.itemsize + _QUALITY.itemsize  # 21
_MAX_ROWS = 0xFFFF_FFFF // ROW_BYTES  # the payload length is a u32

_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
_CURSOR_NAME = "cursor"
_CURSOR_TMP = "cursor.tmp"
_LOCK_NAME = "LOCK"
_US_PER_S = 1_000_000


def record_bytes(rows: int) -> int:
    """Size of a record of ``rows`` readings on disk [bytes] (header and payload)."""
    return RECORD_HEADER_BYTES + ROW_BYTES * rows


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


class SpoolError(RuntimeError):
    """The spool cannot work with its directory or files; the message names the path."""


class SpoolFull(SpoolError):
    """An append was refused: the record would take the spool beyond its quota."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One appended batch as read back.

    ``seq``: its sequence number (1, 2, 3, ...). ``appended_us``: wall-clock time of the
    append, POSIX time [us]. ``batch``: the readings; the arrays are owned copies,
    writable, valid after the spool is closed or the segment deleted.
    """

    seq: int
    appended_us: int
    batch: ReadingBatch


@dataclass(slots=True)
class SpoolStats:
    """Counters since the spool was opened (recovery included).

    Sizes in bytes. ``fsyncs`` counts every fsync call (segments, directory, cursor).
    ``corrupt_records`` counts invalid records inside earlier segments (each one makes
    the scan skip the rest of its segment, ``corrupt_bytes``); ``torn_tail_bytes`` the
    bytes cut off the last segment. ``recovered_records`` are the records found
    uncommitted at open.
    """

    appended_records: int = 0
    appended_rows: int = 0
    appended_bytes: int = 0
    fsyncs: int = 0
    committed_records: int = 0
    segments_created: int = 0
    segments_deleted: int = 0
    full_refusals: int = 0
    torn_tail_bytes: int = 0
    corrupt_records: int = 0
    corrupt_bytes: int = 0
    recovered_records: int = 0


@dataclass(slots=True, eq=False)
class _Segment:
    """One segment file and the index of its valid records (parallel arrays)."""

    first_seq: int  # from the name
    path: Path
    size: int  # bytes of the file on disk, damaged tail included
    seqs: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))  # of each record [bytes]
    cum_rows: array[int] = field(default_factory=lambda: array("q"))  # rows of records 0..i
    appended_us: array[int] = field(default_factory=lambda: array("q"))

    @property
    def last_seq(self) -> int:
        """Seq of the last valid record; ``first_seq - 1`` when there is none."""
        return self.seqs[-1] if self.seqs else self.first_seq - 1

    def rows_before(self, i: int) -> int:
        """Rows of records ``0 .. i-1``."""
        return self.cum_rows[i - 1] if i > 0 else 0

    def add(self, seq: int, offset: int, rows: int, appended_us: int) -> None:
        self.seqs.append(seq)
        self.offsets.append(offset)
        self.cum_rows.append(self.rows_before(len(self.cum_rows)) + rows)
        self.appended_us.append(appended_us)


@dataclass(slots=True)
class _ReadPlan:
    """A contiguous run of records of one segment that :meth:`Spool.read` returns."""

    path: Path
    start: int  # offset of the first record [bytes]
    end: int  # offset after the last one [bytes]
    seqs: array[int]


def _le_column(batch: ReadingBatch, name: str, dtype: np.dtype[np.generic]) -> NDArray[np.generic]:
    arr: NDArray[np.generic] = getattr(batch, name)
    if arr.ndim != 1 or arr.dtype.kind != dtype.kind or arr.dtype.itemsize != dtype.itemsize:
        raise TypeError(f"batch column {name} is {arr.dtype} {arr.shape}, want 1-d {dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _write_all(fd: int, buffers: Sequence[memoryview | bytes]) -> None:
    """Write every buffer at the file position, short writes retried."""
    total = sum(len(b) for b in buffers)
    done = os.writev(fd, buffers)
    if done == total:
        return
    rest = memoryview(b"".join(buffers))[done:]
    while rest:
        n = os.write(fd, rest)
        if n == 0:
            raise OSError(errno.EIO, "write returned 0")
        rest = rest[n:]


class Spool:
    """The store-and-forward spool in ``directory`` (see the module docstring).

    ``segment_bytes``: size at which a new segment file starts [bytes].
    ``quota_bytes``: most bytes of segment files the spool may hold [bytes].
    ``alarm_fraction``: :attr:`alarm` is on at ``used_bytes >= alarm_fraction * quota``.
    ``fsync``: the durability policy; ``fsync_interval_s`` its interval [s].
    ``clock``: wall clock, POSIX time [s]: record times and the interval policy.

    Opening creates the directory if needed, takes its lock and recovers; any failure
    raises :class:`SpoolError` naming the path.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        quota_bytes: int = 2 << 30,
        alarm_fraction: float = 0.8,
        fsync: FsyncPolicy = "always",
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fsync not in get_args(FsyncPolicy):
            raise ValueError(f"fsync policy {fsync!r} is not one of {get_args(FsyncPolicy)}")
        if segment_bytes <= SEGMENT_HEADER_BYTES:
            raise ValueError(f"segment_bytes {segment_bytes} is too small")
        if quota_bytes <= 0 or not 0.0 < alarm_fraction <= 1.0 or fsync_interval_s < 0:
            raise ValueError("quota_bytes > 0, 0 < alarm_fraction <= 1, fsync_interval_s >= 0")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._quota = quota_bytes
        self._alarm_fraction = alarm_fraction
        self.fsync_policy: FsyncPolicy = fsync
        self.fsync_interval_s = fsync_interval_s
        self._clock = clock

        self._lock = threading.Lock()  # index, counters, committed seq: held briefly
        self._io_lock = threading.Lock()  # appenders: the active segment's writes and fsyncs
        self._commit_lock = threading.Lock()  # commits: cursor writes in order

        self._segments: list[_Segment] = []  # in seq order; the last may be active
        self._active: _Segment | None = None  # the segment appends go to
        self._active_fd = -1
        self._dirty = False  # active segment written since its last fsync
        self._must_rotate = False  # a write or fsync of the active segment failed
        self._dir_dirty = False  # a segment created since the directory's last fsync
        self._last_sync = clock()  # [s]
        self._committed = 0
        self._last = 0
        self._used = 0
        self._pending_records = 0
        self._pending_rows = 0
        self._stats = SpoolStats()
        self._closed = False
        self._dir_fd = -1
        self._lock_fd = -1
        try:
            self._open_directory()
            self._recover()
        except BaseException:
            self._release()
            raise

    # -- opening -----------------------------------------------------------------------

    def _open_directory(self) -> None:
        d = self.directory
        try:
            created = not d.exists()
            d.mkdir(parents=True, exist_ok=True)
            if created and self.fsync_policy == "always":
                parent = os.open(d.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    self._fsync(parent)
                finally:
                    os.close(parent)
            self._dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._lock_fd = os.open(d / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise SpoolError(f"spool directory {d}: {e.strerror or e}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise SpoolError(f"spool directory {d} is in use by another spool ({e})") from e

    def _recover(self) -> None:
        d = self.directory
        with contextlib.suppress(FileNotFoundError):
            (d / _CURSOR_TMP).unlink()
        try:
            names = sorted(
                (int(m.group(1)), p)
                for p in d.iterdir()
                if (m := _SEGMENT_NAME.match(p.name)) and p.is_file()
            )
        except OSError as e:
            raise SpoolError(f"spool directory {d}: cannot list it: {e.strerror or e}") from e
        # Segments are only ever deleted once committed: everything before the first is.
        floor = names[0][0] - 1 if names else 0
        cursor = self._read_cursor()
        last_valid = 0
        for k, (first, path) in enumerate(names):
            seg, last_valid = self._scan(path, first, last_valid, is_last=k == len(names) - 1)
            if seg is not None:
                self._segments.append(seg)
        if cursor is None:
            committed = floor
            if names:  # a new spool writes its cursor before any segment: this one was lost
                log.warning("spool %s: committed seq taken as %d (proved by the files)", d, floor)
        else:
            committed = max(cursor, floor)
        if committed > last_valid and last_valid > 0:
            log.warning(
                "spool %s: cursor %d is beyond the last record %d (records lost in a "
                "power cut?); new records start after the cursor",
                d,
                committed,
                last_valid,
            )
        self._committed = committed
        self._last = max(last_valid, committed)
        self._used = sum(s.size for s in self._segments)
        for seg in self._segments:
            i = bisect_right(seg.seqs, committed)
            self._pending_records += len(seg.seqs) - i
            self._pending_rows += seg.rows_before(len(seg.seqs)) - seg.rows_before(i)
        self._stats.recovered_records = self._pending_records
        if cursor != committed:  # a new spool's first cursor, or one lost or behind
            self._write_cursor(committed)
        self._delete_committed()
        if self._pending_records:
            log.info(
                "spool %s: %d records (%d rows) to forward after seq %d",
                d,
                self._pending_records,
                self._pending_rows,
                committed,
            )

    def _read_cursor(self) -> int | None:
        path = self.directory / _CURSOR_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.error("spool cursor %s unreadable (%s); ignored", path, e)
            return None
        if len(data) == _CURSOR.size:
            magic, version, seq, crc = _CURSOR.unpack(data)
            if magic == _CURSOR_MAGIC and crc == zlib.crc32(data[:-4]):
                if version == FORMAT_VERSION:
                    return int(seq)
                log.error("spool cursor %s has format version %d; ignored", path, version)
                return None
        log.warning("spool cursor %s is garbled (%d bytes); ignored", path, len(data))
        return None

    def _scan(
        self, path: Path, first: int, last_valid: int, *, is_last: bool
    ) -> tuple[_Segment | None, int]:
        """Validate one segment file; returns its index (None if deleted) and the last seq."""
        try:
            with open(path, "rb", buffering=1 << 20) as f:
                size = os.fstat(f.fileno()).st_size
                seg = _Segment(first, path, size)
                head = f.read(SEGMENT_HEADER_BYTES)
                bad = self._check_segment_header(path, head, first)
                off = SEGMENT_HEADER_BYTES if bad is None else 0
                while bad is None and off < size:
                    bad, seq, rows, appended = self._check_record(f, off, size, last_valid, first)
                    if bad is None:
                        seg.add(seq, off, rows, appended)
                        last_valid = seq
                        off += record_bytes(rows)
        except OSError as e:
            raise SpoolError(f"spool segment {path}: cannot read it: {e.strerror or e}") from e
        if bad is not None:
            if is_last:
                log.warning(
                    "spool segment %s: torn write at offset %d (%s): %d bytes cut off",
                    path,
                    off,
                    bad,
                    size - off,
                )
                self._stats.torn_tail_bytes += size - off
                if seg.seqs:
                    self._truncate(seg, off)
            else:
                log.error(
                    "spool segment %s: corrupt at offset %d (%s): the rest of the file "
                    "(%d bytes) is skipped",
                    path,
                    off,
                    bad,
                    size - off,
                )
                self._stats.corrupt_records += 1
                self._stats.corrupt_bytes += size - off
        if is_last and not seg.seqs:
            # nothing in it (created by a crash before its first record): new appends
            # start a new segment, maybe of the same name
            try:
                path.unlink()
                self._fsync_dir()
            except OSError as e:
                raise SpoolError(f"spool segment {path}: cannot delete it: {e}") from e
            return None, last_valid
        return seg, last_valid

    @staticmethod
    def _check_segment_header(path: Path, head: bytes, first: int) -> str | None:
        if len(head) < SEGMENT_HEADER_BYTES:
            return "short file header"
        magic, version, head_first, crc = _SEGMENT_HEADER.unpack(head)
        if magic != _SEGMENT_MAGIC or crc != zlib.crc32(head[:-4]):
            return "bad file header"
        if version != FORMAT_VERSION:
            raise SpoolError(
                f"spool segment {path} has format version {version}, this program reads "
                f"{FORMAT_VERSION}"
            )
        if head_first != first:
            return f"file header says first seq {head_first}"
        return None

    @staticmethod
    def _check_record(
        f: BinaryIO, off: int, size: int, last_valid: int, first: int
    ) -> tuple[str | None, int, int, int]:
        """Validate the record at ``off`` (the file's position); (reason or None, seq,
        rows, appended_us)."""
        if size - off < RECORD_HEADER_BYTES:
            return "short record header", 0, 0, 0
        head = f.read(RECORD_HEADER_BYTES)
        magic, length, seq, appended, rows, crc = _RECORD_HEADER.unpack(head)
        if magic != _RECORD_MAGIC:
            return "bad record magic", 0, 0, 0
        if length != ROW_BYTES * rows:
            return f"payload length {length} for {rows} rows", 0, 0, 0
        if off + RECORD_HEADER_BYTES + length > size:
            return "short record", 0, 0, 0
        payload = f.read(length)
        if len(payload) != length or zlib.crc32(payload, zlib.crc32(head[:-4])) != crc:
            return "bad CRC", 0, 0, 0
        if seq <= last_valid or seq < first:
            return f"seq {seq} after {max(last_valid, first - 1)}", 0, 0, 0
        return None, int(seq), int(rows), int(appended)

    def _truncate(self, seg: _Segment, size: int) -> None:
        try:
            fd = os.open(seg.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, size)
                if self.fsync_policy != "never":
                    self._fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise SpoolError(f"spool segment {seg.path}: cannot truncate it: {e}") from e
        seg.size = size

    # -- appending ---------------------------------------------------------------------

    def append(self, batch: ReadingBatch) -> int:
        """Store a batch; durable per the fsync policy when this returns; its seq.

        Raises :class:`SpoolFull` (nothing written) if the record would take the spool
        beyond its quota, :class:`SpoolError` if the disk refuses the write or the
        fsync (after a failed fsync the record may still be forwarded: the caller must
        not take it as acknowledged, the database side is idempotent).
        """
        n = len(batch)
        if n > _MAX_ROWS:
            raise ValueError(f"a batch of {n} rows is too large for one record")
        columns = [
            _le_column(batch, name, dtype).data.cast("B")
            for name, dtype in (
                ("series", _SERIES),
                ("ts_us", _TS),
                ("value", _VALUE),
                ("quality", _QUALITY),
            )
        ]
        size = record_bytes(n)
        with self._io_lock:
            self._check_open()
            active = self._active
            if active is not None and active.seqs and self._used + size > self._quota:
                with self._lock:
                    done = active.last_seq <= self._committed
                if done:  # all of it stored: close it so that its space comes back
                    self._seal()
                    active = None
            rotate = (
                active is None
                or self._must_rotate
                or (len(active.seqs) > 0 and active.size + size > self.segment_bytes)
            )
            with self._lock:
                seq = self._last + 1
                need = size + (SEGMENT_HEADER_BYTES if rotate else 0)
                if self._used + need > self._quota:
                    self._stats.full_refusals += 1
                    raise SpoolFull(
                        f"spool {self.directory}: {size} more bytes would exceed the quota "
                        f"({self._used} of {self._quota} bytes used)"
                    )
            if rotate:
                active = self._start_segment(seq)
            assert active is not None
            appended_us = int(self._clock() * _US_PER_S)
            head = _RECORD_HEAD.pack(_RECORD_MAGIC, ROW_BYTES * n, seq, appended_us, n)
            crc = zlib.crc32(head)
            for c in columns:
                crc = zlib.crc32(c, crc)
            offset = active.size
            try:
                _write_all(self._active_fd, [head, struct.pack("<I", crc), *columns])
            except OSError as e:
                self._undo_write(active, offset)
                raise SpoolError(f"spool segment {active.path}: write failed: {e}") from e
            self._dirty = True
            with self._lock:
                active.add(seq, offset, n, appended_us)
                active.size += size
                self._used += size
                self._last = seq
                self._pending_records += 1
                self._pending_rows += n
                st = self._stats
                st.appended_records += 1
                st.appended_rows += n
                st.appended_bytes += size
            if self.fsync_policy == "always":
                self._sync_active(active.path)
            elif self.fsync_policy == "interval":
                now = self._clock()
                # a wall clock set back must not stop the fsyncs
                if now - self._last_sync >= self.fsync_interval_s or now < self._last_sync:
                    self._sync_active(active.path)
        return seq

    def _start_segment(self, first_seq: int) -> _Segment:
        """Seal the active segment and create the next one (appenders' lock held)."""
        self._seal()
        path = self.directory / _segment_name(first_seq)
        head = _SEGMENT_HEADER.pack(_SEGMENT_MAGIC, FORMAT_VERSION, first_seq, 0)
        head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise SpoolError(f"spool segment {path}: cannot create it: {e.strerror or e}") from e
        try:
            _write_all(fd, [head])
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise SpoolError(f"spool segment {path}: write failed: {e}") from e
        seg = _Segment(first_seq, path, SEGMENT_HEADER_BYTES)
        self._active_fd = fd
        self._dirty = self._dir_dirty = True
        with self._lock:
            self._active = seg
            self._segments.append(seg)
            self._used += SEGMENT_HEADER_BYTES
            self._stats.segments_created += 1
        return seg

    def _seal(self) -> None:
        """Close the active segment (fsynced first unless the policy is "never" or an
        fsync of it failed already)."""
        if self._active is None:
            return
        fd = self._active_fd
        try:
            if self._dirty and self.fsync_policy != "never" and not self._must_rotate:
                self._sync_active(self._active.path)
        finally:
            with self._lock:
                self._active = None
            self._active_fd, self._dirty, self._must_rotate = -1, False, False
            os.close(fd)
        self._delete_committed()

    def _undo_write(self, seg: _Segment, offset: int) -> None:
        """Cut a failed write off the active segment; if that fails too, the next
        append starts a new segment (the damage is then an earlier segment's)."""
        try:
            os.ftruncate(self._active_fd, offset)
            os.lseek(self._active_fd, offset, os.SEEK_SET)
        except OSError:
            log.error("spool segment %s: cannot cut a failed write at %d", seg.path, offset)
            self._must_rotate = True
            with contextlib.suppress(OSError):
                on_disk = os.fstat(self._active_fd).st_size
                with self._lock:
                    if on_disk > seg.size:
                        self._used += on_disk - seg.size
                        seg.size = on_disk

    # -- durability --------------------------------------------------------------------

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        with self._lock:
            self._stats.fsyncs += 1

    def _fsync_dir(self) -> None:
        self._fsync(self._dir_fd)

    def _sync_active(self, path: Path) -> None:
        """fsync the active segment if written, and the directory if a segment was made."""
        try:
            if self._dirty and self._active_fd >= 0:
                self._fsync(self._active_fd)
                self._dirty = False
            if self._dir_dirty:
                self._fsync_dir()
                self._dir_dirty = False
        except OSError as e:
            # the kernel may have dropped the pages: append nothing more to this file
            self._must_rotate = True
            raise SpoolError(f"spool segment {path}: fsync failed: {e}") from e
        self._last_sync = self._clock()

    def sync(self) -> None:
        """fsync what was appended since the last fsync (nothing to do: no fsync; a
        closed spool: nothing)."""
        with self._io_lock:
            if self._closed:
                return
            path = self._active.path if self._active is not None else self.directory
            self._sync_active(path)

    # -- reading -----------------------------------------------------------------------

    def read(self, after_seq: int, max_rows: int) -> list[SpoolRecord]:
        """The records with seq > ``after_seq``, in order, up to ``max_rows`` rows in all.

        At least one record if there is any, even if it alone has more rows. Reads the
        files; a record whose CRC no longer matches is logged, counted in
        ``corrupt_records`` and left out.
        """
        while True:
            plans = self._plan_read(after_seq, max_rows)
            try:
                return [r for p in plans for r in self._read_run(p)]
            except FileNotFoundError as e:
                # a commit deleted a segment meanwhile: its records are stored already
                with self._lock:
                    if self._committed <= after_seq:
                        raise SpoolError(f"spool segment {e.filename} vanished") from e
                    after_seq = self._committed

    def _plan_read(self, after_seq: int, max_rows: int) -> list[_ReadPlan]:
        plans: list[_ReadPlan] = []
        budget = max_rows
        with self._lock:
            self._check_open()
            for seg in self._segments:
                if not seg.seqs or seg.last_seq <= after_seq:
                    continue
                i = bisect_right(seg.seqs, after_seq)
                base = seg.rows_before(i)
                j = bisect_right(seg.cum_rows, base + budget, lo=i)
                if j == i and not plans:
                    j = i + 1  # one record even if too large alone
                if j > i:
                    last_rows = seg.cum_rows[j - 1] - seg.rows_before(j - 1)
                    plans.append(
                        _ReadPlan(
                            seg.path,
                            seg.offsets[i],
                            seg.offsets[j - 1] + record_bytes(last_rows),
                            seg.seqs[i:j],
                        )
                    )
                    budget -= seg.cum_rows[j - 1] - base
                if j < len(seg.seqs) or budget < 0:
                    break
        return plans

    def _read_run(self, plan: _ReadPlan) -> list[SpoolRecord]:
        try:
            with open(plan.path, "rb", buffering=0) as f:
                data = os.pread(f.fileno(), plan.end - plan.start, plan.start)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise SpoolError(f"spool segment {plan.path}: cannot read it: {e}") from e
        out: list[SpoolRecord] = []
        view = memoryview(data)
        off = 0
        for want in plan.seqs:
            record, size, bad = self._decode(view, off, want)
            if record is None:
                lost = len(view) - off if size is None else size
                log.error(
                    "spool segment %s: record %d at offset %d is damaged (%s); %s",
                    plan.path,
                    want,
                    plan.start + off,
                    bad,
                    "left out" if size is not None else f"{lost} bytes from there left out",
                )
                with self._lock:
                    self._stats.corrupt_records += 1
                    self._stats.corrupt_bytes += lost
                if size is None:
                    break
            else:
                out.append(record)
            off += lost if size is None else size
        return out

    @staticmethod
    def _decode(
        view: memoryview, off: int, want: int
    ) -> tuple[SpoolRecord | None, int | None, str]:
        """The record at ``off`` of a buffer read from a segment, its size [bytes] (None:
        the header is damaged, the rest of the buffer cannot be walked), what is wrong."""
        if len(view) - off < RECORD_HEADER_BYTES:
            return None, None, "short"
        magic, length, seq, appended, rows, crc = _RECORD_HEADER.unpack_from(view, off)
        if magic != _RECORD_MAGIC or seq != want or length != ROW_BYTES * rows:
            return None, None, "header changed"
        size = record_bytes(rows)
        start = off + RECORD_HEADER_BYTES
        payload = view[start : start + length]
        crc_head = zlib.crc32(view[off : off + RECORD_HEADER_BYTES - 4])
        if len(payload) != length or zlib.crc32(payload, crc_head) != crc:
            return None, size, "bad CRC"
        o1 = rows * _SERIES.itemsize
        o2 = o1 + rows * _TS.itemsize
        o3 = o2 + rows * _VALUE.itemsize
        # copies: aligned, writable, independent of the buffer and the file
        batch = ReadingBatch(
            np.frombuffer(payload[:o1], dtype=_SERIES).astype(np.int32),
            np.frombuffer(payload[o1:o2], dtype=_TS).astype(np.int64),
            np.frombuffer(payload[o2:o3], dtype=_VALUE).astype(np.float64),
            np.frombuffer(payload[o3:], dtype=_QUALITY).astype(np.int8),
        )
        return SpoolRecord(int(seq), int(appended), batch), size, ""

    # -- committing --------------------------------------------------------------------

    def commit(self, seq: int) -> None:
        """Every record with seq <= ``seq`` is stored in the database.

        Persists the cursor (atomically replaced; fsynced under ``fsync="always"``) and
        deletes the segments all of whose records are committed, except the one being
        appended to. A seq at or below the committed one is a no-op; one beyond
        :attr:`last_seq` raises ValueError.
        """
        with self._commit_lock:
            with self._lock:
                self._check_open()
                if seq <= self._committed:
                    return
                if seq > self._last:
                    raise ValueError(f"commit of seq {seq} beyond the last record {self._last}")
                records = rows = 0
                for seg in self._segments:
                    if seg.last_seq <= self._committed:
                        continue
                    i = bisect_right(seg.seqs, self._committed)
                    j = bisect_right(seg.seqs, seq, lo=i)
                    records += j - i
                    rows += seg.rows_before(j) - seg.rows_before(i)
                    if j < len(seg.seqs):
                        break
                self._committed = seq
                self._pending_records -= records
                self._pending_rows -= rows
                self._stats.committed_records += records
            self._write_cursor(seq)
            self._delete_committed()

    def _write_cursor(self, seq: int) -> None:
        body = _CURSOR.pack(_CURSOR_MAGIC, FORMAT_VERSION, seq, 0)[:-4]
        data = body + struct.pack("<I", zlib.crc32(body))
        tmp = self.directory / _CURSOR_TMP
        always = self.fsync_policy == "always"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, [data])
                if always:
                    self._fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / _CURSOR_NAME)
            if always:
                self._fsync_dir()
        except OSError as e:
            raise SpoolError(f"spool cursor {tmp}: cannot write it: {e}") from e

    def _delete_committed(self) -> None:
        """Delete the sealed segments whose records are all committed."""
        with self._lock:
            doomed: list[_Segment] = []
            while (
                self._segments
                and self._segments[0] is not self._active
                and self._segments[0].last_seq <= self._committed
            ):
                doomed.append(self._segments.pop(0))
        for seg in doomed:
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("spool segment %s: cannot delete it: %s", seg.path, e)
                with self._lock:  # still on disk: keep counting it
                    self._segments.insert(0, seg)
                continue
            with self._lock:
                self._used -= seg.size
                self._stats.segments_deleted += 1

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """fsync (every policy), close the files, release the directory. Idempotent."""
        with self._io_lock, self._commit_lock:
            if self._closed:
                return
            try:
                if self._active is not None:
                    self._sync_active(self._active.path)
                elif self._dir_dirty:
                    self._fsync_dir()
            finally:
                with self._lock:
                    self._closed = True
                self._release()

    def _release(self) -> None:
        for fd in (self._active_fd, self._dir_fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing the lock file releases the flock
        with self._lock:
            self._active = None
        self._active_fd, self._dir_fd, self._lock_fd = -1, -1, -1

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.directory} is closed")

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- state -------------------------------------------------------------------------

    @property
    def committed_seq(self) -> int:
        """Largest committed seq (0: none)."""
        with self._lock:
            return self._committed

    @property
    def last_seq(self) -> int:
        """Seq of the last record appended (0: none yet); the next append gets +1."""
        with self._lock:
            return self._last

    @property
    def depth_records(self) -> int:
        """Records appended and not committed."""
        with self._lock:
            return self._pending_records

    @property
    def depth_rows(self) -> int:
        """Readings in the records appended and not committed."""
        with self._lock:
            return self._pending_rows

    @property
    def used_bytes(self) -> int:
        """Bytes of segment files on disk [bytes]."""
        with self._lock:
            return self._used

    @property
    def quota_bytes(self) -> int:
        """Most bytes of segment files the spool may hold [bytes]."""
        return self._quota

    @property
    def alarm(self) -> bool:
        """``used_bytes >= alarm_fraction * quota_bytes``."""
        with self._lock:
            return self._used >= self._alarm_fraction * self._quota

    @property
    def oldest_pending_appended_us(self) -> int | None:
        """Append time of the oldest uncommitted record, POSIX time [us]; None if none."""
        with self._lock:
            for seg in self._segments:
                i = bisect_right(seg.seqs, self._committed)
                if i < len(seg.seqs):
                    return seg.appended_us[i]
            return None

    @property
    def stats(self) -> SpoolStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)
