"""The report as PDF, in Chinese (zh-CN) or English, typeset with Typst.

Typst (the ``typst`` PyPI package: the compiler as a self-contained wheel, no system
library) renders a Typst source built here from the report: tables, and bar charts
drawn as Typst rectangles (so the charts' labels use the same fonts as the text). Latin
text is set in the fonts built into Typst (Libertinus Serif, DejaVu Sans Mono); Chinese
in a CJK font found on the system (:func:`find_cjk_font`), which Typst embeds (subset)
in the PDF. Without a CJK font a Chinese report would show missing-glyph boxes, so
rendering stops with :class:`ReportFontError`, naming the fonts and the packages that
install them. ``docs/reports.md`` says why Typst and not WeasyPrint, with measurements.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from zerocarbon.accounts.report.model import Report
from zerocarbon.accounts.report.text import fmt, fmt_cny, fmt_kwh, fmt_t, label

__all__ = [
    "CJK_FONT_FILES",
    "FONT_ENV",
    "ReportFontError",
    "find_cjk_font",
    "render_pdf",
    "typst_source",
]

FONT_ENV = "ZEROCARBON_REPORT_FONT"  # a CJK font file (.ttf/.otf/.ttc) to use instead
# (file, family) of the usual open CJK fonts, as Debian installs them
CJK_FONT_FILES: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "Noto Sans CJK SC"),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", "Noto Serif CJK SC"),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "WenQuanYi Micro Hei"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "WenQuanYi Zen Hei"),
)
LATIN_FONT = "Libertinus Serif"  # built into Typst


class ReportFontError(RuntimeError):
    """No CJK font: the message names the fonts looked for and how to install one."""


def _fc_match() -> Path | None:
    fc = shutil.which("fc-match")
    if fc is None:
        return None
    out = subprocess.run(
        [fc, "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True, check=False
    ).stdout.strip()
    path = Path(out) if out else None
    if path is None or not path.is_file():
        return None
    # fc-match always answers; keep it only if the font covers Chinese
    langs = subprocess.run(
        [fc, "-f", "%{lang}", ":lang=zh-cn"], capture_output=True, text=True, check=False
    ).stdout
    return path if "zh-cn" in langs.split("|") else None


def find_cjk_font() -> Path:
    """The CJK font file to embed: ``$ZEROCARBON_REPORT_FONT``, else the first of
    :data:`CJK_FONT_FILES` present, else fontconfig's choice for ``zh-cn``.

    Raises
    ------
    ReportFontError
        None found (or the file named by the variable does not exist).
    """
    named = os.environ.get(FONT_ENV)
    if named:
        if not Path(named).is_file():
            raise ReportFontError(f"{FONT_ENV}={named}: no such font file")
        return Path(named)
    for path, _family in CJK_FONT_FILES:
        if Path(path).is_file():
            return Path(path)
    found = _fc_match()
    if found is not None:
        return found
    raise ReportFontError(
        "no CJK font for the report's Chinese text: looked for "
        + ", ".join(f"{fam} ({p})" for p, fam in CJK_FONT_FILES)
        + " and asked fontconfig for zh-cn. Install one (Debian: apt-get install "
        f"fonts-noto-cjk or fonts-wqy-microhei) or set {FONT_ENV} to a .ttf/.otf/.ttc file."
    )


def _s(text: object) -> str:
    """A Typst string literal (code mode)."""
    raw = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{raw}"'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A Typst table; ``align`` is one letter per column (l, r)."""
    aligns = ", ".join("left" if a == "l" else "right" for a in align)
    cells = ",\n  ".join(", ".join(_s(c) for c in row) for row in rows)
    head = ", ".join(f"strong({_s(h)})" for h in headers)
    return (
        f"#table(columns: {len(headers)}, align: ({aligns},), "
        "stroke: 0.4pt + luma(180), inset: 3pt, fill: (x, y) => if y == 0 { luma(235) },\n"
        f"  table.header({head}),\n  {cells}{',' if rows else ''}\n)\n"
    )


_COLORS = ('rgb("#4e79a7")', 'rgb("#f28e2b")', 'rgb("#59a14f")', 'rgb("#e15759")')


