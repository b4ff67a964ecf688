"""``zerocarbon report`` on a year of hourly data: time per report against reading its rows.

A site of ``--devices`` meters (a grid meter, a PV inverter, a gas meter, one output
counter per line, the rest load sub-meters spread over ``--lines`` lines) has a year
(2026, Asia/Shanghai) of hourly results written straight into PostgreSQL with COPY:
``hourly_carbon`` 8,760 rows, ``hourly_energy`` one row per channel and hour
(200 channels x 8,760 = 1.75 M rows), ``hourly_line`` ``--lines`` x 8,760 rows. The
site has a TOU tariff, so each report includes the energy cost.

Then each report is made as ``zerocarbon report`` makes it (rows read from the database,
:func:`zerocarbon.accounts.report_cli.load_report_inputs`, the report built, rendered):
the 12 months and the year, in JSON and xlsx, and the months in PDF (``--pdf``, on by
default; the year's PDF with ``--pdf-year``). Each is run ``--runs`` times; the time
per report is the median. The ceiling, measured in the same run: one query reading the
same hourly rows (the three SELECTs of
:func:`zerocarbon.storage.accounts.load_period_rows`, fetched, not converted), median of
the same runs. Prints each median, the ceiling and the ratio report/ceiling, and one JSON
line per format and period kind ``{"metric": "report_s", "format": ..., "period": ...,
"value": median, "ceiling": ..., "ratio": ...}``.

    ZEROCARBON_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python bench/report.py [--devices 200] [--lines 8] [--runs 3]

``--engines DIR`` instead compares the two PDF typesetters on the same report (June of
the same site, Chinese): it times Typst (what the product uses) and writes the report
as HTML+CSS (the same tables and bar charts) to ``DIR/report.html``, for WeasyPrint to
be timed on it where it is installed (``docs/reports.md``).

Without ``ZEROCARBON_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
folder. A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import statistics
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from zerocarbon.accounts.period import parse_period
from zerocarbon.accounts.report.model import build_report
from zerocarbon.accounts.report_cli import Format, Language, load_report_inputs, render
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    register_site,
)
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.storage.schema import stored_columns

YEAR_START = datetime(2025, 12, 31, 16, tzinfo=UTC)  # 2026-01-01 00:00 in Shanghai
HOURS = 8760
ZONE = "Asia/Shanghai"

TARIFF = """
[tariff]
surcharge_per_kwh = 0.02888
export_price_per_kwh = 0.391
basis = "demand"
demand_price_per_kw_month = 38.4

[tariff.prices]
critical_peak = 1.2232
peak = 1.0193
flat = 0.6137
valley = 0.2871

[[tariff.seasons]]
name = "summer"
months = [6, 7, 8]
valley = ["00-08"]
peak = ["08-10", "17-22"]
critical_peak = ["10-11"]

