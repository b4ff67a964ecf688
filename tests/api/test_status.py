"""GET /api/v1/status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx


async def test_status(client: httpx.AsyncClient, site_data: Any) -> None:
    before = (await client.get("/api/v1/status")).json()
    assert before["newest_reading_ts"] is None
    assert before["devices"]["reporting"] == 0

    await site_data.latest("grid_meter", "active_power_kw", datetime(2026, 3, 1, 1, tzinfo=UTC), 1)
    await site_data.latest("pv_roof", "active_power_kw", datetime(2026, 3, 1, 2, tzinfo=UTC), 2)
    await site_data.hourly(datetime(2026, 3, 1, 1, tzinfo=UTC))
    res = await client.get("/api/v1/status")
    assert res.status_code == 200
    assert res.json() == {
        "site_name": "Test factory",
        "site_timezone": "Asia/Shanghai",
        "site_language": "zh-CN",
        "newest_reading_ts": "2026-03-01T02:00:00Z",
        "newest_hour_start": "2026-03-01T01:00:00Z",
        "devices": {
            "total": 6,
            "reporting": 2,
            "by_role": {"battery": 1, "grid": 1, "load": 2, "production": 1, "pv": 1},
        },
        "live_clients": 0,
    }