def _chart(
    bars: Sequence[Sequence[float]],
    labels: Sequence[str],
    legend: Sequence[str],
    unit: str,
    language: str,
    every: int = 1,
) -> str:
    """A stacked bar chart: one bar per label, segments bottom-up in legend order."""
    top = max((sum(max(v, 0.0) for v in b) for b in bars), default=0.0)
    scale = 4.0 / top if top > 0 else 0.0  # [cm per unit]
    cols = []
    for b in bars:
        segs = ", ".join(
            f"rect(width: 100%, height: {max(v, 0.0) * scale:.4f}cm, fill: {_COLORS[i]}, "
            "stroke: none)"
            for i, v in reversed(list(enumerate(b)))
        )
        cols.append(f"stack(dir: ttb, {segs})")
    names = [_s(lb if i % every == 0 else "") for i, lb in enumerate(labels)]
    keys = "  ".join(
        f"#box(rect(width: 8pt, height: 8pt, fill: {_COLORS[i]})) #{_s(name)}"
        for i, name in enumerate(legend)
    )
    n = max(len(bars), 1)
    # one unbreakable block: a chart split across a page break leaves its bars' lower
    # segments on the next page
    return (
        "#block(breakable: false)[\n"
        f"#text(size: 7pt)[{keys} #h(1fr) #{_s(label('max', language))} "
        f"#{_s(fmt(top, 1) + ' ' + unit)}]\n"
        f"#block(width: 100%, stroke: (left: 0.5pt, bottom: 0.5pt), inset: (left: 2pt))[\n"
        f"#grid(columns: ({'1fr, ' * n}), column-gutter: 1.5pt, align: bottom, "
        f"row-gutter: 2pt, {', '.join(cols)}{',' if cols else ''}\n"
        + ", ".join(f"text(size: 5.5pt, {nm})" for nm in names)
        + (",\n" if names else "")
        + ")]\n"
        + "]\n"
    )


def typst_source(report: Report, language: str, cjk_family: str) -> str:
    """The Typst source of the report in ``language`` ("zh-CN" or "en")."""

    def t(key: str) -> str:
        return label(key, language)

    a = report.account
    lang = "zh" if language == "zh-CN" else "en"
    org = a.organisation
    out: list[str] = [
        f"#set document(title: {_s(t('title') + ' ' + report.period.label)}, author: {_s(org)})",
        '#set page(paper: "a4", margin: (x: 1.6cm, y: 1.8cm), '
        f"footer: context [#text(size: 7pt)[#{_s(org)} · #{_s(report.period.label)} "
        '#h(1fr) #counter(page).display("1 / 1", both: true)]])',
        f"#set text(font: ({_s(LATIN_FONT)}, {_s(cjk_family)}), size: 9pt, lang: {_s(lang)})",
        "#set table(stroke: 0.4pt)",
        "#show table: set text(size: 7.5pt)",
        "#show heading: set text(size: 12pt)",
        f'#text(size: 18pt, weight: "bold")[#{_s(t("title"))}]',
        f"#v(2pt)#text(size: 12pt)[#{_s(org)} — #{_s(report.period.label)}]",
        "#v(6pt)",
    ]
    meta = [
        (t("organisation"), org),
        (t("credit_code"), a.credit_code or "—"),
        (t("boundary"), a.boundary or "—"),
        (t("period"), f"{report.period.label} ({a.start.isoformat()} .. {a.end.isoformat()})"),
        (t("timezone"), report.timezone),
        (t("standard"), "GB/T 32150-2015"),
        (t("factor_table"), a.factor_table),
        (t("generated"), report.generated_at.isoformat()),
    ]
    out.append(
        "#grid(columns: (auto, 1fr), column-gutter: 8pt, row-gutter: 3pt, "
        + ", ".join(f"strong({_s(k)}), {_s(v)}" for k, v in meta)
        + ")\n"
    )
    # key figures
    out.append(f"= #{_s(t('summary'))}\n")
    rows = []
    for f in report.figures:
        if f.unit == "t CO2":
            value = fmt_t(f.value)
        elif f.unit == "CNY":
            value = fmt_cny(f.value)
        else:
            value = fmt_kwh(f.value)
        rows.append((t(f.key), value, f.unit))
    out.append(_table((t("figure"), t("value"), t("unit")), rows, "lrl"))
    out.append(_charts(report, language))
    out.append(_sources(report, language))
    out.append(_quality(report, language))
    out.append(_cost(report, language))
    out.append(_instruments(report, language))
    out.append(_esg(report, language))
    out.append(_footprints(report, language))
    out.append(_scorecard(report, language))
    if report.notes:
        out.append(f"= #{_s(t('notes'))}\n")
        out.extend(f"- #{_s(n)}\n" for n in report.notes)
    return "\n".join(out)


