"""``[tariff]`` of the site file: the electricity tariff the energy cost is billed on.

A Chinese two-part time-of-use tariff (两部制分时电价) for general industrial and
commercial supply at 1-10 kV: an energy price per kWh that depends on the period kind
of the local hour (critical peak, peak, flat, valley), a surcharge per kWh (government
funds and levies, 政府性基金及附加, as one figure), a basic charge (基本电费) per month on
either the month's maximum demand or the contracted capacity, and a price for exported
kWh. ``examples/tariff.toml`` documents every key; ``docs/cost.md`` the computation
(:mod:`zerocarbon.accounts.cost`).

Money is :class:`decimal.Decimal` CNY: TOML numbers are read through their decimal text
(pydantic converts a float with ``str``), so ``0.6137`` is exactly 0.6137.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from zerocarbon.config import SiteConfig

__all__ = [
    "PERIOD_KINDS",
    "EnergyPrices",
    "PeriodKind",
    "TariffConfig",
    "TouSeason",
    "check_tariff",
    "hour_ranges",
]

PeriodKind = Literal["critical_peak", "peak", "flat", "valley"]
PERIOD_KINDS: tuple[PeriodKind, ...] = get_args(PeriodKind)

Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)]
_RANGE = re.compile(r"^(\d{2})-(\d{2})$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def hour_ranges(ranges: tuple[str, ...]) -> list[int]:
    """The local hours (0-23) that ``"HH-HH"`` ranges cover, start included, end
    excluded; an end at or before the start wraps past midnight (``"22-06"`` is 22:00
    to 06:00). ``"00-24"`` is the whole day. Raises ValueError naming a bad range."""
    hours: list[int] = []
    for text in ranges:
        m = _RANGE.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not a local hour range 'HH-HH' (e.g. '08-11')")
        start, end = int(m.group(1)), int(m.group(2))
        if start > 23 or end > 24 or start == end:
            raise ValueError(f"{text!r}: start 00-23, end 01-24 and different from the start")
        if end > start:
            hours.extend(range(start, end))
        else:  # wraps past midnight
            hours.extend([*range(start, 24), *range(0, end)])
    return hours


class EnergyPrices(_Frozen):
    """``[tariff.prices]``: the energy price of each period kind [CNY/kWh], the
    electricity price itself (上网电价 + 输配电价 + 系统运行费 of the bill), without the
    surcharge. ``critical_peak`` only when a season has critical-peak hours."""

    critical_peak: Price | None = None
    peak: Price
    flat: Price
    valley: Price

    def of(self, kind: PeriodKind) -> Decimal:
        """The price of ``kind`` [CNY/kWh]."""
        price = getattr(self, kind)
        if price is None:
            raise ValueError(f"no price for {kind!r}")
        assert isinstance(price, Decimal)
        return price


class TouSeason(_Frozen):
    """``[[tariff.seasons]]``: the months it applies to and the local hour ranges of
    each period kind in them; hours no range names are ``flat``.

    Ranges are ``"HH-HH"`` in the site's time zone, whole hours (the hourly rows are
    billed by the period of their local start hour), end excluded; an end at or before
    the start wraps past midnight.
    """

    name: str
    months: tuple[Annotated[int, Field(ge=1, le=12)], ...] = Field(min_length=1)
    critical_peak: tuple[str, ...] = ()
    peak: tuple[str, ...] = ()
    valley: tuple[str, ...] = ()

    @field_validator("critical_peak", "peak", "valley")
    @classmethod
    def _ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hour_ranges(value)
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> TouSeason:
        seen: dict[int, str] = {}
        for kind in ("critical_peak", "peak", "valley"):
            for hour in hour_ranges(getattr(self, kind)):
                if hour in seen:
                    raise ValueError(
                        f"season {self.name!r}: local hour {hour:02d} is both "
                        f"{seen[hour]} and {kind}"
                    )
                seen[hour] = kind
        return self

    def kinds_by_hour(self) -> tuple[PeriodKind, ...]:
        """The period kind of each local hour 0-23."""
        kinds: list[PeriodKind] = ["flat"] * 24
        for kind in ("critical_peak", "peak", "valley"):
            for hour in hour_ranges(getattr(self, kind)):
                kinds[hour] = kind
        return tuple(kinds)


class TariffConfig(BaseModel):
    """``[tariff]``: the site's electricity tariff (two-part, time of use).

    The basic charge (基本电费) is billed per month on one basis:

    - ``demand``: ``demand_price_per_kw_month`` x the month's highest 15-minute average
      import demand [kW], but at least ``demand_floor_share`` x ``[grid]
      contracted_demand_kw`` (default 0.4: see ``docs/cost.md`` for where the 40 %
      comes from and why it is a setting);
    - ``capacity``: ``capacity_price_per_kva_month`` x ``contracted_capacity_kva``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Literal["CNY"] = "CNY"
    prices: EnergyPrices
    # government funds and levies per kWh imported (政府性基金及附加), one figure [CNY/kWh]
    surcharge_per_kwh: Price = Decimal(0)
    export_price_per_kwh: Price = Decimal(0)  # paid for each kWh fed into the grid
    seasons: tuple[TouSeason, ...] = Field(min_length=1)
    basis: Literal["demand", "capacity"] = "demand"
    demand_price_per_kw_month: Price | None = None  # [CNY/(kW month)]
    demand_floor_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.4")
    capacity_price_per_kva_month: Price | None = None  # [CNY/(kVA month)]
    contracted_capacity_kva: Annotated[Decimal, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TariffConfig:
        owner: dict[int, str] = {}
        for i, season in enumerate(self.seasons):
            for month in season.months:
                if month in owner:
                    raise ValueError(
                        f"seasons[{i}].months: month {month} is already in season {owner[month]!r}"
                    )
                owner[month] = season.name
            if season.critical_peak and self.prices.critical_peak is None:
                raise ValueError(
                    f"seasons[{i}] ({season.name}) has critical_peak hours but "
                    "prices.critical_peak is not set"
                )
        missing = [m for m in range(1, 13) if m not in owner]
        if missing:
            raise ValueError(f"seasons: months {missing} are in no season (all 12 must be)")
        if self.basis == "demand" and self.demand_price_per_kw_month is None:
            raise ValueError("basis 'demand' needs demand_price_per_kw_month [CNY/(kW month)]")
        if self.basis == "capacity" and (
            self.capacity_price_per_kva_month is None or self.contracted_capacity_kva is None
        ):
            raise ValueError(
                "basis 'capacity' needs capacity_price_per_kva_month [CNY/(kVA month)] "
                "and contracted_capacity_kva [kVA]"
            )
        return self

    def season_of(self, month: int) -> TouSeason:
        """The season that holds ``month`` (1-12)."""
        for season in self.seasons:
            if month in season.months:
                return season
        raise ValueError(f"month {month} is in no season")

    def kind_table(self) -> tuple[tuple[PeriodKind, ...], ...]:
        """Period kind by (month - 1, local hour): 12 x 24."""
        return tuple(self.season_of(m).kinds_by_hour() for m in range(1, 13))


def check_tariff(site: SiteConfig) -> None:
    """Cross-checks of ``[tariff]`` against the rest of the site file (for
    ``SiteConfig``'s validator): the demand basis bills its floor on ``[grid]
    contracted_demand_kw``, so it needs one. Raises ValueError naming the keys."""
    tariff = site.tariff
    if tariff is None:
        return
    if tariff.basis == "demand" and site.grid.contracted_demand_kw is None:
        raise ValueError(
            "tariff.basis 'demand' needs [grid] contracted_demand_kw (the contract's "
            "maximum demand, on which the demand floor is billed)"
        )
