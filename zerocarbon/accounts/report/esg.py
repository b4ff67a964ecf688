"""The period's figures mapped to ESG disclosure fields: GRI 302 and 305 and IFRS S2.

Each field has the standard's id and title, its value, unit and how it is computed from
the account (:class:`zerocarbon.accounts.period.Account`). References, with the
paragraph numbers as published:

- GRI 302: Energy 2016, Disclosure 302-1 (energy consumption within the organization,
  with the formula of its clause 2.1) and 302-3 (energy intensity);
- GRI 305: Emissions 2016, Disclosures 305-1 (direct, Scope 1), 305-2 (energy indirect,
  Scope 2: location-based, and market-based where applicable, 305-2-a and 305-2-b),
  305-4 (GHG emissions intensity) and 305-5 (reduction of GHG emissions);
- IFRS S2 Climate-related Disclosures (ISSB, June 2023), paragraph 29(a)(i)(1)-(3)
  (absolute gross Scope 1, 2 and 3 emissions, in metric tonnes of CO2 equivalent) and
  29(a)(v) (location-based Scope 2, and information about contractual instruments
  necessary to understand the Scope 2 emissions).

Emissions are CO2, the only gas GB/T 32150 accounts here: t CO2 = t CO2e. Energy is in
GJ; 1 kWh = 0.0036 GJ (exact). Scope 3 is not measured and reported as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zerocarbon.accounts.period import Account
from zerocarbon.carbon_engine.fuels import fuel_parameters
from zerocarbon.config import SiteConfig

__all__ = ["GJ_PER_KWH", "EsgField", "esg_fields", "fuel_energy_gj"]

GJ_PER_KWH = 0.0036  # 1 kWh = 3.6 MJ


@dataclass(frozen=True, slots=True)
class EsgField:
    """One disclosure field: ``value`` None means not reported (``how`` says why)."""

    id: str  # e.g. "GRI 305-2-a", "IFRS S2 29(a)(v)"
    title_en: str
    title_zh: str
    value: float | None
    unit: str
    how: str  # how the value is computed from the account


def fuel_energy_gj(site: SiteConfig, account: Account) -> tuple[float, list[str]]:
    """Energy of the fuels burnt [GJ]: each combustion source's activity x the fuel's
    net calorific value (GB/T 32150-2015 Table B.1 or the site's override); fuel metered
    in litres is converted with the fuel's density. Returns the sum and the sources that
    could not be converted (no NCV basis matching the unit)."""
    fuels = {d.id: d.fuel for d in site.devices if d.fuel is not None}
    total: list[float] = []
    missing: list[str] = []
    for s in account.sources:
        if s.category != "combustion":
            continue
        device = s.id.split(":")[1]
        fuel = fuels.get(device)
        if fuel is None:
            missing.append(s.id)
            continue
        p = fuel_parameters(site, fuel, device)
        if s.activity_unit == "l" and p.density_kg_per_l is not None:
            total.append(s.activity * p.density_kg_per_l * p.ncv_gj_per_unit)
        elif p.basis is None or p.basis == s.activity_unit:
            total.append(s.activity * p.ncv_gj_per_unit)
        else:
            missing.append(s.id)
    return math.fsum(total), missing


def esg_fields(
    site: SiteConfig,
    account: Account,
    production_units: float,
    base_account: Account | None = None,
) -> tuple[EsgField, ...]:
    """The disclosure fields of the period (see the module docstring for the standards).

    Parameters
    ----------
    site : SiteConfig
        For the fuels' calorific values.
    account : Account
        The period's account.
    production_units : float
        Output of the period [units] (the denominator of the intensities).
    base_account : Account, optional
        The account of the same period of the base year (``[accounts] base_year``), for
        GRI 305-5; without it the reduction is not reported.
    """
    e = account.energy
    fuel_gj, unconverted = fuel_energy_gj(site, account)
    heat_in_gj = math.fsum(s.activity for s in account.sources if s.category == "purchased_heat")
    heat_out_gj = math.fsum(s.activity for s in account.sources if s.category == "exported_heat")
    import_gj = e["grid_import_kwh"] * GJ_PER_KWH
    self_gen_gj = (e["pv_kwh"] + e["wind_kwh"]) * GJ_PER_KWH
    sold_gj = e["grid_export_kwh"] * GJ_PER_KWH
    total_gj = math.fsum([fuel_gj, import_gj, self_gen_gj, heat_in_gj, -sold_gj, -heat_out_gj])
    scope1_t = account.scope1_kg / 1000.0
    s2_loc_t = account.scope2_location_kg / 1000.0
    s2_mkt_t = account.scope2_market_kg / 1000.0
    per_unit = production_units if production_units > 0 else None
    fuel_how = "sum of each fuel's activity x its NCV (GB/T 32150 Table B.1)"
    if unconverted:
        fuel_how += f"; not converted (no NCV for the unit): {', '.join(unconverted)}"
    reduction: float | None = None
    red_how = (
        "not reported: no account of the same period of the base year"
        if account.base_year is None or base_account is None
        else f"base year {account.base_year} (same period) Scope 1 + location-based Scope 2 "
        "minus this period's"
    )
    if base_account is not None:
        base_t = (base_account.scope1_kg + base_account.scope2_location_kg) / 1000.0
        reduction = base_t - (scope1_t + s2_loc_t)
    instruments_kwh = e["green_contract_kwh"] + e["certificate_kwh"]
    return (
        EsgField(
            "GRI 302-1-a",
            "Fuel consumption from non-renewable sources",
            "不可再生燃料消耗量",
            fuel_gj,
            "GJ",
            fuel_how,
        ),
        EsgField(
            "GRI 302-1-c-i",
            "Electricity consumption",
            "电力消耗量",
            e["load_kwh"] * GJ_PER_KWH,
            "GJ",
            "site load kWh (import - export + PV + wind + battery discharge - charge) x 0.0036",
        ),
        EsgField(
            "GRI 302-1-c-ii",
            "Heating consumption (purchased heat)",
            "热力消耗量（外购热力）",
            heat_in_gj,
            "GJ",
            "[accounts.heat] gj_per_month x months",
        ),
        EsgField(
            "GRI 302-1-d-i",
            "Electricity sold",
            "售出电力",
            sold_gj,
            "GJ",
            "grid export kWh x 0.0036",
        ),
        EsgField(
            "GRI 302-1-d-ii",
            "Heating sold",
            "售出热力",
            heat_out_gj,
            "GJ",
            "[accounts.heat] exported_gj_per_month x months",
        ),
        EsgField(
            "GRI 302-1-e",
            "Total energy consumption within the organization",
            "组织内部能源消耗总量",
            total_gj,
            "GJ",
            "GRI 302-1 clause 2.1: fuel + purchased electricity (import) + self-generated "
            "renewable electricity (PV, wind) + purchased heat - electricity sold - heat sold",
        ),
        EsgField(
            "GRI 302-3",
            "Energy intensity ratio",
            "能源强度",
            total_gj / per_unit if per_unit else None,
            "GJ/unit",
            "GRI 302-1-e / units produced (within the organization)",
        ),
        EsgField(
            "GRI 305-1",
            "Direct (Scope 1) GHG emissions",
            "直接（范围一）温室气体排放",
            scope1_t,
            "t CO2e",
            "GB/T 32150 combustion + process emissions (CO2)",
        ),
        EsgField(
            "GRI 305-2-a",
            "Energy indirect (Scope 2) GHG emissions, location-based",
            "能源间接（范围二）温室气体排放（基于位置）",
            s2_loc_t,
            "t CO2e",
            "grid import x MEE grid factor + purchased heat x heat factor",
        ),
        EsgField(
            "GRI 305-2-b",
            "Energy indirect (Scope 2) GHG emissions, market-based",
            "能源间接（范围二）温室气体排放（基于市场）",
            s2_mkt_t,
            "t CO2e",
            "grid import not covered hour by hour by green-power contracts and certificates "
            "x residual-mix factor, + purchased heat (GHG Protocol Scope 2 Guidance ch. 6)",
        ),
        EsgField(
            "GRI 305-4",
            "GHG emissions intensity ratio (Scope 1 + 2, location-based)",
            "温室气体排放强度（范围一+二，基于位置）",
            (scope1_t + s2_loc_t) / per_unit if per_unit else None,
            "t CO2e/unit",
            "(GRI 305-1 + GRI 305-2-a) / units produced",
        ),
        EsgField(
            "GRI 305-5",
            "Reduction of GHG emissions",
            "温室气体减排量",
            reduction,
            "t CO2e",
            red_how,
        ),
        EsgField(
            "IFRS S2 29(a)(i)(1)",
            "Absolute gross Scope 1 GHG emissions",
            "范围一温室气体排放总量",
            scope1_t,
            "t CO2e",
            "= GRI 305-1",
        ),
        EsgField(
            "IFRS S2 29(a)(i)(2)",
            "Absolute gross Scope 2 GHG emissions",
            "范围二温室气体排放总量",
            s2_loc_t,
            "t CO2e",
            "location-based, = GRI 305-2-a",
        ),
        EsgField(
            "IFRS S2 29(a)(i)(3)",
            "Absolute gross Scope 3 GHG emissions",
            "范围三温室气体排放总量",
            None,
            "t CO2e",
            "not reported: Scope 3 is not measured by this system",
        ),
        EsgField(
            "IFRS S2 29(a)(v)",
            "Location-based Scope 2 GHG emissions",
            "基于位置的范围二温室气体排放",
            s2_loc_t,
            "t CO2e",
            "= GRI 305-2-a",
        ),
        EsgField(
            "IFRS S2 29(a)(v) instruments",
            "Contractual instruments: electricity covered (green-power contracts, GECs)",
            "合同工具：绿电交易与绿证覆盖电量",
            instruments_kwh,
            "kWh",
            "hourly matched green-power contract + certificate kWh; market-based Scope 2 "
            "with them: GRI 305-2-b",
        ),
    )
