"""The offsets and instruments ledger: what the site holds, what it retired, and when.

Four kinds of instrument, one ledger:

========== ================================ ====== ==========================================
kind       declared in                      unit   may be retired against
========== ================================ ====== ==========================================
gec        ``[[certificates]]`` (a batch)   MWh    its ``applies_to`` month only, whole GECs
green_power ``[[green_power]]`` (a contract) MWh    a month it delivers in, up to that month's
                                                   volume
ccer       ``[[offsets]]`` kind "ccer"      t CO2e any month, quarter or year
allowance  ``[[offsets]]`` kind "allowance" t CO2e any month, quarter or year
========== ================================ ====== ==========================================

A unit is retired at most once (GHG Protocol Scope 2 Guidance, 2015, ch. 7, Scope 2
Quality Criteria 2-3: an instrument is claimed once, for consumption of the period it
is claimed for); :func:`zerocarbon.storage.ledger.retire` enforces it in the database,
and :func:`check_retirement` gives the reason a retirement is refused, naming the
earlier retirements (period, by whom, when).

Green certificates and contracts are Scope 2 instruments and the carbon engine already
counts them hour by hour (:mod:`zerocarbon.carbon_engine.instruments`): a batch covers
the grid import of its ``applies_to`` month, a contract that of its months. Retiring
them against any other period would claim the same MWh twice, so it is refused. For each
the ledger shows what the engine allocated in each month (the same allocation, run again
over the stored hourly grid import) beside the stored hourly columns
(``hourly_carbon.certificate_kwh`` / ``green_contract_kwh``) and the unused volume.

CCER credits and allowances are not Scope 2 instruments: retiring them against a period
records *offsets used* for that period, reported apart from and never subtracted from
Scope 1 and 2 (GHG Protocol Corporate Standard, revised 2004, ch. 8-9: offsets are
reported separately from the inventory; Guiding Opinions on Zero-Carbon Factories, 2026:
credits come after reductions and cover residual emissions only).

Periods are a month ``2026-03``, a quarter ``2026-Q1`` or a year ``2026``, calendar
periods in the site's time zone. Volumes are exact decimals (6 places).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from zerocarbon.carbon_engine.instruments import (
    KWH_PER_GEC,
    allocate_instruments,
    load_contract_volumes,
    month_bounds_s,
)
from zerocarbon.config import SiteConfig
from zerocarbon.storage import ledger as store
from zerocarbon.storage.ledger import (
    InstrumentRow,
    LedgerEvent,
    LedgerRefused,
    RetirementRow,
)

__all__ = [
    "KINDS",
    "EngineMonth",
    "InstrumentDetail",
    "InstrumentView",
    "LedgerRefused",
    "Period",
    "PeriodError",
    "SyncReport",
    "check_retirement",
    "declared_instruments",
    "engine_months",
    "instrument_detail",
    "ledger_view",
    "offsets_used",
    "parse_period",
    "retire",
    "sync_instruments",
]

KINDS = ("gec", "green_power", "ccer", "allowance")
SCOPE2_KINDS = ("gec", "green_power")
OFFSET_KINDS = ("ccer", "allowance")
_PLACES = Decimal("0.000001")  # volumes are kept to 6 decimal places
_SYNC_LOCK_KEY = 727_011  # advisory lock of ledger syncs


class PeriodError(ValueError):
    """A period that is not ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``."""


_PERIOD = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?$")


@dataclass(frozen=True, slots=True)
class Period:
    """A reporting period: a calendar month, quarter or year (site's local calendar)."""

    text: str  # "2026-03", "2026-Q1" or "2026"
    kind: str  # "month" | "quarter" | "year"
    months: tuple[str, ...]  # its months, "YYYY-MM", in order

    def contains(self, month: str) -> bool:
        return month in self.months

    def bounds_s(self, tz: ZoneInfo | str) -> tuple[int, int]:
        """``[start, end)`` in POSIX time [s], calendar of ``tz``."""
        return month_bounds_s(self.months[0], tz)[0], month_bounds_s(self.months[-1], tz)[1]


def parse_period(text: str) -> Period:
    """``"2026-03"`` (month), ``"2026-Q1"`` (quarter) or ``"2026"`` (year).

    Raises
    ------
    PeriodError
        Anything else, with the forms accepted.
    """
    m = _PERIOD.match(text.strip())
    if m is None:
        raise PeriodError(
            f"period {text!r}: give a month (2026-03), a quarter (2026-Q1) or a year (2026)"
        )
    year = m.group(1)
    if m.group(2):
        return Period(text.strip(), "month", (f"{year}-{m.group(2)}",))
    if m.group(3):
        q = int(m.group(3))
        return Period(
            text.strip(), "quarter", tuple(f"{year}-{mo:02d}" for mo in range(3 * q - 2, 3 * q + 1))
        )
    return Period(text.strip(), "year", tuple(f"{year}-{mo:02d}" for mo in range(1, 13)))


def _dec(value: float | int | str | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_PLACES)


def _fmt(value: Decimal) -> str:
    """A volume without trailing zeros: 18, 7.2, 0.125."""
    text = format(value.normalize(), "f")
    return text


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def declared_instruments(site: SiteConfig, at: datetime) -> list[InstrumentRow]:
    """The site file's instruments as ledger rows (nothing retired; ``declared_at`` = at).

    A GEC batch holds ``count`` MWh (1 GEC = 1 MWh, NDRC/MOF/NEA 2023 No. 1044); a contract
    its volumes by month [MWh] (an hourly series summed by local month of the site's time
    zone, as the engine allocates it); credits and allowances their ``volume_t`` [t CO2e].
    Ledger ids are ``certificates.<id>``, ``green_power.<id>``, ``offsets.<id>``.
    """
    zone = ZoneInfo(site.site.timezone)
    rows: list[InstrumentRow] = []

    def row(
        ident: str,
        kind: str,
        serial: str,
        project: str,
        vintage: str,
        volume: Decimal,
        unit: str,
        declaration: Mapping[str, Any],
    ) -> InstrumentRow:
        return InstrumentRow(
            ident, kind, serial, project, vintage, volume, unit, Decimal(0), "held", declaration, at
        )

    for b in site.certificates:
        rows.append(
            row(
                f"certificates.{b.id}",
                "gec",
                b.id,
                "",
                b.issued,
                _dec(b.count),
                "MWh",
                {"count": b.count, "issued": b.issued, "applies_to": b.applies_to},
            )
        )
    for c, volumes in zip(site.green_power, load_contract_volumes(site), strict=True):
        monthly_kwh: dict[str, float] = defaultdict(float)
        if volumes.is_hourly:
            assert volumes.hour_start_s is not None and volumes.hourly_kwh is not None
            for s, kwh in zip(
                volumes.hour_start_s.tolist(), volumes.hourly_kwh.tolist(), strict=True
            ):
                local = datetime.fromtimestamp(s, UTC).astimezone(zone)
                monthly_kwh[f"{local.year}-{local.month:02d}"] += kwh
        else:
            monthly_kwh.update(volumes.monthly_kwh)
        monthly_mwh = {
            m: (_dec(round(kwh, 3)) / 1000).quantize(_PLACES)
            for m, kwh in sorted(monthly_kwh.items())
        }
        rows.append(
            row(
                f"green_power.{c.id}",
                "green_power",
                c.id,
                c.name,
                min(monthly_mwh, default=""),
                sum(monthly_mwh.values(), Decimal(0)).quantize(_PLACES),
                "MWh",
                {
                    "source": "hourly_csv" if volumes.is_hourly else "monthly_kwh",
                    "monthly_mwh": {m: str(v) for m, v in monthly_mwh.items()},
                },
            )
        )
    for o in site.offsets:
        rows.append(
            row(
                f"offsets.{o.id}",
                o.kind,
                o.serial.strip(),
                o.project,
                str(o.vintage),
                _dec(o.volume_t),
                "t CO2e",
                {
                    "kind": o.kind,
                    "serial": o.serial.strip(),
                    "project": o.project,
                    "vintage": o.vintage,
                    "volume_t": str(_dec(o.volume_t)),
                    "registry": o.registry,
                    "note": o.note,
                },
            )
        )
    return rows


def _declared_part(r: InstrumentRow) -> tuple[Any, ...]:
    return (r.kind, r.serial, r.project, r.vintage, r.volume, r.unit, dict(r.declaration))


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync from the site file changed (ledger ids)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


async def sync_instruments(
    conn: asyncpg.Connection,
    site: SiteConfig,
    *,
    actor: str = "site file",
    at: datetime | None = None,
) -> SyncReport:
    """Bring the ledger in line with the site file, all or nothing, in one transaction.

    New instruments are added (``declared``); a changed declaration of an instrument of
    which nothing is retired is replaced (``changed``, with before and after); one no
    longer in the site file is ``cancelled`` if nothing of it is retired. An instrument
    partly or wholly retired is never changed or cancelled: the whole sync is refused.

    Raises
    ------
    LedgerRefused
        Naming each retired instrument whose declaration changed or disappeared, with
        what was retired, and telling how to proceed.
    """
    when = at or datetime.now(UTC)
    declared = {r.id: r for r in declared_instruments(site, when)}
    added: list[str] = []
    changed: list[str] = []
    cancelled: list[str] = []
    unchanged: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SYNC_LOCK_KEY)
        existing = {r.id: r for r in await store.list_instruments(conn, for_update=True)}
        problems: list[str] = []
        for ident, old in existing.items():
            new = declared.get(ident)
            if new is not None and not (
                old.status == "cancelled" or _declared_part(old) != _declared_part(new)
            ):
                unchanged.append(ident)
                continue
            if old.status == "cancelled" and new is None:
                continue
            if old.retired_volume > 0:
                what = "removed from the site file" if new is None else "declared differently"
                problems.append(
                    f"{ident}: {what}, but {_fmt(old.retired_volume)} {old.unit} of it is "
                    "retired: a retired instrument's declaration cannot change; restore "
                    f"its entry as it was ({_summary(old)}) and declare any new volume "
                    "under a new id"
                )
        if problems:
            raise LedgerRefused(
                "the site file changes retired instruments:\n" + "\n".join(problems)
            )
        for ident, old in existing.items():  # cancellations first: a serial may move to a new id
            if ident not in declared and old.status != "cancelled":
                await store.set_status(conn, ident, "cancelled")
                await store.record_event(
                    conn,
                    ident,
                    "cancelled",
                    actor,
                    when,
                    before=store.instrument_json(old),
                    detail="no longer in the site file",
                )
                cancelled.append(ident)
        for ident, new in declared.items():
            if ident in unchanged:
                continue
            before = existing.get(ident)
            try:
                await store.upsert_instrument(conn, new)
            except asyncpg.UniqueViolationError:
                raise LedgerRefused(
                    f"{ident}: serial {new.serial!r} ({new.kind}) is already held by another "
                    "instrument of the ledger: a serial is held once"
                ) from None
            if before is None:
                await store.record_event(
                    conn, ident, "declared", actor, when, after=store.instrument_json(new)
                )
                added.append(ident)
            else:
                await store.record_event(
                    conn,
                    ident,
                    "changed" if before.status != "cancelled" else "declared",
                    actor,
                    when,
                    before=store.instrument_json(before),
                    after=store.instrument_json(new),
                )
                changed.append(ident)
    return SyncReport(tuple(added), tuple(changed), tuple(cancelled), tuple(unchanged))


