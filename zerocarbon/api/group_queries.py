"""What the group's center answers about its sites: SQL over the center's schema
(:mod:`zerocarbon.uplink.center_schema`), one function per question.

- :func:`site_statuses`: each site with its uplink status and a derived state, online,
  stale or never seen, against a ``now`` the caller gives (never the clock read here).
- :func:`group_hourly`: the sites' hourly rows summed per hour.
- :func:`site_totals` and :func:`rank_sites`: each site's sums over a range, ranked by
  a chosen metric.
- :func:`group_scorecard`: the newest issued account of a period per site and their sum.

Ratios are recomputed from sums, never averaged (as :mod:`zerocarbon.api.rollup` does
for one site): ``cfe_share = Σ cfe_kwh / Σ load_kwh``, ``intensity_kg_per_kwh =
Σ scope2_location_kg / Σ load_kwh``, ``market_intensity_kg_per_kwh = Σ scope2_market_kg
/ Σ load_kwh``, ``kg_per_unit = (Σ scope1_kg + Σ scope2_location_kg) / Σ
production_units``; null where the denominator's sum is not positive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "AccountFigures",
    "Backlog",
    "CarbonSums",
    "GroupHour",
    "GroupScorecard",
    "MissingSite",
    "RankBy",
    "SiteAccount",
    "SiteState",
    "SiteStatus",
    "SiteTotals",
    "UnreadableAccount",
    "group_hourly",
    "group_scorecard",
    "rank_sites",
    "combine",
    "ratio",
    "site_state",
    "site_statuses",
    "site_totals",
]

DEFAULT_STALE_AFTER_S = 120.0  # a site silent for longer than this is stale [s]


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- sites and their uplink ------------------------------------------------------------


class SiteState(StrEnum):
    """How a site's uplink is doing, seen from the center at ``now``."""

    online = "online"  # a message stored within stale_after_s of now
    stale = "stale"  # seen before, silent for longer
    never = "never"  # known (e.g. registered) but no message stored yet


def site_state(last_seen: datetime | None, now: datetime, stale_after_s: float) -> SiteState:
    """The state of a site last seen at ``last_seen`` (center clock), at ``now``."""
    if last_seen is None:
        return SiteState.never
    if (now - last_seen).total_seconds() <= stale_after_s:
        return SiteState.online
    return SiteState.stale


class Backlog(_Frozen):
    """What waits on the gateway, from its last status message (null: not reported)."""

    messages: int | None = Field(description="messages in the gateway's uplink stream")
    bytes: int | None = Field(description="bytes in the gateway's uplink stream [B]")
    outbox_readings: int | None = Field(description="readings waiting before that stream")


class SiteStatus(_Frozen):
    site: str = Field(description="the uplink site id")
    name: str
    timezone: str
    page_url: str = Field(description="the site's own live page ('' when not given)")
    state: SiteState
    last_seen: datetime | None = Field(description="center clock: newest message stored")
    seen_ago_s: float | None = Field(description="now - last_seen [s]")
    uplink_lag_s: float | None = Field(description="last_seen - the gateway's send time [s]")
    last_reading_ts: datetime | None = Field(description="newest reading stored")
    readings: int = Field(description="readings stored")
    backlog: Backlog
    firing_alerts: int = Field(description="alerts of the site firing now")


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


