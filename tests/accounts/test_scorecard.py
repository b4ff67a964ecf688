"""The zero-carbon scorecard of the hand-computed June 2026 (tests/accounts/test_footprint.py:
two products on two lines), each indicator met and not met at thresholds on either side.

By hand:
- renewable share: PV consumed 240 h x 50 = 12,000 kWh (no export) + contract 7,200 +
  certificates 18,000 = 37,200 kWh over the load 84,000 kWh = 0.442857143.
- electrification: electricity 84,000 kWh x 3.6 = 302,400 MJ; natural gas 7,200 Nm3 x
  38.931 MJ/Nm3 (GB/T 32150 Table B.1: 389.31 GJ/10^4 Nm3) = 280,303.2 MJ; net heat
  (120 - 10) GJ = 110,000 MJ; 302,400 / 692,703.2 = 0.436550603.
- energy per pc of panel (units key, 5/7): electricity 28,800 + 5/7 x 33,600 unmetered
  = 52,800 kWh x 0.1229 = 6,489.12 kgce; (5/7 x 280,303.2 + 5/7 x 110,000) MJ
  = 278,788.0 MJ / 29.3076 = 9,512.4814 kgce; 16,001.6014041 kgce / 3,600 pcs
  = 4.444889279 kgce/pc. By mass (4/9): 43,733.3333 kWh x 0.1229 + 4/9 x 390,303.2 /
  29.3076 = 11,293.7039848 kgce / 3,600 = 3.137139996 kgce/pc.
- own reduction: E = 71.9377594248 t; base year 1,000 t/year, one month 83.3333 t;
  1 - 71.9377594248 x 12 / 1,000 = 0.136746887.
"""

from __future__ import annotations

import tomllib

import pytest

from tests.accounts.test_footprint import two_line_rows, two_line_site, two_line_toml
from zerocarbon.accounts.period import AccountsError, parse_period
from zerocarbon.accounts.scorecard import (
    KGCE_PER_KWH,
    MJ_PER_KGCE,
    Scorecard,
    compute_scorecard,
    kgce,
    month_labels,
)
from zerocarbon.config import parse_site

ZONE = "Asia/Shanghai"
JUNE = parse_period("2026-06", ZONE)
GRAM_KGCE = 1e-6  # [kgce]


def card(key: str = "units", offsets_t: float = 0.0, **thresholds: float) -> Scorecard:
    site = two_line_site(key, **thresholds)
    carbon, energy, lines = two_line_rows()
    return compute_scorecard(site, JUNE, carbon, energy, lines, offsets_t=offsets_t)


def test_gbt_2589_conversions() -> None:
    assert (KGCE_PER_KWH, MJ_PER_KGCE) == (0.1229, 29.3076)
    # 860 kcal/kWh / 7,000 kcal/kgce = 0.122857 kgce/kWh, tabulated 0.1229
    assert 860 / 7000 == pytest.approx(KGCE_PER_KWH, abs=5e-5)
    assert MJ_PER_KGCE == pytest.approx(7000 * 4.1868 / 1000, abs=1e-9)
    assert kgce(1000.0, 29_307.6) == pytest.approx(122.9 + 1000.0, abs=1e-9)


def test_values_of_june_by_hand() -> None:
    sc = card()
    assert sc.indicator("renewable_share").value == pytest.approx(37_200 / 84_000, abs=1e-12)
    detail = sc.indicator("renewable_share").detail
    assert (detail["onsite_consumed_kwh"], detail["certificate_kwh"]) == (12_000.0, 18_000.0)
    elec = sc.indicator("electrification_share")
    assert elec.value == pytest.approx(0.436550603, abs=1e-9)
    assert elec.detail["fuels_mj"] == pytest.approx(280_303.2, abs=1e-6)
    assert elec.detail["net_heat_mj"] == 110_000.0
    panel = sc.indicator("energy_per_unit:panel")
    assert panel.detail["kgce"] == pytest.approx(16_001.6014041, abs=GRAM_KGCE)
    assert panel.value == pytest.approx(4.444889279, abs=1e-9)
    assert panel.unit == "kgce/pcs" and panel.source == "GB 3xxxx-20xx Level 1 (example)"
    frame = sc.indicator("energy_per_unit:frame")
    assert frame.threshold is None and frame.met is None  # no limit declared: not assessed
    red = sc.indicator("own_reduction")
    assert red.value == pytest.approx(0.136746887, abs=1e-9)
    assert red.detail["baseline_t_co2"] == pytest.approx(1000 / 12, abs=1e-12)
    assert sc.total_location_t == pytest.approx(71.9377594248, abs=1e-6)


def test_energy_per_unit_follows_the_allocation_key() -> None:
    panel = card("mass").indicator("energy_per_unit:panel")
    assert panel.value == pytest.approx(3.137139996, abs=1e-9)
    assert panel.detail["allocation_key"] == "mass"


@pytest.mark.parametrize(
    ("indicator", "thresholds", "met"),
    [
        ("renewable_share", {"renew": 0.44}, True),
        ("renewable_share", {"renew": 0.45}, False),
        ("electrification_share", {"elec": 0.43}, True),
        ("electrification_share", {"elec": 0.44}, False),
        ("energy_per_unit:panel", {"limit_panel": 4.45}, True),
        ("energy_per_unit:panel", {"limit_panel": 4.44}, False),
        ("own_reduction", {"reduction": 0.13}, True),
        ("own_reduction", {"reduction": 0.14}, False),
    ],
)
def test_each_indicator_on_both_sides_of_its_threshold(
    indicator: str, thresholds: dict[str, float], met: bool
) -> None:
    sc = card("units", 0.0, **thresholds)
    ind = sc.indicator(indicator)
    assert ind.met is met
    assert ind.source  # the document the threshold comes from
    if not met:
        assert sc.all_met is False


def test_all_met_at_lenient_thresholds() -> None:
    sc = card(renew=0.4, elec=0.4, limit_panel=5.0, reduction=0.1)
    assert sc.all_met is True and sc.flags == ()


def test_offsets_before_reductions_are_flagged() -> None:
    early = card(offsets_t=5.0, reduction=0.2)
    rule = early.indicator("offsets_after_reductions")
    assert rule.value == 5.0 and rule.met is False
    assert early.flags == ("offsets before reductions",)
    assert early.to_json()["net_after_offsets_t"] == pytest.approx(71.9377594248 - 5.0, abs=1e-6)
    after = card(offsets_t=5.0, reduction=0.1)
    assert after.indicator("offsets_after_reductions").met is True and after.flags == ()
    none = card(offsets_t=0.0, reduction=0.2)
    assert none.indicator("offsets_after_reductions").met is True
    assert none.indicator("own_reduction").met is False


def test_month_labels() -> None:
    assert month_labels("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    with pytest.raises(AccountsError, match="before start"):
        month_labels("2026-07", "2026-01")
    with pytest.raises(AccountsError, match="expected a month"):
        month_labels("2026-Q1", "2026-07")


def test_offsets_without_a_reduction_target_cannot_be_judged() -> None:
    data = tomllib.loads(two_line_toml())
    for key in ("reduction_target_share", "reduction_target_source"):
        del data["accounts"]["scorecard"][key]
    site = parse_site(data, "site.toml")
    carbon, energy, lines = two_line_rows()
    sc = compute_scorecard(site, JUNE, carbon, energy, lines, offsets_t=5.0)
    assert sc.indicator("own_reduction").met is None
    rule = sc.indicator("offsets_after_reductions")
    assert rule.met is None
    assert rule.flags == ("offsets used; no reduction target to judge them by",)