def _summary(r: InstrumentRow) -> str:
    return ", ".join(f"{k} = {v}" for k, v in r.declaration.items())


def check_retirement(
    inst: InstrumentRow, earlier: Sequence[RetirementRow], period: Period, volume: Decimal
) -> None:
    """Refuse a retirement that would claim a unit twice or for the wrong period.

    Parameters
    ----------
    inst : InstrumentRow
        The instrument (locked by the caller).
    earlier : sequence of RetirementRow
        Its retirements so far.
    period : Period
        What it would be retired against.
    volume : Decimal
        How much [inst.unit].

    Raises
    ------
    LedgerRefused
        With the reason; when the volume left is short, naming the earlier retirements
        (volume, period, by whom, when).
    """
    where = inst.id
    if volume <= 0:
        raise LedgerRefused(f"{where}: the volume to retire must be > 0 {inst.unit}")
    if inst.status == "cancelled":
        raise LedgerRefused(f"{where}: cancelled (no longer in the site file): nothing to retire")
    if inst.kind == "gec":
        applies_to = str(inst.declaration["applies_to"])
        if period.text != applies_to:
            raise LedgerRefused(
                f"{where}: this batch applies to {applies_to}; it cannot be retired against "
                f"{period.text}: the carbon engine already counted its certificates against "
                f"the grid import of {applies_to} (market-based Scope 2), and a certificate "
                "is claimed once, for the period of the consumption it covers"
            )
        if volume != volume.to_integral_value():
            raise LedgerRefused(
                f"{where}: {_fmt(volume)} MWh is not a whole number of certificates "
                "(1 GEC = 1 MWh, indivisible)"
            )
    if inst.kind == "green_power":
        monthly = {m: Decimal(v) for m, v in inst.declaration["monthly_mwh"].items()}
        if period.kind != "month" or period.text not in monthly:
            months = ", ".join(sorted(monthly)) or "none"
            raise LedgerRefused(
                f"{where}: a contract is retired month by month, against a month it delivers "
                f"in ({months}), not {period.text}: the carbon engine allocates each "
                "month's volume to that month's grid import"
            )
        month_done = sum((r.volume for r in earlier if r.period == period.text), Decimal(0))
        if month_done + volume > monthly[period.text]:
            raise LedgerRefused(
                f"{where}: {_fmt(volume)} MWh more against {period.text} would exceed the "
                f"contract's {_fmt(monthly[period.text])} MWh for that month; "
                f"{_earlier_text(inst, [r for r in earlier if r.period == period.text])}"
            )
    left = inst.volume - sum((r.volume for r in earlier), Decimal(0))
    if volume > left:
        raise LedgerRefused(
            f"{where}: cannot retire {_fmt(volume)} {inst.unit} against {period.text}: "
            f"{_fmt(left)} of {_fmt(inst.volume)} {inst.unit} left; "
            f"{_earlier_text(inst, earlier)}"
        )


