"""The zero-carbon factory scorecard: each indicator with its value, the configured
threshold and the document it comes from, met or not; pure computation, no database.

Indicators (``[accounts.scorecard]`` and ``[[accounts.products]]``):

``renewable_share``
    Renewable share of electricity consumed: (on-site PV and wind consumed + green-power
    contracts + green electricity certificates, as matched hour by hour by the engine)
    / electricity consumed (the site load). On-site generation consumed is, each hour,
    ``max(pv + wind - export, 0)``. Met if >= ``renewable_share_min``.
``electrification_share``
    Electricity over final energy consumed, by calorific equivalent: electricity at
    3.6 MJ/kWh, fuels by their net calorific value (GB/T 32150-2015 Table B.1 or
    ``[fuels]``), net purchased heat (purchased - exported) as declared. Met if >=
    ``electrification_share_min``.
``energy_per_unit:<product>``
    Comprehensive energy consumption per declared unit [kgce/unit] by GB/T 2589-2020:
    the line's electricity and fuels plus its allocated share (the footprint's key) of
    the unmetered load, site fuels and net heat; electricity at its calorific equivalent
    0.1229 kgce/kWh, fuels and heat at 1 kgce = 29.3076 MJ. Met if <= the product's
    ``energy_limit_kgce_per_unit`` (the limit standard the site declares, e.g. its
    Level 1 value).
``own_reduction``
    ``1 - E / (base_year_t_co2 x months / 12)``, E the period's GB/T 32150 total
    (location-based, exports deducted): own reductions against the base year, pro rata
    to the period's months. Met if >= ``reduction_target_share``.
``offsets_after_reductions``
    Offsets (CCER and allowances retired against the period in the ledger; certificates
    and green-power contracts count as renewable electricity above, never as offsets)
    may only come after reductions: met if none were used or the own reduction target is
    met; not met (flagged "offsets before reductions") otherwise.

References
----------
.. [1] "Guiding Opinions on the Development of Zero-Carbon Factories" (five ministries,
   January 2026): the indicators; the thresholds are the site's, each with its
   ``source`` naming the document it comes from.
.. [2] GB/T 2589-2020, "General principles for calculation of the comprehensive energy
   consumption": 1 kgce = 29 307.6 kJ (7 000 kcal x 4.1868 kJ/kcal); electricity,
   calorific equivalent, 0.1229 kgce/kWh (860 kcal/kWh / 7 000 kcal/kgce = 0.12286, as
   the standard tabulates it; 3.6 MJ/kWh / 29.3076 MJ/kgce would give 0.12284).
.. [3] GB/T 32150-2015 clause 6, formula (1) (the period's total E).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zerocarbon.accounts.footprint import compute_footprints, fuel_mj_per_unit
from zerocarbon.accounts.period import (
    Account,
    AccountsError,
    FactorTable,
    Period,
    compute_account,
)
from zerocarbon.carbon_engine.fuels import FUEL_METRICS
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

__all__ = [
    "KGCE_PER_KWH",
    "MJ_PER_KGCE",
    "MJ_PER_KWH",
    "Indicator",
    "Scorecard",
    "compute_scorecard",
    "kgce",
    "month_labels",
]

MAX_TREND_MONTHS = 120

KGCE_PER_KWH = 0.1229  # GB/T 2589-2020, electricity, calorific equivalent [kgce/kWh]
MJ_PER_KGCE = 29.3076  # GB/T 2589-2020, 1 kgce = 29 307.6 kJ [MJ/kgce]
MJ_PER_KWH = 3.6  # calorific equivalent of electricity [MJ/kWh]
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def kgce(electricity_kwh: float, heat_mj: float) -> float:
    """Standard coal equivalent [kgce] of electricity [kWh] and of fuels or heat [MJ]
    (GB/T 2589-2020: 0.1229 kgce/kWh; 29.3076 MJ/kgce)."""
    return electricity_kwh * KGCE_PER_KWH + heat_mj / MJ_PER_KGCE


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator of the scorecard."""

    id: str
    name: str
    value: float | None  # None: no data in the period
    unit: str
    threshold: float | None  # None: not configured, not assessed
    comparison: str  # ">=" or "<="
    source: str  # the document the threshold comes from
    met: bool | None  # None: not assessed
    detail: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scorecard:
    """The indicators of one period."""

    period: str
    indicators: tuple[Indicator, ...]
    total_location_t: float
    total_market_t: float
    offsets_t: float
    notes: tuple[str, ...] = ()

    @property
    def all_met(self) -> bool | None:
        """True if every assessed indicator is met; None if none is assessed."""
        assessed = [i.met for i in self.indicators if i.met is not None]
        return None if not assessed else all(assessed)

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(f for i in self.indicators for f in i.flags)

    def indicator(self, ident: str) -> Indicator:
        return next(i for i in self.indicators if i.id == ident)

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "all_met": self.all_met,
            "flags": list(self.flags),
            "indicators": [asdict(i) for i in self.indicators],
            "total_location_t": self.total_location_t,
            "total_market_t": self.total_market_t,
            "offsets_t": self.offsets_t,
            "net_after_offsets_t": self.total_location_t - self.offsets_t,
            "notes": list(self.notes),
        }