def _charts(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    day = report.bucket_kind == "day"
    labels = [b.label[8:] if day else b.label[5:] for b in report.buckets]
    out = [f"= #{_s(t('charts'))}\n"]
    out.append(f"*#{_s(t('chart_period_day' if day else 'chart_period_month'))}*\n")
    out.append(
        _chart(
            [(b.scope1_kg / 1000.0, b.scope2_location_kg / 1000.0) for b in report.buckets],
            labels,
            (t("legend_scope1"), t("legend_scope2")),
            "t CO2",
            language,
            every=5 if day else 1,
        )
    )
    out.append(f"*#{_s(t('chart_energy_day' if day else 'chart_energy_month'))}*\n")
    out.append(
        _chart(
            [(b.grid_import_kwh, b.pv_kwh) for b in report.buckets],
            labels,
            (t("legend_import"), t("legend_pv")),
            "kWh",
            language,
            every=5 if day else 1,
        )
    )
    out.append(f"*#{_s(t('chart_profile'))}*\n")
    out.append(
        _chart(
            [(p.grid_import_kwh, p.pv_kwh) for p in report.profile],
            [f"{p.hour:02d}" for p in report.profile],
            (t("legend_import"), t("legend_pv")),
            "kWh/h",
            language,
            every=2,
        )
    )
    if report.cost is not None and report.cost.by_kind_cny:
        out.append(f"*#{_s(t('chart_cost'))}*\n")
        kinds = list(report.cost.by_kind_cny)
        out.append(
            _chart(
                [(float(report.cost.by_kind_cny[k]),) for k in kinds],
                [t(k) for k in kinds],
                (t("amount"),),
                "CNY",
                language,
            )
        )
    return "\n".join(out)


def _sources(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    rows = []
    for s in report.account.sources:
        sign = "-" if s.sign < 0 else ""
        rows.append(
            (
                s.id,
                f"{fmt_kwh(s.activity)} {s.activity_unit}",
                f"{s.factor.value:.6g} {s.factor.unit}",
                s.factor.source + (" *" if s.factor.provisional else ""),
                s.factor.revision,
                sign + fmt_t(s.emissions_t),
            )
        )
    return f"= #{_s(t('sources'))}\n" + _table(
        (
            t("source"),
            t("activity"),
            t("factor"),
            t("factor_source"),
            t("revision"),
            t("emissions_t"),
        ),
        rows,
        "lrrllr",
    )


def _quality(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    rows = []
    for s in report.account.sources:
        q = s.quality
        share = "—" if q.measured_share is None else f"{q.measured_share:.2%}"
        rows.append(
            (
                s.id,
                t(q.basis),
                share,
                fmt_kwh(q.estimated) if q.basis == "measured" else "—",
                f"{q.hours_reported} / {q.hours_expected}" if q.basis == "measured" else "—",
                f"{q.gaps}/{q.resets}/{q.replacements}/{q.rejected}",
            )
        )
    a = report.account
    return (
        f"= #{_s(t('quality'))}\n"
        + _table(
            (t("source"), t("basis"), t("measured_share"), t("estimated"), t("hours"), t("faults")),
            rows,
            "llrrrr",
        )
        + f"#{_s(t('hours'))}: {a.hours_with_results} / {a.hours_expected}\n"
    )


def _kind_name(item: str, language: str) -> str:
    return label(item.removeprefix("energy_"), language)


def _cost(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    out = [f"= #{_s(t('cost'))}\n"]
    if report.cost is None:
        out.append(f"#{_s(t('no_tariff'))}\n")
        return "\n".join(out)
    rows = []
    for b in report.cost.bills:
        for ln in b.lines:
            rows.append(
                (
                    b.month,
                    _kind_name(ln.item, language),
                    f"{fmt_kwh(ln.quantity)} {ln.unit}",
                    f"{ln.price}",
                    fmt_cny(ln.amount_cny),
                )
            )
        rows.append((b.month, "Σ", "", "", fmt_cny(b.total_cny)))
    out.append(
        _table((t("month"), t("item"), t("quantity"), t("price"), t("amount")), rows, "llrrr")
    )
    out.append(
        f"*#{_s(t('cost_total_cny'))}: {fmt_cny(report.cost.total_cny)} CNY* — "
        f"#{_s(t('pv_savings_cny'))}: {fmt_cny(report.cost.pv_savings_cny)} CNY\n"
    )
    return "\n".join(out)


def _instruments(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    out = [f"= #{_s(t('instruments'))}\n"]
    if not report.instruments:
        out.append(f"#{_s(t('no_instruments'))}\n")
    else:
        rows = [
            (
                i.id,
                i.kind,
                i.vintage,
                f"{i.volume.normalize():f} {i.unit}",
                f"{i.retired_in_period.normalize():f}",
                fmt_kwh(i.allocated_kwh),
                i.status,
            )
            for i in report.instruments
        ]
        out.append(
            _table(
                (
                    t("instrument"),
                    t("kind"),
                    t("vintage"),
                    t("volume"),
                    t("retired"),
                    t("allocated"),
                    t("status"),
                ),
                rows,
                "lllrrrl",
            )
        )
    e = report.account.energy
    out.append(
        f"#{_s(t('green_contract_kwh'))}: {fmt_kwh(e['green_contract_kwh'])} kWh; "
        f"#{_s(t('certificate_kwh'))}: {fmt_kwh(e['certificate_kwh'])} kWh. "
        f"#{_s(t('offsets_used'))}: {_num(report.offsets_t)} t CO2e\n"
    )
    return "\n".join(out)


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _esg(report: Report, language: str) -> str:
    def t(key: str) -> str:
        return label(key, language)

    rows = []
    for f in report.esg:
        if f.value is None:
            value = t("not_reported")
        elif f.unit.startswith("t CO2e") and "/" not in f.unit:
            value = fmt_t(f.value)
        elif "/" in f.unit:
            value = f"{f.value:.6g}"
        else:
            value = fmt(f.value, 3)
        rows.append((f.id, f.title_zh if language == "zh-CN" else f.title_en, value, f.unit, f.how))
    return f"= #{_s(t('esg'))}\n" + _table(
        (t("field"), t("figure"), t("value"), t("unit"), t("how")), rows, "llrll"
    )


def _footprints(report: Report, language: str) -> str:
    """Product footprints (GB/T 24067-2024 / ISO 14067:2018) per declared unit."""
    if not report.footprints:
        return ""

    def t(key: str) -> str:
        return label(key, language)

    rows = []
    for f in report.footprints:
        share = f.metered_measured_share
        rows.append(
            (
                f"{f.product} ({f.name})",
                f.line,
                f"{fmt(f.units, 3)} {f.unit}",
                fmt(f.per_unit(f.gate_to_gate_kg), 6),
                fmt(f.per_unit(f.cradle_to_gate_kg), 6),
                fmt(f.per_unit(f.cradle_to_gate_market_kg), 6),
                "—" if share is None else f"{share:.2%}",
            )
        )
    return (
        f"= #{_s(t('footprint'))}\n"
        f"#text(size: 8pt)[GB/T 24067-2024 / ISO 14067:2018; kg CO2e / #{_s(t('unit'))}]\n"
        + _table(
            (t("product"), t("line"), t("output"), t("gate_to_gate"), t("cradle_to_gate"),
             t("cradle_to_gate_market"), t("measured_share")),
            rows,
            "llrrrrr",
        )
    )  # fmt: skip


def _scorecard(report: Report, language: str) -> str:
    """The zero-carbon factory indicators with their thresholds and sources."""
    sc = report.scorecard
    if sc is None or not sc.indicators:
        return ""

    def t(key: str) -> str:
        return label(key, language)

    def met(value: bool | None) -> str:
        return t("not_assessed") if value is None else t("met" if value else "not_met")

    rows = [
        (
            i.id,
            "—" if i.value is None else f"{i.value:.6g}",
            i.unit,
            "—" if i.threshold is None else f"{i.comparison} {i.threshold:g}",
            met(i.met),
            i.source or "—",
        )
        for i in sc.indicators
    ]
    return f"= #{_s(t('scorecard'))}\n" + _table(
        (t("indicator"), t("value"), t("unit"), t("threshold"), t("result"), t("source_doc")),
        rows,
        "lrlrll",
    )


def _family(font: Path) -> str:
    for path, family in CJK_FONT_FILES:
        if Path(path) == font:
            return family
    fc = shutil.which("fc-query")
    if fc is not None:
        out = subprocess.run(
            [fc, "-f", "%{family[0]}\n", str(font)], capture_output=True, text=True, check=False
        ).stdout.split("\n")
        if out and out[0]:
            return out[0]
    return font.stem


def render_pdf(report: Report, language: str) -> bytes:
    """The report as PDF bytes, fonts embedded.

    Raises
    ------
    ReportFontError
        No CJK font on this system (see :func:`find_cjk_font`).
    """
    import typst  # the compiler, loaded only when a PDF is made

    font = find_cjk_font()
    source = typst_source(report, language, _family(font))
    pdf: bytes = typst.compile(  # type: ignore[call-overload]  # its stub ties font_paths to the input's type
        source.encode("utf-8"),
        font_paths=[str(font.parent)],
        ignore_system_fonts=True,
        format="pdf",
        timestamp=int(report.generated_at.timestamp()),
    )
    return pdf
