"""The store-and-forward spool on real files: round trip, order, commit and quota, and
recovery from torn writes, corruption, lost cursors and a killed process."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerocarbon.batch import ReadingBatch
from zerocarbon.storage.spool import (
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    Spool,
    SpoolError,
    SpoolFull,
    SpoolStats,
    record_bytes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def batch_for(k: int) -> ReadingBatch:
    """A batch whose every column is a function of ``k`` (1 + k % 7 rows)."""
    n = 1 + k % 7
    i = np.arange(n)
    return ReadingBatch.of(
        (k * 31 + i) % 5000,
        1_780_000_000_000_000 + k * 1_000_000 + i,
        k + i * 0.25,
        (k + i) % 3,
    )


def assert_same(a: ReadingBatch, b: ReadingBatch) -> None:
    """Equal dtypes and equal bits in every column (NaN payloads and -0.0 included)."""
    assert a.series.dtype == np.int32 and a.ts_us.dtype == np.int64
    assert a.value.dtype == np.float64 and a.quality.dtype == np.int8
    np.testing.assert_array_equal(a.series, b.series)
    np.testing.assert_array_equal(a.ts_us, b.ts_us)
    np.testing.assert_array_equal(a.value.view(np.uint64), b.value.view(np.uint64))
    np.testing.assert_array_equal(a.quality, b.quality)


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in segments(d))


def read_all(spool: Spool, after: int = 0) -> list[tuple[int, ReadingBatch]]:
    out = []
    while records := spool.read(after, 1_000):
        out += [(r.seq, r.batch) for r in records]
        after = records[-1].seq
    return out


def fill(d: Path, count: int, **kw: object) -> None:
    """A closed spool in ``d`` with records 1..count of batch_for."""
    with Spool(d, **{"fsync": "never", **kw}) as spool:  # type: ignore[arg-type]
        for k in range(1, count + 1):
            assert spool.append(batch_for(k)) == k


def assert_records(spool: Spool, seqs: list[int]) -> None:
    got = read_all(spool)
    assert [s for s, _ in got] == seqs
    for seq, batch in got:
        assert_same(batch, batch_for(seq))


class Clock:
    """A settable wall clock [s]."""

    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- round trip, order, reads ---------------------------------------------------------


def test_arbitrary_bits_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 4_000
    bits = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    bits[:6] = [
        0x7FF8_0000_0000_0001,
        0xFFF0_0000_0000_0000,
        0x8000_0000_0000_0000,
        1,
        0,
        2**64 - 1,
    ]
    batch = ReadingBatch(
        rng.integers(-(2**31), 2**31, n).astype(np.int32),
        rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        bits.view(np.float64),
        rng.integers(-128, 128, n).astype(np.int8),
    )
    with Spool(tmp_path) as spool:
        assert spool.append(batch) == 1
        assert spool.append(ReadingBatch.empty()) == 2  # a batch of no rows is a record too
        (first, empty) = spool.read(0, 10**6)
        assert_same(first.batch, batch)
        assert len(empty.batch) == 0
    with Spool(tmp_path) as spool:
        (first, empty) = spool.read(0, 10**6)
        assert_same(first.batch, batch)
        assert len(empty.batch) == 0 and empty.seq == 2


def test_records_read_are_owned_and_outlive_the_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=256, fsync="never")
    for k in range(1, 7):
        spool.append(batch_for(k))
    records = spool.read(0, 10**6)
    spool.commit(6)
    spool.close()
    assert len(segments(tmp_path)) == 1  # the last segment stays while it was active
    for p in segments(tmp_path):
        p.unlink()
    for r in records:
        for column in (r.batch.series, r.batch.ts_us, r.batch.value, r.batch.quality):
            assert column.flags.owndata and column.flags.writeable and column.flags.aligned
        assert_same(r.batch, batch_for(r.seq))
    records[0].batch.value[0] = -1.0  # writable without touching anything else


def test_order_and_seq_continue_across_reopen_in_a_new_segment(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path, fsync="never", clock=clock) as spool:
        for k in range(1, 6):
            clock.t += 0.5
            assert spool.append(batch_for(k)) == k
        assert spool.last_seq == 5 and spool.committed_seq == 0
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000001.seg"]
    with Spool(tmp_path, fsync="never", clock=clock) as spool:
        assert spool.last_seq == 5 and spool.depth_records == 5
        assert spool.stats.recovered_records == 5
        assert spool.depth_rows == sum(len(batch_for(k)) for k in range(1, 6))
        for k in range(6, 9):
            clock.t += 0.5
            assert spool.append(batch_for(k)) == k
        records = spool.read(0, 10**6)
        assert [r.seq for r in records] == list(range(1, 9))
        assert [r.appended_us for r in records] == [
            round((1_780_000_000.0 + 0.5 * k) * 1e6) for k in range(1, 9)
        ]
        assert spool.oldest_pending_appended_us == records[0].appended_us
        spool.commit(2)
        assert spool.oldest_pending_appended_us == records[2].appended_us
        spool.commit(8)
        assert spool.oldest_pending_appended_us is None
    # the second run appended to a segment of its own, named by its first seq
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000006.seg"]


def test_read_limits_rows_but_returns_at_least_one_record(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=3 * record_bytes(10) + 30, fsync="never") as spool:
        for k in range(1, 11):
            spool.append(ReadingBatch.of([k] * 10, range(10), [float(k)] * 10))
        assert len(segments(tmp_path)) == 4  # three records a segment
        assert [r.seq for r in spool.read(0, 25)] == [1, 2]
        assert [r.seq for r in spool.read(0, 30)] == [1, 2, 3]
        assert [r.seq for r in spool.read(0, 5)] == [1]  # alone beyond the limit
        assert [r.seq for r in spool.read(0, 0)] == [1]
        assert [r.seq for r in spool.read(2, 70)] == list(range(3, 10))  # across segments
        assert [r.seq for r in spool.read(8, 10**6)] == [9, 10]
        assert spool.read(10, 10**6) == []
        assert spool.read(99, 10**6) == []
        assert [int(r.batch.series[0]) for r in spool.read(4, 20)] == [5, 6]


def test_big_record_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    big = ReadingBatch.of(range(100), range(100), np.arange(100.0))
    with Spool(tmp_path, segment_bytes=500, fsync="never") as spool:
        spool.append(batch_for(1))
        spool.append(big)
        spool.append(batch_for(3))
        assert [p.name[-8:] for p in segments(tmp_path)] == ["0001.seg", "0002.seg", "0003.seg"]
        assert (tmp_path / "00000000000000000002.seg").stat().st_size == (
            SEGMENT_HEADER_BYTES + record_bytes(100)
        )
        assert_same(spool.read(1, 1)[0].batch, big)


# -- commit, quota, alarm -------------------------------------------------------------


def test_commit_deletes_only_wholly_committed_segments(tmp_path: Path) -> None:
    one = ReadingBatch.of([1], [2], [3.0])
    size = record_bytes(1)
    spool = Spool(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * size, fsync="never")
    for _ in range(10):
        spool.append(one)
    names = [p.name for p in segments(tmp_path)]
    assert [int(n[:-4]) for n in names] == [1, 4, 7, 10]
    assert spool.used_bytes == disk_bytes(tmp_path) == 4 * SEGMENT_HEADER_BYTES + 10 * size

    spool.commit(5)  # into the second segment: only the first goes
    assert [int(p.name[:-4]) for p in segments(tmp_path)] == [4, 7, 10]
    assert spool.used_bytes == disk_bytes(tmp_path)
    assert (spool.committed_seq, spool.depth_records, spool.depth_rows) == (5, 5, 5)
    assert [r.seq for r in spool.read(spool.committed_seq, 100)] == [6, 7, 8, 9, 10]

    spool.commit(3)  # at or below the committed seq: nothing happens
    assert spool.committed_seq == 5
    with pytest.raises(ValueError, match="beyond"):
        spool.commit(11)

    spool.commit(10)  # all committed: the segment being appended to stays
    assert [int(p.name[:-4]) for p in segments(tmp_path)] == [10]
    assert spool.used_bytes == disk_bytes(tmp_path) == SEGMENT_HEADER_BYTES + size
    st = spool.stats
    assert (st.committed_records, st.segments_deleted, st.segments_created) == (10, 3, 4)
    assert spool.depth_records == 0 and spool.depth_rows == 0
    spool.close()

    # the cursor holds: nothing to forward after a restart, and the last segment,
    # wholly committed and not appended to any more, goes
    with Spool(tmp_path, fsync="never") as spool:
        assert (spool.committed_seq, spool.last_seq, spool.depth_records) == (10, 10, 0)
        assert spool.read(10, 100) == [] and spool.used_bytes == 0
        assert segments(tmp_path) == []
        assert spool.append(one) == 11


def test_quota_refuses_then_commit_frees(tmp_path: Path) -> None:
    size = record_bytes(1)
    seg = SEGMENT_HEADER_BYTES + 2 * size
    one = ReadingBatch.of([1], [2], [3.0])
    spool = Spool(tmp_path, segment_bytes=seg, quota_bytes=3 * seg, fsync="never")
    for _ in range(6):
        spool.append(one)
    assert spool.used_bytes == 3 * seg
    files = {p.name: p.stat().st_size for p in segments(tmp_path)}
    for _ in range(2):
        with pytest.raises(SpoolFull, match="quota"):
            spool.append(one)
    assert spool.stats.full_refusals == 2
    assert spool.last_seq == 6 and spool.used_bytes == 3 * seg
    assert {p.name: p.stat().st_size for p in segments(tmp_path)} == files
    spool.commit(3)  # frees the first segment
    assert spool.used_bytes == 2 * seg
    assert spool.append(one) == 7  # the refused ones never took a seq
    assert spool.append(one) == 8
    assert spool.used_bytes == disk_bytes(tmp_path) == 3 * seg
    with pytest.raises(SpoolFull):
        spool.append(one)
    assert spool.stats.full_refusals == 3
    spool.close()


def test_a_wholly_committed_active_segment_gives_its_space_back(tmp_path: Path) -> None:
    """A quota of one segment: once all of it is stored, a refused append must not stay
    refused (the active segment is closed and deleted to make room)."""
    size = record_bytes(1)
    seg = SEGMENT_HEADER_BYTES + 3 * size
    one = ReadingBatch.of([1], [2], [3.0])
    spool = Spool(tmp_path, segment_bytes=seg, quota_bytes=seg, fsync="never")
    for _ in range(3):
        spool.append(one)
    with pytest.raises(SpoolFull):
        spool.append(one)
    spool.commit(2)  # part of the active segment: still no room
    with pytest.raises(SpoolFull):
        spool.append(one)
    spool.commit(3)
    assert spool.append(one) == 4
    assert spool.used_bytes == disk_bytes(tmp_path) == SEGMENT_HEADER_BYTES + size
    assert [r.seq for r in spool.read(3, 100)] == [4]
    spool.close()


def test_alarm_at_the_fraction_of_the_quota(tmp_path: Path) -> None:
    size = record_bytes(1)
    one = ReadingBatch.of([1], [2], [3.0])
    quota = 10 * (SEGMENT_HEADER_BYTES + size)
    with Spool(
        tmp_path,
        segment_bytes=SEGMENT_HEADER_BYTES + size,
        quota_bytes=quota,
        alarm_fraction=0.5,
        fsync="never",
    ) as spool:
        assert spool.quota_bytes == quota
        for k in range(1, 6):
            assert not spool.alarm
            spool.append(one)
            assert spool.used_bytes == k * (SEGMENT_HEADER_BYTES + size)
        assert spool.alarm  # exactly half
        spool.commit(1)
        assert not spool.alarm


# -- recovery -------------------------------------------------------------------------


def test_torn_tail_at_every_offset_of_the_last_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pristine = tmp_path / "pristine"
    fill(pristine, 6, segment_bytes=500)  # 74, 95, 116, 137 | 158, 179 bytes
    last = segments(pristine)[-1]
    assert last.name == "00000000000000000005.seg"
    end = last.stat().st_size
    start = end - record_bytes(len(batch_for(6)))
    assert end - start > RECORD_HEADER_BYTES + 100
    for cut in range(start, end):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, d)
        os.truncate(d / last.name, cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING), Spool(d, fsync="never") as spool:
            assert spool.stats.torn_tail_bytes == cut - start
            assert spool.stats.corrupt_records == 0
            assert spool.last_seq == 5 and spool.depth_records == 5
            assert_records(spool, [1, 2, 3, 4, 5])
            assert (d / last.name).stat().st_size == start  # cut back to the last good one
            assert spool.append(batch_for(6)) == 6
        if cut > start:
            assert f"{d / last.name}" in caplog.text and f"offset {start}" in caplog.text
        with Spool(d, fsync="never") as spool:
            assert spool.stats.torn_tail_bytes == 0
            assert_records(spool, [1, 2, 3, 4, 5, 6])
        assert [p.name[-8:] for p in segments(d)] == ["0001.seg", "0005.seg", "0006.seg"]
        shutil.rmtree(d)


def test_torn_segment_header_of_a_new_last_segment(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    fill(pristine, 3)
    header = b"ZCSPSEG\x00" + struct.pack("<IQ", 1, 4)  # the file header of segment 4
    header += struct.pack("<I", zlib.crc32(header))
    for cut in range(SEGMENT_HEADER_BYTES + 1):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, d)
        (d / "00000000000000000004.seg").write_bytes(header[:cut])
        with Spool(d, fsync="never") as spool:
            # a crash right after the segment was created: nothing in it, it goes
            assert spool.stats.torn_tail_bytes == (cut if cut < SEGMENT_HEADER_BYTES else 0)
            assert spool.last_seq == 3
            assert [p.name[-8:] for p in segments(d)] == ["0001.seg"]
            assert spool.append(batch_for(4)) == 4
        with Spool(d, fsync="never") as spool:
            assert_records(spool, [1, 2, 3, 4])
        shutil.rmtree(d)


def test_zeros_after_the_last_record_are_cut(tmp_path: Path) -> None:
    fill(tmp_path, 4)
    (seg,) = segments(tmp_path)
    good = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(bytes(4096))  # a power cut can leave allocated, never written blocks
    with Spool(tmp_path) as spool:
        assert spool.stats.torn_tail_bytes == 4096
        assert seg.stat().st_size == good
        assert_records(spool, [1, 2, 3, 4])


def _record_offsets(path: Path) -> list[int]:
    """Offsets of the records of a sound segment file."""
    data = path.read_bytes()
    off, out = SEGMENT_HEADER_BYTES, []
    while off < len(data):
        out.append(off)
        (rows,) = struct.unpack_from("<I", data, off + 24)
        off += record_bytes(rows)
    return out


@pytest.mark.parametrize(
    "where", ["record magic", "record length", "record seq", "payload", "crc", "file header"]
)
def test_damage_in_a_middle_segment_skips_the_rest_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    fill(tmp_path, 12, segment_bytes=500)
    segs = segments(tmp_path)
    assert [p.name[-8:] for p in segs] == ["0001.seg", "0005.seg", "0009.seg", "0012.seg"]
    middle = segs[1]
    offsets = _record_offsets(middle)
    assert len(offsets) == 4
    second = offsets[1]  # the record of seq 6
    at = {
        "record magic": second + 1,
        "record length": second + 5,
        "record seq": second + 8,
        "payload": second + RECORD_HEADER_BYTES + 3,
        "crc": second + 29,
        "file header": 10,
    }[where]
    data = bytearray(middle.read_bytes())
    data[at] ^= 0x40
    middle.write_bytes(bytes(data))
    damaged = 0 if where == "file header" else second
    size = len(data)

    with caplog.at_level(logging.ERROR), Spool(tmp_path, fsync="never") as spool:
        kept = [1, 2, 3, 4] + ([] if where == "file header" else [5]) + [9, 10, 11, 12]
        assert_records(spool, kept)
        st = spool.stats
        assert (st.corrupt_records, st.corrupt_bytes, st.torn_tail_bytes) == (
            1,
            size - damaged,
            0,
        )
        assert f"{middle}" in caplog.text and f"offset {damaged}" in caplog.text
        assert middle.stat().st_size == size  # left as it was
        assert spool.depth_records == len(kept)
        assert spool.append(batch_for(13)) == 13
        # the damaged file goes once what precedes the damage is committed
        spool.commit(4 if where == "file header" else 5)
        assert not middle.exists()
        assert [p.name[-8:] for p in segments(tmp_path)] == ["0009.seg", "0012.seg", "0013.seg"]
        assert spool.used_bytes == disk_bytes(tmp_path)


def test_record_damaged_after_open_is_left_out_of_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(tmp_path, 4)
    with Spool(tmp_path, fsync="never") as spool:
        (seg,) = segments(tmp_path)
        third = _record_offsets(seg)[2]
        with open(seg, "r+b") as f:
            f.seek(third + RECORD_HEADER_BYTES + 1)
            f.write(b"\xff\xff")
        with caplog.at_level(logging.ERROR):
            assert [r.seq for r in spool.read(0, 100)] == [1, 2, 4]
        assert spool.stats.corrupt_records == 1
        assert f"{seg}" in caplog.text and "record 3" in caplog.text


def _commit_into_second_segment(d: Path) -> None:
    with Spool(d, segment_bytes=450, fsync="never") as s:
        for k in range(1, 10):
            s.append(batch_for(k))
        s.commit(6)
    assert [p.name[-8:] for p in segments(d)] == ["0005.seg", "0008.seg"]


@pytest.mark.parametrize("how", ["missing", "empty", "garbled", "bad crc", "other version"])
def test_lost_cursor_falls_back_to_what_the_files_prove(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    _commit_into_second_segment(tmp_path)
    cursor = tmp_path / "cursor"
    data = cursor.read_bytes()
    if how == "missing":
        cursor.unlink()
    elif how == "empty":
        cursor.write_bytes(b"")
    elif how == "garbled":
        cursor.write_bytes(b"\x00garbage" * 5)
    elif how == "bad crc":
        cursor.write_bytes(data[:12] + struct.pack("<Q", 9) + data[20:])
    else:
        body = data[:8] + struct.pack("<IQ", 99, 6)
        cursor.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with caplog.at_level(logging.WARNING), Spool(tmp_path, fsync="never") as spool:
        # segment 1..4 was deleted, so 4 is proven; 5 and 6 are forwarded again
        assert spool.committed_seq == 4
        assert spool.last_seq == 9 and spool.depth_records == 5
        assert_records(spool, [5, 6, 7, 8, 9])
        assert "cursor" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), Spool(tmp_path, fsync="never") as spool:
        assert spool.committed_seq == 4  # written back at the last open: no more warning
        assert caplog.text == ""


def test_reopen_before_any_commit_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(tmp_path, 3)
    assert (tmp_path / "cursor").exists()  # written when the spool was created
    with caplog.at_level(logging.WARNING), Spool(tmp_path) as spool:
        assert spool.committed_seq == 0 and spool.depth_records == 3
    assert caplog.text == ""


def test_no_cursor_and_no_segments_starts_from_zero(tmp_path: Path) -> None:
    fill(tmp_path, 2)
    with Spool(tmp_path) as spool:
        spool.commit(2)
    (tmp_path / "cursor").unlink()
    for p in segments(tmp_path):
        p.unlink()
    with Spool(tmp_path) as spool:
        assert (spool.committed_seq, spool.last_seq) == (0, 0)


def test_cursor_beyond_the_records_moves_the_next_seq(tmp_path: Path) -> None:
    """A cursor that outlived records lost in a power cut: new records must not be
    taken as committed."""
    fill(tmp_path, 3)
    with Spool(tmp_path, fsync="never") as spool:
        spool.commit(3)
    data = (tmp_path / "cursor").read_bytes()
    body = data[:12] + struct.pack("<Q", 100)
    (tmp_path / "cursor").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with Spool(tmp_path, fsync="never") as spool:
        assert (spool.committed_seq, spool.last_seq) == (100, 100)
        assert spool.append(batch_for(101)) == 101
        assert [r.seq for r in spool.read(spool.committed_seq, 10)] == [101]
        assert spool.depth_records == 1


def test_segment_of_another_format_version_is_refused(tmp_path: Path) -> None:
    fill(tmp_path, 2)
    (seg,) = segments(tmp_path)
    data = seg.read_bytes()
    head = data[:8] + struct.pack("<IQ", 2, 1)
    seg.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + data[SEGMENT_HEADER_BYTES:])
    with pytest.raises(SpoolError, match=re.escape(str(seg)) + ".*version 2"):
        Spool(tmp_path)
    assert seg.read_bytes()[SEGMENT_HEADER_BYTES:] == data[SEGMENT_HEADER_BYTES:]  # untouched


def test_bad_directory_and_second_opener_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SpoolError, match=re.escape(str(a_file))):
        Spool(a_file)
    with pytest.raises(SpoolError, match=re.escape(str(a_file / "sub"))):
        Spool(a_file / "sub")
    d = tmp_path / "spool"
    first = Spool(d)
    with pytest.raises(SpoolError, match=re.escape(str(d)) + ".*in use"):
        Spool(d)
    first.append(batch_for(1))
    first.close()
    first.close()  # idempotent
    with pytest.raises(SpoolError, match="closed"):
        first.append(batch_for(2))
    with pytest.raises(SpoolError, match="closed"):
        first.read(0, 1)
    with pytest.raises(SpoolError, match="closed"):
        first.commit(1)
    first.sync()  # a timer racing the shutdown: nothing
    with Spool(d) as again:  # the lock went with the close
        assert again.last_seq == 1


def test_wrong_column_types_are_refused(tmp_path: Path) -> None:
    good = batch_for(1)
    wide = good.series.astype(np.int64)
    bad = ReadingBatch(wide, good.ts_us, good.value, good.quality)  # type: ignore[arg-type]
    with Spool(tmp_path) as spool:
        with pytest.raises(TypeError, match="series"):
            spool.append(bad)
        assert spool.last_seq == 0 and spool.used_bytes == 0


# -- a killed process ------------------------------------------------------------------

CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "import numpy as np\n"
    "from zerocarbon.batch import ReadingBatch\n"
    "from zerocarbon.storage.spool import Spool\n"
    + textwrap.dedent(inspect.getsource(batch_for))
    + textwrap.dedent(
        """
        spool = Spool(Path(sys.argv[1]), segment_bytes=4096, fsync="never")
        k = spool.last_seq
        while True:
            k += 1
            assert spool.append(batch_for(k)) == k
            print(k, flush=True)
        """
    )
)


def _run_and_kill(d: Path, records: int) -> list[int]:
    """Run the appending child until it printed ``records`` seqs, SIGKILL it; its seqs."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        while len(printed) < records:
            line = proc.stdout.readline()
            assert line, f"the child ended: {proc.stderr.read() if proc.stderr else ''}"
            printed.append(int(line))
        proc.send_signal(signal.SIGKILL)  # in the middle of further appends
        rest = proc.stdout.read()  # through the buffer readline() filled
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return printed + [int(x) for x in rest.split()]


