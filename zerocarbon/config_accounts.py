"""``[accounts]`` of the site file: what the period accounts (GB/T 32150) need beyond the
meters: the reporting organisation and its boundary, the sector guide, declared process
emissions, purchased heat, the base year and an optional factor table.

The cross-checks against the rest of the site (lines named by process emissions) are in
:func:`check_accounts`, which ``SiteConfig``'s validator calls.

References
----------
.. [1] GB/T 32150-2015, "General guideline of greenhouse gas emissions accounting and
   reporting for industrial enterprises": boundary (clause 5), sources (clause 6).
.. [2] GB/T 32151.1-12 (2015), the sector parts ("requirements of the greenhouse gas
   emissions accounting and reporting" for each sector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from zerocarbon.config import SiteConfig

__all__ = [
    "DEFAULT_HEAT_FACTOR_T_PER_GJ",
    "SECTORS",
    "AccountsConfig",
    "Organisation",
    "ProcessEmission",
    "PurchasedHeat",
    "SectorGuide",
    "check_accounts",
]

# Default CO2 factor of purchased (and exported) heat, 0.11 t CO2/GJ: the value the NDRC
# enterprise accounting guidelines (2013-2015) and the GB/T 32151 sector parts give for
# heat ("暂按 0.11 tCO2/GJ") where the supplier gives none. GB/T 32150-2015 itself asks
# for the factor of the heat supplier or the competent authority; check your copy.
DEFAULT_HEAT_FACTOR_T_PER_GJ = 0.11


@dataclass(frozen=True, slots=True)
class SectorGuide:
    """A sector's accounting standard and the process sources it adds to GB/T 32150's
    combustion, purchased electricity and heat."""

    standard: str
    title: str
    process_sources: tuple[str, ...]


# Summarised from the scopes of the sector parts; a site declares the figures it has in
# [[accounts.process_emissions]]. "machinery" has no GB/T 32151 part of 2015: its guide is
# the NDRC's third-batch guideline for machinery and equipment manufacturers.
SECTORS: dict[str, SectorGuide] = {
    "power_generation": SectorGuide(
        "GB/T 32151.1-2015", "发电企业 (power generation)", ("flue-gas desulfurisation carbonate",)
    ),
    "power_grid": SectorGuide(
        "GB/T 32151.2-2015",
        "电网企业 (power grid)",
        ("SF6 from switchgear", "transmission and distribution losses"),
    ),
    "magnesium": SectorGuide(
        "GB/T 32151.3-2015", "镁冶炼企业 (magnesium smelting)", ("dolomite calcination",)
    ),
    "aluminium": SectorGuide(
        "GB/T 32151.4-2015",
        "铝冶炼企业 (aluminium smelting)",
        ("anode consumption", "PFCs from anode effects", "carbonate decomposition"),
    ),
    "steel": SectorGuide(
        "GB/T 32151.5-2015",
        "钢铁生产企业 (iron and steel)",
        ("flux carbonate decomposition", "electrodes", "carbon in purchased pig iron and alloys"),
    ),
    "civil_aviation": SectorGuide("GB/T 32151.6-2015", "民用航空企业 (civil aviation)", ()),
    "flat_glass": SectorGuide(
        "GB/T 32151.7-2015",
        "平板玻璃生产企业 (flat glass)",
        ("carbonate decomposition of raw materials",),
    ),
    "cement": SectorGuide(
        "GB/T 32151.8-2015",
        "水泥生产企业 (cement)",
        ("clinker calcination", "organic carbon of raw meal"),
    ),
    "ceramics": SectorGuide(
        "GB/T 32151.9-2015",
        "陶瓷生产企业 (ceramics)",
        ("carbonate decomposition of raw materials",),
    ),
    "chemicals": SectorGuide(
        "GB/T 32151.10-2015",
        "化工生产企业 (chemicals)",
        ("carbon of feedstock not in products", "carbonate use", "N2O from nitric/adipic acid"),
    ),
    "coal_mining": SectorGuide(
        "GB/T 32151.11-2015",
        "煤炭生产企业 (coal mining)",
        ("CH4 from mining", "CO2 and CH4 escaping after mining", "coal gangue combustion"),
    ),
    "textiles": SectorGuide(
        "GB/T 32151.12-2015",
        "纺织服装企业 (textiles and garments)",
        ("CH4 from anaerobic wastewater treatment",),
    ),
    "machinery": SectorGuide(
        "NDRC guideline for machinery and equipment manufacturers (2015, third batch)",
        "机械设备制造企业 (machinery and equipment)",
        ("CO2 from gas-shielded welding", "SF6/HFCs/PFCs from electrical equipment making"),
    ),
}

_ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
# unified social credit code (GB 32100-2015): 18 characters, no I, O, Z, S, V
_CREDIT_CODE = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Organisation(_Frozen):
    """The reporting entity (GB/T 32150-2015 clause 3: 报告主体)."""

    name: Annotated[str, Field(min_length=1)]
    credit_code: Annotated[str, Field(pattern=_CREDIT_CODE)] | None = None


class ProcessEmission(_Frozen):
    """A declared process emission ([[accounts.process_emissions]]): a fixed amount per
    month, or an amount per unit of a production line's output."""

    id: _ID
    source: Annotated[str, Field(min_length=1)]  # what emits, e.g. "CO2 shielding gas"
    t_co2_per_month: float | None = Field(default=None, ge=0)  # [t CO2/month]
    t_co2_per_unit: float | None = Field(default=None, ge=0)  # [t CO2/unit of the line]
    line: str | None = None  # [[lines]] id whose output t_co2_per_unit scales with
    method: str = ""  # how the figure was obtained: document, calculation, measurement

    @model_validator(mode="after")
    def _one_basis(self) -> ProcessEmission:
        if (self.t_co2_per_month is None) == (self.t_co2_per_unit is None):
            raise ValueError(f"{self.id}: set exactly one of t_co2_per_month, t_co2_per_unit")
        if self.t_co2_per_unit is not None and self.line is None:
            raise ValueError(f"{self.id}: t_co2_per_unit needs the line whose output it scales")
        if self.t_co2_per_month is not None and self.line is not None:
            raise ValueError(f"{self.id}: line only goes with t_co2_per_unit")
        return self


