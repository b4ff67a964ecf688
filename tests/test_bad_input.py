"""Bad input never bends an hour: each input that once broke the product, fed through
the real chain (MQTT broker -> collector -> pipeline with admission -> PostgreSQL
writer + carbon engine -> hourly rows).

For each case the other devices' hours are still computed and exact, the bad input is
counted where it belongs, and the engine's memory stays what the accepted window
bounds (its arrays never grow).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import asyncpg
import pytest

from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings

T0 = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)  # first hour compared
NOW = T0 + timedelta(hours=2, minutes=5)  # the gateway's clock when the data arrives
MINUTES = 121  # one reading a minute, 00:00 .. 02:00


def _site(prefix: str, mqtt_url: str) -> SiteConfig:
    def dev(id_: str, role: str, rated: float, **kw: Any) -> dict[str, Any]:
        return {
            "id": id_,
            "role": role,
            "protocol": "mqtt",
            "topic": f"{prefix}/{id_}",
            "fields": {"e": "energy_import_kwh"},
            "interval_s": 60,
            "rated_power_kw": rated,
            **kw,
        }

    return parse_site(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "grid": {"region": "east", "data_year": 2023},
            "mqtt": {"url": mqtt_url},
            "devices": [
                dev("grid", "grid", 1000),
                dev("line_a", "load", 400, line="a"),
                dev("press", "load", 100, line="b"),
            ],
        }
    )


@dataclass(frozen=True)
class Case:
    name: str
    # (minute index, value of the press counter) -> payloads to publish for it instead
    bad: Callable[[int, float], list[dict[str, Any]]]
    check: Callable[[EnergyCenter, dict[tuple[str, datetime], asyncpg.Record]], None]


PRESS_KW = 60.0  # the press meter's true power: 1 kWh a minute
PRESS_START = 1_000_000.0  # its counter at 00:00 [kWh]


def _ts(k: int) -> str:
    return (T0 + timedelta(minutes=k)).isoformat()


def _normal(k: int, v: float) -> list[dict[str, Any]]:
    return [{"ts": _ts(k), "e": v}]


def _extra_at(minute: int, payload: dict[str, Any]) -> Callable[[int, float], list[dict[str, Any]]]:
    def bad(k: int, v: float) -> list[dict[str, Any]]:
        return _normal(k, v) + ([payload] if k == minute else [])

    return bad


def _dropped(reason: str, n: int) -> Callable[[EnergyCenter, dict[Any, Any]], None]:
    def check(center: EnergyCenter, rows: dict[tuple[str, datetime], asyncpg.Record]) -> None:
        drops = center.admission.stats.by_device["press"]
        assert getattr(drops, reason) == n
        for h in (T0, T0 + timedelta(hours=1)):
            assert rows[("press", h)]["delta"] == pytest.approx(60.0)

    return check


def _backstep(k: int, v: float) -> list[dict[str, Any]]:
    # a simulated meter restarted 12 kWh below its old value at 00:30, then went on
    # from the true value
    return _normal(k, v - 12.0 if k == 30 else v)


def _check_backstep(center: EnergyCenter, rows: dict[Any, Any]) -> None:
    first = rows[("press", T0)]
    assert first["delta"] == pytest.approx(60.0)  # no 999,988 kWh "reset"
    assert first["resets"] == 0 and first["backsteps"] == 1


def _jump(k: int, v: float) -> list[dict[str, Any]]:
    # at 00:40 the counter jumps by 50,000 kWh (a 100 kW meter makes ~1.7 kWh a minute)
    return _normal(k, v + 50_000.0 if k == 40 else v)


def _check_jump(center: EnergyCenter, rows: dict[Any, Any]) -> None:
    first = rows[("press", T0)]
    assert first["rejected"] == 1
    assert first["delta"] == pytest.approx(60.0)


CASES = [
    Case(
        "stamped 2099-01-01",
        _extra_at(20, {"ts": "2099-01-01T00:00:00+00:00", "e": 2e6}),
        _dropped("out_of_window", 1),
    ),
    Case(
        "stamped 9999-12-31",
        _extra_at(20, {"ts": "9999-12-31T23:59:59+00:00", "e": 2e6}),
        _dropped("out_of_window", 1),
    ),
    Case(
        "stamped 0001-01-01",
        _extra_at(20, {"ts": "0001-01-01T00:00:00+00:00", "e": 5.0}),
        _dropped("out_of_window", 1),
    ),
    Case(
        "negative counter",
        _extra_at(20, {"ts": _ts(20) + "", "e": -5.0}),
        _dropped("counter_range", 1),
    ),
    Case("1e300 counter", _extra_at(20, {"ts": _ts(20), "e": 1e300}), _dropped("counter_range", 1)),
    Case("12 kWh backward step", _backstep, _check_backstep),
    Case("jump beyond rated power", _jump, _check_jump),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_costs_only_itself(
    case: Case, pg_url: str, pg_conn: asyncpg.Connection, mqtt_url: str
) -> None:
    prefix = f"zc-bad-{secrets.token_hex(4)}"
    site = _site(prefix, mqtt_url)
    warm_up_kernels(site)
    clock = ScaledClock(NOW, 1.0)
    url = urlparse(mqtt_url)
    async with EnergyCenter(
        site,
        Settings(),
        clock,
        database_url=pg_url,
        mqtt_url=mqtt_url,
        carbon_flush_interval_s=0.0,
    ) as center:
        assert center.mqtt is not None and center.carbon is not None
        engine = center.carbon.engine
        sizes = {name: getattr(engine, name).nbytes for name in ("energy", "events", "last_ts")}
        await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
        published = 0
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            for k in range(MINUTES):
                await pub.publish(f"{prefix}/grid", json.dumps({"ts": _ts(k), "e": 5.0 * k}), qos=1)
                await pub.publish(
                    f"{prefix}/line_a", json.dumps({"ts": _ts(k), "e": 3.0 * k}), qos=1
                )
                for payload in case.bad(k, PRESS_START + PRESS_KW / 60.0 * k):
                    await pub.publish(f"{prefix}/press", json.dumps(payload), qos=1)
                    published += 1
                published += 2
        async with asyncio.timeout(20):
            while center.mqtt.stats.messages < published:
                await asyncio.sleep(0.02)
    # leaving the context drained the pipeline and wrote the last hours
    assert {n: getattr(engine, n).nbytes for n in sizes} == sizes
    assert all(
        h == -1 or T0.timestamp() // 3600 - 1 <= h <= NOW.timestamp() // 3600
        for h in engine.ring_hour.tolist()
    )
    rows = await pg_conn.fetch(
        """SELECT d.key AS device, h.* FROM hourly_energy h JOIN devices d ON d.id = h.device_id
           WHERE h.hour_start >= $1 AND h.hour_start < $2""",
        T0,
        T0 + timedelta(hours=2),
    )
    by_key = {(r["device"], r["hour_start"]): r for r in rows}
    for h in (T0, T0 + timedelta(hours=1)):
        assert by_key[("grid", h)]["delta"] == pytest.approx(300.0)
        assert by_key[("line_a", h)]["delta"] == pytest.approx(180.0)
    carbon = await pg_conn.fetch(
        "SELECT hour_start, grid_import_kwh FROM hourly_carbon WHERE hour_start >= $1 "
        "AND hour_start < $2 ORDER BY hour_start",
        T0,
        T0 + timedelta(hours=2),
    )
    assert [r["grid_import_kwh"] for r in carbon] == pytest.approx([300.0, 300.0])
    # no hour outside the data's span was written (once: 632,030 rows up to 2098)
    stray = await pg_conn.fetchval(
        "SELECT count(*) FROM hourly_carbon WHERE hour_start < $1 OR hour_start > $2",
        T0 - timedelta(hours=1),
        NOW,
    )
    assert stray == 0
    case.check(center, by_key)
