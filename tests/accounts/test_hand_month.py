"""One hand-computed month through every account a zero-carbon factory is judged by.

The small site of tests/accounts/test_period.py and test_footprint.py (one fuel, grid
import, rooftop PV, a certificate batch, a green-power contract, two products on two
lines) with a time-of-use tariff and a demand charge, accounted AFTER a factor revision
(MEE's 2023 east-grid factor revised from 0.5500 to 0.5400 kg/kWh). Every figure below is
computed by hand from the hourly rows of ``two_line_rows`` (June 2026, Asia/Shanghai, 720
hours): grid import 100 kWh every hour (72,000 kWh), PV 50 kWh in the 8 daylight hours
08-16 (12,000 kWh), site load 84,000 kWh; line press 40 kWh and 5 pcs an hour, line weld
30 kWh and 2 pcs an hour; gas 10 Nm3 an hour; certificates 25 kWh and the contract
10 kWh of every hour.

Period account (GB/T 32150), kg CO2:
- grid, revised: 72,000 kWh x 0.5400 = 38,880.000 (was 39,600.000 at 0.5500);
- gas 7,200 Nm3 x 2.162188809 = 15,567.7594248; welding 350.000; pressing 3,600 pcs x
  1.2 = 4,320.000; purchased heat 120 GJ x 110 = 13,200.000; exported heat 10 GJ x 110
  = 1,100.000 (deducted);
- E = 15,567.7594248 + 350 + 4,320 + 38,880 + 13,200 - 1,100 = 71,217.7594248.

Footprints, allocation by units (press : weld = 3,600 : 1,440 = 5/7 : 2/7), location
based: each line's metered grid share scales with the factor, 0.54/0.55 of
test_footprint's figures: press 14,080 -> 13,824.000, weld 10,560 -> 10,368.000,
unmetered load 14,960 -> 14,688.000; site level 14,688 + 15,567.7594248 + 350 + 12,100
= 42,705.7594248;
- panel: 13,824 + 4,320 + 5/7 x 42,705.7594248 = 48,648.1138749 kg, /3,600 pcs =
  13.5133650 kg/pc;
- frame: 10,368 + 2/7 x 42,705.7594248 = 22,569.6455499 kg, /1,440 pcs = 15.6733650
  kg/pc; the two add up to E.

Bill (TOU all year: valley 00-08 at 0.30, peak 08-11 and 17-22 at 1.00, flat the other
8 hours at 0.60 CNY/kWh; surcharge 0.05 CNY/kWh; demand charge 40 CNY/kW a month on the
month's highest 15-minute import, floor 40 % of the contracted 300 kW = 120 kW):
- energy: 8 h x 100 kWh x 30 days = 24,000 kWh in each period: 24,000.00 (peak) +
  14,400.00 (flat) + 7,200.00 (valley) = 45,600.00; surcharge 72,000 x 0.05 = 3,600.00;
- demand: every quarter hour 100 kW but one at 180 kW (15 June 10:15) > 120 kW floor:
  180 x 40 = 7,200.00; total 56,400.00 CNY;
- PV self-consumption savings: per day 3 peak hours x 50 kWh x 1.05 + 5 flat hours x
  50 kWh x 0.65 = 157.50 + 162.50 = 320.00, x 30 = 9,600.00 CNY;
- by line (share of load energy): press 28,800/84,000 x 56,400 = 19,337.14 CNY,
  5.3714 CNY/pc; weld 21,600/84,000 x 56,400 = 14,502.86 CNY, 10.0714 CNY/pc.

Ledger: the certificate batch (18 GEC = 18 MWh, for June) is retired against June once;
the engine allocated exactly 18,000 kWh of it to June's hours; a second retirement is
refused, naming the first.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.accounts.test_footprint import JUNE_END, two_line_rows, two_line_toml
from tests.accounts.test_period import GRAM, JUNE_START, revised_table
from zerocarbon.accounts.cost import LineEnergy, monthly_bill
from zerocarbon.accounts.footprint import compute_footprints
from zerocarbon.accounts.ledger import retire, sync_instruments
from zerocarbon.accounts.period import compute_account, parse_period
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.storage.ledger import LedgerRefused

ZONE = "Asia/Shanghai"
CNY = Decimal("0.01")

TARIFF_TOML = """
[tariff]
surcharge_per_kwh = 0.05
export_price_per_kwh = 0.0
basis = "demand"
demand_price_per_kw_month = 40.0
demand_floor_share = 0.4

[tariff.prices]
peak = 1.00
flat = 0.60
valley = 0.30

