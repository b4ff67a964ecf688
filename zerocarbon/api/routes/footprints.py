"""``/api/v1/footprints``: product carbon footprints (GB/T 24067-2024 / ISO 14067:2018)
computed now from the stored hourly rows (:mod:`zerocarbon.accounts.footprint`).

``GET /api/v1/footprints?period=2026-06`` gives every product of ``[[accounts.products]]``
over a month, quarter or year (site time); ``product=`` picks one; ``start``/``end``
(ISO 8601 with offset, whole hours) give a batch instead of a period; ``grain=shift|day|
month`` cuts the window into a series (shifts: 8-hour blocks from local midnight). The
route needs the site file (``create_app(site=...)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status

from zerocarbon.accounts.footprint import compute_footprints, grain_windows, window_period
from zerocarbon.accounts.period import AccountsError, parse_period, site_factor_table
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, unprocessable
from zerocarbon.api.routes.accounts import SiteDep
from zerocarbon.carbon_engine.factors import FactorError
from zerocarbon.carbon_engine.fuels import FuelError
from zerocarbon.storage import accounts as stored

router = APIRouter(prefix="/api/v1/footprints", tags=["footprints"])

MAX_SERIES = 3 * 366  # shifts of a year
_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {"description": "A bad period, window or grain"},
    status.HTTP_404_NOT_FOUND: {"description": "No such product in [[accounts.products]]"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "description": "No site file, or a factor the site needs is missing"
    },
}


@router.get("", summary="Product carbon footprints, computed now", responses=_ERRORS)
async def footprints(
    pool: PoolDep,
    site: SiteDep,
    period: Annotated[
        str | None, Query(max_length=16, description="2026-06, 2026-Q2 or 2026 (site time)")
    ] = None,
    product: Annotated[str | None, Query(max_length=64, description="A product id")] = None,
    start: Annotated[datetime | None, Query(description="Batch start, with offset")] = None,
    end: Annotated[datetime | None, Query(description="Batch end (excluded)")] = None,
    grain: Annotated[
        Literal["shift", "day", "month"] | None, Query(description="A series by this grain")
    ] = None,
) -> dict[str, Any]:
    """Per product: gate-to-gate and cradle-to-gate emissions [kg CO2e], location- and
    market-based, in total and per declared unit, each component with its data source
    ("metered", "allocated by <key>", "declared", "supplier", "database", "estimate"),
    and the measured share of the metered part."""
    zone = site.site.timezone
    try:
        if period is not None:
            if start is not None or end is not None:
                raise AccountsError("give either period or start and end, not both")
            p = parse_period(period, zone)
            label, lo, hi = p.label, p.start, p.end
        elif start is not None and end is not None:
            label = f"{start.isoformat()}/{end.isoformat()}"
            w = window_period(label, start, end, zone)
            lo, hi = w.start, w.end
        else:
            raise AccountsError("give a period (2026-06) or a batch's start and end")
        windows = [(label, lo, hi)] if grain is None else grain_windows(lo, hi, grain, zone)
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    if len(windows) > MAX_SERIES:
        raise unprocessable(f"{len(windows)} windows: at most {MAX_SERIES} in a series")
    ids = [p.id for p in site.accounts.products]
    if product is not None and product not in ids:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no product {product!r} (products: {ids})"
        )
    async with pool.acquire() as conn:
        carbon, energy, lines = await stored.load_period_rows(conn, lo, hi)
    series = []
    try:
        table = site_factor_table(site)
        for w_label, w_lo, w_hi in windows:
            prints = compute_footprints(site, w_label, w_lo, w_hi, carbon, energy, lines, table)
            series.append(
                {
                    "window": w_label,
                    "start": w_lo.isoformat(),
                    "end": w_hi.isoformat(),
                    "products": [
                        fp.to_json() for fp in prints if product is None or fp.product == product
                    ],
                }
            )
    except (AccountsError, FactorError, FuelError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    body: dict[str, Any] = {
        "window": label,
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "standard": "GB/T 24067-2024 / ISO 14067:2018",
    }
    if grain is None:
        return body | {"products": series[0]["products"]}
    return body | {"grain": grain, "series": series}
