"""The instruments ledger on a real PostgreSQL: sync from the site file, retirements
refused a second time (also when two connections race), Scope 2 instruments tied to the
month the engine counted them in, CCER offsets with their audit trail.

The site is the hand-computed month's (tests/carbon_engine/test_month_by_hand.py): June
2026 in Asia/Shanghai, grid import 100 kWh every hour, contract ``green_trade`` 7,200 kWh
for 2026-06 (10 kWh an hour), GEC batch ``gec_june`` 18 certificates for 2026-06
(25 kWh an hour), plus a CCER holding and an allowance holding.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import hourly_row
from zerocarbon.accounts import ledger
from zerocarbon.accounts.ledger import LedgerRefused, PeriodError, parse_period
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.config_ledger import OffsetConfig, check_offsets
from zerocarbon.storage import ledger as store
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly

T0 = datetime(2026, 7, 2, 8, 0, tzinfo=UTC)  # when things are done (injected)
JUNE_START = datetime(2026, 5, 31, 16, 0, tzinfo=UTC)  # 2026-06-01 00:00 Asia/Shanghai

OFFSETS: list[dict[str, Any]] = [
    {
        "id": "ccer_forest",
        "kind": "ccer",
        "serial": "CCER-2025-000123-000001-000100",
        "project": "CCER-000123 afforestation, Fujian",
        "vintage": 2025,
        "volume_t": 100.0,
        "registry": "national CCER registry",
    },
    {
        "id": "cea_2025",
        "kind": "allowance",
        "serial": "CEA-2025-SH-0042",
        "project": "CEA 2025 allocation",
        "vintage": 2025,
        "volume_t": 50.0,
        "registry": "national carbon market registry",
    },
]


def site_document(**changes: Any) -> dict[str, Any]:
    """The hand-computed month's site (test_month_by_hand), with [[offsets]]."""
    doc: dict[str, Any] = {
        "site": {"name": "hand-computed works", "timezone": "Asia/Shanghai"},
        "grid": {"region": "east", "data_year": 2023},
        "mqtt": {},
        "devices": [
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "modbus_tcp",
                "host": "127.0.0.1",
                "profile": "eastron_sdm630",
            },
            {
                "id": "pv_roof",
                "role": "pv",
                "protocol": "modbus_tcp",
                "host": "127.0.0.1",
                "profile": "sunspec_inverter_103",
                "port": 1502,
            },
            {
                "id": "boiler_gas",
                "role": "fuel",
                "fuel": "natural_gas",
                "protocol": "mqtt",
                "topic": "works/boiler",
                "fields": {"volume": "gas_volume_nm3"},
            },
        ],
        "green_power": [{"id": "green_trade", "monthly_kwh": {"2026-06": 7200.0}}],
        "certificates": [
            {"id": "gec_june", "count": 18, "issued": "2026-05", "applies_to": "2026-06"}
        ],
        "offsets": OFFSETS,
    }
    doc.update(changes)
    return doc


def make_site(**changes: Any) -> SiteConfig:
    return parse_site(site_document(**changes), "site.toml")