async def site_statuses(
    conn: asyncpg.Connection | asyncpg.Pool,
    now: datetime,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> list[SiteStatus]:
    """Every site with its uplink status and state at ``now`` (aware), by site id."""
    rows = await conn.fetch(
        """SELECT s.site, s.name, s.timezone, s.page_url, s.last_seen, s.uplink_lag_s,
                  s.last_reading_ts, s.readings,
                  s.status ->> 'backlog_messages' AS backlog_messages,
                  s.status ->> 'backlog_bytes' AS backlog_bytes,
                  s.status ->> 'outbox_readings' AS outbox_readings,
                  (SELECT count(*) FROM site_alerts a
                    WHERE a.site_id = s.id AND a.state = 'firing') AS firing_alerts
           FROM sites s ORDER BY s.site"""
    )
    return [
        SiteStatus(
            site=r["site"],
            name=r["name"],
            timezone=r["timezone"],
            page_url=r["page_url"],
            state=site_state(r["last_seen"], now, stale_after_s),
            last_seen=r["last_seen"],
            seen_ago_s=None if r["last_seen"] is None else (now - r["last_seen"]).total_seconds(),
            uplink_lag_s=r["uplink_lag_s"],
            last_reading_ts=r["last_reading_ts"],
            readings=r["readings"],
            backlog=Backlog(
                messages=_int_or_none(r["backlog_messages"]),
                bytes=_int_or_none(r["backlog_bytes"]),
                outbox_readings=_int_or_none(r["outbox_readings"]),
            ),
            firing_alerts=r["firing_alerts"],
        )
        for r in rows
    ]


# --- hourly carbon, summed over sites ----------------------------------------------------

# (field, SQL sum over site_hourly_carbon h): the sums every carbon figure derives from
_SUMS: tuple[tuple[str, str], ...] = (
    ("load_kwh", "h.load_kwh"),
    ("grid_import_kwh", "h.grid_import_kwh"),
    ("renewable_kwh", "h.pv_kwh + h.wind_kwh"),
    ("scope1_kg", "h.scope1_kg"),
    ("scope2_location_kg", "h.scope2_location_kg"),
    ("scope2_market_kg", "h.scope2_market_kg"),
    ("cfe_kwh", "h.cfe_kwh"),
    ("production_units", "h.production_units"),
)
_SUM_SQL = ",\n".join(f"coalesce(sum({expr}), 0)::float8 AS {name}" for name, expr in _SUMS)


class CarbonSums(_Frozen):
    """Sums of hourly rows and the ratios derived from them."""

    load_kwh: float = Field(description="Σ load [kWh]")
    grid_import_kwh: float = Field(description="Σ grid import [kWh]")
    renewable_kwh: float = Field(description="Σ on-site PV + wind generated [kWh]")
    scope1_kg: float = Field(description="Σ Scope 1 (fuels) [kg CO2]")
    scope2_location_kg: float = Field(description="Σ location-based Scope 2 [kg CO2]")
    scope2_market_kg: float = Field(description="Σ market-based Scope 2 [kg CO2]")
    cfe_kwh: float = Field(description="Σ carbon-free energy consumed, hourly matched [kWh]")
    production_units: float = Field(description="Σ production output [units]")
    emissions_kg: float = Field(description="scope1_kg + scope2_location_kg [kg CO2]")
    cfe_share: float | None = Field(description="Σ cfe_kwh / Σ load_kwh, 0..1")
    intensity_kg_per_kwh: float | None = Field(
        description="Σ scope2_location_kg / Σ load_kwh [kg/kWh]"
    )
    market_intensity_kg_per_kwh: float | None = Field(
        description="Σ scope2_market_kg / Σ load_kwh [kg/kWh]"
    )
    kg_per_unit: float | None = Field(
        description="(Σ scope1_kg + Σ scope2_location_kg) / Σ production_units [kg/unit]"
    )


def _sums(r: asyncpg.Record) -> dict[str, Any]:
    """The :class:`CarbonSums` fields of a row holding the ``_SUMS`` columns."""
    return _derived({name: float(r[name]) for name, _expr in _SUMS})


def _derived(s: dict[str, float]) -> dict[str, Any]:
    """The ``_SUMS`` and what derives from them."""
    emissions = s["scope1_kg"] + s["scope2_location_kg"]
    return s | {
        "emissions_kg": emissions,
        "cfe_share": ratio(s["cfe_kwh"], s["load_kwh"]),
        "intensity_kg_per_kwh": ratio(s["scope2_location_kg"], s["load_kwh"]),
        "market_intensity_kg_per_kwh": ratio(s["scope2_market_kg"], s["load_kwh"]),
        "kg_per_unit": ratio(emissions, s["production_units"]),
    }


def combine(parts: Sequence[CarbonSums]) -> CarbonSums:
    """The sums of ``parts`` (hours or sites) and the ratios of those sums."""
    totals = {name: math.fsum(getattr(p, name) for p in parts) for name, _expr in _SUMS}
    return CarbonSums(**_derived(totals))


class GroupHour(CarbonSums):
    """One hour summed over the sites that reported it."""

    hour_start: datetime
    sites: int = Field(description="sites with a row for the hour")


async def group_hourly(
    conn: asyncpg.Connection | asyncpg.Pool, start: datetime, end: datetime
) -> list[GroupHour]:
    """The hours with ``start <= hour_start < end`` that any site reported, summed over
    the sites, oldest first."""
    rows = await conn.fetch(
        f"""SELECT h.hour_start, count(*) AS sites, {_SUM_SQL}
            FROM site_hourly_carbon h
            WHERE h.hour_start >= $1 AND h.hour_start < $2
            GROUP BY h.hour_start ORDER BY h.hour_start""",
        start,
        end,
    )
    return [GroupHour(hour_start=r["hour_start"], sites=r["sites"], **_sums(r)) for r in rows]


# --- per-site totals and ranking ---------------------------------------------------------


class RankBy(StrEnum):
    """What sites are ranked by; the best first."""

    intensity = "intensity"  # location-based kg CO2 per kWh of load, lowest first
    cfe_share = "cfe_share"  # carbon-free share of load, highest first
    emissions = "emissions"  # Scope 1 + location-based Scope 2, lowest first


class SiteTotals(CarbonSums):
    """One site's sums over a range; ``rank`` 1 is the best (null: no load to rank)."""

    site: str
    name: str
    page_url: str
    hours: int = Field(description="hourly rows of the site in the range")
    rank: int | None = None


async def site_totals(
    conn: asyncpg.Connection | asyncpg.Pool, start: datetime, end: datetime
) -> list[SiteTotals]:
    """Every site's sums over the hours with ``start <= hour_start < end`` (zeros and
    null ratios for a site without rows), by site id."""
    rows = await conn.fetch(
        f"""SELECT s.site, s.name, s.page_url, count(h.hour_start) AS hours, {_SUM_SQL}
            FROM sites s
            LEFT JOIN site_hourly_carbon h
              ON h.site_id = s.id AND h.hour_start >= $1 AND h.hour_start < $2
            GROUP BY s.id ORDER BY s.site""",
        start,
        end,
    )
    return [
        SiteTotals(
            site=r["site"], name=r["name"], page_url=r["page_url"], hours=r["hours"], **_sums(r)
        )
        for r in rows
    ]


def _rank_value(totals: SiteTotals, by: RankBy) -> float | None:
    """The value ranked on, smaller is better; None: the site has no load to rank."""
    if totals.load_kwh <= 0:
        return None
    if by is RankBy.intensity:
        return totals.intensity_kg_per_kwh
    if by is RankBy.cfe_share:
        return None if totals.cfe_share is None else -totals.cfe_share
    return totals.emissions_kg


def rank_sites(totals: Sequence[SiteTotals], by: RankBy) -> list[SiteTotals]:
    """The sites best first by ``by``, with competition ranks (equal values share a
    rank: 1, 2, 2, 4); sites with no load last, unranked, by site id."""
    keyed = [(_rank_value(t, by), t) for t in totals]
    ranked = sorted(
        ((v, t) for v, t in keyed if v is not None and not math.isnan(v)),
        key=lambda vt: (vt[0], vt[1].site),
    )
    out: list[SiteTotals] = []
    rank, previous = 0, None
    for n, (value, t) in enumerate(ranked, start=1):
        if value != previous:
            rank, previous = n, value
        out.append(t.model_copy(update={"rank": rank}))
    ranked_sites = {t.site for t in out}
    out.extend(sorted((t for t in totals if t.site not in ranked_sites), key=lambda t: t.site))
    return out


# --- the group scorecard from the issued accounts ---------------------------------------

# (figure, path in the issued account's JSON (zerocarbon.accounts.period.Account.to_json))
_ACCOUNT_FIGURES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("load_kwh", ("energy_kwh", "load_kwh")),
    ("grid_import_kwh", ("energy_kwh", "grid_import_kwh")),
    ("grid_export_kwh", ("energy_kwh", "grid_export_kwh")),
    ("pv_kwh", ("energy_kwh", "pv_kwh")),
    ("wind_kwh", ("energy_kwh", "wind_kwh")),
    ("green_contract_kwh", ("energy_kwh", "green_contract_kwh")),
    ("certificate_kwh", ("energy_kwh", "certificate_kwh")),
    ("cfe_kwh", ("energy_kwh", "cfe_kwh")),
    ("scope1_kg", ("totals", "scope1_kg")),
    ("scope2_location_kg", ("totals", "scope2_location_kg")),
    ("scope2_market_kg", ("totals", "scope2_market_kg")),
    ("exported_kg", ("totals", "exported_electricity_kg")),
    ("exported_heat_kg", ("totals", "exported_heat_kg")),
    ("total_location_kg", ("totals", "total_location_kg")),
    ("total_market_kg", ("totals", "total_market_kg")),
)


