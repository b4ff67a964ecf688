"""Where the uplink stands in the gateway's own tables.

The uplink (:mod:`zerocarbon.uplink.publisher`) mirrors hourly rows, alerts, device
events and issued accounts to the group's center by reading them back from this
database; ``uplink_cursors`` keeps, per kind, the position up to which the gateway's
local JetStream has acknowledged them, so a restart resends only what may be missing
(the center stores each message idempotently). Positions are a row id (alerts' event
id, device events' id, issued accounts' id) or a ``computed_at`` time in POSIX
microseconds [us] (hourly rows). Migration 13 also gives ``device_events`` an id.
"""

from __future__ import annotations

import asyncpg

__all__ = ["UPLINK_CURSORS_SQL", "load_cursors", "save_cursor"]

UPLINK_CURSORS_SQL = """
CREATE TABLE IF NOT EXISTS uplink_cursors (
    kind text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE device_events ADD COLUMN IF NOT EXISTS id bigserial;
CREATE UNIQUE INDEX IF NOT EXISTS device_events_id ON device_events (id);
"""


async def load_cursors(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Every kind's position (kinds never sent are absent)."""
    rows = await conn.fetch("SELECT kind, position FROM uplink_cursors")
    return {r["kind"]: int(r["position"]) for r in rows}


async def save_cursor(conn: asyncpg.Connection | asyncpg.Pool, kind: str, position: int) -> None:
    """Move ``kind``'s position forward to ``position`` (never back)."""
    await conn.execute(
        "INSERT INTO uplink_cursors (kind, position) VALUES ($1, $2) "
        "ON CONFLICT (kind) DO UPDATE SET position = GREATEST(uplink_cursors.position, "
        "EXCLUDED.position), updated_at = now()",
        kind,
        position,
    )