def _earlier_text(inst: InstrumentRow, earlier: Sequence[RetirementRow]) -> str:
    if not earlier:
        return "nothing retired yet"
    parts = [
        f"{_fmt(r.volume)} {inst.unit} against {r.period} by {r.retired_by} "
        f"at {_when(r.retired_at)}"
        for r in earlier
    ]
    return "already retired: " + "; ".join(parts)


async def retire(
    conn: asyncpg.Connection,
    instrument_id: str,
    *,
    period: str,
    volume: Decimal | float | str,
    retired_by: str,
    reason: str,
    at: datetime | None = None,
) -> RetirementRow:
    """Retire ``volume`` [the instrument's unit] of an instrument against ``period``.

    Raises
    ------
    PeriodError
        ``period`` malformed.
    LookupError
        No such instrument.
    LedgerRefused
        Refused by :func:`check_retirement` or the database (then recorded as ``refused``
        in the audit trail).
    """
    p = parse_period(period)
    try:
        v = Decimal(str(volume))
    except ArithmeticError:
        raise LedgerRefused(f"{instrument_id}: volume {volume!r} is not a number") from None
    if not v.is_finite():
        raise LedgerRefused(f"{instrument_id}: volume {volume!r} is not a number")
    if v != v.quantize(_PLACES):
        raise LedgerRefused(f"{instrument_id}: volume {volume} has more than 6 decimal places")
    if not retired_by.strip():
        raise LedgerRefused(f"{instrument_id}: say who retires it (retired_by)")

    def check(inst: InstrumentRow, earlier: Sequence[RetirementRow]) -> None:
        check_retirement(inst, earlier, p, v)

    return await store.retire(
        conn,
        instrument_id,
        volume=v,
        period=p.text,
        retired_by=retired_by.strip(),
        reason=reason,
        at=at or datetime.now(UTC),
        check=check,
    )


