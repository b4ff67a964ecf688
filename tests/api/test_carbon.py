"""GET /api/v1/carbon/hourly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from zerocarbon.api.schemas import HOURLY_COLUMNS

H = timedelta(hours=1)
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
async def thirty_hours(site_data: Any) -> None:
    """Rows for T0 .. T0 + 29 h, grid import = hour index + 1."""
    for i in range(30):
        await site_data.hourly(T0 + i * H, grid_import_kwh=float(i + 1))


def hours(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["hour_start"]) for r in rows]


async def test_half_open_range_oldest_first(client: httpx.AsyncClient, thirty_hours: None) -> None:
    res = await client.get(
        "/api/v1/carbon/hourly",
        params={"start": "2026-03-01T02:00:00Z", "end": "2026-03-01T05:00:00Z"},
    )
    assert res.status_code == 200
    rows = res.json()
    assert hours(rows) == ["2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z", "2026-03-01T04:00:00Z"]
    assert set(rows[0]) == set(HOURLY_COLUMNS)
    assert rows[0]["grid_import_kwh"] == 3.0
    assert rows[0]["scope2_location_kg"] == pytest.approx(3.0 * 0.5703)
    assert rows[0]["computed_at"].endswith("Z")


async def test_offsets_and_naive_times(client: httpx.AsyncClient, thirty_hours: None) -> None:
    # 10:00+08:00 is 02:00Z; "+" must be sent encoded (httpx does it)
    aware = await client.get(
        "/api/v1/carbon/hourly",
        params={"start": "2026-03-01T10:00:00+08:00", "end": "2026-03-01T12:00:00+08:00"},
    )
    naive = await client.get(
        "/api/v1/carbon/hourly",
        params={"start": "2026-03-01T02:00:00", "end": "2026-03-01T04:00:00"},
    )
    assert hours(aware.json()) == hours(naive.json())
    assert hours(naive.json()) == ["2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z"]


async def test_default_is_last_24_hours_of_data(
    client: httpx.AsyncClient, thirty_hours: None
) -> None:
    rows = (await client.get("/api/v1/carbon/hourly")).json()
    assert len(rows) == 24
    assert rows[0]["hour_start"] == "2026-03-01T06:00:00Z"
    assert rows[-1]["hour_start"] == "2026-03-02T05:00:00Z"


async def test_start_only_means_24_hours_from_it(
    client: httpx.AsyncClient, thirty_hours: None
) -> None:
    rows = (await client.get("/api/v1/carbon/hourly", params={"start": "2026-03-01T20:00Z"})).json()
    assert [r["grid_import_kwh"] for r in rows] == [21.0 + i for i in range(10)]  # up to 29 h


async def test_no_rows(client: httpx.AsyncClient) -> None:
    res = await client.get("/api/v1/carbon/hourly")
    assert res.status_code == 200
    assert res.json() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2026-03-02T00:00Z", "end": "2026-03-01T00:00Z"}, "must be before end"),
        ({"start": "2026-03-01T00:00Z", "end": "2026-03-01T00:00Z"}, "must be before end"),
        ({"start": "2026-01-01T00:00Z", "end": "2026-03-01T00:00Z"}, "at most 31 days"),
    ],
)
async def test_bad_range_is_422(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    res = await client.get("/api/v1/carbon/hourly", params=params)
    assert res.status_code == 422
    assert message in res.json()["detail"]


async def test_not_a_datetime_is_422(client: httpx.AsyncClient) -> None:
    res = await client.get("/api/v1/carbon/hourly", params={"start": "yesterday"})
    assert res.status_code == 422
    assert res.json()["detail"][0]["loc"] == ["query", "start"]
