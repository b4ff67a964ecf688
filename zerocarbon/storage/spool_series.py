"""Which site file's series ids a spooled record holds.

A batch stores series ids (``device_index * METRIC_SLOTS + metric id``,
:class:`~zerocarbon.batch.SeriesRegistry`), which depend on the order of the site's
devices. A spool written before the site file changed (a device added, removed or
moved) and replayed after it must map its ids to the new ones: each registry the
spool was written under is kept as ``series-<first seq>.json`` (the device ids in
order), valid for records from that seq on. At start-up the current registry is
recorded when it differs from the newest file; replayed records of an older one are
mapped by device id (a device since removed gets -1, which the writer counts as
unknown, naming it) — never stored under another device's id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import METRIC_SLOTS, ReadingBatch, SeriesRegistry

log = logging.getLogger(__name__)

_PREFIX = "series-"


class SpoolSeries:
    """The registries of a spool's records, and the mapping of old ids to current ones."""

    def __init__(self, directory: Path, current: SeriesRegistry, next_seq: int) -> None:
        self._dir = directory
        self._current = current
        self._files: list[tuple[int, tuple[str, ...]]] = []  # (first seq, device ids)
        for path in sorted(directory.glob(f"{_PREFIX}*.json")):
            try:
                first = int(path.stem[len(_PREFIX) :])
                devices = tuple(str(d) for d in json.loads(path.read_text())["devices"])
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.error("spool %s: unreadable series file %s: %s", directory, path, exc)
                continue
            self._files.append((first, devices))
        self._files.sort()
        if not self._files or self._files[-1][1] != current.device_ids:
            if self._files:
                log.warning(
                    "the site's devices changed since the spool was written: spooled "
                    "readings are mapped to the new series by device id"
                )
            self._write(next_seq, current.device_ids)
        self._maps: dict[int, NDArray[np.int32]] = {}

    def _write(self, first_seq: int, devices: tuple[str, ...]) -> None:
        path = self._dir / f"{_PREFIX}{first_seq:020d}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"devices": list(devices)}))
        os.replace(tmp, path)
        self._files.append((first_seq, devices))
        self._files.sort()

    def map(self, seq: int, batch: ReadingBatch) -> ReadingBatch:
        """``batch`` (record ``seq``) with the current registry's series ids."""
        index = self._index_for(seq)
        if index is None or self._files[index][1] == self._current.device_ids:
            return batch
        table = self._maps.get(index)
        if table is None:
            table = self._maps[index] = self._table(self._files[index][1])
        s = batch.series
        inside = (s >= 0) & (s < table.shape[0])
        mapped = np.where(inside, table[np.where(inside, s, 0)], -1).astype(np.int32)
        return ReadingBatch(mapped, batch.ts_us, batch.value, batch.quality)

    def _index_for(self, seq: int) -> int | None:
        found = None
        for i, (first, _) in enumerate(self._files):
            if first <= seq:
                found = i
        return found

    def _table(self, devices: tuple[str, ...]) -> NDArray[np.int32]:
        """old series id -> current series id (-1: device gone)."""
        table = np.full(len(devices) * METRIC_SLOTS, -1, dtype=np.int32)
        for old_index, device in enumerate(devices):
            try:
                new_index = self._current.device_index(device)
            except (KeyError, ValueError):
                continue
            slots = np.arange(METRIC_SLOTS, dtype=np.int32)
            table[old_index * METRIC_SLOTS + slots] = new_index * METRIC_SLOTS + slots
        return table

    def forget_before(self, committed_seq: int) -> None:
        """Delete registry files no pending record needs (the newest always stays)."""
        keep_from = 0
        for i, (first, _) in enumerate(self._files):
            if first <= committed_seq + 1:
                keep_from = i
        for first, _ in self._files[:keep_from]:
            path = self._dir / f"{_PREFIX}{first:020d}.json"
            path.unlink(missing_ok=True)
        self._files = self._files[keep_from:]
        self._maps.clear()
