"""Grid electricity emission factors shipped with the package.

China's MEE publishes, per data year, a national average factor, regional grid
factors and a national factor excluding market-traded non-fossil electricity; the
last is the residual mix used for market-based Scope 2 (GHG Protocol Scope 2 Guidance,
2015, ch. 6.11: residual mix). Values and their sources live in
``data/grid_emission_factors_cn.csv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FACTORS_CSV = Path(__file__).parent / "data" / "grid_emission_factors_cn.csv"

NATIONAL = "national"  # region name meaning "the national average factor"
RESIDUAL_SCOPE = "national_excl_market_nonfossil"


@dataclass(frozen=True, slots=True)
class GridFactors:
    """The two factors Scope 2 accounting needs for one region and data year [kg/kWh]."""

    region: str
    data_year: int
    location_kg_per_kwh: float  # regional (or national) average grid factor
    market_kg_per_kwh: float  # residual mix for energy not covered by instruments


@cache
def _table() -> dict[tuple[int, str, str], float]:
    rows: dict[tuple[int, str, str], float] = {}
    with FACTORS_CSV.open(encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))
        for row in csv.DictReader(lines):
            key = (int(row["data_year"]), row["scope"], row["region"])
            rows[key] = float(row["factor_kg_per_kwh"])
    return rows


def known_regions() -> list[str]:
    return sorted({r for (_y, s, r) in _table() if s == "regional"} | {NATIONAL})


def known_years() -> list[int]:
    return sorted({y for (y, _s, _r) in _table()})


def location_factor(region: str, data_year: int) -> float:
    """Location-based grid factor for a regional grid (or ``national``) [kg CO2/kWh]."""
    table = _table()
    key = (
        (data_year, "national_average", "CN")
        if region == NATIONAL
        else (
            data_year,
            "regional",
            region,
        )
    )
    if key not in table:
        years = [y for (y, s, r) in table if (s, r) == key[1:]]
        raise KeyError(
            f"no location factor for region {region!r} and data year {data_year}; "
            f"regions: {', '.join(known_regions())}; years with this region: {sorted(years)}"
        )
    return table[key]


def residual_factor(data_year: int) -> float:
    """Market-based residual-mix factor for a data year [kg CO2/kWh]."""
    key = (data_year, RESIDUAL_SCOPE, "CN")
    table = _table()
    if key not in table:
        years = sorted(y for (y, s, _r) in table if s == RESIDUAL_SCOPE)
        raise KeyError(f"no residual-mix factor for data year {data_year}; years: {years}")
    return table[key]


def grid_factors(
    region: str,
    data_year: int,
    location_override: float | None = None,
    market_override: float | None = None,
) -> GridFactors:
    """Factors for a site, with optional user overrides [kg CO2/kWh]."""
    loc = location_override if location_override is not None else location_factor(region, data_year)
    mkt = market_override if market_override is not None else residual_factor(data_year)
    return GridFactors(region, data_year, loc, mkt)
