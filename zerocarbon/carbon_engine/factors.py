"""Grid electricity emission factors: shipped data, site resolution, hourly series.

China's MEE publishes, per data year, a national average factor, regional and provincial
grid factors, and a national factor excluding market-traded non-fossil electricity; the
last is the residual mix used for market-based Scope 2 [1]_ [2]_. Values, their sources
and what is missing live in ``data/grid_emission_factors_cn.csv``.

A site's annual factors come from :func:`resolve_grid_factors` (province over region,
site-file overrides over both). Where a grid operator or data provider offers an hourly
grid-intensity series, an :class:`HourlyFactorSource` gives per-hour factors, falling back
to the annual ones for hours the series lacks. Series are read from a CSV file
(:func:`load_hourly_factors_csv`) or fetched over HTTP by the caller
(:class:`HttpJsonFactorSource.refresh`); :meth:`~HourlyFactorSource.factors_for` itself is
a pure look-up, so the engine never touches the network.

References
----------
.. [1] WRI/WBCSD, "GHG Protocol Scope 2 Guidance", 2015, ch. 6.11 (residual mix) and
   ch. 6.4 (location-based grid average factors).
.. [2] MEE/NBS, announcements on the 2021, 2022 and 2023 electricity CO2 emission
   factors (2024 No. 12; 2024-12-20; January 2026).
"""

from __future__ import annotations

import csv
import json
import math
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from zerocarbon.carbon_engine.fuels import fuel_errors
from zerocarbon.carbon_engine.hour_start import parse_hour_start
from zerocarbon.carbon_engine.instruments import InstrumentError, load_contract_volumes
from zerocarbon.config import SiteConfig

__all__ = [
    "FACTORS_CSV",
    "NATIONAL",
    "PROVINCES",
    "RESIDUAL_SCOPE",
    "ConstantFactorSource",
    "CsvFactorSource",
    "FactorError",
    "GridFactors",
    "HourlyFactorSeries",
    "HourlyFactorSource",
    "HttpJsonFactorSource",
    "grid_factors",
    "hourly_factor_source",
    "known_provinces",
    "known_regions",
    "known_years",
    "load_hourly_factors_csv",
    "location_factor",
    "parse_hourly_factors_json",
    "province_factor",
    "residual_factor",
    "resolve_grid_factors",
    "site_factor_errors",
]

FACTORS_CSV = Path(__file__).parent / "data" / "grid_emission_factors_cn.csv"

NATIONAL = "national"  # region name meaning "the national average factor"
RESIDUAL_SCOPE = "national_excl_market_nonfossil"
HOUR_S = 3600

# Provincial-level divisions of the MEE tables: pinyin slug -> Chinese name (both accepted).
PROVINCES: dict[str, str] = {
    "beijing": "北京",
    "tianjin": "天津",
    "hebei": "河北",
    "shanxi": "山西",
    "inner_mongolia": "内蒙古",
    "liaoning": "辽宁",
    "jilin": "吉林",
    "heilongjiang": "黑龙江",
    "shanghai": "上海",
    "jiangsu": "江苏",
    "zhejiang": "浙江",
    "anhui": "安徽",
    "fujian": "福建",
    "jiangxi": "江西",
    "shandong": "山东",
    "henan": "河南",
    "hubei": "湖北",
    "hunan": "湖南",
    "guangdong": "广东",
    "guangxi": "广西",
    "hainan": "海南",
    "chongqing": "重庆",
    "sichuan": "四川",
    "guizhou": "贵州",
    "yunnan": "云南",
    "tibet": "西藏",
    "shaanxi": "陕西",
    "gansu": "甘肃",
    "qinghai": "青海",
    "ningxia": "宁夏",
    "xinjiang": "新疆",
}
_REGIONS_ZH = {
    "华北": "north",
    "东北": "northeast",
    "华东": "east",
    "华中": "central",
    "西北": "northwest",
    "南方": "south",
    "西南": "southwest",
    "全国": NATIONAL,
}


class FactorError(ValueError):
    """No factor for what the site asks; the message names the key path and the choices."""


@dataclass(frozen=True, slots=True)
class GridFactors:
    """The two annual factors Scope 2 accounting needs for a site [kg CO2/kWh]."""

    region: str
    data_year: int
    location_kg_per_kwh: float  # provincial, regional or national average grid factor
    market_kg_per_kwh: float  # residual mix for energy not covered by instruments
    province: str | None = None
    location_source: str = ""  # e.g. "MEE 2023 regional east" or "grid.location_factor..."
    market_source: str = ""


@dataclass(frozen=True, slots=True)
class _Factor:
    value: float
    source: str


