"""What ``zerocarbon db status`` reports: schema version, pending migrations, the
layout of ``readings`` and its policies, the power rollups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from zerocarbon.config import StorageConfig
from zerocarbon.storage import rollups
from zerocarbon.storage.migrations import MigrationStatus, migration_status
from zerocarbon.storage.partitions import LayoutStatus, layout_status


@dataclass(frozen=True, slots=True)
class StorageStatus:
    migrations: MigrationStatus
    layout: LayoutStatus
    rollups_through: datetime | None  # newest reading time the rollups cover
    rollups_present: bool


async def storage_status(conn: asyncpg.Connection) -> StorageStatus:
    """Read the status (changes nothing)."""
    present = await conn.fetchval("SELECT to_regclass('rollup_state')") is not None
    return StorageStatus(
        migrations=await migration_status(conn),
        layout=await layout_status(conn),
        rollups_through=await rollups.refreshed_through(conn) if present else None,
        rollups_present=present,
    )


def _days(value: timedelta | None) -> str:
    if value is None:
        return "none"
    if value % timedelta(days=1):
        return f"{value.total_seconds() / 3600:g} h"
    return f"{value.days} days"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="minutes")


def describe(status: StorageStatus, storage: StorageConfig) -> list[str]:
    """Lines for the terminal; ``storage`` is the site file's [storage] (what the
    maintenance job applies on the native layout)."""
    m = status.migrations
    state = "up to date" if not m.pending else f"{len(m.pending)} pending"
    lines = [f"schema: version {m.current} (latest {m.latest}), {state}"]
    if m.legacy_version is not None and m.current < 3:
        lines.append(f"  earlier schema_info version {m.legacy_version}")
    for p in m.pending:
        lines.append(f"  pending: {p.version} {p.name}")
    layout = status.layout
    lines.append(f"layout: {layout.layout}")
    span = f"{_when(layout.first)} .. {_when(layout.last)}" if layout.parts else "none"
    if layout.layout.startswith("timescaledb"):
        lines.append(
            f"chunks: {layout.parts} ({span}), {layout.compressed} compressed, "
            f"chunk interval {_days(layout.chunk_interval)}"
        )
        lines.append(f"compression policy: after {_days(layout.compress_after)}")
        lines.append(f"retention policy: {_days(layout.drop_after)}")
    elif layout.layout.startswith("native"):
        if layout.first is not None:
            last = layout.last
            last_day = "9999-12-31" if last is None else f"{last - timedelta(days=1):%Y-%m-%d}"
            span = f"UTC days {layout.first:%Y-%m-%d} .. {last_day}"
        lines.append(
            f"partitions: {layout.parts} daily ({span}), default partition "
            f"{layout.default_rows} rows"
        )
        lines.append(f"partitions ahead: {storage.partitions_ahead_days} days (site file)")
        retention = (
            "keep all"
            if storage.retention_days is None
            else f"{storage.retention_days} days (site file, maintenance job)"
        )
        lines.append(f"retention: {retention}")
    if status.rollups_present:
        lines.append(
            "power rollups: power_1min, power_15min, refreshed by the gateway through "
            + _when(status.rollups_through)
        )
    return lines