def test_every_acknowledged_record_survives_sigkill(tmp_path: Path) -> None:
    first = _run_and_kill(tmp_path, 300)
    assert first == list(range(1, len(first) + 1))
    with Spool(tmp_path, fsync="never") as spool:
        got = read_all(spool)
        assert spool.stats.corrupt_records == 0
        seqs = [s for s, _ in got]
        # every printed seq, maybe one more appended but not printed
        assert seqs[: len(first)] == first and len(seqs) - len(first) <= 1
        for seq, batch in got:
            assert_same(batch, batch_for(seq))
        spool.commit(len(first) // 2)
    assert len(segments(tmp_path)) > 3

    second = _run_and_kill(tmp_path, 200)  # goes on after the recovered ones
    assert second[0] == seqs[-1] + 1
    with Spool(tmp_path, fsync="never") as spool:
        got = read_all(spool, spool.committed_seq)
        pending = [s for s, _ in got]
        assert pending[0] == len(first) // 2 + 1
        assert pending == list(range(pending[0], pending[-1] + 1))
        assert set(second) <= set(pending)
        for seq, batch in got:
            assert_same(batch, batch_for(seq))


# -- fsync policies ---------------------------------------------------------------------


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fds os.fsync was called with."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)  # the spool calls os.fsync
    return calls


def test_fsync_always(tmp_path: Path, fsync_calls: list[int]) -> None:
    spool = Spool(tmp_path / "new", fsync="always")
    # created: the parent directory, the first cursor and the directory
    assert spool.stats.fsyncs == len(fsync_calls) == 3
    spool.append(batch_for(1))  # segment and, for the new segment, the directory
    assert spool.stats.fsyncs == len(fsync_calls) == 5
    spool.append(batch_for(2))
    spool.append(batch_for(3))
    assert spool.stats.fsyncs == len(fsync_calls) == 7
    spool.commit(2)  # cursor file and directory
    assert spool.stats.fsyncs == len(fsync_calls) == 9
    spool.sync()  # nothing new
    spool.close()
    assert spool.stats.fsyncs == len(fsync_calls) == 9
    with Spool(tmp_path / "new", fsync="always") as spool:  # nothing to write at open
        assert spool.stats.fsyncs == 0


def test_fsync_never_but_at_close(tmp_path: Path, fsync_calls: list[int]) -> None:
    spool = Spool(tmp_path, fsync="never", segment_bytes=200)
    for k in range(1, 8):
        spool.append(batch_for(k))
    spool.commit(3)
    assert spool.stats.segments_created > 1
    assert spool.stats.fsyncs == len(fsync_calls) == 0
    spool.close()
    assert spool.stats.fsyncs == len(fsync_calls) == 2  # the last segment, the directory


def test_fsync_interval(tmp_path: Path, fsync_calls: list[int]) -> None:
    clock = Clock(1000.0)
    spool = Spool(tmp_path, fsync="interval", fsync_interval_s=1.0, clock=clock)
    for t, fsyncs in [(1000.2, 0), (1000.9, 0), (1001.0, 2), (1001.5, 2), (1002.6, 3), (1002.7, 3)]:
        clock.t = t
        spool.append(batch_for(1))
        assert spool.stats.fsyncs == fsyncs, t
    assert len(fsync_calls) == 3
    spool.commit(6)  # the cursor is not fsynced under this policy
    spool.sync()
    assert spool.stats.fsyncs == 4
    spool.sync()  # nothing new
    clock.t = 1002.8  # the timer was reset by sync()
    spool.append(batch_for(1))
    assert spool.stats.fsyncs == 4
    clock.t = 1000.0  # the wall clock set back: fsync rather than wait for it
    spool.append(batch_for(1))
    assert spool.stats.fsyncs == 5
    spool.close()
    assert spool.stats.fsyncs == len(fsync_calls) == 5


def test_interval_fsyncs_a_full_segment_before_the_next(
    tmp_path: Path, fsync_calls: list[int]
) -> None:
    clock = Clock()
    spool = Spool(tmp_path, fsync="interval", segment_bytes=200, clock=clock)
    spool.append(batch_for(6))  # 7 rows: 179 bytes, the segment is full
    assert spool.stats.fsyncs == 0
    spool.append(batch_for(6))  # seals the first (file, directory); the second waits
    assert spool.stats.fsyncs == len(fsync_calls) == 2
    spool.close()
    assert spool.stats.fsyncs == 4


# -- threads ----------------------------------------------------------------------------


def test_append_in_one_thread_forward_in_another(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1024, fsync="never")
    total = 400
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            for k in range(1, total + 1):
                spool.append(batch_for(k))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=appender)
    thread.start()
    forwarded: list[int] = []
    while spool.committed_seq < total and not errors:
        records = spool.read(spool.committed_seq, 20)
        for r in records:
            assert_same(r.batch, batch_for(r.seq))
        forwarded += [r.seq for r in records]
        if records:
            spool.commit(records[-1].seq)
    thread.join()
    assert not errors
    assert forwarded == list(range(1, total + 1))
    assert spool.depth_records == 0 and spool.depth_rows == 0
    assert spool.used_bytes == disk_bytes(tmp_path)
    assert len(segments(tmp_path)) == 1
    spool.close()


