"""Product carbon footprints by GB/T 24067-2024 / ISO 14067:2018: pure computation, no
database.

One product per production line (``[[accounts.products]]``); a footprint is computed
over a window ``[start, end)`` (a period, a batch, a shift, a day) from the same hourly
rows and factors as the period accounts (:mod:`zerocarbon.accounts.period`):

Gate to gate (what the meters see)
    * the line's electricity: each hour the line carries the site's grid emissions in
      proportion to its share of the site load (``line_kwh / load_kwh``, the engine's rule
      of :mod:`zerocarbon.carbon_engine.lines`), location-based with the account's grid
      factor (import x factor) and market-based with the hour's import not covered by
      green-power contracts and certificates x the residual-mix factor;
    * the line's own fuel meters (fuel meters whose ``line`` is the line);
    * process emissions declared per unit of the line's output;
    * its share, by the declared allocation key, of the site-level emissions: the
      electricity of the load no line sub-meters (the same hourly rule on
      ``1 - sum of the lines' shares``), fuel meters on no line, process emissions
      declared per month, and net purchased heat (purchased - exported).

    ``E_g2g = E_line_elec + E_line_fuel + E_line_process + a_i x E_site``,
    ``a_i = k_i / sum_j k_j`` over the products' lines, with ``k`` the line's output
    (``units``), output x ``mass_kg_per_unit`` (``mass``) or metered energy (``energy``):
    ISO 14067:2018 6.4.6.2 (allocation by an underlying physical relationship).

Cradle to gate
    adds the declared materials (``kg_per_unit x factor_kg_co2e_per_kg``) and inbound
    logistics (``tonne_km_per_unit x factor_kg_co2e_per_tkm``) per declared unit.

Figures declared per month (process emissions, heat) enter a window pro rata to its
hours within each local calendar month. Exported electricity is not deducted (a footprint
is not reduced by energy sold on; ISO 14067:2018 6.4.9.4 does not allow offsetting).
The meters give CO2 only (GB/T 32150 factors); the materials' and logistics' factors are
CO2e; the result is labelled kg CO2e, with that limit stated in the notes.

References
----------
.. [1] GB/T 24067-2024 / ISO 14067:2018, "Greenhouse gases — Carbon footprint of products
   — Requirements and guidelines for quantification": 6.3.3 (functional or declared
   unit), 6.3.4 (system boundary: cradle to gate, gate to gate), 6.3.5 (data quality),
   6.4.6 (allocation).
.. [2] GHG Protocol Scope 2 Guidance (2015), ch. 6 (location- and market-based).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from zerocarbon.accounts.period import (
    AccountsError,
    FactorTable,
    Period,
    _grid_rows,
    parse_period,
    site_factor_table,
)
from zerocarbon.carbon_engine.fuels import FUEL_METRICS, fuel_factor, fuel_parameters
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.config_accounts import Product
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

__all__ = [
    "GRAINS",
    "Component",
    "Footprint",
    "SiteEnergy",
    "compute_footprints",
    "fuel_mj_per_unit",
    "grain_windows",
    "window_period",
]

HOUR = timedelta(hours=1)
GRAINS = ("shift", "day", "month")
SHIFT_H = 8  # shifts are 8-hour blocks from local midnight


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a footprint, over the window, for the product's whole output."""

    id: str  # "line_electricity", "line_fuel:<device>", "line_process:<id>",
    #          "site:<what>", "material:<name>", "logistics:<mode>"
    stage: str  # "gate_to_gate" or "upstream"
    description: str
    kg_co2e: float  # location-based [kg CO2e]
    kg_co2e_market: float  # market-based (= location-based except electricity) [kg CO2e]
    data_source: str  # "metered", "allocated by units|mass|energy", "declared",
    #                   "supplier", "database", "estimate"
    source_detail: str = ""  # the factor's source
    measured_share: float | None = None  # of metered activity, 1 - estimated/metered
    allocation_share: float | None = None  # a_i of allocated components [-]


@dataclass(frozen=True, slots=True)
class SiteEnergy:
    """The product's energy over the window, own and allocated, for energy per unit."""

    electricity_kwh: float  # line sub-meters + allocated unmetered load [kWh]
    fuel_mj: float  # line fuel meters + allocated site fuels, by NCV [MJ]
    heat_mj: float  # allocated net purchased heat [MJ]