@dataclass(frozen=True, slots=True)
class EngineMonth:
    """What the engine did with a Scope 2 instrument's volume in one month [kWh].

    ``allocated_kwh``: this instrument's share of the month's grid import, by the
    engine's allocation run again over the stored hours; ``column_kwh``: the month's sum
    of the stored hourly column of its kind (``certificate_kwh`` or
    ``green_contract_kwh``, all instruments of the kind together); ``unused_kwh`` =
    volume - allocated; ``hours``: hours stored of the month.
    """

    month: str
    volume_kwh: float
    allocated_kwh: float
    column_kwh: float
    unused_kwh: float
    hours: int


def engine_months(
    site: SiteConfig,
    hour_starts_s: np.ndarray[Any, np.dtype[np.int64]],
    grid_import_kwh: np.ndarray[Any, np.dtype[np.float64]],
    contract_kwh: np.ndarray[Any, np.dtype[np.float64]],
    certificate_kwh: np.ndarray[Any, np.dtype[np.float64]],
) -> dict[str, tuple[EngineMonth, ...]]:
    """Per Scope 2 instrument (ledger id), the engine's allocation month by month.

    The allocation is :func:`~zerocarbon.carbon_engine.instruments.allocate_instruments`
    with the engine's arguments (site instruments in site order, site time zone,
    ``by_coverage``) over the stored hours: on complete months it reproduces the hourly
    columns the engine stored (their sum over a kind is ``column_kwh``).
    """
    zone = ZoneInfo(site.site.timezone)
    contracts = load_contract_volumes(site)
    alloc = allocate_instruments(
        hour_starts_s, grid_import_kwh, contracts, site.certificates, zone, by_coverage=True
    )
    months: dict[str, tuple[int, int]] = {}

    def bounds(month: str) -> tuple[int, int]:
        if month not in months:
            months[month] = month_bounds_s(month, zone)
        return months[month]

    out: dict[str, tuple[EngineMonth, ...]] = {}
    for b in site.certificates:
        start, end = bounds(b.applies_to)
        mask = (hour_starts_s >= start) & (hour_starts_s < end)
        volume = b.count * KWH_PER_GEC
        allocated = float(alloc.by_instrument_kwh[f"certificates.{b.id}"][mask].sum())
        out[f"certificates.{b.id}"] = (
            EngineMonth(
                b.applies_to,
                volume,
                allocated,
                float(certificate_kwh[mask].sum()),
                max(volume - allocated, 0.0),
                int(mask.sum()),
            ),
        )
    for c in contracts:
        per_hour = alloc.by_instrument_kwh[f"green_power.{c.id}"]
        if c.is_hourly:
            assert c.hour_start_s is not None and c.hourly_kwh is not None
            vol_by_month: dict[str, float] = defaultdict(float)
            for s, kwh in zip(c.hour_start_s.tolist(), c.hourly_kwh.tolist(), strict=True):
                local = datetime.fromtimestamp(s, UTC).astimezone(zone)
                vol_by_month[f"{local.year}-{local.month:02d}"] += kwh
        else:
            vol_by_month = dict(c.monthly_kwh)
        rows = []
        for month, volume in sorted(vol_by_month.items()):
            start, end = bounds(month)
            mask = (hour_starts_s >= start) & (hour_starts_s < end)
            allocated = float(per_hour[mask].sum())
            rows.append(
                EngineMonth(
                    month,
                    volume,
                    allocated,
                    float(contract_kwh[mask].sum()),
                    max(volume - allocated, 0.0),
                    int(mask.sum()),
                )
            )
        out[f"green_power.{c.id}"] = tuple(rows)
    return out