def month_labels(start: str, end: str) -> list[str]:
    """The months from ``start`` to ``end``, both included (``2026-01`` .. ``2026-07``).

    Raises
    ------
    AccountsError
        Not months, ``end`` before ``start``, or more than 120 months.
    """
    parsed = []
    for name, text in (("start", start), ("end", end)):
        m = _MONTH.match(text.strip())
        if m is None:
            raise AccountsError(f"{name} {text!r}: expected a month, e.g. 2026-01")
        parsed.append(int(m.group(1)) * 12 + int(m.group(2)) - 1)
    first, last = parsed
    if last < first:
        raise AccountsError(f"end {end} is before start {start}")
    if last - first + 1 > MAX_TREND_MONTHS:
        raise AccountsError(f"at most {MAX_TREND_MONTHS} months in a trend")
    return [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(first, last + 1)]


def _judge(value: float | None, threshold: float | None, comparison: str) -> bool | None:
    if value is None or threshold is None:
        return None
    return value >= threshold if comparison == ">=" else value <= threshold


def compute_scorecard(
    site: SiteConfig,
    period: Period,
    carbon: Sequence[HourlyCarbon],
    energy: Sequence[HourlyEnergy],
    lines: Sequence[HourlyLine],
    factors: FactorTable | None = None,
    offsets_t: float = 0.0,
    account: Account | None = None,
) -> Scorecard:
    """The scorecard of ``period`` from its hourly rows.

    Parameters
    ----------
    site : SiteConfig
        Thresholds in ``[accounts.scorecard]`` and the products' energy limits.
    period : Period
        See :func:`zerocarbon.accounts.period.parse_period`.
    carbon, energy, lines : sequences of hourly rows
        As for :func:`zerocarbon.accounts.period.compute_account`.
    factors : FactorTable, optional
        The grid factor table.
    offsets_t : float
        CCER and allowances retired against the period in the ledger [t CO2e].
    account : Account, optional
        The period's account if already computed (else computed here).

    Returns
    -------
    Scorecard

    References
    ----------
    .. [1] Guiding Opinions on Developing Zero-Carbon Factories (2026).
    .. [2] GB/T 2589-2020.
    """
    sc = site.accounts.scorecard
    carbon = [r for r in carbon if period.start <= r.hour_start < period.end]
    energy = [r for r in energy if period.start <= r.hour_start < period.end]
    if account is None:
        account = compute_account(site, period, carbon, energy, lines, factors)
    indicators: list[Indicator] = []

    # renewable share of electricity
    load_kwh = math.fsum(r.load_kwh for r in carbon)
    onsite = math.fsum(max(r.pv_kwh + r.wind_kwh - r.grid_export_kwh, 0.0) for r in carbon)
    contract = math.fsum(r.green_contract_kwh for r in carbon)
    certs = math.fsum(r.certificate_kwh for r in carbon)
    renewable = onsite + contract + certs
    share = renewable / load_kwh if load_kwh > 0 else None
    indicators.append(
        Indicator(
            "renewable_share",
            "renewable share of electricity consumed",
            share,
            "-",
            sc.renewable_share_min,
            ">=",
            sc.renewable_share_source,
            _judge(share, sc.renewable_share_min, ">="),
            {
                "onsite_consumed_kwh": onsite,
                "green_contract_kwh": contract,
                "certificate_kwh": certs,
                "consumed_kwh": load_kwh,
            },
        )
    )

    # electrification: electricity over final energy, calorific equivalent
    fuel_mj = 0.0
    for d in site.devices:
        if d.role is DeviceRole.FUEL and d.fuel is not None:
            fuel_mj += math.fsum(
                r.delta * fuel_mj_per_unit(site, d.fuel, r.metric, d.id)
                for r in energy
                if r.device == d.id and r.metric in FUEL_METRICS
            )
    heat = site.accounts.heat
    heat_mj = (
        0.0
        if heat is None
        else (heat.gj_per_month - heat.exported_gj_per_month) * period.months * 1000.0
    )
    elec_mj = load_kwh * MJ_PER_KWH
    final_mj = elec_mj + fuel_mj + heat_mj
    e_share = elec_mj / final_mj if final_mj > 0 else None
    indicators.append(
        Indicator(
            "electrification_share",
            "electricity share of final energy consumed (calorific equivalent)",
            e_share,
            "-",
            sc.electrification_share_min,
            ">=",
            sc.electrification_share_source,
            _judge(e_share, sc.electrification_share_min, ">="),
            {
                "electricity_mj": elec_mj,
                "fuels_mj": fuel_mj,
                "net_heat_mj": heat_mj,
                "final_energy_mj": final_mj,
                "final_energy_kgce": final_mj / MJ_PER_KGCE,
            },
        )
    )

    # energy per declared unit, per product
    if site.accounts.products:
        prints = compute_footprints(
            site, period.label, period.start, period.end, carbon, energy, lines, factors
        )
        limits = {p.id: p for p in site.accounts.products}
        for fp in prints:
            prod = limits[fp.product]
            total = kgce(fp.energy.electricity_kwh, fp.energy.fuel_mj + fp.energy.heat_mj)
            per_unit = total / fp.units if fp.units > 0 else None
            indicators.append(
                Indicator(
                    f"energy_per_unit:{fp.product}",
                    f"energy consumption per {prod.unit} of {prod.name} (GB/T 2589-2020)",
                    per_unit,
                    f"kgce/{prod.unit}",
                    prod.energy_limit_kgce_per_unit,
                    "<=",
                    prod.limit_standard,
                    _judge(per_unit, prod.energy_limit_kgce_per_unit, "<="),
                    {
                        "units": fp.units,
                        "electricity_kwh": fp.energy.electricity_kwh,
                        "fuels_mj": fp.energy.fuel_mj,
                        "heat_mj": fp.energy.heat_mj,
                        "kgce": total,
                        "allocation_key": fp.allocation_key,
                        "allocation_share": fp.allocation_share,
                    },
                )
            )

    # own reductions against the base year
    total_t = account.total_location_kg / 1000.0
    reduction: float | None = None
    baseline_t: float | None = None
    if sc.base_year_t_co2 is not None:
        baseline_t = sc.base_year_t_co2 * period.months / 12.0
        reduction = 1.0 - total_t / baseline_t
    reduction_met = _judge(reduction, sc.reduction_target_share, ">=")
    indicators.append(
        Indicator(
            "own_reduction",
            f"own reduction against the base year {sc.base_year}",
            reduction,
            "-",
            sc.reduction_target_share,
            ">=",
            sc.reduction_target_source,
            reduction_met,
            {
                "period_t_co2": total_t,
                "baseline_t_co2": baseline_t,
                "base_year_t_co2": sc.base_year_t_co2,
                "months": period.months,
            },
        )
    )

    # offsets only after reductions
    if offsets_t <= 0:
        offsets_met: bool | None = True
        flags: tuple[str, ...] = ()
    elif reduction_met is None:
        offsets_met, flags = None, ("offsets used; no reduction target to judge them by",)
    else:
        offsets_met = reduction_met
        flags = () if reduction_met else ("offsets before reductions",)
    indicators.append(
        Indicator(
            "offsets_after_reductions",
            "offsets (CCER, allowances) used only after the own reduction target is met",
            offsets_t,
            "t CO2e",
            None,
            "-",
            sc.offsets_rule_source,
            offsets_met,
            {"reduction_met": reduction_met, "net_after_offsets_t": total_t - offsets_t},
            flags,
        )
    )
    return Scorecard(
        period=period.label,
        indicators=tuple(indicators),
        total_location_t=total_t,
        total_market_t=account.total_market_kg / 1000.0,
        offsets_t=offsets_t,
        notes=(
            "electricity at its calorific equivalent (3.6 MJ/kWh, 0.1229 kgce/kWh, "
            "GB/T 2589-2020); fuels by NCV, 29.3076 MJ/kgce",
            "green certificates and contracts count as renewable electricity, not offsets",
        ),
    )