[[tariff.seasons]]
name = "all year"
months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
valley = ["00-08"]
peak = ["08-11", "17-22"]
"""


def hand_month_site(tmp_path: Path) -> SiteConfig:
    """The two-product site with the tariff, the contracted demand and the revised
    factor table."""
    text = two_line_toml("units")
    text = text.replace("[grid]\n", "[grid]\ncontracted_demand_kw = 300.0\n", 1)
    revised = revised_table(tmp_path).as_posix()
    text = text.replace("[accounts]\n", f'[accounts]\nfactors_csv = "{revised}"\n', 1)
    return parse_site(tomllib.loads(text + TARIFF_TOML), "site.toml")


def quarter_hours() -> list[tuple[datetime, float]]:
    """June's 15-minute import demand: 100 kW, and 180 kW once (15 June 10:15 local)."""
    peak_at = datetime(2026, 6, 15, 10, 15, tzinfo=ZoneInfo(ZONE))
    buckets = [JUNE_START + timedelta(minutes=15 * k) for k in range(720 * 4)]
    return [(b, 180.0 if b == peak_at else 100.0) for b in buckets]


def test_the_month_by_hand_after_a_factor_revision(tmp_path: Path) -> None:
    site = hand_month_site(tmp_path)
    carbon, energy, lines = two_line_rows()

    account = compute_account(site, parse_period("2026-06", ZONE), carbon, energy, lines)
    grid = next(s for s in account.sources if s.id == "purchased_electricity:grid")
    assert grid.factor.value == 0.54 and grid.factor.revision == "2026-09/2023"
    assert grid.emissions_kg == pytest.approx(38_880.000, abs=GRAM)
    assert account.total_location_kg == pytest.approx(71_217.7594248, abs=GRAM)

    prints = {
        fp.product: fp
        for fp in compute_footprints(site, "2026-06", JUNE_START, JUNE_END, carbon, energy, lines)
    }
    assert prints["panel"].gate_to_gate_kg == pytest.approx(48_648.1138749, abs=GRAM)
    assert prints["panel"].per_unit(prints["panel"].gate_to_gate_kg) == pytest.approx(
        13.5133650, abs=1e-6
    )
    assert prints["frame"].gate_to_gate_kg == pytest.approx(22_569.6455499, abs=GRAM)
    total = prints["panel"].gate_to_gate_kg + prints["frame"].gate_to_gate_kg
    assert total == pytest.approx(account.total_location_kg, abs=GRAM)

    assert site.tariff is not None
    bill = monthly_bill(
        site.tariff,
        "2026-06",
        ZoneInfo(ZONE),
        carbon,
        quarter_hours(),
        site.grid.contracted_demand_kw,
        [LineEnergy("press", 28_800.0, 3_600.0), LineEnergy("weld", 21_600.0, 1_440.0)],
    )
    amounts = {line.item: line.amount_cny for line in bill.lines}
    assert amounts["energy_peak"] == Decimal("24000.00")
    assert amounts["energy_flat"] == Decimal("14400.00")
    assert amounts["energy_valley"] == Decimal("7200.00")
    assert amounts["surcharge"] == Decimal("3600.00")
    assert amounts["demand_charge"] == Decimal("7200.00")
    assert bill.total_cny == Decimal("56400.00")
    assert bill.pv_savings_cny == Decimal("9600.00")
    assert bill.peak is not None and bill.peak.demand_kw == 180.0
    by_line = {c.line: c for c in bill.line_costs}
    assert abs(by_line["press"].total_cny - Decimal("19337.14")) <= CNY
    assert by_line["press"].cost_per_unit_cny == Decimal("5.3714")
    assert abs(by_line["weld"].total_cny - Decimal("14502.86")) <= CNY
    assert by_line["weld"].cost_per_unit_cny == Decimal("10.0714")


async def test_the_months_certificates_are_retired_once(
    tmp_path: Path, pg_conn: asyncpg.Connection
) -> None:
    site = hand_month_site(tmp_path)
    await sync_instruments(pg_conn, site)
    first = await retire(
        pg_conn,
        "certificates.gec_june",
        period="2026-06",
        volume=18,
        retired_by="energy-manager",
        reason="June 2026 market-based Scope 2",
    )
    assert first.volume == Decimal(18)
    with pytest.raises(LedgerRefused, match="already retired: 18 MWh against 2026-06"):
        await retire(
            pg_conn,
            "certificates.gec_june",
            period="2026-06",
            volume=1,
            retired_by="someone else",
            reason="counted twice",
        )
