"""Spool append throughput against bare writes of the same bytes, per fsync policy.

For each fsync policy ("always", "interval", "never"), batches of ``--batch`` readings
are appended to a fresh :class:`~zerocarbon.storage.spool.Spool` (encoding, CRC32,
index, fsync by the policy). The ceiling is the least any spool must do: one bare
``os.write`` of the very bytes of a record (taken from the spool's own segment file) to
a file in the same directory, with the same fsync policy (after every write; when the
last fsync is ``fsync_interval_s`` old; never). Closing (and its final fsync) is outside
the timed part of both.

Prints rows/s of each and the ratio spool/ceiling, medians over ``--repeat`` runs, and
last the JSON line ``{"metric": "spool_append_rows_per_s", "value": ..., "ceiling":
..., "ratio": ...}`` for fsync="always".

    python bench/spool.py [--batch 5000] [--batches 200] [--repeat 5] [--dir DIR]

``--dir``: where the spools and the bare files go (default: a temporary folder in the
system's); fsync costs what that file system's disk makes it cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from zerocarbon.batch import ReadingBatch
from zerocarbon.storage.spool import SEGMENT_HEADER_BYTES, FsyncPolicy, Spool, record_bytes

POLICIES: tuple[FsyncPolicy, ...] = ("always", "interval", "never")
INTERVAL_S = 1.0  # fsync_interval_s of the "interval" runs [s]


def make_batch(rows: int) -> ReadingBatch:
    """A collector-like batch: 6 devices' series, 1 s apart, arbitrary values."""
    i = np.arange(rows)
    rng = np.random.default_rng(1)
    return ReadingBatch.of(
        (i % 6) * 64 + 3, 1_780_000_000_000_000 + (i // 6) * 1_000_000, rng.normal(50, 10, rows)
    )


def run_spool(d: Path, batch: ReadingBatch, count: int, policy: FsyncPolicy) -> float:
    """Rows/s of ``count`` appends of ``batch`` to a new spool in ``d``."""
    spool = Spool(d, fsync=policy, fsync_interval_s=INTERVAL_S, quota_bytes=1 << 40)
    try:
        start = time.perf_counter()
        for _ in range(count):
            spool.append(batch)
        elapsed = time.perf_counter() - start
    finally:
        spool.close()
    return len(batch) * count / elapsed


def run_bare(path: Path, record: bytes, rows: int, count: int, policy: FsyncPolicy) -> float:
    """Rows/s of ``count`` bare writes of ``record`` to a new file, fsynced by ``policy``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        last_sync = time.time()
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, record)
            if policy == "always":
                os.fsync(fd)
            elif policy == "interval":
                now = time.time()
                if now - last_sync >= INTERVAL_S:
                    os.fsync(fd)
                    last_sync = now
        elapsed = time.perf_counter() - start
        os.fsync(fd)
    finally:
        os.close(fd)
    return rows * count / elapsed


def one_record(base: Path, batch: ReadingBatch) -> bytes:
    """The bytes of one record of ``batch``, as the spool writes them."""
    d = base / "sample"
    with Spool(d, fsync="never") as spool:
        spool.append(batch)
    (seg,) = d.glob("*.seg")
    data = seg.read_bytes()[SEGMENT_HEADER_BYTES:]
    shutil.rmtree(d)
    assert len(data) == record_bytes(len(batch))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5_000, help="readings per append")
    parser.add_argument(
        "--batches", type=int, default=200, help='appends per run (x5 for "interval", "never")'
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="zc-bench-spool-", dir=args.dir))
    try:
        batch = make_batch(args.batch)
        record = one_record(base, batch)
        print(
            f"batch={args.batch} rows ({len(record):,} bytes a record) "
            f"repeat={args.repeat} (medians)"
        )
        results: dict[str, tuple[float, float]] = {}
        for policy in POLICIES:
            count = args.batches * (1 if policy == "always" else 5)
            spool_rates, bare_rates = [], []
            for k in range(args.repeat):
                # alternate which goes first: the second one pays for the first one's
                # dirty pages being written back
                for which in ("bare", "spool") if k % 2 == 0 else ("spool", "bare"):
                    path = base / f"{which}-{policy}-{k}"
                    if which == "bare":
                        bare_rates.append(run_bare(path, record, len(batch), count, policy))
                        path.unlink()
                    else:
                        spool_rates.append(run_spool(path, batch, count, policy))
                        shutil.rmtree(path)
            mine, ceiling = statistics.median(spool_rates), statistics.median(bare_rates)
            results[policy] = (mine, ceiling)
            print(
                f'fsync="{policy}" ({count} appends): spool {mine:,.0f} rows/s, '
                f"bare os.write {ceiling:,.0f} rows/s, ratio {mine / ceiling:.2f}"
            )
        mine, ceiling = results["always"]
        print(
            json.dumps(
                {
                    "metric": "spool_append_rows_per_s",
                    "value": round(mine, 1),
                    "ceiling": round(ceiling, 1),
                    "ratio": round(mine / ceiling, 4),
                }
            )
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
