"""Readings on the uplink: size and speed of candidate encodings of one message.

Builds a plant's readings with a seeded RNG: 40 meters of 5 metrics each (200 series:
active power, import and export counters, voltage, frequency), each meter polled every
1 to 5 s with 20 ms of jitter, all its metrics stamped with the poll's time; half the
meters give float32 registers, half scaled integers (``raw * scale * CT ratio``);
counters rise with the power, power has 1 % noise, export counters of loads stay 0,
quality is 0 but for 0.5 % of readings. The rows are in time order, as the pipeline
hands them on, cut into messages of ``--sizes`` readings.

Candidates, each timed on the same message (median of ``--repeat`` runs, each run
encoding or decoding the message enough times to take a few tens of milliseconds):

- ``JSON rows``, ``msgpack rows``: the naive baselines, one [device, metric, ts_us,
  value, quality] list a reading;
- ``columns``: catalog + series u16 + ts i64 + value f64 + quality u8, nothing else
  done (the size every compressor starts from), then the same compressed by zlib,
  zstd and lz4;
- ``wire``: :func:`zerocarbon.uplink.wire.encode_readings` (u8 series for a small
  catalog, ts delta + zigzag + byte shuffle), uncompressed and with each compressor.

Prints bytes/reading and encode/decode readings/s per candidate and size, the ratio of
the chosen encoding's encode speed against a ceiling (one bare pass over memory: the
columns' ``tobytes`` joined), and last the JSON line ``{"metric":
"uplink_encode_readings_per_s", ...}`` for the largest size. zstandard, lz4 and
msgpack are optional here: a candidate whose module is missing is said so and skipped.

    python bench/uplink_format.py [--sizes 1000 20000] [--repeat 7] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.uplink.messages import ReadingsMessage
from zerocarbon.uplink.wire import DEFAULT_CODEC, DEFAULT_LEVEL, decode, encode_readings
from zerocarbon.uplink.wire import readings_message as to_message

METRICS = ("active_power_kw", "energy_import_kwh", "energy_export_kwh", "voltage_v", "frequency_hz")
METERS = 40
T0_US = 1_782_000_000_000_000
Columns = tuple[np.ndarray[Any, Any], ...]


def plant_batch(rows: int, seed: int) -> tuple[ReadingBatch, SeriesRegistry]:
    """At least ``rows`` readings of the plant described above, in time order."""
    rng = np.random.default_rng(seed)
    registry = SeriesRegistry([f"meter-{d + 1}" for d in range(METERS)])
    # meters' mean rate is ~0.46 polls/s each; simulate long enough for ``rows``
    duration_us = int(rows / (METERS * len(METRICS) * 0.4) * 1e6) + 10_000_000
    parts: list[ReadingBatch] = []
    for d in range(METERS):
        period_us = int(rng.integers(1, 6)) * 1_000_000
        polls = np.arange(int(rng.integers(0, period_us)), duration_us, period_us)
        k = polls.size
        ts = T0_US + polls + rng.normal(0, 20_000, k).astype(np.int64)
        power = rng.uniform(5, 500)
        p = power * (1 + 0.05 * np.sin(np.arange(k) / 50)) + rng.normal(0, power * 0.01, k)
        imported = rng.uniform(1e3, 1e6) + np.cumsum(p) * period_us / 3.6e9
        exported = np.zeros(k) if d % 4 else rng.uniform(0, 1e4) + np.arange(k) * 0.01
        volts = 230 + rng.normal(0, 1, k)
        hertz = 50 + rng.normal(0, 0.02, k)
        if d % 2 == 0:  # float32 registers
            cols = [c.astype(np.float32).astype(np.float64) for c in (p, imported, exported)]
            cols += [volts.astype(np.float32).astype(np.float64)]
            cols += [hertz.astype(np.float32).astype(np.float64)]
        else:  # scaled integer registers: raw * scale * ratio
            ratio = float(rng.choice([1.0, 40.0, 200.0]))
            cols = [
                np.round(p / ratio * 1000) * 0.001 * ratio,
                np.round(imported / ratio * 100) * 0.01 * ratio,
                np.round(exported / ratio * 100) * 0.01 * ratio,
                np.round(volts * 10) * 0.1,
                np.round(hertz * 100) * 0.01,
            ]
        for m, col in zip(METRICS, cols, strict=True):
            quality = (rng.random(k) < 0.005).astype(np.int8)
            parts.append(
                ReadingBatch.of(np.full(k, registry.id(f"meter-{d + 1}", m)), ts, col, quality)
            )
    batch = ReadingBatch.concat(parts)
    order = np.argsort(batch.ts_us, kind="stable")
    return batch.take(order), registry


# --- candidates: encode(msg) -> bytes, decode(bytes) -> the four columns ---------------


def json_rows(msg: ReadingsMessage) -> bytes:
    return json.dumps(json_rows_list(msg), separators=(",", ":")).encode()


def rows_to_columns(rows: list[list[Any]]) -> Columns:
    index: dict[tuple[str, str], int] = {}
    series = [index.setdefault((r[0], r[1]), len(index)) for r in rows]
    return (
        np.array(series, np.uint16),
        np.array([r[2] for r in rows], np.int64),
        np.array([r[3] for r in rows], np.float64),
        np.array([r[4] for r in rows], np.uint8),
    )


def columns(msg: ReadingsMessage) -> bytes:
    cat = "\n".join(f"{d}\t{m}" for d, m in msg.catalog).encode()
    head = np.array([len(msg), len(cat)], np.uint32).tobytes()
    return b"".join(
        (
            head,
            cat,
            msg.series.tobytes(),
            msg.ts_us.tobytes(),
            msg.value.tobytes(),
            msg.quality.tobytes(),
        )
    )


def from_columns(b: bytes) -> Columns:
    n, cat = np.frombuffer(b, np.uint32, 2).tolist()
    pos = 8 + cat
    out = []
    for dtype in (np.uint16, np.int64, np.float64, np.uint8):
        out.append(np.frombuffer(b, dtype, n, pos).copy())
        pos += n * np.dtype(dtype).itemsize
    return tuple(out)


def wire_decode(b: bytes) -> Columns:
    m = decode("readings", "bench", b)
    assert isinstance(m, ReadingsMessage)
    return m.series, m.ts_us, m.value, m.quality


Candidate = tuple[str, Callable[[ReadingsMessage], bytes], Callable[[bytes], Columns]]


def candidates() -> list[Candidate]:
    out: list[Candidate] = [("JSON rows", json_rows, lambda b: rows_to_columns(json.loads(b)))]
    try:
        import msgpack

        out.append(
            (
                "msgpack rows",
                lambda m: msgpack.packb(json_rows_list(m)),
                lambda b: rows_to_columns(msgpack.unpackb(b)),
            )
        )
    except ImportError:
        print("msgpack: not installed here (pip install msgpack); not measured")
    comp: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
        ("zlib 1", lambda b: zlib.compress(b, 1), zlib.decompress),
        ("zlib 6", lambda b: zlib.compress(b, 6), zlib.decompress),
    ]
    try:
        import zstandard

        for level in (1, 3):
            zc = zstandard.ZstdCompressor(level=level)
            zd = zstandard.ZstdDecompressor()
            comp.append((f"zstd {level}", zc.compress, zd.decompress))
    except ImportError:
        print("zstandard: not installed here (pip install zstandard); not measured")
    try:
        import lz4.frame

        comp.append(("lz4", lz4.frame.compress, lz4.frame.decompress))
    except ImportError:
        print("lz4: not installed here (pip install lz4); not measured")
    out.append(("columns", columns, from_columns))
    for name, c, d in comp:
        out.append((f"columns + {name}", _then(columns, c), _after(d, from_columns)))
    out.append(("wire, none", lambda m: encode_readings(m, "none"), wire_decode))
    for name, level in (("zlib", 1), ("zlib", 6), ("zstd", 1), ("zstd", 3)):
        if name == "zstd" and not any(n.startswith("zstd") for n, _, _ in comp):
            continue
        out.append(
            (
                f"wire, {name} {level}",
                lambda m, n=name, lv=level: encode_readings(m, n, lv),  # type: ignore[misc]
                wire_decode,
            )
        )
    for name, c, d in comp:
        if name == "lz4":
            plain = lambda m: encode_readings(m, "none")  # noqa: E731
            out.append((f"wire + {name}", _then(plain, c), _after(d, wire_decode)))
    return out


def json_rows_list(msg: ReadingsMessage) -> list[list[Any]]:
    cat = msg.catalog
    return [
        [*cat[s], t, v, q]
        for s, t, v, q in zip(
            msg.series.tolist(),
            msg.ts_us.tolist(),
            msg.value.tolist(),
            msg.quality.tolist(),
            strict=True,
        )
    ]


def _then(
    enc: Callable[[ReadingsMessage], bytes], comp: Callable[[bytes], bytes]
) -> Callable[[ReadingsMessage], bytes]:
    return lambda m: comp(enc(m))


def _after(
    decomp: Callable[[bytes], bytes], dec: Callable[[bytes], Columns]
) -> Callable[[bytes], Columns]:
    return lambda b: dec(decomp(b))


def _rate(fn: Callable[[], object], rows: int, repeat: int) -> float:
    """Median readings/s of ``fn`` (one call handles ``rows`` readings)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, int(0.03 / max(once, 1e-9)))
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        rates.append(rows * loops / (time.perf_counter() - start))
    return statistics.median(rates)