[[tariff.seasons]]
name = "rest"
months = [1, 2, 3, 4, 5, 9, 10, 11, 12]
valley = ["00-08"]
peak = ["08-11"]
"""


def site_toml(devices: int, lines: int) -> str:
    """A site of ``devices`` meters: grid, PV, gas, ``lines`` counters, the rest loads."""
    out = [
        '[site]\nname = "bench works"\ntimezone = "Asia/Shanghai"\n',
        '[grid]\nregion = "east"\ndata_year = 2023\ncontracted_demand_kw = 2000.0\n',
        "[mqtt]\n",
        '[[devices]]\nid = "grid"\nrole = "grid"\nprotocol = "mqtt"\ntopic = "b/grid"\n'
        'fields = { e = "energy_import_kwh" }\n',
        '[[devices]]\nid = "pv"\nrole = "pv"\nprotocol = "mqtt"\ntopic = "b/pv"\n'
        'fields = { e = "energy_generated_kwh" }\n',
        '[[devices]]\nid = "gas"\nrole = "fuel"\nfuel = "natural_gas"\nprotocol = "mqtt"\n'
        'topic = "b/gas"\nfields = { v = "gas_volume_nm3" }\n',
    ]
    for k in range(lines):
        out.append(
            f'[[devices]]\nid = "count_{k}"\nrole = "production"\nline = "line_{k}"\n'
            f'protocol = "mqtt"\ntopic = "b/count_{k}"\n'
            'fields = { c = "production_count_units" }\n'
        )
    for k in range(devices - 3 - lines):
        out.append(
            f'[[devices]]\nid = "load_{k:03d}"\nrole = "load"\nline = "line_{k % lines}"\n'
            f'protocol = "mqtt"\ntopic = "b/load_{k}"\nfields = {{ e = "energy_import_kwh" }}\n'
        )
    for k in range(lines):
        out.append(f'[[lines]]\nid = "line_{k}"\nproduct = "part {k}"\nunit = "pcs"\n')
    return "\n".join(out) + TARIFF


def channels(site: SiteConfig) -> list[tuple[str, str]]:
    """(device, counter metric) of every device."""
    metric = {
        "grid": "energy_import_kwh",
        "pv": "energy_generated_kwh",
        "fuel": "gas_volume_nm3",
        "production": "production_count_units",
        "load": "energy_import_kwh",
    }
    return [(d.id, metric[d.role.value]) for d in site.devices]


async def load_year(conn: asyncpg.Connection, site: SiteConfig, lines: int, seed: int) -> int:
    """Write the year's hourly rows with COPY; returns the hourly_energy row count."""
    rng = np.random.default_rng(seed)
    registry = await register_site(conn, site)
    hours = [YEAR_START + timedelta(hours=i) for i in range(HOURS)]
    local_hour = (np.arange(HOURS) + 8) % 24
    pv = np.where((local_hour >= 8) & (local_hour < 16), rng.uniform(50, 300, HOURS), 0.0)
    loads = [d.id for d in site.devices if d.role.value == "load"]
    load_kwh = rng.uniform(5.0, 20.0, (len(loads), HOURS))
    load_total = load_kwh.sum(axis=0)
    grid_import = np.maximum(load_total - pv, 0.0)
    export = np.maximum(pv - load_total, 0.0)
    gas = rng.uniform(5.0, 15.0, HOURS)
    units = rng.integers(0, 20, (lines, HOURS)).astype(float)
    scope1 = gas * 2.162188809
    s2_loc = grid_import * 0.55
    s2_mkt = grid_import * 0.6096
    load = grid_import - export + pv
    carbon_cols = [c for c, _t, _n in stored_columns("hourly_carbon")]
    carbon = []
    for i, h in enumerate(hours):
        row = {
            "hour_start": h,
            "grid_import_kwh": float(grid_import[i]),
            "grid_export_kwh": float(export[i]),
            "pv_kwh": float(pv[i]),
            "wind_kwh": 0.0,
            "battery_charge_kwh": 0.0,
            "battery_discharge_kwh": 0.0,
            "load_kwh": float(load[i]),
            "submetered_kwh": float(load_total[i]),
            "unmetered_kwh": float(load[i] - load_total[i]),
            "production_units": float(units[:, i].sum()),
            "scope1_kg": float(scope1[i]),
            "scope2_location_kg": float(s2_loc[i]),
            "scope2_market_kg": float(s2_mkt[i]),
            "green_contract_kwh": 0.0,
            "certificate_kwh": 0.0,
            "cfe_kwh": float(pv[i] - export[i]),
            "location_factor_kg_per_kwh": 0.55,
            "market_factor_kg_per_kwh": 0.6096,
            "intensity_kg_per_kwh": float(s2_loc[i] / load[i]) if load[i] > 0 else None,
            "market_intensity_kg_per_kwh": float(s2_mkt[i] / load[i]) if load[i] > 0 else None,
            "cfe_share": float((pv[i] - export[i]) / load[i]) if load[i] > 0 else None,
            "estimated_share": 0.0,
            "missing_devices": 0,
            "submeter_mismatches": 0,
            "complete": True,
        }
        carbon.append(tuple(row[c] for c in carbon_cols))
    await conn.copy_records_to_table("hourly_carbon", records=carbon, columns=carbon_cols)

    series: dict[str, np.ndarray[Any, Any]] = {"grid": grid_import, "pv": pv, "gas": gas}
    series |= {d: load_kwh[k] for k, d in enumerate(loads)}
    series |= {f"count_{k}": units[k] for k in range(lines)}
    energy_cols = [c for c, _t, _n in stored_columns("hourly_energy")]
    n = 0
    for device, metric in channels(site):
        dev_id = registry.device_ids[device]
        met_id = registry.metric_ids[metric]
        values = series[device].tolist()
        records = [
            (h, dev_id, met_id, v, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, True)
            for h, v in zip(hours, values, strict=True)
        ]
        await conn.copy_records_to_table("hourly_energy", records=records, columns=energy_cols)
        n += len(records)
    line_cols = [c for c, _t, _n in stored_columns("hourly_line")]
    per_line = np.zeros((lines, HOURS))
    for k, _d in enumerate(loads):
        per_line[k % lines] += load_kwh[k]
    records_l = []
    for k in range(lines):
        for i, h in enumerate(hours):
            e, u = float(per_line[k, i]), float(units[k, i])
            share = e / load[i] if load[i] > 0 else 0.0
            records_l.append(
                (h, f"line_{k}", e, u, e / u if u else None, s2_loc[i] * share,
                 s2_mkt[i] * share, (s2_loc[i] * share) / u if u else None, 0.0)
            )  # fmt: skip
    await conn.copy_records_to_table("hourly_line", records=records_l, columns=line_cols)
    await conn.execute("ANALYZE hourly_carbon; ANALYZE hourly_energy; ANALYZE hourly_line")
    return n


