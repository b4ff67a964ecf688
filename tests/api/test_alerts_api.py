"""``/api/v1/alerts`` on the real PostgreSQL: the listing and its filters, one alert,
acknowledgement by an operator token (refused without a token or with a viewer's), and
the history of an episode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import httpx
import pytest

from zerocarbon.api.auth import Role, new_token
from zerocarbon.settings import Settings
from zerocarbon.storage import alerts, tokens
from zerocarbon.storage.alerts import AlertChange

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CHANNELS = ("hook", "mqtt")


def change(
    state: Literal["firing", "resolved"] = "firing",
    *,
    rule: str = "grid_demand",
    kind: str = "demand",
    subject: str = "site",
    episode: int = 1,
    severity: str = "warning",
    at_min: int = 0,
) -> AlertChange:
    return AlertChange(
        rule=rule,
        kind=kind,
        subject=subject,
        episode=episode,
        state=state,
        severity=severity,
        ts=T0 + at_min * M,
        since=T0 + (at_min - 2) * M,
        message_en=f"{rule} on {subject}: {state}",
        message_zh=f"{subject} {rule}：{'告警' if state == 'firing' else '已恢复'}",
        evidence={"value": 520.0 if state == "firing" else 470.0, "limit": 500.0},
    )


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE alerts, alert_events, api_tokens RESTART IDENTITY CASCADE")
    return pg_conn


@pytest.fixture
def make_token(conn: asyncpg.Connection) -> Callable[..., Any]:
    async def make(name: str, role: Role) -> dict[str, str]:
        t = new_token()
        await tokens.insert_token(
            conn, name=name, prefix=t.prefix, role=role.value, site=None, token_hash=t.token_hash
        )
        return {"Authorization": f"Bearer {t.token}"}

    return make


@pytest.fixture
async def three(conn: asyncpg.Connection) -> dict[str, int]:
    """grid_demand/site episode 1 (resolved at 30) and 2 (firing since 60), and
    meter_offline/meter_1 (critical, firing since 45)."""
    ids = {
        "old": await alerts.record_change(conn, change(at_min=0), CHANNELS, T0),
        "new": await alerts.record_change(conn, change(episode=2, at_min=60), CHANNELS, T0),
        "meter": await alerts.record_change(
            conn,
            change(
                rule="meter_offline",
                kind="offline",
                subject="meter_1",
                severity="critical",
                at_min=45,
            ),
            CHANNELS,
            T0,
        ),
    }
    await alerts.record_change(conn, change("resolved", at_min=30), CHANNELS, T0)
    return {k: v for k, v in ids.items() if v is not None}


async def ids_of(client: httpx.AsyncClient, **params: Any) -> list[int]:
    res = await client.get("/api/v1/alerts", params=params)
    assert res.status_code == 200, res.text
    return [a["id"] for a in res.json()]


async def test_list_and_filters(client: httpx.AsyncClient, three: dict[str, int]) -> None:
    old, new, meter = three["old"], three["new"], three["meter"]
    assert await ids_of(client) == [new, meter, old]
    assert await ids_of(client, status="active") == [new, meter]
    assert await ids_of(client, status="resolved") == [old]
    assert await ids_of(client, rule="meter_offline") == [meter]
    assert await ids_of(client, kind="demand") == [new, old]
    assert await ids_of(client, subject="meter_1") == [meter]
    assert await ids_of(client, severity="critical") == [meter]
    assert await ids_of(client, since="2026-05-01T08:31:00Z") == [new, meter]
    assert await ids_of(client, until="2026-05-01T08:45:00Z") == [old]
    # naive means UTC; +08:00 is converted
    assert await ids_of(client, since="2026-05-01T08:40:00", until="2026-05-01T16:50:00+08:00") == [
        meter
    ]
    assert await ids_of(client, acked="false") == [new, meter, old]
    assert await ids_of(client, acked="true") == []
    assert await ids_of(client, limit=2) == [new, meter]

    res = await client.get("/api/v1/alerts", params={"subject": "meter_1"})
    (alert,) = res.json()
    assert alert == {
        "id": meter,
        "rule": "meter_offline",
        "kind": "offline",
        "subject": "meter_1",
        "episode": 1,
        "severity": "critical",
        "state": "firing",
        "since": "2026-05-01T08:43:00Z",
        "fired_at": "2026-05-01T08:45:00Z",
        "resolved_at": None,
        "messages": {"en": "meter_offline on meter_1: firing", "zh": "meter_1 meter_offline：告警"},
        "evidence": {"value": 520.0, "limit": 500.0},
        "acked": False,
        "acked_at": None,
        "acked_by": None,
        "ack_comment": None,
        "events": [
            {
                "id": alert["events"][0]["id"],
                "state": "firing",
                "ts": "2026-05-01T08:45:00Z",
                "messages": {
                    "en": "meter_offline on meter_1: firing",
                    "zh": "meter_1 meter_offline：告警",
                },
                "evidence": {"value": 520.0, "limit": 500.0},
                "actor": None,
            }
        ],
    }


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"status": "open"}, "active"),
        ({"severity": "fatal"}, "critical"),
        ({"since": "yesterday"}, "datetime"),
        ({"since": "2026-05-01T09:00:00Z", "until": "2026-05-01T09:00:00Z"}, "not before"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": 1001}, "less than or equal to 1000"),
        ({"acked": "maybe"}, "boolean"),
    ],
)
async def test_bad_filters_are_422_with_a_reason(
    client: httpx.AsyncClient, conn: asyncpg.Connection, params: dict[str, Any], fragment: str
) -> None:
    res = await client.get("/api/v1/alerts", params=params)
    assert res.status_code == 422
    assert fragment in str(res.json()["detail"])


async def test_get_one(client: httpx.AsyncClient, three: dict[str, int]) -> None:
    res = await client.get(f"/api/v1/alerts/{three['old']}")
    assert res.status_code == 200
    body = res.json()
    assert (body["state"], body["resolved_at"]) == ("resolved", "2026-05-01T08:30:00Z")
    assert body["messages"]["zh"] == "site grid_demand：已恢复"
    assert [e["state"] for e in body["events"]] == ["firing", "resolved"]
    missing = await client.get("/api/v1/alerts/9999")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "unknown alert 9999"
    assert (await client.get("/api/v1/alerts/0")).status_code == 422
    assert (await client.get("/api/v1/alerts/abc")).status_code == 422


async def test_ack_needs_an_operator_and_is_kept_once(
    client: httpx.AsyncClient, three: dict[str, int], make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("wall-screen", Role.VIEWER)
    operator = await make_token("shift-lead", Role.OPERATOR)
    admin = await make_token("admin", Role.ADMIN)
    url = f"/api/v1/alerts/{three['new']}/ack"

    res = await client.post(url)
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    res = await client.post(url, headers=viewer)
    assert res.status_code == 403 and "operator" in res.json()["detail"]
    assert (await client.get(f"/api/v1/alerts/{three['new']}")).json()["acked"] is False

    res = await client.post(url, headers=operator, json={"comment": "fan replaced"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["acked"], body["acked_by"], body["ack_comment"]) == (
        True,
        "shift-lead",
        "fan replaced",
    )
    acked_at = datetime.fromisoformat(body["acked_at"])
    assert abs(datetime.now(UTC) - acked_at) < timedelta(minutes=5)
    assert [(e["state"], e["actor"]) for e in body["events"]] == [
        ("firing", None),
        ("acknowledged", "shift-lead"),
    ]
    assert body["events"][1]["evidence"] == {"comment": "fan replaced"}

    # again, by someone else and without a body: 200, the first acknowledgement kept
    again = await client.post(url, headers=admin)
    assert again.status_code == 200
    assert again.json() == body
    assert await ids_of(client, acked="true") == [three["new"]]

    # no body at all is fine; an unknown id is 404; a long comment is 422
    res = await client.post(f"/api/v1/alerts/{three['meter']}/ack", headers=operator)
    assert res.status_code == 200 and res.json()["ack_comment"] is None
    res = await client.post("/api/v1/alerts/9999/ack", headers=operator)
    assert res.status_code == 404 and res.json()["detail"] == "unknown alert 9999"
    res = await client.post(url, headers=operator, json={"comment": "x" * 501})
    assert res.status_code == 422 and "500 characters" in str(res.json()["detail"])


async def test_history_of_an_episode_and_one_notification_per_channel(
    client: httpx.AsyncClient, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    operator = await make_token("shift-lead", Role.OPERATOR)
    fired = change(at_min=0)
    alert_id = await alerts.record_change(conn, fired, CHANNELS, T0)
    assert alert_id is not None
    assert await alerts.record_change(conn, fired, CHANNELS, T0) is None
    res = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=operator)
    assert res.status_code == 200
    resolved = change("resolved", at_min=20)
    assert await alerts.record_change(conn, resolved, CHANNELS, T0) == alert_id
    assert await alerts.record_change(conn, resolved, CHANNELS, T0) is None

    body = (await client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert [e["state"] for e in body["events"]] == ["firing", "acknowledged", "resolved"]
    assert body["events"][2]["evidence"] == {"value": 470.0, "limit": 500.0}
    assert (body["state"], body["acked_by"]) == ("resolved", "shift-lead")

    rows = await conn.fetch(
        "SELECT channel, payload->>'state' AS state FROM notification_outbox ORDER BY id"
    )
    assert [(r["channel"], r["state"]) for r in rows] == [
        ("hook", "firing"),
        ("mqtt", "firing"),
        ("hook", "resolved"),
        ("mqtt", "resolved"),
    ]


async def test_reads_follow_the_read_role(
    settings: Settings, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    from zerocarbon.api.app import create_app

    viewer = await make_token("wall-screen", Role.VIEWER)
    app = create_app(settings.model_copy(update={"api_read_role": Role.VIEWER}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            assert (await c.get("/api/v1/alerts")).status_code == 401
            res = await c.get("/api/v1/alerts", headers=viewer)
            assert res.status_code == 200 and res.json() == []