async def clear_ledger(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE instruments, retirements, ledger_events RESTART IDENTITY CASCADE")


async def write_june(conn: asyncpg.Connection, site: SiteConfig) -> None:
    """June 2026 as the engine stores it: 100 kWh import, 10 kWh contract and 25 kWh
    certificates every hour (the hand computation)."""
    registry = await register_site(conn, site)
    rows = [
        hourly_row(
            JUNE_START + timedelta(hours=h),
            grid_import_kwh=100.0,
            green_contract_kwh=10.0,
            certificate_kwh=25.0,
        )
        for h in range(720)
    ]
    await upsert_hourly(conn, registry, rows, [])


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await clear_ledger(pg_conn)
    yield pg_conn


@pytest.fixture
async def synced(conn: asyncpg.Connection) -> SiteConfig:
    site = make_site()
    await ledger.sync_instruments(conn, site, at=T0)
    return site


# -- periods and the site file ------------------------------------------------------------


def test_periods() -> None:
    assert parse_period("2026-03").months == ("2026-03",)
    assert parse_period("2026-Q2").months == ("2026-04", "2026-05", "2026-06")
    assert len(parse_period("2026").months) == 12
    assert parse_period("2026").kind == "year"
    for bad in ("2026-13", "2026-Q5", "26-01", "2026-1", "June"):
        with pytest.raises(PeriodError, match="month .*quarter .*year"):
            parse_period(bad)


def test_offsets_config_is_checked() -> None:
    one = OffsetConfig.model_validate(OFFSETS[0])
    assert one.volume_t == 100.0 and one.kind == "ccer"
    with pytest.raises(ValueError, match=r"offsets\[1\].serial: .*already held as offsets\[0\]"):
        check_offsets([one, one.model_copy(update={"id": "other"})])
    with pytest.raises(ValueError, match=r"offsets\[1\].id: 'ccer_forest' already used"):
        check_offsets([one, one.model_copy(update={"serial": "X"})])
    with pytest.raises(ValueError, match="kind"):
        OffsetConfig.model_validate({**OFFSETS[0], "kind": "voluntary"})
    with pytest.raises(ValueError, match="volume_t"):
        OffsetConfig.model_validate({**OFFSETS[0], "volume_t": 0})
    with pytest.raises(ValueError, match="colour"):
        OffsetConfig.model_validate({**OFFSETS[0], "colour": "green"})


def test_the_example_offsets_are_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "offsets.toml"
    entries = tomllib.loads(path.read_text(encoding="utf-8"))["offsets"]
    offsets = [OffsetConfig.model_validate(e) for e in entries]
    check_offsets(offsets)
    assert [(o.kind, o.volume_t) for o in offsets] == [("ccer", 100.0), ("allowance", 50.0)]
    site = make_site(offsets=entries)
    rows = {r.id: r for r in ledger.declared_instruments(site, T0)}
    assert rows["offsets.ccer_forest_2025"].unit == "t CO2e"


def test_declared_instruments_have_their_units_and_volumes() -> None:
    rows = {r.id: r for r in ledger.declared_instruments(make_site(), T0)}
    assert set(rows) == {
        "certificates.gec_june",
        "green_power.green_trade",
        "offsets.ccer_forest",
        "offsets.cea_2025",
    }
    gec = rows["certificates.gec_june"]
    assert (gec.kind, gec.volume, gec.unit, gec.vintage) == ("gec", Decimal(18), "MWh", "2026-05")
    contract = rows["green_power.green_trade"]
    assert (contract.volume, contract.unit) == (Decimal("7.2"), "MWh")
    assert contract.declaration["monthly_mwh"] == {"2026-06": "7.200000"}
    ccer = rows["offsets.ccer_forest"]
    assert (ccer.kind, ccer.serial, ccer.volume, ccer.unit) == (
        "ccer",
        "CCER-2025-000123-000001-000100",
        Decimal(100),
        "t CO2e",
    )
    assert rows["offsets.cea_2025"].kind == "allowance"


async def test_sync_adds_then_leaves_alone(conn: asyncpg.Connection) -> None:
    site = make_site()
    first = await ledger.sync_instruments(conn, site, at=T0)
    assert len(first.added) == 4 and not first.changed
    again = await ledger.sync_instruments(conn, site, at=T0 + timedelta(days=1))
    assert again.added == () and again.changed == () and len(again.unchanged) == 4
    events = await store.instrument_events(conn)
    assert [e.action for e in events] == ["declared"] * 4
    assert all(e.actor == "site file" and e.at == T0 for e in events)


async def test_sync_changes_an_unretired_instrument_with_before_and_after(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    changed = [dict(OFFSETS[0], volume_t=120.0), OFFSETS[1]]
    report = await ledger.sync_instruments(conn, make_site(offsets=changed), at=T0)
    assert report.changed == ("offsets.ccer_forest",)
    inst = await store.get_instrument(conn, "offsets.ccer_forest")
    assert inst is not None and inst.volume == Decimal(120)
    events = await store.instrument_events(conn, "offsets.ccer_forest")
    assert events[-1].action == "changed"
    assert events[-1].before is not None and events[-1].before["volume"] == "100.000000"
    assert events[-1].after is not None and events[-1].after["volume"] == "120.000000"


async def test_sync_refuses_to_change_a_retired_instrument(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    await ledger.retire(
        conn,
        "certificates.gec_june",
        period="2026-06",
        volume=18,
        retired_by="cli:li",
        reason="June claim",
        at=T0,
    )
    more = [{"id": "gec_june", "count": 20, "issued": "2026-05", "applies_to": "2026-06"}]
    with pytest.raises(
        LedgerRefused,
        match=r"certificates.gec_june: declared differently, but 18 MWh of it is retired",
    ):  # noqa: E501
        await ledger.sync_instruments(conn, make_site(certificates=more), at=T0)
    with pytest.raises(LedgerRefused, match="certificates.gec_june: removed from the site file"):
        await ledger.sync_instruments(conn, make_site(certificates=[]), at=T0)
    inst = await store.get_instrument(conn, "certificates.gec_june")
    assert inst is not None and inst.volume == Decimal(18) and inst.status == "retired"
    # all or nothing: the CCER change in the same refused sync was not applied either
    with pytest.raises(LedgerRefused):
        await ledger.sync_instruments(
            conn,
            make_site(certificates=more, offsets=[dict(OFFSETS[0], volume_t=1.0), OFFSETS[1]]),
            at=T0,
        )
    ccer = await store.get_instrument(conn, "offsets.ccer_forest")
    assert ccer is not None and ccer.volume == Decimal(100)


async def test_removed_unretired_instrument_is_cancelled_and_its_serial_may_move(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    renamed = [dict(OFFSETS[0], id="ccer_forest_2"), OFFSETS[1]]
    report = await ledger.sync_instruments(conn, make_site(offsets=renamed), at=T0)
    assert report.cancelled == ("offsets.ccer_forest",)
    assert report.added == ("offsets.ccer_forest_2",)
    old = await store.get_instrument(conn, "offsets.ccer_forest")
    assert old is not None and old.status == "cancelled"
    with pytest.raises(LedgerRefused, match="cancelled"):
        await ledger.retire(
            conn, "offsets.ccer_forest", period="2026", volume=1, retired_by="x", reason="", at=T0
        )


# -- retirements ---------------------------------------------------------------------------


async def test_a_certificate_retired_twice_is_refused(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    """The issue's criterion: the second retirement names the first (period, who, when)."""
    first = await ledger.retire(
        conn,
        "certificates.gec_june",
        period="2026-06",
        volume=Decimal(18),
        retired_by="shift-lead",
        reason="market-based Scope 2, June",
        at=T0,
    )
    assert (first.volume, first.period, first.retired_by) == (Decimal(18), "2026-06", "shift-lead")
    with pytest.raises(LedgerRefused) as refused:
        await ledger.retire(
            conn,
            "certificates.gec_june",
            period="2026-06",
            volume=1,
            retired_by="auditor",
            reason="again",
            at=T0 + timedelta(hours=1),
        )
    text = str(refused.value)
    assert text.startswith("certificates.gec_june: cannot retire 1 MWh against 2026-06")
    assert "0 of 18 MWh left" in text
    assert "already retired: 18 MWh against 2026-06 by shift-lead at 2026-07-02T08:00:00Z" in text
    inst = await store.get_instrument(conn, "certificates.gec_june")
    assert inst is not None and inst.status == "retired" and inst.retired_volume == 18
    assert len(await store.instrument_retirements(conn, "certificates.gec_june")) == 1
    actions = [e.action for e in await store.instrument_events(conn, "certificates.gec_june")]
    assert actions == ["declared", "retired", "refused"]


async def test_partial_retirements_add_up_to_the_volume_and_no_more(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    args: dict[str, Any] = {"retired_by": "cli:li", "reason": "", "at": T0}
    await ledger.retire(conn, "certificates.gec_june", period="2026-06", volume=10, **args)
    inst = await store.get_instrument(conn, "certificates.gec_june")
    assert inst is not None and inst.status == "partly_retired" and inst.held_volume == 8
    with pytest.raises(LedgerRefused, match="cannot retire 9 MWh .* 8 of 18 MWh left"):
        await ledger.retire(conn, "certificates.gec_june", period="2026-06", volume=9, **args)
    with pytest.raises(LedgerRefused, match="not a whole number of certificates"):
        await ledger.retire(conn, "certificates.gec_june", period="2026-06", volume="0.5", **args)
    await ledger.retire(conn, "certificates.gec_june", period="2026-06", volume=8, **args)
    inst = await store.get_instrument(conn, "certificates.gec_june")
    assert inst is not None and inst.status == "retired" and inst.held_volume == 0


async def test_a_gec_batch_against_another_month_is_refused(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    for period in ("2026-07", "2026-Q2", "2026"):
        with pytest.raises(LedgerRefused) as refused:
            await ledger.retire(
                conn,
                "certificates.gec_june",
                period=period,
                volume=18,
                retired_by="cli:li",
                reason="",
                at=T0,
            )
        text = str(refused.value)
        assert f"applies to 2026-06; it cannot be retired against {period}" in text
        assert "engine already counted its certificates against the grid import of 2026-06" in text
    assert await store.instrument_retirements(conn) == []


async def test_a_contract_is_retired_against_its_months_up_to_their_volume(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    args: dict[str, Any] = {"retired_by": "cli:li", "reason": "", "at": T0}
    with pytest.raises(LedgerRefused, match=r"month it delivers in \(2026-06\), not 2026-07"):
        await ledger.retire(conn, "green_power.green_trade", period="2026-07", volume=1, **args)
    with pytest.raises(LedgerRefused, match="not 2026-Q2"):
        await ledger.retire(conn, "green_power.green_trade", period="2026-Q2", volume=1, **args)
    await ledger.retire(conn, "green_power.green_trade", period="2026-06", volume="7.2", **args)
    with pytest.raises(LedgerRefused, match="exceed the contract's 7.2 MWh for that month"):
        await ledger.retire(
            conn, "green_power.green_trade", period="2026-06", volume="0.001", **args
        )


async def test_ccer_retirement_is_recorded_with_its_audit_trail(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    r = await ledger.retire(
        conn,
        "offsets.ccer_forest",
        period="2026-Q2",
        volume="12.5",
        retired_by="carbon-manager",
        reason="residual Scope 1, Q2",
        at=T0,
    )
    assert (r.volume, r.period, r.reason) == (Decimal("12.5"), "2026-Q2", "residual Scope 1, Q2")
    await ledger.retire(
        conn,
        "offsets.cea_2025",
        period="2026-Q2",
        volume=2,
        retired_by="carbon-manager",
        reason="",
        at=T0,
    )
    events = await store.instrument_events(conn, "offsets.ccer_forest")
    assert [e.action for e in events] == ["declared", "retired"]
    retired = events[-1]
    assert (retired.actor, retired.at) == ("carbon-manager", T0)
    assert retired.before == {"retired_volume": "0.000000", "status": "held"}
    assert retired.after == {"retired_volume": "12.500000", "status": "partly_retired"}
    assert retired.detail == "12.5 t CO2e against 2026-Q2: residual Scope 1, Q2"
    views = await ledger.ledger_view(conn, synced)
    used = ledger.offsets_used(
        [v.instrument for v in views], await store.instrument_retirements(conn)
    )
    assert used == {"2026-Q2": Decimal("14.5")}
    ccer = next(v for v in views if v.instrument.id == "offsets.ccer_forest")
    assert ccer.engine is None and ccer.retired_by_period == {"2026-Q2": Decimal("12.5")}


async def test_the_audit_trail_and_retirements_are_append_only(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    await ledger.retire(
        conn, "offsets.ccer_forest", period="2026", volume=1, retired_by="a", reason="", at=T0
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await conn.execute("DELETE FROM retirements")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await conn.execute("UPDATE ledger_events SET actor = 'someone else'")


async def test_the_database_refuses_more_than_the_volume(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    """The CHECK constraint holds even for a writer that skips the ledger's check."""

    def no_check(inst: store.InstrumentRow, earlier: Any) -> None:
        return None

    args: dict[str, Any] = {"period": "2026", "retired_by": "a", "reason": "", "at": T0}
    await store.retire(conn, "offsets.cea_2025", volume=Decimal(50), check=no_check, **args)
    with pytest.raises(LedgerRefused, match="instruments_retired_within_volume"):
        await store.retire(conn, "offsets.cea_2025", volume=Decimal(1), check=no_check, **args)
    assert len(await store.instrument_retirements(conn, "offsets.cea_2025")) == 1


async def test_concurrent_retirements_exactly_one_wins(pg_url: str, synced: SiteConfig) -> None:
    """Two connections retire the whole batch at once: one retirement, one refusal."""
    a, b = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
    try:
        # whichever locks the instrument's row first wins; the other waits, then sees it
        results = await asyncio.gather(
            *(
                ledger.retire(
                    c,
                    "certificates.gec_june",
                    period="2026-06",
                    volume=18,
                    retired_by=who,
                    reason="",
                    at=T0,
                )
                for c, who in ((a, "gateway-a"), (b, "gateway-b"))
            ),
            return_exceptions=True,
        )
    finally:
        await a.close()
        await b.close()
    wins = [r for r in results if isinstance(r, store.RetirementRow)]
    losses = [r for r in results if isinstance(r, LedgerRefused)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert f"by {wins[0].retired_by} at 2026-07-02T08:00:00Z" in str(losses[0])
    conn = await asyncpg.connect(pg_url)
    try:
        total = await conn.fetchval(
            "SELECT sum(volume) FROM retirements WHERE instrument_id = 'certificates.gec_june'"
        )
    finally:
        await conn.close()
    assert total == 18


async def test_many_concurrent_partial_retirements_never_exceed_the_volume(
    pg_url: str, synced: SiteConfig
) -> None:
    """Eight connections each retire 3 of the batch's 18 MWh: exactly six win."""
    conns = [await asyncpg.connect(pg_url) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(
                ledger.retire(
                    c,
                    "certificates.gec_june",
                    period="2026-06",
                    volume=3,
                    retired_by=f"w{i}",
                    reason="",
                    at=T0,
                )
                for i, c in enumerate(conns)
            ),
            return_exceptions=True,
        )
    finally:
        for c in conns:
            await c.close()
    assert sum(isinstance(r, store.RetirementRow) for r in results) == 6
    assert sum(isinstance(r, LedgerRefused) for r in results) == 2


# -- consistency with the engine -------------------------------------------------------------


async def test_the_ledger_shows_the_engines_allocation_of_the_hand_computed_month(
    conn: asyncpg.Connection, synced: SiteConfig
) -> None:
    await write_june(conn, synced)
    views = {v.instrument.id: v for v in await ledger.ledger_view(conn, synced)}
    gec = views["certificates.gec_june"].engine
    assert gec is not None and len(gec) == 1
    (june,) = gec
    # by hand: 25 kWh in each of 720 hours = 18,000 kWh = the batch; nothing unused
    assert june.month == "2026-06" and june.hours == 720
    assert june.volume_kwh == 18_000.0
    assert june.allocated_kwh == pytest.approx(18_000.0, abs=1e-6)
    assert june.column_kwh == pytest.approx(18_000.0, abs=1e-6)
    assert june.unused_kwh == pytest.approx(0.0, abs=1e-6)
    contract = views["green_power.green_trade"].engine
    assert contract is not None
    assert [(m.month, m.volume_kwh) for m in contract] == [("2026-06", 7200.0)]
    assert contract[0].allocated_kwh == pytest.approx(7200.0, abs=1e-6)
    assert contract[0].column_kwh == pytest.approx(7200.0, abs=1e-6)


async def test_unused_volume_when_the_import_is_short(conn: asyncpg.Connection) -> None:
    """Half the month's import: the batch covers what the contract left, the rest unused."""
    big = [{"id": "gec_june", "count": 80, "issued": "2026-05", "applies_to": "2026-06"}]
    site = make_site(certificates=big)
    await ledger.sync_instruments(conn, site, at=T0)
    registry = await register_site(conn, site)
    rows = [
        replace(hourly_row(JUNE_START + timedelta(hours=h), grid_import_kwh=100.0))
        for h in range(720)
    ]
    await upsert_hourly(conn, registry, rows, [])
    views = {v.instrument.id: v for v in await ledger.ledger_view(conn, site)}
    engine = views["certificates.gec_june"].engine
    assert engine is not None
    # 72,000 kWh import - 7,200 contract = 64,800 kWh left for the 80,000 kWh batch
    assert engine[0].allocated_kwh == pytest.approx(64_800.0, abs=1e-6)
    assert engine[0].unused_kwh == pytest.approx(15_200.0, abs=1e-6)
    detail = await ledger.instrument_detail(conn, "certificates.gec_june", site)
    assert detail.view.instrument.volume == 80 and detail.retirements == ()
    with pytest.raises(LookupError, match="no instrument 'nope'"):
        await ledger.instrument_detail(conn, "nope", site)


async def test_an_hourly_contract_is_held_by_local_month(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Hours of an hourly_csv are summed by month of the site's time zone: the first
    hour of July in Shanghai (2026-06-30T16:00Z) is July's."""
    (tmp_path / "ppa.csv").write_text(
        "hour_start,kwh\n"
        "2026-06-30T15:00:00+00:00,400\n"
        "2026-06-30T16:00:00+00:00,250.5\n"
        "2026-07-01T03:00:00+00:00,100\n",
        encoding="utf-8",
    )
    site = parse_site(
        site_document(green_power=[{"id": "ppa", "hourly_csv": "ppa.csv"}], offsets=[]),
        "site.toml",
        base_dir=tmp_path,
    )
    await ledger.sync_instruments(conn, site, at=T0)
    inst = await store.get_instrument(conn, "green_power.ppa")
    assert inst is not None and inst.volume == Decimal("0.7505")
    assert inst.declaration == {
        "source": "hourly_csv",
        "monthly_mwh": {"2026-06": "0.400000", "2026-07": "0.350500"},
    }
    args: dict[str, Any] = {"retired_by": "a", "reason": "", "at": T0}
    with pytest.raises(LedgerRefused, match="exceed the contract's 0.4 MWh for that month"):
        await ledger.retire(conn, "green_power.ppa", period="2026-06", volume="0.5", **args)
    await ledger.retire(conn, "green_power.ppa", period="2026-07", volume="0.3505", **args)
    inst = await store.get_instrument(conn, "green_power.ppa")
    assert (
        inst is not None and inst.status == "partly_retired" and inst.held_volume == Decimal("0.4")
    )