class AccountFigures(_Frozen):
    """The figures of an issued account (or their sum over sites) and shares of sums."""

    load_kwh: float = Field(description="electricity consumed [kWh]")
    grid_import_kwh: float
    grid_export_kwh: float
    pv_kwh: float
    wind_kwh: float
    green_contract_kwh: float = Field(description="green-power contracts allocated [kWh]")
    certificate_kwh: float = Field(description="green certificates retired [kWh]")
    cfe_kwh: float = Field(description="carbon-free energy consumed, hourly matched [kWh]")
    scope1_kg: float = Field(description="combustion + process [kg CO2]")
    scope2_location_kg: float = Field(description="purchased electricity and heat [kg CO2]")
    scope2_market_kg: float
    exported_kg: float = Field(description="exported electricity, deducted [kg CO2]")
    exported_heat_kg: float = Field(description="exported heat, deducted [kg CO2]")
    total_location_kg: float = Field(description="E of GB/T 32150 formula (1) [kg CO2]")
    total_market_kg: float = Field(description="Scope 1 + market-based Scope 2 [kg CO2]")
    green_kwh: float = Field(
        description="pv_kwh + wind_kwh + green_contract_kwh + certificate_kwh [kWh]"
    )
    cfe_share: float | None = Field(description="cfe_kwh / load_kwh")
    intensity_kg_per_kwh: float | None = Field(description="scope2_location_kg / load_kwh")
    market_intensity_kg_per_kwh: float | None = Field(description="scope2_market_kg / load_kwh")


