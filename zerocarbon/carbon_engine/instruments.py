"""Contractual instruments against hourly grid import: green-power contracts and GECs.

Market-based Scope 2 counts grid electricity covered by contractual instruments at the
instrument's (zero) emission rate and the rest at the residual mix [1]_. This module
decides, hour by hour, how much of the site's grid import each instrument covers. The
rules, applied in this order:

1. **Hourly contract volumes** (``hourly_csv``): the volume of an hour covers
   ``min(volume, still-uncovered import)`` of that same hour. A surplus is not carried to
   any other hour; it is reported as unused (hourly matching as in the EnergyTag Granular
   Certificate scheme [2]_ and Google's 24/7 CFE accounting [3]_). Several hourly
   contracts are applied in the order given.
2. **Monthly contract volumes** (``monthly_kwh``): a month's volume is allocated to that
   month's hours pro rata to each hour's still-uncovered import, capped by the month's
   uncovered import; the rest is reported as unused. Only the hours given are used: for
   a month still under way the allocation is provisional and changes as the month fills.
3. **Green electricity certificates** (GEC, 1 GEC = 1 MWh [4]_), one batch after another:
   a batch is retired against the import of its ``applies_to`` month left uncovered after
   the contracts (and earlier batches), pro rata by hour. A batch never covers more than
   its volume in total nor any hour more than that hour's remaining import, and covers
   exactly one month: a certificate is never counted twice (across hours, batches or
   months). Certificates reduce market-based Scope 2 only. They do **not** count toward
   hourly carbon-free energy: China's GECs are issued per month of generation and are
   unbundled, so nothing ties them to the hours of consumption; the hourly allocation here
   is an accounting convention, not an hourly match [2]_ [3]_.

Months are calendar months in the site's time zone (``tz``): an hour belongs to the month
in which it starts, local time. All arithmetic is in kWh; totals agree up to floating-point
rounding.

References
----------
.. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 6 (market-based method),
   ch. 7 (Scope 2 Quality Criteria: an instrument is claimed once, for a period matching
   the consumption).
.. [2] EnergyTag, "Granular Certificate Scheme Standard", v1, 2022 (hourly matching of
   production and consumption; surplus in one hour does not cover another).
.. [3] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021 (hourly CFE
   score; unbundled certificates that are not hourly do not count).
.. [4] NDRC/MOF/NEA, "Notice on full coverage of renewable energy green electricity
   certificates" (2023 No. 1044): one GEC per 1,000 kWh (1 MWh) of renewable generation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from zerocarbon.carbon_engine.hour_start import parse_hour_start
from zerocarbon.config import CertificateBatch, GreenPowerContract, SiteConfig

__all__ = [
    "KWH_PER_GEC",
    "Allocation",
    "ContractVolumes",
    "InstrumentError",
    "InstrumentTotals",
    "allocate_instruments",
    "load_contract_volumes",
    "month_bounds_s",
]

KWH_PER_GEC = 1000.0  # 1 GEC = 1 MWh [kWh]
HOUR_S = 3600


class InstrumentError(ValueError):
    """Bad instrument data; the message names the contract (and file and line)."""


@dataclass(frozen=True)
class ContractVolumes:
    """A green-power contract's volumes: monthly totals or an hourly series [kWh].

    Exactly one of ``monthly_kwh`` (``{"YYYY-MM": kWh}``) or ``hour_start_s`` with
    ``hourly_kwh`` (POSIX hour starts [s] and volumes [kWh]) is given.
    """

    id: str
    monthly_kwh: Mapping[str, float] = field(default_factory=dict)
    hour_start_s: NDArray[np.int64] | None = None
    hourly_kwh: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        hourly = self.hour_start_s is not None or self.hourly_kwh is not None
        if bool(self.monthly_kwh) == hourly:
            raise InstrumentError(f"contract {self.id!r}: give monthly_kwh or hourly volumes")
        if hourly:
            if self.hour_start_s is None or self.hourly_kwh is None:
                raise InstrumentError(f"contract {self.id!r}: hourly volumes need hours and kWh")
            if self.hour_start_s.shape != self.hourly_kwh.shape:
                raise InstrumentError(f"contract {self.id!r}: hours and kWh differ in length")
            if np.unique(self.hour_start_s).shape[0] != self.hour_start_s.shape[0]:
                raise InstrumentError(f"contract {self.id!r}: an hour is given twice")
            if np.any(self.hour_start_s % HOUR_S != 0):
                raise InstrumentError(f"contract {self.id!r}: hour starts must be whole hours")
            _check_volumes(self.id, self.hourly_kwh)
        for month, kwh in self.monthly_kwh.items():
            _month_start(month, ZoneInfo("UTC"))  # validates the key
            if not math.isfinite(kwh) or kwh < 0:
                raise InstrumentError(f"contract {self.id!r}: {month} volume {kwh} must be >= 0")

    @property
    def is_hourly(self) -> bool:
        return self.hour_start_s is not None


@dataclass(frozen=True, slots=True)
class InstrumentTotals:
    """What one instrument brought to the hours given [kWh].

    ``offered_kwh``: the volume that applies to the given hours (hourly volumes of given
    hours; monthly volumes or certificate batches of months with at least one given
    hour); ``allocated_kwh``: what covered import; ``unused_kwh`` = offered - allocated.
    """

    id: str
    kind: str  # "contract_hourly" | "contract_monthly" | "gec"
    offered_kwh: float
    allocated_kwh: float
    unused_kwh: float


@dataclass(frozen=True)
class Allocation:
    """Per-hour coverage of grid import by instruments, in the order of the hours given."""

    contract_kwh: NDArray[np.float64]  # all contracts (hourly and monthly) [kWh]
    contract_hourly_kwh: NDArray[np.float64]  # hourly-metered contracts only [kWh]
    gec_kwh: NDArray[np.float64]  # certificates [kWh]
    uncovered_kwh: NDArray[np.float64]  # import - contract - gec, >= 0 [kWh]
    # "green_power.<id>" / "certificates.<id>" -> per-hour coverage [kWh]
    by_instrument_kwh: Mapping[str, NDArray[np.float64]]
    instruments: tuple[InstrumentTotals, ...]


def _check_volumes(what: str, kwh: NDArray[np.float64]) -> None:
    if np.any(~np.isfinite(kwh)) or np.any(kwh < 0):
        raise InstrumentError(f"{what}: volumes must be finite and >= 0 kWh")


def _month_start(month: str, tz: ZoneInfo) -> datetime:
    try:
        year, mon = (int(x) for x in month.split("-"))
        return datetime(year, mon, 1, tzinfo=tz)
    except ValueError:
        raise InstrumentError(f"month {month!r} is not YYYY-MM") from None


def month_bounds_s(month: str, tz: ZoneInfo | str = "UTC") -> tuple[int, int]:
    """``[start, end)`` of a calendar month in a time zone, POSIX time [s]."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = _month_start(month, zone)
    nxt = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=zone)
    return int(start.timestamp()), int(nxt.timestamp())