@cache
def _table() -> dict[tuple[int, str, str], _Factor]:
    rows: dict[tuple[int, str, str], _Factor] = {}
    with FACTORS_CSV.open(encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))
        for row in csv.DictReader(lines):
            key = (int(row["data_year"]), row["scope"], row["region"])
            rows[key] = _Factor(float(row["factor_kg_per_kwh"]), row["source"])
    return rows


def known_regions() -> list[str]:
    return sorted({r for (_y, s, r) in _table() if s == "regional"} | {NATIONAL})


def known_years() -> list[int]:
    return sorted({y for (y, _s, _r) in _table()})


def known_provinces(data_year: int | None = None) -> list[str]:
    """Provinces with a shipped factor (in ``data_year``, or in any year)."""
    return sorted({r for (y, s, r) in _table() if s == "provincial" and data_year in (None, y)})


def _slug(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _region_key(region: str) -> str:
    return _REGIONS_ZH.get(region.strip(), _slug(region))


def _province_key(province: str) -> str | None:
    key = _slug(province)
    if key in PROVINCES:
        return key
    for slug, zh in PROVINCES.items():
        if province.strip() in (zh, zh + "省", zh + "市", zh + "自治区"):
            return slug
    return None


def _years_with(scope: str, region: str) -> list[int]:
    return sorted(y for (y, s, r) in _table() if (s, r) == (scope, region))


def location_factor(region: str, data_year: int) -> float:
    """Location-based grid factor of a regional grid (or ``national``) [kg CO2/kWh].

    Raises
    ------
    FactorError
        Naming the region, the year and what is known.
    """
    key = _region_key(region)
    scope, name = ("national_average", "CN") if key == NATIONAL else ("regional", key)
    found = _table().get((data_year, scope, name))
    if found is None:
        raise FactorError(
            f"grid.region: no MEE factor for region {region!r} in data year {data_year}; "
            f"regions: {', '.join(known_regions())}; "
            f"years with this region: {_years_with(scope, name)}"
        )
    return found.value


def province_factor(province: str, data_year: int) -> float:
    """Location-based provincial grid factor [kg CO2/kWh] (see the CSV for what is shipped)."""
    key = _province_key(province)
    found = None if key is None else _table().get((data_year, "provincial", key))
    if found is None:
        shipped = ", ".join(known_provinces(data_year)) or "none shipped"
        hint = (
            f"unknown province; names: {', '.join(PROVINCES)}"
            if key is None
            else f"years with this province: {_years_with('provincial', key)}"
        )
        raise FactorError(
            f"grid.province: no MEE factor for {province!r} in data year {data_year}; "
            f"provinces: {shipped}; {hint}; use grid.region or "
            "grid.location_factor_kg_per_kwh"
        )
    return found.value


def residual_factor(data_year: int) -> float:
    """Market-based residual-mix factor of a data year [kg CO2/kWh]."""
    found = _table().get((data_year, RESIDUAL_SCOPE, "CN"))
    if found is None:
        raise FactorError(
            f"grid.data_year: no MEE residual-mix factor (national excluding market-traded "
            f"non-fossil) for data year {data_year}; years: {_years_with(RESIDUAL_SCOPE, 'CN')}"
        )
    return found.value


def grid_factors(
    region: str,
    data_year: int,
    location_override: float | None = None,
    market_override: float | None = None,
) -> GridFactors:
    """Factors of a region and data year, with optional overrides [kg CO2/kWh]."""
    if location_override is not None:
        loc, loc_src = location_override, "grid.location_factor_kg_per_kwh (site file)"
    else:
        loc = location_factor(region, data_year)
        key = _region_key(region)
        loc_src = f"MEE {data_year} " + (
            "national average" if key == NATIONAL else f"regional {key}"
        )
    if market_override is not None:
        mkt, mkt_src = market_override, "grid.market_factor_kg_per_kwh (site file)"
    else:
        mkt = residual_factor(data_year)
        mkt_src = f"MEE {data_year} national excluding market-traded non-fossil"
    return GridFactors(region, data_year, loc, mkt, None, loc_src, mkt_src)


def resolve_grid_factors(site: SiteConfig) -> GridFactors:
    """The site's annual Scope 2 factors from its ``[grid]`` section.

    Location-based: ``grid.location_factor_kg_per_kwh`` if set, else the provincial factor
    of ``grid.province`` if set, else the regional factor of ``grid.region`` (``national``:
    the national average), all for ``grid.data_year``. Market-based:
    ``grid.market_factor_kg_per_kwh`` if set, else the national factor excluding
    market-traded non-fossil electricity of ``grid.data_year`` (residual mix).

    Parameters
    ----------
    site : SiteConfig

    Returns
    -------
    GridFactors
        [kg CO2/kWh], with where each factor came from.

    Raises
    ------
    FactorError
        The message names the key path (``grid.province: no MEE factor for 'xyz' in data
        year 2023; provinces: ...``).

    References
    ----------
    .. [1] GHG Protocol Scope 2 Guidance, 2015, table 6.2 (emission factor hierarchy).
    """
    g = site.grid
    if g.province is not None and _province_key(g.province) is None:
        province_factor(g.province, g.data_year)  # raises: unknown name, even with override
    if _region_key(g.region) not in known_regions():
        location_factor(g.region, g.data_year)  # raises: a typo is an error, province or not
    base = grid_factors(
        g.region,
        g.data_year,
        g.location_factor_kg_per_kwh
        if g.location_factor_kg_per_kwh is not None
        else (province_factor(g.province, g.data_year) if g.province is not None else None),
        g.market_factor_kg_per_kwh,
    )
    if g.province is not None:
        key = _province_key(g.province)
        src = (
            base.location_source
            if g.location_factor_kg_per_kwh is not None
            else f"MEE {g.data_year} provincial {key}"
        )
        return replace(base, province=key, location_source=src)
    return base


def site_factor_errors(site: SiteConfig) -> list[str]:
    """Every factor problem of a site, each naming its key path; empty when all resolve.

    Checks the grid factors, the hourly factor file (if any), the contracts' hourly
    files, every ``[fuels.X]`` and every fuel meter's fuel and counters
    (:func:`zerocarbon.carbon_engine.fuels.fuel_errors`).
    """
    errors: list[str] = []
    fallback: GridFactors | None = None
    try:
        fallback = resolve_grid_factors(site)
    except FactorError as exc:
        errors.append(str(exc))
    if site.grid.hourly_factors_csv is not None and fallback is not None:
        try:
            load_hourly_factors_csv(site.resolve_path(site.grid.hourly_factors_csv), fallback)
        except (FactorError, OSError) as exc:
            errors.append(f"grid.hourly_factors_csv: {exc}")
    try:
        load_contract_volumes(site)
    except InstrumentError as exc:
        errors.append(str(exc))
    errors.extend(fuel_errors(site))
    return errors


# --- hourly grid-intensity series ------------------------------------------------------


class HourlyFactorSource(Protocol):
    """Per-hour grid factors for the engine; a pure look-up (no I/O)."""

    def factors_for(
        self, hour_starts_s: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        """Factors of the given hours.

        Parameters
        ----------
        hour_starts_s : ndarray of int64, shape (n,)
            Hour starts, POSIX time, multiples of 3600 [s]; any order.

        Returns
        -------
        location : ndarray of float64, shape (n,)
            Location-based factor of each hour [kg CO2/kWh].
        market : ndarray of float64, shape (n,)
            Market-based (residual-mix) factor of each hour [kg CO2/kWh].
        from_series : ndarray of bool, shape (n,)
            True where the hour came from a series, False where the annual factors filled in.
        """
        ...


@dataclass(frozen=True, slots=True)
class ConstantFactorSource:
    """The annual factors for every hour (sites without an hourly series)."""

    factors: GridFactors

    def factors_for(
        self, hour_starts_s: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        n = np.asarray(hour_starts_s).shape[0]
        return (
            np.full(n, self.factors.location_kg_per_kwh, dtype=np.float64),
            np.full(n, self.factors.market_kg_per_kwh, dtype=np.float64),
            np.zeros(n, dtype=np.bool_),
        )


@dataclass(frozen=True)
class HourlyFactorSeries:
    """An hourly factor series in memory, with the annual factors as fallback.

    For an hour the series has, the location factor is the series' value and the market
    factor is the series' market value where given, else the annual market factor. Hours
    the series lacks get both annual factors and ``from_series`` False.
    """

    hour_start_s: NDArray[np.int64]  # sorted, unique
    location_kg_per_kwh: NDArray[np.float64]
    market_kg_per_kwh: NDArray[np.float64]  # NaN: not given for that hour
    fallback: GridFactors
    source: str = ""

    def factors_for(
        self, hour_starts_s: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        hours = np.asarray(hour_starts_s, dtype=np.int64)
        n = hours.shape[0]
        loc = np.full(n, self.fallback.location_kg_per_kwh, dtype=np.float64)
        mkt = np.full(n, self.fallback.market_kg_per_kwh, dtype=np.float64)
        found = np.zeros(n, dtype=np.bool_)
        m = self.hour_start_s.shape[0]
        if m == 0 or n == 0:
            return loc, mkt, found
        idx = np.searchsorted(self.hour_start_s, hours)
        inside = idx < m
        found[inside] = self.hour_start_s[idx[inside]] == hours[inside]
        j = idx[found]
        loc[found] = self.location_kg_per_kwh[j]
        series_mkt = self.market_kg_per_kwh[j]
        mkt[found] = np.where(np.isnan(series_mkt), self.fallback.market_kg_per_kwh, series_mkt)
        return loc, mkt, found

    def merged(self, newer: HourlyFactorSeries) -> HourlyFactorSeries:
        """This series updated with ``newer``'s hours (``newer`` wins where both have one)."""
        keep = ~np.isin(self.hour_start_s, newer.hour_start_s)
        hours = np.concatenate([self.hour_start_s[keep], newer.hour_start_s])
        order = np.argsort(hours, kind="stable")
        return HourlyFactorSeries(
            hours[order],
            np.concatenate([self.location_kg_per_kwh[keep], newer.location_kg_per_kwh])[order],
            np.concatenate([self.market_kg_per_kwh[keep], newer.market_kg_per_kwh])[order],
            newer.fallback,
            newer.source or self.source,
        )


def _empty_series(fallback: GridFactors, source: str = "") -> HourlyFactorSeries:
    return HourlyFactorSeries(
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.float64),
        np.empty(0, dtype=np.float64),
        fallback,
        source,
    )


def _parse_hour(text: str, where: str) -> int:
    try:
        return parse_hour_start(text)
    except ValueError as exc:
        raise FactorError(f"{where}: {exc}") from None


def _parse_factor(value: Any, name: str, where: str, required: bool) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FactorError(f"{where}: {name} is missing")
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FactorError(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(x) or x < 0:
        raise FactorError(f"{where}: {name} {value!r} must be a finite number >= 0")
    return x


def _series(
    rows: list[tuple[int, float, float, str]], fallback: GridFactors, source: str
) -> HourlyFactorSeries:
    seen: dict[int, str] = {}
    for hour, _loc, _mkt, where in rows:
        if hour in seen:
            raise FactorError(f"{where}: hour already given at {seen[hour]}")
        seen[hour] = where
    if not rows:
        return _empty_series(fallback, source)
    rows = sorted(rows, key=lambda r: r[0])
    return HourlyFactorSeries(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
        fallback,
        source,
    )


def load_hourly_factors_csv(path: str | Path, fallback: GridFactors) -> HourlyFactorSeries:
    """Read an hourly grid-intensity series from a CSV file.

    Format: a header row with ``hour_start`` and ``location_kg_per_kwh`` and optionally
    ``market_kg_per_kwh`` (other columns are ignored); lines starting with ``#`` are
    comments. ``hour_start`` is ISO 8601 with a UTC offset (``2026-06-01T08:00+08:00``)
    and must start a UTC hour; each hour at most once. Factors are [kg CO2/kWh], >= 0; an
    empty market cell means "use the annual market factor".

    Parameters
    ----------
    path : str or Path
        The CSV file.
    fallback : GridFactors
        Annual factors for hours the file lacks.

    Returns
    -------
    HourlyFactorSeries

    Raises
    ------
    FactorError
        Naming the file and line of the first problem.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    rows: list[tuple[int, float, float, str]] = []
    header: list[str] | None = None
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = next(csv.reader([line]))
            where = f"{path}:{lineno}"
            if header is None:
                header = [c.strip() for c in cells]
                for col in ("hour_start", "location_kg_per_kwh"):
                    if col not in header:
                        raise FactorError(
                            f"{where}: header lacks column {col!r} (has {', '.join(header)})"
                        )
                continue
            if len(cells) != len(header):
                raise FactorError(f"{where}: {len(cells)} cells, header has {len(header)}")
            row = dict(zip(header, cells, strict=True))
            rows.append(
                (
                    _parse_hour(row["hour_start"], where),
                    _parse_factor(row["location_kg_per_kwh"], "location_kg_per_kwh", where, True),
                    _parse_factor(row.get("market_kg_per_kwh"), "market_kg_per_kwh", where, False),
                    where,
                )
            )
    if header is None:
        raise FactorError(f"{path}: no header row (hour_start,location_kg_per_kwh[,...])")
    return _series(rows, fallback, str(path))


class CsvFactorSource:
    """An hourly series read once from a CSV file (:func:`load_hourly_factors_csv`).

    Parameters
    ----------
    path : str or Path
        The CSV file (for a site: ``site.resolve_path(site.grid.hourly_factors_csv)``).
    fallback : GridFactors
        Annual factors for the hours the file lacks.
    """

    def __init__(self, path: str | Path, fallback: GridFactors) -> None:
        self.path = Path(path)
        self.series = load_hourly_factors_csv(self.path, fallback)

    def factors_for(
        self, hour_starts_s: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        return self.series.factors_for(hour_starts_s)


def parse_hourly_factors_json(
    payload: bytes | str, fallback: GridFactors, source: str = "<json>"
) -> HourlyFactorSeries:
    """Parse an hourly series from JSON.

    Accepted shapes: a list of objects, or an object whose ``"hours"`` is that list. Each
    object has ``hour_start`` (ISO 8601 with offset, or POSIX seconds),
    ``location_kg_per_kwh`` and optionally ``market_kg_per_kwh`` [kg CO2/kWh].

    Raises
    ------
    FactorError
        Naming ``source`` and the item index of the first problem.
    """
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FactorError(f"{source}: invalid JSON: {exc}") from None
    items = doc.get("hours") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise FactorError(f'{source}: expected a list of hours or {{"hours": [...]}}')
    rows: list[tuple[int, float, float, str]] = []
    for i, item in enumerate(items):
        where = f"{source}: hours[{i}]"
        if not isinstance(item, dict) or "hour_start" not in item:
            raise FactorError(f"{where}: expected an object with hour_start")
        raw = item["hour_start"]
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if raw % HOUR_S != 0:
                raise FactorError(f"{where}: hour_start {raw} does not start a UTC hour")
            hour = int(raw)
        else:
            hour = _parse_hour(str(raw), where)
        rows.append(
            (
                hour,
                _parse_factor(item.get("location_kg_per_kwh"), "location_kg_per_kwh", where, True),
                _parse_factor(item.get("market_kg_per_kwh"), "market_kg_per_kwh", where, False),
                where,
            )
        )
    return _series(rows, fallback, source)


def _iso(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass
class HttpJsonFactorSource:
    """Hourly factors from an HTTP JSON service, fetched by the caller, looked up purely.

    :meth:`refresh` (called by the runtime, outside the engine, e.g. once an hour) sends
    ``GET <url>?start=<ISO UTC>&end=<ISO UTC>`` with ``Accept: application/json`` using
    only :mod:`urllib.request`, parses the answer with :func:`parse_hourly_factors_json`
    and merges it into the hours already held (newer values win). :meth:`factors_for`
    never does I/O: hours not (yet) fetched fall back to the annual factors.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` URL of the service.
    fallback : GridFactors
        Annual factors for hours the service has not given.
    timeout_s : float
        Socket timeout of one request [s].
    """

    url: str
    fallback: GridFactors
    timeout_s: float = 10.0
    _series: HourlyFactorSeries | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlparse(self.url).scheme
        if scheme not in ("http", "https"):
            raise FactorError(f"hourly factor URL {self.url!r}: must be http:// or https://")

    @property
    def series(self) -> HourlyFactorSeries:
        return self._series if self._series is not None else _empty_series(self.fallback)

    def refresh(self, start_s: int, end_s: int) -> int:
        """Fetch the hours in ``[start_s, end_s)`` [s]; return how many hours came back.

        Raises
        ------
        FactorError
            The service answered with something that is not a valid series.
        OSError
            The service could not be reached (``urllib.error.URLError`` is an OSError);
            the hours already held are kept.
        """
        query = urllib.parse.urlencode({"start": _iso(start_s), "end": _iso(end_s)})
        sep = "&" if urllib.parse.urlparse(self.url).query else "?"
        request = urllib.request.Request(
            f"{self.url}{sep}{query}", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = response.read()
        fetched = parse_hourly_factors_json(body, self.fallback, self.url)
        self._series = self.series.merged(fetched)
        return int(fetched.hour_start_s.shape[0])

    def factors_for(
        self, hour_starts_s: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        return self.series.factors_for(hour_starts_s)


def hourly_factor_source(
    site: SiteConfig, factors: GridFactors | None = None
) -> HourlyFactorSource:
    """The site's hourly source: its ``grid.hourly_factors_csv`` series, else constant.

    The annual factors (``factors``, default :func:`resolve_grid_factors`) fill the hours
    the series lacks. Site-file factor overrides change that fallback only: the series
    wins for the hours it has.
    """
    annual = factors if factors is not None else resolve_grid_factors(site)
    if site.grid.hourly_factors_csv is None:
        return ConstantFactorSource(annual)
    return CsvFactorSource(site.resolve_path(site.grid.hourly_factors_csv), annual)