def _figures(values: dict[str, float]) -> AccountFigures:
    load = values["load_kwh"]
    return AccountFigures(
        **values,
        green_kwh=values["pv_kwh"]
        + values["wind_kwh"]
        + values["green_contract_kwh"]
        + values["certificate_kwh"],
        cfe_share=ratio(values["cfe_kwh"], load),
        intensity_kg_per_kwh=ratio(values["scope2_location_kg"], load),
        market_intensity_kg_per_kwh=ratio(values["scope2_market_kg"], load),
    )


def _account_values(account: dict[str, Any]) -> dict[str, float] | str:
    """The account's figures, or the first missing path (an account of another shape)."""
    out: dict[str, float] = {}
    for name, (section, key) in _ACCOUNT_FIGURES:
        value = account.get(section, {}).get(key)
        if not isinstance(value, int | float):
            return f"{section}.{key}"
        out[name] = float(value)
    return out


class SiteAccount(_Frozen):
    """A site's newest issued, non-superseded account of the period."""

    site: str
    name: str
    page_url: str
    report_id: int = Field(description="the gateway's report id")
    issued_at: datetime
    issued_by: str
    supersedes: int | None
    factor_table: str | None
    hours_expected: int | None
    hours_with_results: int | None
    figures: AccountFigures


class UnreadableAccount(_Frozen):
    site: str
    report_id: int
    missing: str = Field(description="the first figure the account lacks")


class MissingSite(_Frozen):
    site: str
    name: str


class GroupScorecard(_Frozen):
    period: str
    sites: list[SiteAccount]
    totals: AccountFigures | None = Field(description="Σ of the sites' figures; null: none")
    missing: list[MissingSite] = Field(description="sites without an account of the period")
    unreadable: list[UnreadableAccount] = Field(
        description="accounts without a figure the totals need (left out of them)"
    )


def _json(value: Any) -> dict[str, Any]:
    data = json.loads(value) if isinstance(value, str) else value
    return data if isinstance(data, dict) else {}


async def group_scorecard(conn: asyncpg.Connection | asyncpg.Pool, period: str) -> GroupScorecard:
    """For ``period`` (its label as issued: ``2026-06``, ``2026-Q2``, ``2026``) each
    site's newest issued account that no stored account of the site supersedes, their
    sums, and the sites without one."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (a.site_id) s.site, s.name, s.page_url, a.report_id,
                  a.issued_at, a.issued_by, a.supersedes, a.account
           FROM site_accounts a JOIN sites s ON s.id = a.site_id
           WHERE a.period = $1
             AND NOT EXISTS (SELECT 1 FROM site_accounts b
                             WHERE b.site_id = a.site_id AND b.supersedes = a.report_id)
           ORDER BY a.site_id, a.issued_at DESC, a.report_id DESC""",
        period,
    )
    missing = await conn.fetch(
        """SELECT s.site, s.name FROM sites s
           WHERE NOT EXISTS (SELECT 1 FROM site_accounts a
                             WHERE a.site_id = s.id AND a.period = $1)
           ORDER BY s.site""",
        period,
    )
    sites: list[SiteAccount] = []
    unreadable: list[UnreadableAccount] = []
    for r in sorted(rows, key=lambda r: str(r["site"])):
        account = _json(r["account"])
        values = _account_values(account)
        if isinstance(values, str):
            unreadable.append(
                UnreadableAccount(site=r["site"], report_id=r["report_id"], missing=values)
            )
            continue
        sites.append(
            SiteAccount(
                site=r["site"],
                name=r["name"],
                page_url=r["page_url"],
                report_id=r["report_id"],
                issued_at=r["issued_at"],
                issued_by=r["issued_by"],
                supersedes=r["supersedes"],
                factor_table=account.get("factor_table"),
                hours_expected=account.get("hours_expected"),
                hours_with_results=account.get("hours_with_results"),
                figures=_figures(values),
            )
        )
    totals = None
    if sites:
        summed = {
            name: math.fsum(getattr(s.figures, name) for s in sites)
            for name, _path in _ACCOUNT_FIGURES
        }
        totals = _figures(summed)
    return GroupScorecard(
        period=period,
        sites=sites,
        totals=totals,
        missing=[MissingSite(site=m["site"], name=m["name"]) for m in missing],
        unreadable=unreadable,
    )