@dataclass(frozen=True)
class Footprint:
    """The carbon footprint of one product over one window."""

    product: str
    name: str
    line: str
    unit: str  # the declared unit
    label: str  # the window: "2026-06", "2026-06-01", "2026-06-01 S1" or a batch range
    start: datetime  # UTC
    end: datetime  # UTC
    units: float  # output of the line in the window [declared units]
    allocation_key: str
    allocation_share: float  # a_i [-]
    components: tuple[Component, ...]
    energy: SiteEnergy
    factors: dict[str, Any]  # grid.location, grid.market as used
    notes: tuple[str, ...] = field(default=())

    def _sum(self, stage: str | None, market: bool) -> float:
        return math.fsum(
            (c.kg_co2e_market if market else c.kg_co2e)
            for c in self.components
            if stage is None or c.stage == stage
        )

    @property
    def gate_to_gate_kg(self) -> float:
        """Gate to gate, location-based [kg CO2e]."""
        return self._sum("gate_to_gate", False)

    @property
    def gate_to_gate_market_kg(self) -> float:
        return self._sum("gate_to_gate", True)

    @property
    def cradle_to_gate_kg(self) -> float:
        """Gate to gate + materials + logistics, location-based [kg CO2e]."""
        return self._sum(None, False)

    @property
    def cradle_to_gate_market_kg(self) -> float:
        return self._sum(None, True)

    def per_unit(self, kg: float) -> float | None:
        """``kg`` per declared unit; None without output."""
        return kg / self.units if self.units > 0 else None

    @property
    def metered_measured_share(self) -> float | None:
        """Measured share of the metered part, weighted by emissions [-]."""
        parts = [c for c in self.components if c.measured_share is not None and c.kg_co2e > 0]
        total = math.fsum(c.kg_co2e for c in parts)
        if total <= 0:
            return None
        return math.fsum(c.kg_co2e * (c.measured_share or 0.0) for c in parts) / total

    def to_json(self) -> dict[str, Any]:
        totals = {
            "gate_to_gate_kg": self.gate_to_gate_kg,
            "gate_to_gate_market_kg": self.gate_to_gate_market_kg,
            "cradle_to_gate_kg": self.cradle_to_gate_kg,
            "cradle_to_gate_market_kg": self.cradle_to_gate_market_kg,
        }
        per_unit = {k.replace("_kg", "_kg_per_unit"): self.per_unit(v) for k, v in totals.items()}
        return {
            "product": self.product,
            "name": self.name,
            "line": self.line,
            "declared_unit": self.unit,
            "window": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "units": self.units,
            "allocation_key": self.allocation_key,
            "allocation_share": self.allocation_share,
            "standard": "GB/T 24067-2024 / ISO 14067:2018",
            "totals": totals,
            "per_unit": per_unit,
            "metered_measured_share": self.metered_measured_share,
            "components": [asdict(c) for c in self.components],
            "energy": asdict(self.energy),
            "factors": self.factors,
            "notes": list(self.notes),
        }


# --- windows ---------------------------------------------------------------------------


def window_period(label: str, start: datetime, end: datetime, timezone: str) -> Period:
    """A :class:`Period` for any ``[start, end)`` (aware datetimes), to pick the grid
    factors the period accounts would (its year: the local year of ``start``).

    Raises
    ------
    AccountsError
        ``end`` is not after ``start``, or either is naive or not on a whole hour.
    """
    for name, ts in (("start", start), ("end", end)):
        if ts.tzinfo is None:
            raise AccountsError(f"{name} {ts.isoformat()}: give a time zone (e.g. +08:00 or Z)")
        if ts.minute or ts.second or ts.microsecond:
            raise AccountsError(f"{name} {ts.isoformat()}: must be on a whole hour")
    if end <= start:
        raise AccountsError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    local = start.astimezone(ZoneInfo(timezone))
    months = max(1, round((end - start) / timedelta(days=30.4375)))
    return Period(label, "range", start.astimezone(UTC), end.astimezone(UTC), months, local.year)


