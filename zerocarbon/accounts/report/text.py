"""Labels of the report in Chinese (zh-CN) and English, and the number formats shared by
the PDF and the workbook."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

__all__ = ["LANGUAGES", "fmt", "fmt_cny", "fmt_kwh", "fmt_t", "label"]

LANGUAGES: Final = ("zh-CN", "en")

_TEXT: Final[dict[str, tuple[str, str]]] = {
    # key: (zh-CN, en)
    "title": ("碳排放与能源报告", "Carbon and energy report"),
    "period": ("报告期", "Period"),
    "organisation": ("组织", "Organisation"),
    "credit_code": ("统一社会信用代码", "Unified social credit code"),
    "boundary": ("核算边界", "Boundary"),
    "standard": ("核算标准", "Standard"),
    "generated": ("生成时间", "Generated"),
    "timezone": ("时区", "Time zone"),
    "factor_table": ("电网排放因子表版本", "Grid factor table version"),
    "summary": ("关键数据", "Key figures"),
    "figure": ("指标", "Figure"),
    "value": ("数值", "Value"),
    "unit": ("单位", "Unit"),
    "scope1_t": ("范围一排放（直接）", "Scope 1 (direct)"),
    "combustion_t": ("其中：化石燃料燃烧", "of which fuel combustion"),
    "process_t": ("其中：工业生产过程", "of which process"),
    "scope2_location_t": ("范围二排放（基于位置）", "Scope 2, location-based"),
    "purchased_electricity_t": ("其中：外购电力", "of which purchased electricity"),
    "purchased_heat_t": ("其中：外购热力", "of which purchased heat"),
    "scope2_market_t": ("范围二排放（基于市场）", "Scope 2, market-based"),
    "exported_t": ("输出电力与热力（扣减）", "Exported electricity and heat (deducted)"),
    "total_location_t": ("排放总量 E（GB/T 32150 公式 1）", "Total E (GB/T 32150 formula 1)"),
    "total_market_t": ("排放总量（基于市场）", "Total, market-based"),
    "grid_import_kwh": ("电网购入电量", "Grid import"),
    "grid_export_kwh": ("上网电量", "Grid export"),
    "pv_kwh": ("光伏发电量", "PV generation"),
    "load_kwh": ("用电负荷电量", "Site load"),
    "green_contract_kwh": ("绿电交易匹配电量", "Green-power contract, matched"),
    "certificate_kwh": ("绿证匹配电量", "Green certificates, matched"),
    "cfe_kwh": ("无碳电力（逐时匹配）", "Carbon-free energy (hourly matched)"),
    "cost_total_cny": ("电费合计", "Electricity bill, total"),
    "pv_savings_cny": ("光伏自用节省电费", "PV self-consumption savings"),
    "charts": ("图表", "Charts"),
    "chart_period_day": ("每日排放（逐时结果求和）", "Daily emissions (sums of hourly results)"),
    "chart_period_month": (
        "每月排放（逐时结果求和）",
        "Monthly emissions (sums of hourly results)",
    ),
    "chart_energy_day": ("每日电量", "Daily electricity"),
    "chart_energy_month": ("每月电量", "Monthly electricity"),
    "chart_profile": ("逐时平均负荷曲线（当地时间）", "Mean hourly profile (local time)"),
    "chart_cost": ("分时段电度电费", "Energy charge by time-of-use period"),
    "legend_scope1": ("范围一（燃料燃烧）", "Scope 1 (fuel combustion)"),
    "legend_scope2": ("范围二（基于位置）", "Scope 2 (location-based)"),
    "legend_import": ("电网购入", "Grid import"),
    "legend_pv": ("光伏", "PV"),
    "max": ("最大值", "max"),
    "sources": ("排放源", "Emission sources"),
    "source": ("排放源", "Source"),
    "category": ("类别", "Category"),
    "activity": ("活动数据", "Activity"),
    "factor": ("排放因子", "Factor"),
    "factor_source": ("因子来源", "Factor source"),
    "revision": ("版本", "Revision"),
    "emissions_t": ("排放量 t CO2", "Emissions t CO2"),
    "quality": ("数据质量", "Data quality"),
    "basis": ("数据来源", "Basis"),
    "measured_share": ("实测比例", "Measured share"),
    "estimated": ("估算量", "Estimated"),
    "hours": ("小时数（有数据/应有）", "Hours (reported / expected)"),
    "faults": ("缺测/复位/换表/剔除", "Gaps/resets/replacements/rejected"),
    "measured": ("实测", "measured"),
    "declared": ("申报", "declared"),
    "cost": ("能源成本", "Energy cost"),
    "month": ("月份", "Month"),
    "item": ("项目", "Item"),
    "quantity": ("数量", "Quantity"),
    "price": ("单价", "Price"),
    "amount": ("金额 CNY", "Amount CNY"),
    "no_tariff": ("站点文件无 [tariff]：不计算电费。", "No [tariff] in the site file: no cost."),
    "instruments": ("绿电、绿证与抵销", "Green power, certificates and offsets"),
    "instrument": ("工具", "Instrument"),
    "kind": ("类型", "Kind"),
    "vintage": ("年份", "Vintage"),
    "volume": ("总量", "Volume"),
    "retired": ("本期注销", "Retired in period"),
    "allocated": ("本期分配 kWh", "Allocated kWh"),
    "status": ("状态", "Status"),
    "no_instruments": ("台账中无工具。", "No instrument in the ledger."),
    "offsets_used": (
        "本期使用的抵销量（单独报告，不从范围一、二中扣减）",
        "Offsets used in the period (reported apart, not subtracted from Scope 1 and 2)",
    ),
    "esg": ("ESG 披露对照（GRI 302/305，IFRS S2）", "ESG mapping (GRI 302/305, IFRS S2)"),
    "field": ("披露项", "Field"),
    "how": ("计算方法", "How computed"),
    "not_reported": ("未报告", "not reported"),
    "notes": ("说明", "Notes"),
    "footprint": ("产品碳足迹", "Product footprints"),
    "scorecard": ("零碳工厂评价", "Scorecard"),
    "energy_balance": ("电力平衡", "Electricity balance"),
    "critical_peak": ("尖峰", "critical peak"),
    "peak": ("峰", "peak"),
    "flat": ("平", "flat"),
    "valley": ("谷", "valley"),
    "deep_valley": ("深谷", "deep valley"),
    "page": ("页", "page"),
    "product": ("产品", "Product"),
    "line": ("产线", "Line"),
    "output": ("产量", "Output"),
    "gate_to_gate": ("厂内（位置）", "Gate to gate"),
    "cradle_to_gate": ("摇篮到大门（位置）", "Cradle to gate"),
    "cradle_to_gate_market": ("摇篮到大门（市场）", "Cradle to gate, market"),
    "indicator": ("指标", "Indicator"),
    "threshold": ("门槛", "Threshold"),
    "result": ("结果", "Result"),
    "source_doc": ("依据", "Source"),
    "met": ("达标", "met"),
    "not_met": ("未达标", "not met"),
    "not_assessed": ("未评价", "not assessed"),
    "surcharge": ("政府性基金及附加", "surcharge"),
    "demand_charge": ("基本电费（按需量）", "demand charge"),
    "capacity_charge": ("基本电费（按容量）", "capacity charge"),
    "export_credit": ("上网电费抵扣", "export credit"),
    "measured output x declared factor": (
        "实测产量 × 申报因子",
        "measured output x declared factor",
    ),
}


def label(key: str, language: str) -> str:
    """The label of ``key`` in ``language`` ("zh-CN" or "en"); the key itself if none."""
    pair = _TEXT.get(key)
    if pair is None:
        return key
    return pair[0] if language == "zh-CN" else pair[1]


def fmt(value: float | Decimal | None, decimals: int) -> str:
    """A number with thousands separators and ``decimals`` places (half-even on floats,
    as Python's format); an empty value is an em dash."""
    if value is None:
        return "—"
    return f"{value:,.{decimals}f}"


def fmt_t(value_t: float | None) -> str:
    """Tonnes of CO2 to the gram: 6 decimals."""
    return fmt(value_t, 6)


def fmt_kwh(value_kwh: float | Decimal | None) -> str:
    """kWh to the watt-hour: 3 decimals."""
    return fmt(value_kwh, 3)


def fmt_cny(value: Decimal | float | None) -> str:
    """CNY to the fen: 2 decimals."""
    return fmt(value, 2)