def _pro_rata(
    remaining: NDArray[np.float64], mask: NDArray[np.bool_], volume_kwh: float
) -> NDArray[np.float64]:
    """Allocate ``volume_kwh`` to the masked hours pro rata to ``remaining``, capped."""
    alloc = np.zeros_like(remaining)
    room = float(remaining[mask].sum())
    if room <= 0.0 or volume_kwh <= 0.0:
        return alloc
    ratio = min(volume_kwh / room, 1.0)
    alloc[mask] = np.minimum(remaining[mask] * ratio, remaining[mask])
    return alloc


def allocate_instruments(
    hour_starts_s: NDArray[np.int64],
    grid_import_kwh: NDArray[np.float64],
    contracts: Sequence[ContractVolumes],
    certificates: Sequence[CertificateBatch],
    tz: ZoneInfo | str = "UTC",
    by_coverage: bool = False,
) -> Allocation:
    """Cover the grid import of the given hours with contracts, then certificates.

    The rules are those of the module docstring: hourly contracts hour by hour, monthly
    contracts pro rata to uncovered import within their month, then GEC batches pro rata
    to what is left within their ``applies_to`` month; nothing ever exceeds an hour's
    import or an instrument's volume.

    Parameters
    ----------
    hour_starts_s : ndarray of int64, shape (n,)
        Hour starts, POSIX time, whole hours [s]; unique, any order, need not be contiguous.
        A month's volume is spread over all of that month's hours given here.
    grid_import_kwh : ndarray of float64, shape (n,)
        Grid import of each hour [kWh], finite and >= 0.
    contracts : sequence of ContractVolumes
        Green-power contracts, applied in this order within their kind.
    certificates : sequence of CertificateBatch
        GEC batches retired by the site (``count`` certificates = ``count`` MWh).
    tz : ZoneInfo or str, default "UTC"
        Time zone whose calendar months the monthly volumes and certificates refer to: pass
        the site's (``site.site.timezone``).
    by_coverage : bool, default False
        Offer a month's monthly volumes and certificates only in the share its given
        hours are of all its hours (volume x hours given / hours of the month). A live
        month (or one whose data began mid-month) is then never front-loaded with the
        whole volume on its first hours; the allocation converges on the month's pro
        rata as the month fills and equals it once every hour is there. False: the
        given hours are the whole month.

    Returns
    -------
    Allocation
        Per-hour ``contract_kwh``, ``contract_hourly_kwh``, ``gec_kwh``, ``uncovered_kwh``
        [kWh], per-instrument per-hour coverage and totals (offered, allocated, unused).

    Raises
    ------
    InstrumentError
        Hours not unique or not whole, arrays of different lengths, negative or NaN import.

    References
    ----------
    .. [1] GHG Protocol Scope 2 Guidance, 2015, ch. 6-7.
    .. [2] EnergyTag, "Granular Certificate Scheme Standard", 2022.
    .. [3] Google, "24/7 Carbon-Free Energy: Methodologies and Metrics", 2021.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    hours = np.asarray(hour_starts_s, dtype=np.int64)
    imp = np.asarray(grid_import_kwh, dtype=np.float64)
    n = hours.shape[0]
    if imp.shape != (n,):
        raise InstrumentError("grid_import_kwh must have one value per hour")
    if np.unique(hours).shape[0] != n or np.any(hours % HOUR_S != 0):
        raise InstrumentError("hour_starts_s must be unique whole hours")
    _check_volumes("grid_import_kwh", imp)

    remaining = imp.copy()
    contract = np.zeros(n)
    contract_hourly = np.zeros(n)
    gec = np.zeros(n)
    by_id: dict[str, NDArray[np.float64]] = {}
    totals: list[InstrumentTotals] = []

    def book(ident: str, kind: str, offered: float, alloc: NDArray[np.float64]) -> None:
        section = "certificates" if kind == "gec" else "green_power"
        by_id[f"{section}.{ident}"] = alloc
        allocated = float(alloc.sum())
        totals.append(
            InstrumentTotals(ident, kind, offered, allocated, max(offered - allocated, 0.0))
        )

    for c in contracts:
        if not c.is_hourly:
            continue
        assert c.hour_start_s is not None and c.hourly_kwh is not None
        _, i_site, i_contract = np.intersect1d(hours, c.hour_start_s, return_indices=True)
        volume = np.zeros(n)
        volume[i_site] = c.hourly_kwh[i_contract]
        alloc = np.minimum(volume, remaining)
        remaining = np.maximum(remaining - alloc, 0.0)
        contract += alloc
        contract_hourly += alloc
        book(c.id, "contract_hourly", float(volume.sum()), alloc)

    def elapsed(start: int, end: int) -> float:
        if not by_coverage:
            return 1.0
        given = int(np.count_nonzero((hours >= start) & (hours < end)))
        return min(given * HOUR_S / (end - start), 1.0)

    for c in contracts:
        if c.is_hourly:
            continue
        alloc_c = np.zeros(n)
        offered = 0.0
        for month, kwh in sorted(c.monthly_kwh.items()):
            start, end = month_bounds_s(month, zone)
            mask = (hours >= start) & (hours < end)
            if not mask.any():
                continue
            offered += kwh
            alloc = _pro_rata(remaining, mask, kwh * elapsed(start, end))
            remaining = np.maximum(remaining - alloc, 0.0)
            alloc_c += alloc
        contract += alloc_c
        book(c.id, "contract_monthly", offered, alloc_c)

    for batch in certificates:
        start, end = month_bounds_s(batch.applies_to, zone)
        mask = (hours >= start) & (hours < end)
        volume_kwh = batch.count * KWH_PER_GEC
        offered = volume_kwh if mask.any() else 0.0
        alloc = _pro_rata(remaining, mask, offered * elapsed(start, end))
        remaining = np.maximum(remaining - alloc, 0.0)
        gec += alloc
        book(batch.id, "gec", offered, alloc)

    return Allocation(
        contract_kwh=contract,
        contract_hourly_kwh=contract_hourly,
        gec_kwh=gec,
        uncovered_kwh=np.maximum(imp - contract - gec, 0.0),
        by_instrument_kwh=by_id,
        instruments=tuple(totals),
    )


def _parse_hour(text: str, where: str) -> int:
    try:
        return parse_hour_start(text)
    except ValueError as exc:
        raise InstrumentError(f"{where}: {exc}") from None


def _load_hourly_csv(contract_id: str, path: Path, key: str) -> ContractVolumes:
    hours: list[int] = []
    kwh: list[float] = []
    seen: dict[int, int] = {}
    header: list[str] | None = None
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{key}: {path}:{lineno}"
            cells = [c.strip() for c in next(csv.reader([line]))]
            if header is None:
                header = cells
                if "hour_start" not in header or "kwh" not in header:
                    raise InstrumentError(f"{where}: header must have hour_start and kwh")
                continue
            if len(cells) != len(header):
                raise InstrumentError(f"{where}: {len(cells)} cells, header has {len(header)}")
            row = dict(zip(header, cells, strict=True))
            hour = _parse_hour(row["hour_start"], where)
            if hour in seen:
                raise InstrumentError(f"{where}: hour already given on line {seen[hour]}")
            try:
                value = float(row["kwh"])
            except ValueError:
                raise InstrumentError(f"{where}: kwh {row['kwh']!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise InstrumentError(f"{where}: kwh {row['kwh']!r} must be >= 0")
            seen[hour] = lineno
            hours.append(hour)
            kwh.append(value)
    if header is None:
        raise InstrumentError(f"{key}: {path}: no header row (hour_start,kwh)")
    return ContractVolumes(
        contract_id,
        hour_start_s=np.array(hours, dtype=np.int64),
        hourly_kwh=np.array(kwh, dtype=np.float64),
    )


def _volumes(index: int, contract: GreenPowerContract, site: SiteConfig) -> ContractVolumes:
    if contract.hourly_csv is None:
        return ContractVolumes(contract.id, monthly_kwh=dict(contract.monthly_kwh))
    key = f"green_power[{index}].hourly_csv"
    path = site.resolve_path(contract.hourly_csv)
    try:
        return _load_hourly_csv(contract.id, path, key)
    except OSError as exc:
        raise InstrumentError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def load_contract_volumes(site: SiteConfig) -> list[ContractVolumes]:
    """The site's ``[[green_power]]`` contracts as volumes, hourly CSVs read.

    An hourly CSV has a header with ``hour_start`` (ISO 8601 with UTC offset, a whole UTC
    hour) and ``kwh`` (>= 0); ``#`` lines are comments; each hour at most once. Paths are
    relative to the site file.

    Raises
    ------
    InstrumentError
        Naming ``green_power[i].hourly_csv``, the file and the line.
    """
    return [_volumes(i, c, site) for i, c in enumerate(site.green_power)]