def grain_windows(
    start: datetime, end: datetime, grain: str, timezone: str
) -> list[tuple[str, datetime, datetime]]:
    """``[start, end)`` cut into shifts (8-hour blocks from local midnight, labelled
    ``2026-06-01 S1..S3``), local days (``2026-06-01``) or local months (``2026-06``);
    windows are clipped to ``[start, end)``. Times in UTC.

    Raises
    ------
    AccountsError
        An unknown grain.
    """
    if grain not in GRAINS:
        raise AccountsError(f"grain {grain!r}: use one of {', '.join(GRAINS)}")
    zone = ZoneInfo(timezone)
    out: list[tuple[str, datetime, datetime]] = []
    local = start.astimezone(zone)
    cursor = datetime(local.year, local.month, 1 if grain == "month" else local.day, tzinfo=zone)
    while cursor.astimezone(UTC) < end:
        if grain == "month":
            nxt = datetime(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1, tzinfo=zone)
            label = f"{cursor.year:04d}-{cursor.month:02d}"
        elif grain == "day":
            nxt = datetime(cursor.year, cursor.month, cursor.day, tzinfo=zone) + timedelta(days=1)
            nxt = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
            label = cursor.strftime("%Y-%m-%d")
        else:
            nxt = cursor + timedelta(hours=SHIFT_H)
            if nxt.day != cursor.day:
                nxt = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
            label = f"{cursor.strftime('%Y-%m-%d')} S{cursor.hour // SHIFT_H + 1}"
        lo, hi = max(cursor.astimezone(UTC), start), min(nxt.astimezone(UTC), end)
        if lo < hi:
            out.append((label, lo, hi))
        cursor = nxt
    return out


def _month_fraction(start: datetime, end: datetime, zone: ZoneInfo) -> float:
    """Sum over the hours of ``[start, end)`` of 1 / hours of the hour's local month [-]:
    the share of a per-month figure falling in the window (1 for a calendar month)."""
    cache: dict[tuple[int, int], int] = {}
    parts: list[float] = []
    ts = start
    while ts < end:
        local = ts.astimezone(zone)
        key = (local.year, local.month)
        if key not in cache:
            p = parse_period(f"{local.year:04d}-{local.month:02d}", zone)
            cache[key] = p.hours
        parts.append(1.0 / cache[key])
        ts += HOUR
    return math.fsum(parts)


# --- the footprint ---------------------------------------------------------------------


def fuel_mj_per_unit(site: SiteConfig, fuel: str, metric: str, device: str | None = None) -> float:
    """Net calorific value per unit of a fuel meter's counter [MJ/Nm3, MJ/kg or MJ/l]
    (GB/T 32150-2015 Table B.1 or ``[fuels.<name>]``; litres by the fuel's density)."""
    p = fuel_parameters(site, fuel, device)
    mj = p.ncv_gj_per_unit * 1000.0
    if metric == "fuel_volume_l":
        if p.density_kg_per_l is None:
            raise AccountsError(f"fuel {fuel}: metered in litres without density_kg_per_l")
        return mj * p.density_kg_per_l
    return mj


def _quality(rows: Sequence[HourlyEnergy]) -> float | None:
    metered = math.fsum(r.delta for r in rows)
    if metered <= 0:
        return None
    return 1.0 - math.fsum(r.estimated for r in rows) / metered


def _key(product: Product, units: float, energy_kwh: float) -> float:
    if product.allocation == "units":
        return units
    if product.allocation == "mass":
        assert product.mass_kg_per_unit is not None  # checked by AccountsConfig
        return units * product.mass_kg_per_unit
    return energy_kwh


