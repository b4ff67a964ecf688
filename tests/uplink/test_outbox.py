"""The uplink outbox (:mod:`zerocarbon.uplink.outbox`): a second spool on a real disk.

Batches come back in the order they were kept, commits forget them, what was not
committed is read again after a reopen (a crash between keep and commit replays it);
a full outbox makes ``keep`` count and return, never raise or wait; records written
under an older site file are read back in the current one's series ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.uplink.outbox import UplinkOutbox

MIB = 1 << 20
T0_US = 1_780_000_000_000_000  # 2026-05-28 [us]


def batch(registry: SeriesRegistry, device: str, start: int, rows: int) -> ReadingBatch:
    """``rows`` readings of ``device``'s active power, values start, start + 1, ..."""
    series = np.full(rows, registry.id(device, "active_power_kw"), dtype=np.int32)
    ts_us = T0_US + np.arange(start, start + rows, dtype=np.int64) * 1_000_000
    return ReadingBatch.of(series, ts_us, np.arange(start, start + rows, dtype=np.float64))


def same(a: ReadingBatch, b: ReadingBatch) -> bool:
    return (
        np.array_equal(a.series, b.series)
        and np.array_equal(a.ts_us, b.ts_us)
        and np.array_equal(a.value, b.value)
        and np.array_equal(a.quality, b.quality)
    )


async def test_keep_read_commit_in_order(tmp_path: Path) -> None:
    registry = SeriesRegistry(["grid", "pv"])
    outbox = UplinkOutbox(tmp_path / "outbox", registry, quota_bytes=16 * MIB)
    try:
        kept = [
            batch(registry, "grid", 0, 3),
            batch(registry, "pv", 3, 5),
            batch(registry, "grid", 8, 2),
        ]
        for b in kept:
            await outbox.keep(b)
        await outbox.keep(ReadingBatch.empty())  # nothing to keep: no record
        assert outbox.stats.readings_kept == 10 and outbox.depth_readings == 10

        records = await outbox.read(100)
        assert [seq for seq, _ in records] == [1, 2, 3]
        assert all(same(got, want) for (_, got), want in zip(records, kept, strict=True))
        # read does not consume: the same records until they are committed
        assert [seq for seq, _ in await outbox.read(100)] == [1, 2, 3]
        # max_rows bounds a read (the first record always comes whole)
        assert [seq for seq, _ in await outbox.read(4)] == [1]

        await outbox.commit(2)
        assert outbox.depth_readings == 2
        rest = await outbox.read(100)
        assert [seq for seq, _ in rest] == [3] and same(rest[0][1], kept[2])
        await outbox.commit(3)
        assert await outbox.read(100) == [] and outbox.depth_readings == 0
        await outbox.wait(0)  # empty and nothing kept: returns at its timeout
    finally:
        outbox.close()


async def test_what_was_not_committed_is_read_again_after_a_reopen(tmp_path: Path) -> None:
    registry = SeriesRegistry(["grid"])
    folder = tmp_path / "outbox"
    outbox = UplinkOutbox(folder, registry, quota_bytes=16 * MIB)
    kept = [batch(registry, "grid", i * 10, 10) for i in range(3)]
    for b in kept:
        await outbox.keep(b)
    read = await outbox.read(100)
    await outbox.commit(read[0][0])  # the first one published; then the gateway stops
    outbox.close()

    again = UplinkOutbox(folder, registry, quota_bytes=16 * MIB)
    try:
        records = await again.read(100)
        assert [seq for seq, _ in records] == [2, 3]
        assert all(same(got, want) for (_, got), want in zip(records, kept[1:], strict=True))
        assert again.depth_readings == 20
        await again.keep(batch(registry, "grid", 30, 1))  # numbering goes on
        assert [seq for seq, _ in await again.read(100)] == [2, 3, 4]
        await again.wait(10)  # records waiting: returns at once
    finally:
        again.close()


async def test_a_full_outbox_counts_what_it_cannot_keep_and_keeps_again_later(
    tmp_path: Path,
) -> None:
    registry = SeriesRegistry(["grid"])
    # 1 MiB: two records of 20,000 rows (420 kB each) fit, a third does not
    outbox = UplinkOutbox(tmp_path / "outbox", registry, quota_bytes=MIB)
    try:
        big = [batch(registry, "grid", i * 20_000, 20_000) for i in range(5)]
        await outbox.keep(big[0])
        await outbox.keep(big[1])
        assert outbox.stats.readings_dropped == 0

        await outbox.keep(big[2])  # returns without raising or waiting for space
        await outbox.keep(big[3])
        assert outbox.stats.readings_dropped == 40_000
        assert outbox.stats.drop_episodes == 1  # one episode, however many batches
        assert outbox.stats.readings_kept == 40_000 and outbox.depth_readings == 40_000

        records = await outbox.read(100_000)
        assert [seq for seq, _ in records] == [1, 2]
        await outbox.commit(records[-1][0])  # published: the space comes back

        await outbox.keep(big[4])
        assert outbox.stats.readings_kept == 60_000
        assert outbox.stats.readings_dropped == 40_000
        rest = await outbox.read(100_000)
        assert len(rest) == 1 and same(rest[0][1], big[4])

        await outbox.keep(big[0])  # fills it again: a second episode
        await outbox.keep(big[1])
        assert outbox.stats.drop_episodes == 2
        assert outbox.stats.readings_dropped == 60_000
    finally:
        outbox.close()


async def test_records_follow_a_changed_site_file(tmp_path: Path) -> None:
    """Records kept under an older device list are read in the current series ids; a
    device since removed reads as -1 (the publisher leaves those rows out)."""
    folder = tmp_path / "outbox"
    old = SeriesRegistry(["grid", "pv", "boiler"])
    outbox = UplinkOutbox(folder, old, quota_bytes=16 * MIB)
    kept = [batch(old, "pv", 0, 2), batch(old, "boiler", 2, 2), batch(old, "grid", 4, 2)]
    for b in kept:
        await outbox.keep(b)
    outbox.close()

    new = SeriesRegistry(["chiller", "grid", "pv"])  # boiler removed, chiller first
    outbox = UplinkOutbox(folder, new, quota_bytes=16 * MIB)
    try:
        await outbox.keep(batch(new, "chiller", 6, 2))
        records = await outbox.read(100)
        series = [r.series.tolist() for _, r in records]
        assert series == [
            [new.id("pv", "active_power_kw")] * 2,
            [-1, -1],
            [new.id("grid", "active_power_kw")] * 2,
            [new.id("chiller", "active_power_kw")] * 2,
        ]
        assert [r.value.tolist() for _, r in records] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        # once the old records are committed, a reopen needs only the new device list
        await outbox.commit(3)
        outbox.close()
        assert len(list(folder.glob("series-*.json"))) == 1
        outbox = UplinkOutbox(folder, new, quota_bytes=16 * MIB)
        (seq, only), *more = await outbox.read(100)
        assert seq == 4 and not more and same(only, batch(new, "chiller", 6, 2))
    finally:
        outbox.close()