class PurchasedHeat(_Frozen):
    """``[accounts.heat]``: heat (steam, hot water) bought and sold across the boundary.

    There is no heat metric in :mod:`zerocarbon.metering.metrics`, so the amounts are
    declared per month (from the supplier's bills).
    """

    gj_per_month: float = Field(default=0.0, ge=0)  # purchased [GJ/month]
    exported_gj_per_month: float = Field(default=0.0, ge=0)  # sold outside [GJ/month]
    factor_t_co2_per_gj: float = Field(default=DEFAULT_HEAT_FACTOR_T_PER_GJ, ge=0)
    factor_source: str = ""  # empty: the default's source


class AccountsConfig(_Frozen):
    """``[accounts]``: what the period accounts (GB/T 32150) need beyond the meters."""

    organisation: Organisation | None = None
    boundary: str = ""  # the organisational boundary, e.g. "operational control: ..."
    sector: str | None = None  # a key of SECTORS (GB/T 32151 part or sector guideline)
    process_emissions: tuple[ProcessEmission, ...] = ()
    heat: PurchasedHeat | None = None
    base_year: int | None = Field(default=None, ge=2000, le=2100)  # for reduction tracking
    # a grid factor table to use instead of the shipped one (same CSV format, with its
    # own "Version:" line); relative to the site file
    factors_csv: str | None = None
    # "site": the factors of [grid] data_year; "latest": the newest data year of the
    # table not after the period (a provisional factor until MEE publishes the period's)
    factor_year: Literal["site", "latest"] = "site"

    @field_validator("sector")
    @classmethod
    def _known_sector(cls, value: str | None) -> str | None:
        if value is not None and value not in SECTORS:
            raise ValueError(f"unknown sector {value!r}; sectors: {', '.join(sorted(SECTORS))}")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> AccountsConfig:
        ids = [p.id for p in self.process_emissions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"process_emissions: ids must be unique, got {ids}")
        return self

    @property
    def sector_guide(self) -> SectorGuide | None:
        return None if self.sector is None else SECTORS[self.sector]


def check_accounts(site: SiteConfig) -> None:
    """Check ``[accounts]`` against the rest of the site.

    Raises
    ------
    ValueError
        Naming the key path: ``accounts.process_emissions[0].line: no production line
        'press' (the site's lines: [...])``.
    """
    lines = [ln.id for ln in site.lines]
    for i, p in enumerate(site.accounts.process_emissions):
        if p.line is not None and p.line not in lines:
            raise ValueError(
                f"accounts.process_emissions[{i}].line: no production line {p.line!r} "
                f"(the site's lines: {lines})"
            )