def compute_footprints(
    site: SiteConfig,
    label: str,
    start: datetime,
    end: datetime,
    carbon: Sequence[HourlyCarbon],
    energy: Sequence[HourlyEnergy],
    lines: Sequence[HourlyLine],
    factors: FactorTable | None = None,
) -> list[Footprint]:
    """The footprint of every product of ``[accounts.products]`` over ``[start, end)``.

    Parameters
    ----------
    site : SiteConfig
        The site: products, lines, devices, fuels, grid, process emissions, heat.
    label : str
        The window's name, e.g. ``2026-06``.
    start, end : datetime
        The window, aware, on whole hours.
    carbon, energy, lines : sequences of hourly rows
        ``hourly_carbon``, ``hourly_energy``, ``hourly_line``; rows outside are ignored.
    factors : FactorTable, optional
        The grid factor table (default the site's), as for the period accounts.

    Returns
    -------
    list of Footprint
        In the order of ``[[accounts.products]]``; components in kg CO2e for the whole
        output of the window, totals per declared unit by :meth:`Footprint.per_unit`.

    Raises
    ------
    AccountsError
        A bad window; FactorError / FuelError: a factor the site needs is missing.

    References
    ----------
    .. [1] ISO 14067:2018 6.3.4 (boundary), 6.4.6 (allocation).
    """
    zone = ZoneInfo(site.site.timezone)
    period = window_period(label, start, end, site.site.timezone)
    start, end = period.start, period.end
    table = factors if factors is not None else site_factor_table(site)
    loc, mkt = _grid_rows(site, table, period)
    acc = site.accounts

    def inside(ts: datetime) -> bool:
        return start <= ts < end

    carbon = [r for r in carbon if inside(r.hour_start)]
    energy = [r for r in energy if inside(r.hour_start)]
    lines = [r for r in lines if inside(r.hour_start)]
    by_hour = {r.hour_start: r for r in carbon}

    # each line's electricity: hourly share of load x the hour's grid emissions
    line_loc: dict[str, list[float]] = defaultdict(list)
    line_mkt: dict[str, list[float]] = defaultdict(list)
    line_kwh: dict[str, list[float]] = defaultdict(list)
    line_est_kwh: dict[str, list[float]] = defaultdict(list)
    line_units: dict[str, list[float]] = defaultdict(list)
    shares_by_hour: dict[datetime, list[float]] = defaultdict(list)
    for r in lines:
        line_kwh[r.line].append(r.energy_kwh)
        line_est_kwh[r.line].append(r.estimated_share * r.energy_kwh)
        line_units[r.line].append(r.production_units)
        c = by_hour.get(r.hour_start)
        if c is None or c.load_kwh <= 0:
            continue
        share = r.energy_kwh / c.load_kwh
        shares_by_hour[r.hour_start].append(share)
        uncovered = max(c.grid_import_kwh - c.green_contract_kwh - c.certificate_kwh, 0.0)
        line_loc[r.line].append(share * c.grid_import_kwh * loc.value)
        line_mkt[r.line].append(share * uncovered * mkt.value)

    # site level: the load no line meters, fuels on no line, per-month process, net heat
    unmetered_loc, unmetered_mkt, unmetered_kwh = [], [], []
    for c in carbon:
        if c.load_kwh <= 0:
            continue
        rest = max(1.0 - math.fsum(shares_by_hour.get(c.hour_start, [])), 0.0)
        uncovered = max(c.grid_import_kwh - c.green_contract_kwh - c.certificate_kwh, 0.0)
        unmetered_loc.append(rest * c.grid_import_kwh * loc.value)
        unmetered_mkt.append(rest * uncovered * mkt.value)
        unmetered_kwh.append(rest * c.load_kwh)
    month_share = _month_fraction(start, end, zone)
    product_lines = {p.line for p in acc.products}
    fuel_kg: dict[str | None, list[float]] = defaultdict(list)  # by line (None: site)
    fuel_mj: dict[str | None, list[float]] = defaultdict(list)
    fuel_rows: dict[str | None, list[HourlyEnergy]] = defaultdict(list)
    line_fuel: dict[str, list[tuple[str, float, float, float | None]]] = defaultdict(list)
    for device in site.devices:
        if device.role is not DeviceRole.FUEL or device.fuel is None:
            continue
        rows = [r for r in energy if r.device == device.id and r.metric in FUEL_METRICS]
        kg = math.fsum(r.delta * fuel_factor(site, device.fuel, r.metric, device.id) for r in rows)
        mj = math.fsum(
            r.delta * fuel_mj_per_unit(site, device.fuel, r.metric, device.id) for r in rows
        )
        owner = device.line if device.line in product_lines else None
        if device.line is not None and device.line not in product_lines:
            continue  # a line without a product keeps its fuel
        fuel_kg[owner].append(kg)
        fuel_mj[owner].append(mj)
        fuel_rows[owner].extend(rows)
        if owner is not None:
            line_fuel[owner].append((device.id, kg, mj, _quality(rows)))

    site_parts: list[tuple[str, str, float, float, str, float | None]] = []
    # (id, description, kg location, kg market, source, measured share)
    site_parts.append(
        (
            "site:unmetered_electricity",
            "electricity of the load no line sub-meters",
            math.fsum(unmetered_loc),
            math.fsum(unmetered_mkt),
            f"{loc.source} / {mkt.source}",
            None,
        )
    )
    site_kg = math.fsum(fuel_kg[None])
    if fuel_rows[None]:
        site_parts.append(
            (
                "site:fuels",
                "fuels of meters on no product line",
                site_kg,
                site_kg,
                "GB/T 32150-2015 Table B.1 (or [fuels])",
                _quality(fuel_rows[None]),
            )
        )
    for pe in acc.process_emissions:
        if pe.t_co2_per_month is not None:
            kg = pe.t_co2_per_month * 1000.0 * month_share
            site_parts.append((f"site:process:{pe.id}", pe.source, kg, kg, pe.method, None))
    heat_mj = 0.0
    if acc.heat is not None:
        net_gj = (acc.heat.gj_per_month - acc.heat.exported_gj_per_month) * month_share
        kg = net_gj * acc.heat.factor_t_co2_per_gj * 1000.0
        heat_mj = net_gj * 1000.0
        site_parts.append(
            (
                "site:heat",
                "net purchased heat (purchased - exported)",
                kg,
                kg,
                acc.heat.factor_source or "default 0.11 t CO2/GJ",
                None,
            )
        )

    # allocation keys over the products' lines
    units = {p.line: math.fsum(line_units.get(p.line, [])) for p in acc.products}
    kwh = {p.line: math.fsum(line_kwh.get(p.line, [])) for p in acc.products}
    keys = {p.line: _key(p, units[p.line], kwh[p.line]) for p in acc.products}
    key_total = math.fsum(keys.values())
    site_kwh = math.fsum(unmetered_kwh)
    site_fuel_mj = math.fsum(fuel_mj[None])

    factors_used = {"grid.location": asdict(loc), "grid.market": asdict(mkt)}
    notes = [
        "electricity and fuels by GB/T 32150 factors (CO2); materials and logistics in CO2e",
        f"site-level emissions allocated among the products' lines by "
        f"{acc.products[0].allocation if acc.products else 'energy'} (ISO 14067:2018 6.4.6)",
    ]
    if key_total <= 0:
        notes.append("no allocation key in the window: site-level emissions unallocated")
    out: list[Footprint] = []
    for p in acc.products:
        a = keys[p.line] / key_total if key_total > 0 else 0.0
        comps: list[Component] = []
        k_total = kwh[p.line]
        est = math.fsum(line_est_kwh.get(p.line, []))
        comps.append(
            Component(
                "line_electricity",
                "gate_to_gate",
                f"electricity of line {p.line} ({k_total:.6g} kWh metered), share of load",
                math.fsum(line_loc.get(p.line, [])),
                math.fsum(line_mkt.get(p.line, [])),
                "metered",
                f"{loc.source} / {mkt.source}",
                None if k_total <= 0 else 1.0 - est / k_total,
            )
        )
        for dev, kg, _mj, q in line_fuel.get(p.line, []):
            comps.append(
                Component(
                    f"line_fuel:{dev}",
                    "gate_to_gate",
                    f"fuel meter {dev} on line {p.line}",
                    kg,
                    kg,
                    "metered",
                    "GB/T 32150-2015 Table B.1 (or [fuels])",
                    q,
                )
            )
        for pe in acc.process_emissions:
            if pe.line == p.line and pe.t_co2_per_unit is not None:
                kg = units[p.line] * pe.t_co2_per_unit * 1000.0
                comps.append(
                    Component(
                        f"line_process:{pe.id}",
                        "gate_to_gate",
                        pe.source,
                        kg,
                        kg,
                        "declared",
                        pe.method or "declared in the site file",
                    )
                )
        for sid, desc, kg_loc, kg_mkt, src, q in site_parts:
            comps.append(
                Component(
                    sid,
                    "gate_to_gate",
                    desc,
                    a * kg_loc,
                    a * kg_mkt,
                    f"allocated by {p.allocation}",
                    src,
                    q,
                    a,
                )
            )
        for m in p.materials:
            kg = units[p.line] * m.kg_per_unit * m.factor_kg_co2e_per_kg
            comps.append(
                Component(
                    f"material:{m.material}",
                    "upstream",
                    f"{m.material}, {m.kg_per_unit} kg/{p.unit}"
                    + (f", from {m.supplier}" if m.supplier else ""),
                    kg,
                    kg,
                    m.kind,
                    m.source,
                )
            )
        for leg in p.logistics:
            value, src = leg.factor
            kg = units[p.line] * leg.tonne_km_per_unit * value
            comps.append(
                Component(
                    f"logistics:{leg.mode}",
                    "upstream",
                    f"{leg.mode} transport, {leg.tonne_km_per_unit} t km/{p.unit} x {value} "
                    "kg CO2e/t km",
                    kg,
                    kg,
                    "database" if leg.factor_kg_co2e_per_tkm is None else "declared",
                    src,
                )
            )
        own_mj = math.fsum(mj for _d, _kg, mj, _q in line_fuel.get(p.line, []))
        out.append(
            Footprint(
                product=p.id,
                name=p.name,
                line=p.line,
                unit=p.unit,
                label=label,
                start=start,
                end=end,
                units=units[p.line],
                allocation_key=p.allocation,
                allocation_share=a,
                components=tuple(comps),
                energy=SiteEnergy(
                    electricity_kwh=k_total + a * site_kwh,
                    fuel_mj=own_mj + a * site_fuel_mj,
                    heat_mj=a * heat_mj,
                ),
                factors=factors_used,
                notes=tuple(notes),
            )
        )
    return out