# -- against a model --------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 12)),
        st.tuples(st.just("commit"), st.floats(0, 1)),
        st.tuples(st.just("read"), st.integers(0, 30)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_appends_commits_and_reopens_match_a_model(ops: list[tuple[str, float]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        kw = {"segment_bytes": 160, "fsync": "never"}
        spool = Spool(d, **kw)  # type: ignore[arg-type]
        model: list[tuple[int, int]] = []  # (seq, rows) appended, not committed
        last = committed = 0
        try:
            for op, arg in ops:
                if op == "append":
                    n = int(arg)
                    last += 1
                    batch = ReadingBatch.of(np.full(n, last), np.arange(n), np.full(n, 0.5))
                    assert spool.append(batch) == last
                    model.append((last, n))
                elif op == "commit" and model:
                    upto = model[int(arg * (len(model) - 1))][0]
                    spool.commit(upto)
                    committed = upto
                    model = [m for m in model if m[0] > upto]
                elif op == "read":
                    records = spool.read(committed, int(arg))
                    want: list[tuple[int, int]] = []
                    for m in model:
                        if want and sum(r for _, r in want) + m[1] > arg:
                            break
                        want.append(m)
                    assert [(r.seq, len(r.batch)) for r in records] == want
                    assert all((r.batch.series == r.seq).all() for r in records)
                elif op == "reopen":
                    spool.close()
                    spool = Spool(d, **kw)  # type: ignore[arg-type]
                    assert spool.stats.recovered_records == len(model)
                assert (spool.last_seq, spool.committed_seq) == (last, committed)
                assert spool.depth_records == len(model)
                assert spool.depth_rows == sum(r for _, r in model)
                assert spool.used_bytes == disk_bytes(d)
            got = read_all(spool, committed)
            assert [(s, len(b)) for s, b in got] == model
        finally:
            spool.close()


def test_stats_fields() -> None:
    assert [f.name for f in dataclasses.fields(SpoolStats)] == [
        "appended_records",
        "appended_rows",
        "appended_bytes",
        "fsyncs",
        "committed_records",
        "segments_created",
        "segments_deleted",
        "full_refusals",
        "torn_tail_bytes",
        "corrupt_records",
        "corrupt_bytes",
        "recovered_records",
    ]