def offsets_used(
    instruments: Sequence[InstrumentRow], retirements: Sequence[RetirementRow]
) -> dict[str, Decimal]:
    """CCER credits and allowances retired, by period [t CO2e].

    Offsets used are reported beside Scope 1 and 2, never subtracted from them (GHG
    Protocol Corporate Standard, ch. 9).
    """
    kinds = {i.id: i.kind for i in instruments}
    used: dict[str, Decimal] = defaultdict(Decimal)
    for r in retirements:
        if kinds.get(r.instrument_id) in OFFSET_KINDS:
            used[r.period] += r.volume
    return dict(sorted(used.items()))


@dataclass(frozen=True, slots=True)
class InstrumentView:
    """An instrument with its volumes and, for Scope 2 instruments, the engine's use."""

    instrument: InstrumentRow
    retired_by_period: Mapping[str, Decimal]  # [unit]
    engine: tuple[EngineMonth, ...] | None  # None: not a Scope 2 instrument, or no site


@dataclass(frozen=True, slots=True)
class InstrumentDetail:
    view: InstrumentView
    retirements: tuple[RetirementRow, ...]
    events: tuple[LedgerEvent, ...] = field(default_factory=tuple)


async def _engine(
    conn: asyncpg.Connection, site: SiteConfig | None
) -> dict[str, tuple[EngineMonth, ...]]:
    if site is None or not (site.certificates or site.green_power):
        return {}
    zone = ZoneInfo(site.site.timezone)
    months = [b.applies_to for b in site.certificates]
    for inst in declared_instruments(site, datetime.now(UTC)):
        if inst.kind == "green_power":
            months.extend(inst.declaration["monthly_mwh"])
    if not months:
        return {}
    start_s = min(month_bounds_s(m, zone)[0] for m in months)
    end_s = max(month_bounds_s(m, zone)[1] for m in months)
    hours, imp, contract, cert = await store.hourly_instrument_columns(
        conn, datetime.fromtimestamp(start_s, UTC), datetime.fromtimestamp(end_s, UTC)
    )
    wanted = np.zeros(hours.shape, dtype=bool)  # only the instruments' months
    for m in set(months):
        s, e = month_bounds_s(m, zone)
        wanted |= (hours >= s) & (hours < e)
    return engine_months(site, hours[wanted], imp[wanted], contract[wanted], cert[wanted])


