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
.. [3] GB/T 24067-2024 / ISO 14067:2018, "Carbon footprint of products": declared unit
   (6.3.3), system boundary (6.3.4), allocation (6.4.6), data quality (6.3.5).
.. [4] GB/T 2589-2020, "General principles for calculation of the comprehensive energy
   consumption": 1 kgce = 29 307.6 kJ; electricity 0.1229 kgce/kWh (calorific equivalent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from zerocarbon.config import SiteConfig

__all__ = [
    "ALLOCATION_KEYS",
    "DEFAULT_HEAT_FACTOR_T_PER_GJ",
    "LOGISTICS_DEFAULTS",
    "LOGISTICS_MODES",
    "SECTORS",
    "AccountsConfig",
    "Logistics",
    "Material",
    "Organisation",
    "ProcessEmission",
    "Product",
    "PurchasedHeat",
    "Scorecard",
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


# --- products (GB/T 24067-2024 / ISO 14067:2018) ---------------------------------------

ALLOCATION_KEYS = ("units", "mass", "energy")
LOGISTICS_MODES = ("road", "rail", "sea", "air", "inland_waterway")
DATA_SOURCES = ("supplier", "database", "estimate")

# Default transport intensities [kg CO2e/tonne-km] by mode: UK DESNZ/DEFRA "Greenhouse gas
# reporting: conversion factors 2024", sheet "Freighting goods" (road: HGV all diesel,
# average laden; rail: freight train; sea: container ship, average; air: freight,
# long-haul international, without radiative forcing). Check them against the published
# table before a declaration; a site sets ``factor_kg_co2e_per_tkm`` to override. The
# table has no inland-waterway factor, so that mode needs the site's own figure (e.g.
# from GLEC Framework v3 or ISO 14083 modelling).
LOGISTICS_DEFAULTS: dict[str, tuple[float, str]] = {
    "road": (0.10650, "UK DESNZ/DEFRA conversion factors 2024, HGV all diesel, average laden"),
    "rail": (0.02779, "UK DESNZ/DEFRA conversion factors 2024, freight train"),
    "sea": (0.01612, "UK DESNZ/DEFRA conversion factors 2024, container ship, average"),
    "air": (0.59, "UK DESNZ/DEFRA conversion factors 2024, air freight long-haul, no RF"),
}


class Material(_Frozen):
    """``[[accounts.products.materials]]``: a material going into one unit of product,
    with its cradle-to-gate factor and where that factor comes from."""

    material: Annotated[str, Field(min_length=1)]
    supplier: str = ""
    kg_per_unit: float = Field(ge=0)  # [kg of material / declared unit of product]
    factor_kg_co2e_per_kg: float = Field(ge=0)  # cradle-to-gate [kg CO2e/kg material]
    # "supplier EPD ...", "database ..." or "estimate ...": the first word is the kind
    source: Annotated[str, Field(min_length=1)]

    @field_validator("source")
    @classmethod
    def _kind(cls, value: str) -> str:
        first = value.split(maxsplit=1)[0].lower() if value.strip() else ""
        if first not in DATA_SOURCES:
            raise ValueError(
                f"source {value!r}: start with one of {', '.join(DATA_SOURCES)} "
                '(e.g. "supplier EPD S-P-01234", "database ecoinvent 3.10", "estimate")'
            )
        return value

    @property
    def kind(self) -> str:
        """The kind of source: "supplier", "database" or "estimate"."""
        return self.source.split(maxsplit=1)[0].lower()


class Logistics(_Frozen):
    """``[[accounts.products.logistics]]``: inbound transport per unit of product."""

    mode: Literal["road", "rail", "sea", "air", "inland_waterway"]
    tonne_km_per_unit: float = Field(ge=0)  # [t km / declared unit]
    factor_kg_co2e_per_tkm: float | None = Field(default=None, ge=0)  # None: the default
    source: str = ""  # of an override; empty: the default's source

    @model_validator(mode="after")
    def _has_factor(self) -> Logistics:
        if self.factor_kg_co2e_per_tkm is None and self.mode not in LOGISTICS_DEFAULTS:
            raise ValueError(
                f"mode {self.mode!r} has no default factor; set factor_kg_co2e_per_tkm "
                "and its source"
            )
        return self

    @property
    def factor(self) -> tuple[float, str]:
        """The factor [kg CO2e/t km] and its source."""
        if self.factor_kg_co2e_per_tkm is not None:
            return self.factor_kg_co2e_per_tkm, self.source or "site file"
        return LOGISTICS_DEFAULTS[self.mode]


class Product(_Frozen):
    """``[[accounts.products]]``: the product of one production line (one product per
    line: two products on one line would need batch records, not modelled)."""

    id: _ID
    line: str  # a [[lines]] id
    name: Annotated[str, Field(min_length=1)]
    unit: Annotated[str, Field(min_length=1)]  # the declared unit, e.g. "pcs", "t"
    mass_kg_per_unit: float | None = Field(default=None, gt=0)  # [kg / declared unit]
    # key sharing the site-level emissions (unmetered load, site fuels, process emissions
    # not on a line, net heat) among the products' lines (ISO 14067:2018 6.4.6)
    allocation: Literal["units", "mass", "energy"] = "energy"
    materials: tuple[Material, ...] = ()
    logistics: tuple[Logistics, ...] = ()
    # the product's energy consumption limit (GB 3xxxx-20xx, Level 1) [kgce/unit]
    energy_limit_kgce_per_unit: float | None = Field(default=None, gt=0)
    limit_standard: str = ""  # e.g. "GB 3xxxx-20xx Level 1"

    @model_validator(mode="after")
    def _limit_has_standard(self) -> Product:
        if self.energy_limit_kgce_per_unit is not None and not self.limit_standard.strip():
            raise ValueError(
                f"{self.id}: energy_limit_kgce_per_unit needs limit_standard, the standard "
                'and level it comes from (e.g. "GB 3xxxx-20xx Level 1")'
            )
        return self


class Scorecard(_Frozen):
    """``[accounts.scorecard]``: the thresholds of the zero-carbon factory indicators, each
    with the document it comes from. A threshold left unset is not assessed."""

    renewable_share_min: float | None = Field(default=None, ge=0, le=1)  # [-]
    renewable_share_source: str = ""
    electrification_share_min: float | None = Field(default=None, ge=0, le=1)  # [-]
    electrification_share_source: str = ""
    base_year: int | None = Field(default=None, ge=2000, le=2100)
    base_year_t_co2: float | None = Field(default=None, gt=0)  # [t CO2/year], GB/T 32150 E
    reduction_target_share: float | None = Field(default=None, ge=0, le=1)  # [-]
    reduction_target_source: str = ""
    # the document of the offsets rule (offsets only after the reduction target is met)
    offsets_rule_source: str = ""

    @model_validator(mode="after")
    def _sources(self) -> Scorecard:
        for key in ("renewable_share", "electrification_share"):
            if getattr(self, f"{key}_min") is not None and not getattr(self, f"{key}_source"):
                raise ValueError(f"{key}_min needs {key}_source, the document it comes from")
        if self.reduction_target_share is not None:
            if self.base_year is None or self.base_year_t_co2 is None:
                raise ValueError("reduction_target_share needs base_year and base_year_t_co2")
            if not self.reduction_target_source:
                raise ValueError(
                    "reduction_target_share needs reduction_target_source, the document"
                )
        return self


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
    products: tuple[Product, ...] = ()  # [[accounts.products]]: one per line
    scorecard: Scorecard = Scorecard()  # [accounts.scorecard]

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
        products = [p.id for p in self.products]
        if len(set(products)) != len(products):
            raise ValueError(f"products: ids must be unique, got {products}")
        lines = [p.line for p in self.products]
        if len(set(lines)) != len(lines):
            raise ValueError(
                f"products: one product per line (got lines {lines}); two products on one "
                "line would need batch records"
            )
        keys = sorted({p.allocation for p in self.products})
        if len(keys) > 1:
            raise ValueError(
                f"products: every product must declare the same allocation key (got {keys}): "
                "the key shares site-level emissions among all the products' lines"
            )
        if keys == ["mass"]:
            missing = [p.id for p in self.products if p.mass_kg_per_unit is None]
            if missing:
                raise ValueError(f"products {missing}: allocation 'mass' needs mass_kg_per_unit")
        sc = self.scorecard
        if (
            sc.base_year is not None
            and self.base_year is not None
            and sc.base_year != self.base_year
        ):
            raise ValueError(
                f"scorecard.base_year {sc.base_year} differs from accounts.base_year "
                f"{self.base_year}"
            )
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
    for i, prod in enumerate(site.accounts.products):
        if prod.line not in lines:
            raise ValueError(
                f"accounts.products[{i}].line: no production line {prod.line!r} "
                f"(the site's lines: {lines})"
            )
