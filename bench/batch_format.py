"""The batch path of collectors and pipeline, numpy against pyarrow.

What is timed, per format, for ``--readings`` readings: collectors build many small
batches (10..60 readings, one poll or message each) from Python lists; the pipeline
concatenates them into batches of about ``--batch-rows``; each consumer gets the four
columns as numpy arrays (the COPY encoder and the engine's kernels take numpy) and
touches them (a sum). Prints the median of ``--repeat`` runs in readings/s and the
ratio pyarrow/numpy. pyarrow is optional: without it the script says so.

    python bench/batch_format.py [--readings 1000000] [--batch-rows 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from zerocarbon.batch import ReadingBatch

Lists = tuple[list[int], list[int], list[float], list[int]]


def _polls(readings: int, seed: int = 1) -> list[Lists]:
    """The rows of each poll/message as the builder holds them: four Python lists."""
    rng = np.random.default_rng(seed)
    polls: list[Lists] = []
    done = 0
    t = 1_782_000_000_000_000
    while done < readings:
        n = int(rng.integers(10, 61))
        polls.append(
            (
                rng.integers(0, 400, n).tolist(),
                [t + i for i in range(n)],
                rng.normal(0, 100, n).tolist(),
                [0] * n,
            )
        )
        done += n
        t += 1_000_000
    return polls


def _consume(series: Any, ts_us: Any, value: Any, quality: Any) -> float:
    return float(value.sum()) + float(series[-1]) + float(ts_us[-1]) + float(quality[-1])


def run_numpy(polls: list[Lists], batch_rows: int) -> float:
    total = 0.0
    parts: list[ReadingBatch] = []
    rows = 0
    for s, t, v, q in polls:  # BatchBuilder.build
        b = ReadingBatch(
            np.array(s, dtype=np.int32),
            np.array(t, dtype=np.int64),
            np.array(v, dtype=np.float64),
            np.array(q, dtype=np.int8),
        )
        parts.append(b)
        rows += len(b)
        if rows >= batch_rows:  # Pipeline: concatenate, hand to the sinks
            out = ReadingBatch.concat(parts)
            total += _consume(out.series, out.ts_us, out.value, out.quality)
            parts, rows = [], 0
    if parts:
        out = ReadingBatch.concat(parts)
        total += _consume(out.series, out.ts_us, out.value, out.quality)
    return total


def make_run_arrow() -> Callable[[list[Lists], int], float] | None:
    try:
        import pyarrow as pa
    except ImportError:
        return None
    schema = pa.schema(
        [
            ("series", pa.int32()),
            ("ts_us", pa.int64()),
            ("value", pa.float64()),
            ("quality", pa.int8()),
        ]
    )

    def run_arrow(polls: list[Lists], batch_rows: int) -> float:
        total = 0.0
        parts: list[Any] = []
        rows = 0

        def flush() -> float:
            table = pa.Table.from_batches(parts, schema=schema).combine_chunks()
            cols = [table.column(i).chunk(0).to_numpy(zero_copy_only=True) for i in range(4)]
            return _consume(*cols)

        for s, t, v, q in polls:
            b = pa.RecordBatch.from_arrays(
                [
                    pa.array(s, pa.int32()),
                    pa.array(t, pa.int64()),
                    pa.array(v, pa.float64()),
                    pa.array(q, pa.int8()),
                ],
                schema=schema,
            )
            parts.append(b)
            rows += b.num_rows
            if rows >= batch_rows:
                total += flush()
                parts, rows = [], 0
        if parts:
            total += flush()
        return total

    return run_arrow


def _median_rate(
    fn: Callable[[list[Lists], int], float],
    polls: list[Lists],
    rows: int,
    batch_rows: int,
    repeat: int,
) -> float:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(polls, batch_rows)
        rates.append(rows / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    polls = _polls(args.readings)
    rows = sum(len(p[0]) for p in polls)
    print(
        f"readings={rows} polls={len(polls)} (10..60 readings each) "
        f"batch_rows={args.batch_rows} repeat={args.repeat}"
    )
    np_rate = _median_rate(run_numpy, polls, rows, args.batch_rows, args.repeat)
    print(f"numpy:   {np_rate:,.0f} readings/s (median)")
    run_arrow = make_run_arrow()
    if run_arrow is None:
        print("pyarrow: not installed here (pip install pyarrow); not measured")
        return
    import pyarrow

    assert abs(run_arrow(polls, args.batch_rows) - run_numpy(polls, args.batch_rows)) < 1e-3
    pa_rate = _median_rate(run_arrow, polls, rows, args.batch_rows, args.repeat)
    print(f"pyarrow: {pa_rate:,.0f} readings/s (median, pyarrow {pyarrow.__version__})")
    print(f"ratio pyarrow/numpy: {pa_rate / np_rate:.2f}")


if __name__ == "__main__":
    main()
