"""Scope 1 CO2 of fuel combustion, by the GB/T 32150-2015 calculation method.

For each fuel meter, emissions are the metered quantity times an emission factor

    EF [kg CO2/unit] = NCV [GJ/unit] x CC [t C/GJ] x OF [-] x 44/12 x 1000 [kg/t]

where NCV is the net calorific value, CC the carbon content per unit heat and OF the
carbon oxidation rate [1]_. Default parameters (Appendix B, Table B.1 of [1]_) are shipped
in ``data/fuel_factors_gbt32150.csv`` with their source; a site overrides any of them in
``[fuels.<name>]`` (measured values, as the standard prefers), or defines a fuel the table
lacks by giving all three.

Units: the table gives gaseous fuels per 10^4 Nm3 and the others per t. Here every NCV is
held per **Nm3** (gases) or per **kg** (the others), so site overrides
(``ncv_gj_per_unit``) are in GJ/Nm3 or GJ/kg; a value above 1 GJ per unit is refused as a
likely GJ/t or GJ/10^4 Nm3 mix-up. A fuel missing from the table takes its unit from the
meter: GJ/Nm3 when it is metered in Nm3, otherwise GJ/kg. Liquid fuels metered by volume
(``fuel_volume_l``) are converted to mass with ``density_kg_per_l`` (site override, else
the table's default where it has one).

References
----------
.. [1] GB/T 32150-2015, "General guideline of greenhouse gas emissions accounting and
   reporting for industrial enterprises", SAC, 2015, sec. 8 (fuel combustion) and
   Appendix B, Table B.1 (default values of common fossil fuel parameters).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from zerocarbon.config import DeviceRole, Dlt645Device, FuelConfig, MqttDevice, SiteConfig

__all__ = [
    "CO2_PER_C",
    "FUEL_FACTORS_CSV",
    "FUEL_METRICS",
    "FuelError",
    "FuelParameters",
    "emission_factor_kg_per_unit",
    "fuel_errors",
    "fuel_factor",
    "fuel_parameters",
    "known_fuels",
]

FUEL_FACTORS_CSV = Path(__file__).parent / "data" / "fuel_factors_gbt32150.csv"
CO2_PER_C = 44.0 / 12.0  # molar mass ratio CO2 / C [-]
FUEL_METRICS = ("gas_volume_nm3", "fuel_mass_kg", "fuel_volume_l")
_MAX_NCV_GJ_PER_UNIT = 1.0  # no fuel has more than ~0.12 GJ/kg (hydrogen) or GJ/Nm3


class FuelError(ValueError):
    """A fuel or its meter cannot be turned into an emission factor. Names fuel and device."""


@dataclass(frozen=True, slots=True)
class FuelParameters:
    """GB/T 32150 parameters of one fuel after site overrides.

    ``basis`` is the unit the NCV refers to: ``"Nm3"`` (gases), ``"kg"`` (liquids and
    solids), or ``None`` for a fuel defined only in the site file (its unit follows the
    meter: Nm3 for ``gas_volume_nm3``, else kg).
    """

    fuel: str
    basis: str | None
    ncv_gj_per_unit: float  # [GJ/Nm3] or [GJ/kg]
    carbon_content_tc_per_gj: float  # [t C/GJ]
    oxidation_rate: float  # [-]
    density_kg_per_l: float | None  # [kg/l]
    source: str  # where the parameters come from

    @property
    def kg_co2_per_unit(self) -> float:
        """Emission factor per unit of ``basis`` [kg CO2/Nm3] or [kg CO2/kg]."""
        return emission_factor_kg_per_unit(
            self.ncv_gj_per_unit, self.carbon_content_tc_per_gj, self.oxidation_rate
        )


def emission_factor_kg_per_unit(
    ncv_gj_per_unit: float, carbon_content_tc_per_gj: float, oxidation_rate: float
) -> float:
    """CO2 emission factor of a fuel, GB/T 32150-2015 eq. for fuel combustion.

    Parameters
    ----------
    ncv_gj_per_unit : float
        Net calorific value [GJ/unit].
    carbon_content_tc_per_gj : float
        Carbon content per unit heat [t C/GJ].
    oxidation_rate : float
        Carbon oxidation rate [-].

    Returns
    -------
    float
        Emission factor [kg CO2/unit]: ``NCV x CC x OF x 44/12 x 1000``.

    References
    ----------
    .. [1] GB/T 32150-2015, sec. 8 and Appendix B.
    """
    return ncv_gj_per_unit * carbon_content_tc_per_gj * oxidation_rate * CO2_PER_C * 1000.0


@dataclass(frozen=True, slots=True)
class _Row:
    fuel: str
    name_zh: str
    basis: str
    ncv_gj_per_unit: float
    carbon_content_tc_per_gj: float
    oxidation_rate: float
    density_kg_per_l: float | None
    source: str


_NCV_UNITS = {"GJ/1e4Nm3": ("Nm3", 1e4), "GJ/t": ("kg", 1e3)}


@cache
def _table() -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    with FUEL_FACTORS_CSV.open(encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))
        for raw in csv.DictReader(lines):
            basis, per = _NCV_UNITS[raw["ncv_unit"]]
            density = raw["density_kg_per_l"].strip()
            row = _Row(
                fuel=raw["fuel"],
                name_zh=raw["name_zh"],
                basis=basis,
                ncv_gj_per_unit=float(raw["ncv"]) / per,
                carbon_content_tc_per_gj=float(raw["carbon_content_tc_per_gj"]),
                oxidation_rate=float(raw["oxidation_rate"]),
                density_kg_per_l=float(density) if density else None,
                source=f"GB/T 32150-2015 Table {raw['source']}",
            )
            rows[row.fuel] = row
    return rows


def known_fuels() -> list[str]:
    """Fuels with default parameters shipped in the data file."""
    return sorted(_table())


def _table_row(fuel: str) -> _Row | None:
    table = _table()
    key = fuel.strip().lower().replace(" ", "_").replace("-", "_")
    if key in table:
        return table[key]
    for row in table.values():
        if row.name_zh == fuel.strip():
            return row
    return None


def _where(fuel: str, device: str | None) -> str:
    return f"device {device!r}: fuel {fuel!r}" if device else f"fuel {fuel!r}"


def _override(site: SiteConfig, fuel: str, row: _Row | None) -> tuple[str | None, FuelConfig]:
    """The ``[fuels.X]`` table for this fuel (by its name or the table's names)."""
    names = {fuel}
    if row is not None:
        names |= {row.fuel, row.name_zh}
    for key, cfg in site.fuels.items():
        if key in names:
            return key, cfg
    return None, FuelConfig()


def fuel_parameters(site: SiteConfig, fuel: str, device: str | None = None) -> FuelParameters:
    """Parameters of a fuel: the GB/T 32150 defaults with the site's overrides applied.

    Parameters
    ----------
    site : SiteConfig
        The site; ``site.fuels`` holds the ``[fuels.<name>]`` overrides.
    fuel : str
        Fuel name (``natural_gas``, ``diesel``, ... or the standard's Chinese name), or a
        fuel defined only in ``[fuels.<name>]``.
    device : str, optional
        Meter id, named in error messages.

    Returns
    -------
    FuelParameters

    Raises
    ------
    FuelError
        Unknown fuel without a full override, or an implausible NCV.

    References
    ----------
    .. [1] GB/T 32150-2015, Appendix B, Table B.1.
    """
    row = _table_row(fuel)
    key, cfg = _override(site, fuel, row)
    where = _where(fuel, device)
    if cfg.ncv_gj_per_unit is not None and cfg.ncv_gj_per_unit > _MAX_NCV_GJ_PER_UNIT:
        raise FuelError(
            f"fuels.{key}.ncv_gj_per_unit: {cfg.ncv_gj_per_unit} GJ per unit is implausible; "
            "give GJ per Nm3 (gases) or per kg (others), e.g. natural gas 0.038931, "
            "not the table's GJ/10^4 Nm3 or GJ/t"
        )
    overridden = [
        name
        for name in ("ncv_gj_per_unit", "carbon_content_tc_per_gj", "oxidation_rate")
        if getattr(cfg, name) is not None
    ]
    if row is None:
        missing = [
            name
            for name in ("ncv_gj_per_unit", "carbon_content_tc_per_gj", "oxidation_rate")
            if getattr(cfg, name) is None
        ]
        if key is None or missing:
            hint = (
                f"[fuels.{key}] lacks {', '.join(missing)}"
                if key is not None
                else f"add [fuels.{fuel}] with ncv_gj_per_unit, carbon_content_tc_per_gj "
                "and oxidation_rate"
            )
            raise FuelError(
                f"{where}: no GB/T 32150 default; known fuels: {', '.join(known_fuels())}; {hint}"
            )
        assert cfg.ncv_gj_per_unit is not None
        assert cfg.carbon_content_tc_per_gj is not None
        assert cfg.oxidation_rate is not None
        return FuelParameters(
            fuel=fuel,
            basis=None,
            ncv_gj_per_unit=cfg.ncv_gj_per_unit,
            carbon_content_tc_per_gj=cfg.carbon_content_tc_per_gj,
            oxidation_rate=cfg.oxidation_rate,
            density_kg_per_l=cfg.density_kg_per_l,
            source=f"site [fuels.{key}]",
        )
    source = row.source
    if overridden or cfg.density_kg_per_l is not None:
        source += f"; site [fuels.{key}]: " + ", ".join(
            overridden + (["density_kg_per_l"] if cfg.density_kg_per_l is not None else [])
        )
    return FuelParameters(
        fuel=row.fuel,
        basis=row.basis,
        ncv_gj_per_unit=(
            cfg.ncv_gj_per_unit if cfg.ncv_gj_per_unit is not None else row.ncv_gj_per_unit
        ),
        carbon_content_tc_per_gj=(
            cfg.carbon_content_tc_per_gj
            if cfg.carbon_content_tc_per_gj is not None
            else row.carbon_content_tc_per_gj
        ),
        oxidation_rate=(
            cfg.oxidation_rate if cfg.oxidation_rate is not None else row.oxidation_rate
        ),
        density_kg_per_l=(
            cfg.density_kg_per_l if cfg.density_kg_per_l is not None else row.density_kg_per_l
        ),
        source=source,
    )


def fuel_factor(site: SiteConfig, fuel: str, metric: str, device: str | None = None) -> float:
    """Emission factor per unit of a fuel meter's metric.

    Parameters
    ----------
    site : SiteConfig
        The site (for ``[fuels.<name>]`` overrides).
    fuel : str
        Fuel name, see :func:`fuel_parameters`.
    metric : str
        The meter's counter: ``gas_volume_nm3`` (factor per Nm3), ``fuel_mass_kg`` (per
        kg) or ``fuel_volume_l`` (per l: the per-kg factor times the density).
    device : str, optional
        Meter id, named in error messages.

    Returns
    -------
    float
        Emission factor [kg CO2/Nm3], [kg CO2/kg] or [kg CO2/l].

    Raises
    ------
    FuelError
        Unknown fuel or metric, a gas metered by mass or volume in litres, a liquid metered
        in Nm3, or a fuel metered in litres without a density.

    References
    ----------
    .. [1] GB/T 32150-2015, sec. 8 and Appendix B, Table B.1.
    """
    p = fuel_parameters(site, fuel, device)
    where = _where(fuel, device)
    ef = p.kg_co2_per_unit
    if metric == "gas_volume_nm3":
        if p.basis == "kg":
            raise FuelError(
                f"{where} is tabulated per mass; meter it as fuel_mass_kg or fuel_volume_l, "
                "not gas_volume_nm3"
            )
        return ef
    if metric in ("fuel_mass_kg", "fuel_volume_l"):
        if p.basis == "Nm3":
            raise FuelError(
                f"{where} is a gas tabulated per Nm3; meter it as gas_volume_nm3, not {metric}"
            )
        if metric == "fuel_mass_kg":
            return ef
        if p.density_kg_per_l is None:
            raise FuelError(
                f"{where} is metered in litres but has no density: set "
                f"[fuels.{fuel}] density_kg_per_l"
            )
        return ef * p.density_kg_per_l
    raise FuelError(
        f"{where}: metric {metric!r} is not a fuel counter; use one of {', '.join(FUEL_METRICS)}"
    )


def _device_metrics(site: SiteConfig, index: int) -> list[str]:
    device = site.devices[index]
    if isinstance(device, MqttDevice):
        names = [device.field_metric(k) for k in device.fields]
    elif isinstance(device, Dlt645Device):
        names = list(device.metrics())
    else:
        names = [p.metric for p in site.profile_of(device).points if p.metric is not None]
    return list(dict.fromkeys(names))


def fuel_errors(site: SiteConfig) -> list[str]:
    """Every problem with the site's fuels, each naming its key path.

    Checks that each ``[fuels.X]`` resolves, that each fuel meter (role ``fuel``) names a
    fuel that resolves, reports at least one fuel counter and that each fuel counter it
    reports has a factor.
    """
    errors: list[str] = []
    for key in site.fuels:
        try:
            fuel_parameters(site, key)
        except FuelError as exc:
            errors.append(f"fuels.{key}: {exc}")
    for i, device in enumerate(site.devices):
        if device.role is not DeviceRole.FUEL or device.fuel is None:
            continue
        try:
            fuel_parameters(site, device.fuel, device.id)
        except FuelError as exc:
            errors.append(f"devices[{i}].fuel: {exc}")
            continue
        metrics = [m for m in _device_metrics(site, i) if m in FUEL_METRICS]
        if not metrics:
            errors.append(
                f"devices[{i}] ({device.id}): a fuel meter must report one of "
                f"{', '.join(FUEL_METRICS)}"
            )
        for metric in metrics:
            try:
                fuel_factor(site, device.fuel, metric, device.id)
            except FuelError as exc:
                errors.append(f"devices[{i}].fuel: {exc}")
    return errors