def _canonical(cols: Columns) -> Columns:
    """The columns with series numbered by first appearance (the row formats number
    them so, the columnar ones by the catalog), to compare round trips."""
    _, first, inverse = np.unique(cols[0], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return (rank[inverse], *cols[1:])


def ceiling(msg: ReadingsMessage) -> bytes:
    """One bare pass over the columns' memory: what any encoder must at least do."""
    return b"".join(c.tobytes() for c in (msg.series, msg.ts_us, msg.value, msg.quality))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 20_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    batch, registry = plant_batch(max(args.sizes), args.seed)
    cands = candidates()
    chosen = f"wire, {DEFAULT_CODEC} {DEFAULT_LEVEL}"
    summary: dict[str, float] = {}
    for size in args.sizes:
        msg = to_message("bench", batch.take(np.arange(size)), registry)
        want = (msg.series, msg.ts_us, msg.value, msg.quality)
        print(
            f"\n{size:,} readings, {len(msg.catalog)} series "
            f"(median of {args.repeat} runs; readings/s)"
        )
        print(f"{'candidate':<22} {'bytes/reading':>14} {'encode':>14} {'decode':>14}")
        for name, enc, dec in cands:
            payload = enc(msg)
            got = dec(payload)
            assert all(
                np.array_equal(a, b) for a, b in zip(_canonical(got), _canonical(want), strict=True)
            ), name
            enc_rate = _rate(lambda e=enc, m=msg: e(m), size, args.repeat)  # type: ignore[misc]
            dec_rate = _rate(lambda d=dec, p=payload: d(p), size, args.repeat)  # type: ignore[misc]
            print(f"{name:<22} {len(payload) / size:>14.2f} {enc_rate:>14,.0f} {dec_rate:>14,.0f}")
            if name == chosen:
                summary = {"value": enc_rate}
        roof = _rate(lambda m=msg: ceiling(m), size, args.repeat)
        bare = len(ceiling(msg)) / size
        print(f"{'ceiling (tobytes)':<22} {bare:>14.2f} {roof:>14,.0f}")
        if summary:
            summary["ceiling"] = roof
            print(f"ratio {chosen} encode / ceiling: {summary['value'] / roof:.3f}")
        build = _rate(
            lambda s=size: to_message("bench", batch.take(np.arange(s)), registry),  # type: ignore[misc]
            size,
            args.repeat,
        )
        print(f"readings_message (catalog from the registry): {build:,.0f} readings/s")
    if summary:
        print(
            json.dumps(
                {
                    "metric": "uplink_encode_readings_per_s",
                    "value": round(summary["value"], 1),
                    "ceiling": round(summary["ceiling"], 1),
                    "ratio": round(summary["value"] / summary["ceiling"], 4),
                }
            )
        )


if __name__ == "__main__":
    main()