async def read_rows(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    """The ceiling: the SELECTs of load_period_rows, fetched; returns the row count."""
    carbon_cols = ", ".join(c for c, _t, _n in stored_columns("hourly_carbon"))
    line_cols = ", ".join(c for c, _t, _n in stored_columns("hourly_line"))
    energy_cols = ", ".join("h." + c for c, _t, _n in stored_columns("hourly_energy")[3:])
    a = await conn.fetch(
        f"SELECT {carbon_cols} FROM hourly_carbon WHERE hour_start >= $1 AND hour_start < $2 "
        "ORDER BY hour_start",
        start,
        end,
    )
    b = await conn.fetch(
        f"""SELECT h.hour_start, d.key AS device, m.name AS metric, {energy_cols}
            FROM hourly_energy h JOIN devices d ON d.id = h.device_id
            JOIN metrics m ON m.id = h.metric_id
            WHERE h.hour_start >= $1 AND h.hour_start < $2 ORDER BY h.hour_start""",
        start,
        end,
    )
    c = await conn.fetch(
        f"SELECT {line_cols} FROM hourly_line WHERE hour_start >= $1 AND hour_start < $2 "
        "ORDER BY hour_start, line",
        start,
        end,
    )
    return len(a) + len(b) + len(c)


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()  # the garbage of the run before is not timed in this one
    t0 = time.perf_counter()
    await action()
    return time.perf_counter() - t0


async def run(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    site = parse_site(tomllib.loads(site_toml(args.devices, args.lines)), "bench.toml")
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn)
        t0 = time.perf_counter()
        n = await load_year(conn, site, args.lines, args.seed)
        print(f"loaded a year: hourly_energy {n:,} rows in {time.perf_counter() - t0:.1f} s")
        months = [f"2026-{m:02d}" for m in range(1, 13)]
        plan: list[tuple[str, str, Format]] = []
        for fmt in (Format.JSON, Format.XLSX):
            plan += [("month", m, fmt) for m in months] + [("year", "2026", fmt)]
        if args.pdf:
            plan += [("month", m, Format.PDF) for m in months]
        if args.pdf_year:
            plan.append(("year", "2026", Format.PDF))
        report_s: dict[tuple[str, Format], list[float]] = {}
        ceiling_s: dict[tuple[str, Format], list[float]] = {}
        sizes: dict[tuple[str, Format], list[int]] = {}
        for kind, label, fmt in plan:
            period = parse_period(label, ZONE)
            for _ in range(args.runs):
                out: list[bytes] = []

                async def make(
                    label: str = label, fmt: Format = fmt, out: list[bytes] = out
                ) -> None:
                    inputs = await load_report_inputs(conn, site, label)
                    report = build_report(inputs, datetime(2027, 1, 5, tzinfo=UTC))
                    out.append(render(report, fmt, Language.ZH_CN))

                async def ceiling(period: Any = period) -> None:
                    await read_rows(conn, period.start, period.end)

                report_s.setdefault((kind, fmt), []).append(await timed(make))
                ceiling_s.setdefault((kind, fmt), []).append(await timed(ceiling))
                sizes.setdefault((kind, fmt), []).append(len(out[0]))
        results = []
        for (kind, fmt), times in report_s.items():
            med = statistics.median(times)
            ceil = statistics.median(ceiling_s[(kind, fmt)])
            size = statistics.median(sizes[(kind, fmt)])
            print(
                f"{fmt.value:>4} {kind:>5}: report median {med:.3f} s "
                f"({len(times)} = {len(times) // args.runs} reports x {args.runs} runs), "
                f"ceiling (reading its rows) {ceil:.3f} s, ratio {med / ceil:.1f}, "
                f"size {size / 1e6:.2f} MB"
            )
            results.append(
                {
                    "metric": "report_s",
                    "format": fmt.value,
                    "period": kind,
                    "value": round(med, 3),
                    "ceiling": round(ceil, 3),
                    "ratio": round(med / ceil, 2),
                    "size_bytes": int(size),
                }
            )
        return results
    finally:
        await conn.close()


def html_source(report: Any, language: str, cjk_family: str) -> str:
    """The report as HTML+CSS for WeasyPrint: the same sections, tables and bar charts
    (CSS boxes) as the Typst source of :mod:`zerocarbon.accounts.report.pdf`."""
    from html import escape

    from zerocarbon.accounts.report.text import fmt, fmt_cny, fmt_kwh, fmt_t, label

    def t(key: str) -> str:
        return escape(label(key, language))

    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{h}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def chart(bars: list[tuple[float, ...]], labels: list[str], unit: str) -> str:
        top = max((sum(b) for b in bars), default=0.0) or 1.0
        cols = []
        for b, lb in zip(bars, labels, strict=True):
            segs = "".join(
                f'<div style="height:{v / top * 4:.4f}cm;background:{c}"></div>'
                for v, c in reversed(list(zip(b, ("#4e79a7", "#f28e2b"), strict=False)))
            )
            cols.append(f'<div class="bar">{segs}<span>{escape(lb)}</span></div>')
        head = f'<p class="max">{t("max")} {fmt(top, 1)} {unit}</p>'
        return f'{head}<div class="chart">{"".join(cols)}</div>'

    a = report.account
    css = f"""@page {{ size: A4; margin: 1.8cm 1.6cm }}
body {{ font-family: 'Libertinus Serif', '{cjk_family}'; font-size: 9pt }}
table {{ border-collapse: collapse; font-size: 7.5pt; margin: 4pt 0 }}
th, td {{ border: 0.4pt solid #b4b4b4; padding: 3pt }} th {{ background: #ebebeb }}
.chart {{ display: flex; align-items: flex-end; height: 4.4cm; border-left: 0.5pt solid;
  border-bottom: 0.5pt solid; gap: 1.5pt }}
.bar {{ flex: 1; display: flex; flex-direction: column; justify-content: flex-end }}
.bar span {{ font-size: 5.5pt }} .max {{ text-align: right; font-size: 7pt }}"""
    day = report.bucket_kind == "day"
    labels = [b.label[8:] if day else b.label[5:] for b in report.buckets]
    parts = [
        f"<html><head><meta charset='utf-8'><style>{css}</style></head><body>",
        f"<h1>{t('title')}</h1><p>{escape(a.organisation)} — {report.period.label}</p>",
        f"<h2>{t('summary')}</h2>",
        table(
            [t("figure"), t("value"), t("unit")],
            [
                [
                    label(f.key, language),
                    fmt_t(f.value)
                    if f.unit == "t CO2"
                    else fmt_cny(f.value)
                    if f.unit == "CNY"
                    else fmt_kwh(f.value),
                    f.unit,
                ]
                for f in report.figures
            ],
        ),  # fmt: skip
        f"<h2>{t('charts')}</h2>",
        chart(
            [(b.scope1_kg / 1000, b.scope2_location_kg / 1000) for b in report.buckets],
            labels,
            "t CO2",
        ),
        chart([(b.grid_import_kwh, b.pv_kwh) for b in report.buckets], labels, "kWh"),
        chart(
            [(p.grid_import_kwh, p.pv_kwh) for p in report.profile],
            [f"{p.hour:02d}" for p in report.profile],
            "kWh/h",
        ),
        f"<h2>{t('sources')}</h2>",
        table(
            [
                t("source"),
                t("activity"),
                t("factor"),
                t("factor_source"),
                t("revision"),
                t("emissions_t"),
            ],
            [
                [
                    s.id,
                    f"{fmt_kwh(s.activity)} {s.activity_unit}",
                    f"{s.factor.value:.6g} {s.factor.unit}",
                    s.factor.source,
                    s.factor.revision,
                    fmt_t(s.emissions_t),
                ]
                for s in a.sources
            ],
        ),  # fmt: skip
        f"<h2>{t('esg')}</h2>",
        table(
            [t("field"), t("figure"), t("value"), t("unit"), t("how")],
            [
                [
                    e.id,
                    e.title_zh if language == "zh-CN" else e.title_en,
                    t("not_reported") if e.value is None else fmt(e.value, 6),
                    e.unit,
                    e.how,
                ]
                for e in report.esg
            ],
        ),  # fmt: skip
    ]
    if report.cost is not None:
        parts.append(f"<h2>{t('cost')}</h2>")
        parts.append(
            table(
                [t("month"), t("item"), t("quantity"), t("price"), t("amount")],
                [[b.month, ln.item, fmt_kwh(ln.quantity), str(ln.price), fmt_cny(ln.amount_cny)]
                 for b in report.cost.bills for ln in b.lines],
            )
        )  # fmt: skip
    return "".join(parts) + "</body></html>"


async def engines(url: str, args: argparse.Namespace) -> None:
    """Time Typst on June's Chinese report and write the same report as HTML."""
    from zerocarbon.accounts.report.pdf import _family, find_cjk_font, render_pdf

    site = parse_site(tomllib.loads(site_toml(args.devices, args.lines)), "bench.toml")
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn)
        await load_year(conn, site, args.lines, args.seed)
        inputs = await load_report_inputs(conn, site, "2026-06")
    finally:
        await conn.close()
    report = build_report(inputs, datetime(2027, 1, 5, tzinfo=UTC))
    times = []
    pdf = b""
    for _ in range(max(args.runs, 5)):
        t0 = time.perf_counter()
        pdf = render_pdf(report, "zh-CN")
        times.append(time.perf_counter() - t0)
    out = Path(args.engines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "typst.pdf").write_bytes(pdf)
    font = find_cjk_font()
    (out / "report.html").write_text(html_source(report, "zh-CN", _family(font)), "utf-8")
    print(f"typst: median {statistics.median(times):.3f} s, {len(pdf):,} bytes")
    print(f"wrote {out / 'report.html'} (render it with WeasyPrint: docs/reports.md)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--lines", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--pdf", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--pdf-year", action="store_true")
    parser.add_argument("--engines", metavar="DIR", help="compare Typst and WeasyPrint")
    args = parser.parse_args()
    server_url = os.environ.get("ZEROCARBON_DATABASE_URL")
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="zc-bench-")) / "pg")
        server_url = embedded.start()
    name = f"zc_bench_report_{secrets.token_hex(3)}"
    try:
        url = await ensure_database(server_url, name)
        if args.engines:
            await engines(url, args)
            return
        results = await run(url, args)
    finally:
        await drop_database(server_url, name)
        if embedded is not None:
            embedded.stop()
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    asyncio.run(main())
