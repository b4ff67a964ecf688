"""The report as an Excel workbook (xlsxwriter): every figure, and the hourly data
behind them.

Sheets:

- ``summary``: every figure of the report with its unit and, where it is a sum of hourly
  data, the formula over the hourly sheet that reproduces it (``=SUM(...)``, its cached
  value computed here from the same rows), and the ESG fields;
- ``sources``: the account's sources with activity, factor, source, revision and data
  quality; a fuel's activity beside ``=SUM`` of its channel in ``hourly_energy``;
- ``hourly_carbon``: every column of the site's hourly results;
- ``hourly_energy``: one row per hour, one column per channel (device/metric [unit]);
- ``hourly_line``: the lines' hourly rows;
- ``hourly_cost`` and ``bills`` (with a ``[tariff]``): each hour's period kind and cost,
  and each month's bill lines, whose kWh are ``=SUMIFS`` over ``hourly_cost``;
- ``series``, ``profile``: the data of the charts; ``instruments``; ``esg``;
  ``footprints`` (each product's components) and ``scorecard``.

Times are written as text: ``hour_start`` in UTC (ISO 8601) and the local time of the
site. Units are in the headers. The workbook is written in constant-memory mode (rows
in order), so a year of 200 channels (1.75 M cells) stays small in memory.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import fields
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from zerocarbon.accounts.report.model import Report
from zerocarbon.accounts.report.text import label
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.rows import HourlyCarbon, HourlyLine

__all__ = ["CARBON_UNITS", "render_xlsx"]

# units of the hourly_carbon columns, for the headers
CARBON_UNITS: dict[str, str] = {
    "hour_start": "UTC",
    "production_units": "units",
    "scope1_kg": "kg CO2",
    "scope2_location_kg": "kg CO2",
    "scope2_market_kg": "kg CO2",
    "location_factor_kg_per_kwh": "kg CO2/kWh",
    "market_factor_kg_per_kwh": "kg CO2/kWh",
    "intensity_kg_per_kwh": "kg CO2/kWh",
    "market_intensity_kg_per_kwh": "kg CO2/kWh",
    "cfe_share": "0..1",
    "estimated_share": "0..1",
    "missing_devices": "count",
    "submeter_mismatches": "count",
    "complete": "bool",
}
LINE_UNITS: dict[str, str] = {
    "hour_start": "UTC",
    "line": "id",
    "energy_kwh": "kWh",
    "production_units": "units",
    "kwh_per_unit": "kWh/unit",
    "scope2_location_kg": "kg CO2",
    "scope2_market_kg": "kg CO2",
    "kg_per_unit": "kg CO2/unit",
    "estimated_share": "0..1",
}
MAX_ROWS = 1_048_576  # an Excel sheet's rows


def _unit(name: str, units: dict[str, str]) -> str:
    if name in units:
        return units[name]
    return "kWh" if name.endswith("_kwh") else ""


def _header(name: str, units: dict[str, str]) -> str:
    u = _unit(name, units)
    return f"{name} [{u}]" if u else name


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if value is None:
        return ""
    return value


def render_xlsx(report: Report, language: str = "en") -> bytes:
    """The workbook as bytes; labels in ``language`` beside the figure keys."""
    import xlsxwriter  # type: ignore[import-untyped]
    from xlsxwriter.utility import xl_col_to_name  # type: ignore[import-untyped]

    buf = io.BytesIO()
    # constant memory: rows go to temporary files as they are written (in_memory would
    # turn it off)
    wb = xlsxwriter.Workbook(buf, {"constant_memory": True})
    bold = wb.add_format({"bold": True})
    zone = ZoneInfo(report.timezone)
    carbon = sorted(report.carbon, key=lambda r: r.hour_start)
    n = len(carbon)
    carbon_cols = [f.name for f in fields(HourlyCarbon)]
    last = n + 1  # data rows 2..n+1

    def carbon_range(column: str) -> str:
        col = xl_col_to_name(carbon_cols.index(column) + 2)  # A: hour_start, B: local
        return f"hourly_carbon!{col}2:{col}{last}"

    # --- summary -----------------------------------------------------------------------
    ws = wb.add_worksheet("summary")
    ws.set_column(0, 1, 34)
    ws.set_column(2, 4, 18)
    a = report.account
    head = [
        ("site", report.site.site.name),
        ("organisation", a.organisation),
        ("period", report.period.label),
        ("start [UTC]", a.start.isoformat()),
        ("end [UTC]", a.end.isoformat()),
        ("timezone", report.timezone),
        ("standard", "GB/T 32150-2015"),
        ("factor table", a.factor_table),
        ("generated [UTC]", report.generated_at.isoformat()),
    ]
    row = 0
    for k, v in head:
        ws.write_string(row, 0, k, bold)
        ws.write_string(row, 1, str(v))
        row += 1
    row += 1
    ws.write_row(
        row,
        0,
        ["figure", f"label [{language}]", "value", "unit", "from hourly data", "sheet!column"],
        bold,
    )
    row += 1
    for f in report.figures:
        ws.write_string(row, 0, f.key)
        ws.write_string(row, 1, label(f.key, language))
        ws.write(row, 2, _cell(f.value))
        ws.write_string(row, 3, f.unit)
        if f.sheet == "hourly_carbon" and f.column is not None and n > 0:
            scale = "/1000" if f.unit == "t CO2" else ""
            total = sum(getattr(r, f.column) for r in carbon)
            if scale:
                total /= 1000.0
            ws.write_formula(row, 4, f"=SUM({carbon_range(f.column)}){scale}", None, total)
            ws.write_string(row, 5, f"{f.sheet}!{f.column}")
        row += 1
    row += 1
    ws.write_row(row, 0, ["ESG field", "title", "value", "unit", "how computed"], bold)
    row += 1
    for e in report.esg:
        title = e.title_zh if language == "zh-CN" else e.title_en
        ws.write_row(row, 0, [e.id, title, _cell(e.value), e.unit, e.how])
        row += 1
    if report.offsets_t:
        ws.write_row(row + 1, 0, ["offsets_used_t", "", float(report.offsets_t), "t CO2e"])

    # --- sources -----------------------------------------------------------------------
    channels = sorted({(r.device, r.metric) for r in report.energy})
    ws = wb.add_worksheet("sources")
    cols = [
        "id", "category", "description", "activity", "activity_unit", "from hourly_energy",
        "factor", "factor_unit", "factor_source", "revision", "provisional", "sign",
        "emissions [kg CO2]", "emissions [t CO2]", "basis", "measured_share [0..1]",
        "estimated [activity unit]", "hours_reported [h]", "hours_expected [h]", "gaps",
        "resets", "rollovers", "replacements", "rejected",
    ]  # fmt: skip
    ws.write_row(0, 0, cols, bold)
    nh = len({r.hour_start for r in report.energy})
    for i, s in enumerate(a.sources, start=1):
        q = s.quality
        values: list[Any] = [
            s.id, s.category, s.description, s.activity, s.activity_unit, "",
            s.factor.value, s.factor.unit, s.factor.source, s.factor.revision,
            s.factor.provisional, s.sign, s.emissions_kg, s.emissions_t, q.basis,
            _cell(q.measured_share), q.estimated, q.hours_reported, q.hours_expected,
            q.gaps, q.resets, q.rollovers, q.replacements, q.rejected,
        ]  # fmt: skip
        ws.write_row(i, 0, values)
        if s.category == "combustion" and nh > 0:
            wanted = [c for c in channels if c[0] in q.devices and c[1] in _metrics_of(s.id)]
            if len(wanted) == 1:
                col = xl_col_to_name(channels.index(wanted[0]) + 2)
                total = sum(r.delta for r in report.energy if (r.device, r.metric) == wanted[0])
                ws.write_formula(i, 5, f"=SUM(hourly_energy!{col}2:{col}{nh + 1})", None, total)

    # --- hourly_carbon -----------------------------------------------------------------
    ws = wb.add_worksheet("hourly_carbon")
    ws.write_row(
        0,
        0,
        ["hour_start [UTC]", "local hour_start"]
        + [_header(c, CARBON_UNITS) for c in carbon_cols[1:]],
        bold,
    )
    for i, r in enumerate(carbon, start=1):
        values = [getattr(r, c) for c in carbon_cols[1:]]
        ws.write_row(
            i,
            0,
            [r.hour_start.isoformat(), r.hour_start.astimezone(zone).isoformat()]
            + [_cell(v) for v in values],
        )
    if n:  # sums under the columns
        ws.write_string(n + 2, 0, "sum", bold)
        for j, c in enumerate(carbon_cols[1:], start=2):
            if isinstance(getattr(carbon[0], c), float) and c.endswith(("_kwh", "_kg", "units")):
                col = xl_col_to_name(j)
                total = sum(getattr(r, c) for r in carbon)
                ws.write_formula(n + 2, j, f"=SUM({col}2:{col}{last})", bold, total)

    # --- hourly_energy by channel ------------------------------------------------------
    ws = wb.add_worksheet("hourly_energy")
    units = [METRICS_BY_NAME[m].unit if m in METRICS_BY_NAME else "" for _, m in channels]
    ws.write_row(
        0,
        0,
        ["hour_start [UTC]", "local hour_start"]
        + [f"{d}/{m} [{u}]" for (d, m), u in zip(channels, units, strict=True)],
        bold,
    )
    index = {c: j for j, c in enumerate(channels)}
    grid: dict[Any, list[Any]] = {}
    for er in report.energy:
        cells = grid.get(er.hour_start)
        if cells is None:
            cells = grid[er.hour_start] = [""] * len(channels)
        cells[index[(er.device, er.metric)]] = er.delta
    for i, (h, cells) in enumerate(sorted(grid.items()), start=1):
        ws.write_row(i, 0, [h.isoformat(), h.astimezone(zone).isoformat(), *cells])

    # --- hourly_line -------------------------------------------------------------------
    ws = wb.add_worksheet("hourly_line")
    line_cols = [f.name for f in fields(HourlyLine)]
    ws.write_row(0, 0, [_header(c, LINE_UNITS) for c in line_cols], bold)
    lines = sorted(report.lines, key=lambda r: (r.hour_start, r.line))
    if len(lines) >= MAX_ROWS:
        raise ValueError(f"hourly_line: {len(lines)} rows do not fit in a sheet")
    for i, ln in enumerate(lines, start=1):
        ws.write_row(
            i,
            0,
            [ln.hour_start.isoformat()] + [_cell(getattr(ln, c)) for c in line_cols[1:]],
        )

    # --- cost --------------------------------------------------------------------------
    if report.cost is not None:
        _cost_sheets(wb, report, zone, bold)

    # --- chart data, instruments, esg --------------------------------------------------
    ws = wb.add_worksheet("series")
    ws.write_row(
        0,
        0,
        [report.bucket_kind, "hours [h]", "scope1 [kg CO2]", "scope2_location [kg CO2]",
         "scope2_market [kg CO2]", "grid_import [kWh]", "pv [kWh]", "load [kWh]"],
        bold,
    )  # fmt: skip
    for i, b in enumerate(report.buckets, start=1):
        ws.write_row(
            i,
            0,
            [b.label, b.hours, b.scope1_kg, b.scope2_location_kg, b.scope2_market_kg,
             b.grid_import_kwh, b.pv_kwh, b.load_kwh],
        )  # fmt: skip
    ws = wb.add_worksheet("profile")
    ws.write_row(
        0,
        0,
        ["local hour", "days", "load [kWh/h]", "grid_import [kWh/h]", "pv [kWh/h]",
         "scope2_location [kg CO2/h]"],
        bold,
    )  # fmt: skip
    for i, p in enumerate(report.profile, start=1):
        ws.write_row(
            i, 0, [p.hour, p.days, p.load_kwh, p.grid_import_kwh, p.pv_kwh, p.scope2_location_kg]
        )
    ws = wb.add_worksheet("instruments")
    ws.write_row(
        0,
        0,
        ["id", "kind", "serial", "project", "vintage", "volume", "unit", "status",
         "retired in period [unit]", "engine allocated in period [kWh]"],
        bold,
    )  # fmt: skip
    for i, inst in enumerate(report.instruments, start=1):
        ws.write_row(
            i,
            0,
            [inst.id, inst.kind, inst.serial, inst.project, inst.vintage, float(inst.volume),
             inst.unit, inst.status, float(inst.retired_in_period), _cell(inst.allocated_kwh)],
        )  # fmt: skip
    ws = wb.add_worksheet("esg")
    ws.write_row(0, 0, ["field", "title (en)", "title (zh-CN)", "value", "unit", "how"], bold)
    for i, e in enumerate(report.esg, start=1):
        ws.write_row(i, 0, [e.id, e.title_en, e.title_zh, _cell(e.value), e.unit, e.how])
    if report.footprints:
        ws = wb.add_worksheet("footprints")
        ws.write_row(
            0,
            0,
            ["product", "component", "stage", "description", "kg CO2e (location)",
             "kg CO2e (market)", "data source", "factor source", "measured share [0..1]",
             "allocation share [0..1]", "units [declared unit]", "kg CO2e/unit (location)"],
            bold,
        )  # fmt: skip
        row = 1
        for fp in report.footprints:
            for comp in fp.components:
                ws.write_row(
                    row,
                    0,
                    [fp.product, comp.id, comp.stage, comp.description, comp.kg_co2e,
                     comp.kg_co2e_market,
                     comp.data_source, comp.source_detail, _cell(comp.measured_share),
                     _cell(comp.allocation_share), fp.units, _cell(fp.per_unit(comp.kg_co2e))],
                )  # fmt: skip
                row += 1
            ws.write_row(
                row,
                0,
                [fp.product, "cradle_to_gate", "", fp.unit, fp.cradle_to_gate_kg,
                 fp.cradle_to_gate_market_kg, "", "", _cell(fp.metered_measured_share), "",
                 fp.units, _cell(fp.per_unit(fp.cradle_to_gate_kg))],
                bold,
            )  # fmt: skip
            row += 1
    if report.scorecard is not None:
        ws = wb.add_worksheet("scorecard")
        ws.write_row(
            0, 0, ["indicator", "name", "value", "unit", "comparison", "threshold", "met",
                   "source"], bold
        )  # fmt: skip
        for i, ind in enumerate(report.scorecard.indicators, start=1):
            ws.write_row(
                i,
                0,
                [ind.id, ind.name, _cell(ind.value), ind.unit, ind.comparison,
                 _cell(ind.threshold), _cell(ind.met), ind.source],
            )  # fmt: skip
    wb.close()
    return buf.getvalue()


def _metrics_of(source_id: str) -> Sequence[str]:
    """The counter metrics a combustion source may come from (its id names the metric
    when the meter has several)."""
    parts = source_id.split(":")
    if len(parts) == 3:
        return (parts[2],)
    return ("gas_volume_nm3", "fuel_mass_kg", "fuel_volume_l")


def _cost_sheets(wb: Any, report: Report, zone: ZoneInfo, bold: Any) -> None:
    assert report.cost is not None
    hourly = sorted(report.cost.hourly, key=lambda h: h.hour_start)
    ws = wb.add_worksheet("hourly_cost")
    ws.write_row(
        0,
        0,
        ["hour_start [UTC]", "local month", "local hour_start", "period kind",
         "price [CNY/kWh]", "grid_import [kWh]", "grid_export [kWh]", "pv_self [kWh]",
         "energy [CNY]", "surcharge [CNY]", "export_credit [CNY]", "net [CNY]",
         "pv_savings [CNY]"],
        bold,
    )  # fmt: skip
    for i, h in enumerate(hourly, start=1):
        local = h.hour_start.astimezone(zone)
        ws.write_row(
            i,
            0,
            [h.hour_start.isoformat(), local.isoformat()[:7], local.isoformat(), h.period,
             float(h.price_per_kwh), float(h.grid_import_kwh), float(h.grid_export_kwh),
             float(h.pv_self_kwh), float(h.energy_cny), float(h.surcharge_cny),
             float(h.export_credit_cny), float(h.net_cny), float(h.pv_savings_cny)],
        )  # fmt: skip
    last = len(hourly) + 1
    ws = wb.add_worksheet("bills")
    ws.write_row(
        0,
        0,
        ["month", "item", "quantity", "unit", "price [CNY/unit]", "amount [CNY]",
         "quantity from hourly_cost"],
        bold,
    )  # fmt: skip
    row = 1
    for b in report.cost.bills:
        for ln in b.lines:
            ws.write_row(
                row,
                0,
                [b.month, ln.item, float(ln.quantity), ln.unit, float(ln.price),
                 float(ln.amount_cny)],
            )  # fmt: skip
            column = None
            if ln.item.startswith("energy_"):
                kind = ln.item.removeprefix("energy_")
                column = (
                    f'=SUMIFS(hourly_cost!F2:F{last},hourly_cost!B2:B{last},"{b.month}",'
                    f'hourly_cost!D2:D{last},"{kind}")'
                )
            elif ln.item in ("surcharge", "export_credit"):
                col = "F" if ln.item == "surcharge" else "G"
                column = (
                    f'=SUMIFS(hourly_cost!{col}2:{col}{last},hourly_cost!B2:B{last},"{b.month}")'
                )
            if column is not None:
                ws.write_formula(row, 6, column, None, float(ln.quantity))
            row += 1
        ws.write_row(row, 0, [b.month, "total", "", "", "", float(b.total_cny)], bold)
        row += 1
    ws.write_row(
        row, 0, [report.period.label, "total", "", "", "", float(report.cost.total_cny)], bold
    )