async def ledger_view(conn: asyncpg.Connection, site: SiteConfig | None) -> list[InstrumentView]:
    """Every instrument with its retired volume by period and the engine's allocation
    (when the site file is given)."""
    instruments = await store.list_instruments(conn)
    retirements = await store.instrument_retirements(conn)
    engine = await _engine(conn, site)
    by_inst: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in retirements:
        by_inst[r.instrument_id][r.period] += r.volume
    return [
        InstrumentView(
            i,
            dict(by_inst.get(i.id, {})),
            engine.get(i.id) if i.kind in SCOPE2_KINDS and i.status != "cancelled" else None,
        )
        for i in instruments
    ]


async def instrument_detail(
    conn: asyncpg.Connection, instrument_id: str, site: SiteConfig | None
) -> InstrumentDetail:
    """One instrument with its retirements and audit trail.

    Raises
    ------
    LookupError
        No such instrument.
    """
    views = {v.instrument.id: v for v in await ledger_view(conn, site)}
    view = views.get(instrument_id)
    if view is None:
        raise LookupError(f"no instrument {instrument_id!r} in the ledger")
    return InstrumentDetail(
        view,
        tuple(await store.instrument_retirements(conn, instrument_id)),
        tuple(await store.instrument_events(conn, instrument_id)),
    )
