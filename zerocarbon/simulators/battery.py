"""A battery energy-storage system: state of charge and its time-of-use dispatch.

:class:`Battery` keeps the state of charge and enforces the power rating and the
SoC window; :class:`DispatchPolicy` decides what the controller asks for (valley
charging, peak discharging, PV-surplus absorption). Power sign: + discharge, - charge
(the vocabulary's convention for batteries).

Energy bookkeeping: charging ``E_ac`` kWh from the AC side stores ``eta_c * E_ac``;
delivering ``E_ac`` kWh draws ``E_ac / eta_d`` from storage, so the round-trip
efficiency is ``eta_c * eta_d`` (0.95 * 0.95 = 0.9025 by default, a typical
lithium-iron-phosphate system at the AC meter).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BATTERY_RATED_POWER_KW = 250.0  # used when a battery has no rated_power_kw


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """Battery sizing and the BMS's hard limits."""

    rated_power_kw: float  # charge and discharge limit [kW]
    capacity_kwh: float  # usable capacity at 100 % SoC [kWh]
    charge_efficiency: float = 0.95  # stored / AC energy in
    discharge_efficiency: float = 0.95  # AC energy out / drawn from storage
    soc_min_pct: float = 10.0  # the BMS never goes below [%]
    soc_max_pct: float = 95.0  # the BMS never goes above [%]
    ramp_per_min: float = 1.0  # fraction of the rating the power may change per minute

    @property
    def ramp_kw_per_s(self) -> float:
        return self.rated_power_kw * self.ramp_per_min / 60.0


class Battery:
    """State of charge of one battery, moved by :meth:`apply`."""

    def __init__(self, params: BatteryParams, soc_pct: float) -> None:
        self.params = params
        self.soc_pct = soc_pct
        self.power_kw = 0.0  # last applied power, + discharge [kW]

    def power_limits_kw(self, interval_s: float) -> tuple[float, float]:
        """(max charge, max discharge) AC power for the next ``interval_s`` [kW], both >= 0.

        Limited by the rating and by the energy that fits in (or is left above) the SoC
        window, so that :meth:`apply` never leaves it.
        """
        p = self.params
        hours = interval_s / 3600.0
        room_kwh = max(0.0, p.soc_max_pct - self.soc_pct) / 100.0 * p.capacity_kwh
        left_kwh = max(0.0, self.soc_pct - p.soc_min_pct) / 100.0 * p.capacity_kwh
        if hours <= 0.0:
            return (0.0, 0.0)
        max_charge = min(p.rated_power_kw, room_kwh / p.charge_efficiency / hours)
        max_discharge = min(p.rated_power_kw, left_kwh * p.discharge_efficiency / hours)
        return (max_charge, max_discharge)

    def apply(self, power_kw: float, interval_s: float) -> float:
        """Run at ``power_kw`` (clamped to the limits) for ``interval_s`` [s].

        Returns the power actually applied [kW] and updates the SoC [%].
        """
        max_charge, max_discharge = self.power_limits_kw(interval_s)
        power = max(-max_charge, min(max_discharge, power_kw))
        p = self.params
        energy_kwh = power * interval_s / 3600.0  # AC side, + out of the battery
        if energy_kwh >= 0.0:
            stored_change_kwh = -energy_kwh / p.discharge_efficiency
        else:
            stored_change_kwh = -energy_kwh * p.charge_efficiency
        self.soc_pct += stored_change_kwh / p.capacity_kwh * 100.0
        self.power_kw = power
        return power


def _taper(distance_pct: float, band_pct: float) -> float:
    """1 far from a SoC threshold, falling linearly to 0 at it (CV-like taper)."""
    if band_pct <= 0.0:
        return 1.0 if distance_pct > 0.0 else 0.0
    return max(0.0, min(1.0, distance_pct / band_pct))


def _remaining_hours(windows: tuple[tuple[float, float], ...], local_hour: float) -> float:
    return sum(max(0.0, end - max(start, local_hour)) for start, end in windows)


def _seconds_to_end(windows: tuple[tuple[float, float], ...], local_hour: float) -> float | None:
    """Seconds until the window holding ``local_hour`` ends (None: in no window).

    Adjacent windows (23-24 and 0-7) count as one.
    """
    for start, end in windows:
        if start <= local_hour < end:
            if end >= 24.0 and any(s <= 0.0 for s, _ in windows):
                after_midnight = max(e for s, e in windows if s <= 0.0)
                return (end - local_hour + after_midnight) * 3600.0
            return (end - local_hour) * 3600.0
    return None


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """Time-of-use arbitrage plus PV self-consumption, in the site's local time.

    In order of priority:

    1. PV surplus (PV > load): charge with the surplus (up to the rating and the BMS's
       ``soc_max_pct``), so no PV is exported while there is room.
    2. Valley hours: charge from the grid at ``valley_charge_fraction`` of the rating
       up to ``valley_soc_max_pct``.
    3. Peak hours: discharge the energy above ``peak_soc_min_pct`` evenly over the
       peak hours left in the day, never more than the site's deficit (the battery
       does not export).
    4. Otherwise idle.

    Within ``taper_band_pct`` of a threshold the power tapers linearly to zero, so the
    battery settles on it without a step; towards the end of a valley or peak window
    the power is limited to what the battery's ramp can bring back to zero by then, so
    tariff-period energy stays inside its period.
    """

    valley_hours: tuple[tuple[float, float], ...] = ((0.0, 7.0), (23.0, 24.0))
    peak_hours: tuple[tuple[float, float], ...] = ((8.0, 11.0), (13.0, 17.0))
    valley_charge_fraction: float = 0.4
    valley_soc_max_pct: float = 90.0
    peak_soc_min_pct: float = 20.0
    taper_band_pct: float = 2.0

    def target_kw(
        self,
        local_hour: float,
        battery: Battery,
        surplus_kw: float,
        deficit_kw: float,
    ) -> float:
        """Power the controller asks for [kW], + discharge / - charge.

        Parameters
        ----------
        local_hour : float
            Site local time of day [h].
        battery : Battery
            The battery (its SoC and parameters).
        surplus_kw : float
            PV power above the load available to this battery [kW], >= 0.
        deficit_kw : float
            Load above PV this battery may cover [kW], >= 0.
        """
        p = battery.params
        soc = battery.soc_pct
        if surplus_kw > 0.0:
            taper = _taper(p.soc_max_pct - soc, self.taper_band_pct)
            return -min(p.rated_power_kw, surplus_kw) * taper
        valley_left_s = _seconds_to_end(self.valley_hours, local_hour)
        if valley_left_s is not None:
            taper = _taper(self.valley_soc_max_pct - soc, self.taper_band_pct)
            power = min(
                self.valley_charge_fraction * p.rated_power_kw, p.ramp_kw_per_s * valley_left_s
            )
            return -power * taper
        peak_left_s = _seconds_to_end(self.peak_hours, local_hour)
        if peak_left_s is not None:
            available_kwh = (
                max(0.0, soc - self.peak_soc_min_pct) / 100.0 * p.capacity_kwh
            ) * p.discharge_efficiency
            hours_left = max(_remaining_hours(self.peak_hours, local_hour), 0.25)
            taper = _taper(soc - self.peak_soc_min_pct, self.taper_band_pct)
            power = min(
                p.rated_power_kw,
                available_kwh / hours_left,
                deficit_kw,
                p.ramp_kw_per_s * peak_left_s,
            )
            return power * taper
        return 0.0
