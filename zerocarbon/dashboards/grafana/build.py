"""The dashboards, built from a site file with the Grafana Foundation SDK.

:func:`build_dashboards` gives five dashboards (site overview, devices, lines and
products, data quality, alerts) as the SDK's typed models
(:class:`grafana_foundation_sdk.models.dashboard.Dashboard`), each with a uid derived
from the site's name and the dashboard's slug (:func:`dashboard_uid`, the same on
every run and for every machine), the site's time zone, a unit on every panel (Grafana
unit ids) and every query on the PostgreSQL data source provisioned with the uid
:data:`DATASOURCE_UID` (:mod:`zerocarbon.dashboards.grafana.provisioning`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import DataqueryConfig, register_dataquery_variant
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.dashboards.grafana import queries

__all__ = [
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "GeneratedDashboard",
    "SqlQuery",
    "build_dashboards",
    "dashboard_json",
    "dashboard_uid",
    "folder_uid",
]

# Grafana's PostgreSQL data source plugin id (Grafana 10.2+; "postgres" is its alias)
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "zerocarbon-pg"  # the provisioned data source's uid
_UID_MAX = 40  # Grafana's limit on a uid's length
DATASOURCE = models.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

Format = Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's PostgreSQL data source (its JSON model: ``rawSql``,
    ``format``, ``rawQuery``, ``editorMode = "code"``); the SDK has no typed model of
    this data source's query, so this one is registered as its variant."""

    def __init__(
        self,
        ref_id: str = "A",
        raw_sql: str = "",
        format_val: Format = "time_series",
        datasource: models.DataSourceRef | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val: Format = format_val
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        unknown = set(data) - {"refId", "editorMode", "format", "rawQuery", "rawSql", "datasource"}
        if unknown:
            raise ValueError(f"unexpected keys in a PostgreSQL query: {sorted(unknown)}")
        fmt = data.get("format", "time_series")
        if fmt not in ("time_series", "table"):
            raise ValueError(f"format: {fmt!r} is not time_series or table")
        if not isinstance(data.get("rawSql"), str) or not data["rawSql"].strip():
            raise ValueError("rawSql: missing or empty")
        ds = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "A")),
            raw_sql=data["rawSql"],
            format_val=fmt,
            datasource=None if ds is None else models.DataSourceRef.from_json(ds),
        )


register_dataquery_variant(DataqueryConfig(DATASOURCE_TYPE, SqlQuery.from_json))


class _Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, fmt: Format, ref_id: str = "A") -> None:
        self._query = SqlQuery(ref_id, sql, fmt, DATASOURCE)

    def build(self) -> cogvariants.Dataquery:
        return self._query


@dataclass(frozen=True, slots=True)
class GeneratedDashboard:
    """One dashboard: its slug (``overview``, ``devices``...), uid and typed model."""

    slug: str
    uid: str
    model: models.Dashboard

    def to_json(self) -> dict[str, Any]:
        """The dashboard's JSON model, as Grafana stores and provisions it."""
        return dashboard_json(self.model)


def dashboard_json(model: models.Dashboard) -> dict[str, Any]:
    """A dashboard model as plain JSON data (through the SDK's encoder)."""
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def folder_uid(site_name: str) -> str:
    """The site's folder uid: ``zc-`` and 12 hex digits of the SHA-256 of its name."""
    return "zc-" + hashlib.sha256(site_name.encode()).hexdigest()[:12]


def dashboard_uid(site_name: str, slug: str) -> str:
    """A dashboard's uid: the site's folder uid and the slug (at most 40 characters,
    Grafana's limit), the same for the same site name on every run."""
    uid = f"{folder_uid(site_name)}-{_slug(slug)}"
    if len(uid) > _UID_MAX:
        raise ValueError(f"dashboard slug {slug!r} makes a uid longer than {_UID_MAX}")
    return uid


# ---------------------------------------------------------------------------------------


class _Layout:
    """Panels placed left to right in rows of 24 grid columns, with increasing ids."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> tuple[int, models.GridPos]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = models.GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_h = max(self.row_h, h)
        panel_id, self.next_id = self.next_id, self.next_id + 1
        return panel_id, pos


PanelBuilder = (
    timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel
)  # the panel kinds used here


def _common(
    panel: PanelBuilder,
    layout: _Layout,
    title: str,
    description: str,
    unit: str,
    sql: str,
    fmt: Format,
    w: int,
    h: int,
) -> PanelBuilder:
    panel_id, pos = layout.place(w, h)
    panel.id(panel_id).title(title).description(description).unit(unit)
    panel.datasource(DATASOURCE).with_target(_Sql(sql, fmt)).grid_pos(pos)
    return panel


def _series(
    layout: _Layout,
    title: str,
    description: str,
    unit: str,
    sql: str,
    *,
    bars: bool = False,
    w: int = 12,
    h: int = 9,
) -> timeseries.Panel:
    panel = timeseries.Panel()
    if bars:
        panel.draw_style(common_models.GraphDrawStyle.BARS).fill_opacity(60)
    else:
        panel.fill_opacity(10)
    _common(panel, layout, title, description, unit, sql, "time_series", w, h)
    return panel


def _stat(
    layout: _Layout, title: str, description: str, unit: str, sql: str, *, w: int = 6
) -> stat.Panel:
    panel = stat.Panel().reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    _common(panel, layout, title, description, unit, sql, "table", w, 4)
    return panel


def _table(
    layout: _Layout,
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "short",
    overrides: dict[str, str] | None = None,
    w: int = 24,
    h: int = 9,
) -> table.Panel:
    panel = table.Panel().align(common_models.FieldTextAlignment.AUTO).inspect(False)
    _common(panel, layout, title, description, unit, sql, "table", w, h)
    for column, column_unit in (overrides or {}).items():
        panel.override_by_name(column, [models.DynamicConfigValue("unit", column_unit)])
    return panel


def _bars(
    layout: _Layout, title: str, description: str, unit: str, sql: str, *, w: int = 12
) -> bargauge.Panel:
    panel = bargauge.Panel().reduce_options(
        common.ReduceDataOptions().values(True).calcs(["lastNotNull"])
    )
    panel.display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
    _common(panel, layout, title, description, unit, sql, "table", w, 9)
    return panel


def _variable(name: str, label: str, sql: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(sql)
        .multi(True)
        .include_all(True)
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def _dashboard(site: SiteConfig, slug: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(f"{site.site.name}: {title}")
        .uid(dashboard_uid(site.site.name, slug))
        .description(description)
        .tags(["zerocarbon", slug])
        .timezone(site.site.timezone)
        .time("now/d", "now")
        .refresh("1m")
        .readonly()
        .link(
            dashboard.DashboardLink("zerocarbon")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(["zerocarbon"])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


_ROLE_LABELS: dict[DeviceRole, str] = {
    DeviceRole.GRID: "grid",
    DeviceRole.PV: "PV",
    DeviceRole.WIND: "wind",
    DeviceRole.BATTERY: "battery",
    DeviceRole.LOAD: "metered load",
}

_KG_PER_KWH = "suffix: kg/kWh"  # Grafana custom unit: the value with this suffix


def _overview(site: SiteConfig) -> dashboard.Dashboard:
    roles_present = {d.role for d in site.devices}
    roles = [(r.value, lb) for r, lb in _ROLE_LABELS.items() if r in roles_present]
    lay = _Layout()
    d = _dashboard(
        site,
        "overview",
        "site overview",
        "Power flows, hourly energy balance, Scope 2 emissions, carbon-free energy share "
        "and intensity of the site.",
    )
    d.with_panel(
        _stat(lay, "Load energy", "Site load over the range [kWh].", "kwatth", queries.LOAD_TOTAL)
    )
    d.with_panel(
        _stat(
            lay,
            "Scope 2",
            "Location- and market-based Scope 2 over the range [kg CO2].",
            "masskg",
            queries.SCOPE2_TOTAL,
            w=12,
        )
    )
    d.with_panel(
        _stat(
            lay,
            "Carbon-free energy share",
            "Hourly-matched carbon-free energy over load, over the range.",
            "percentunit",
            queries.CFE_SHARE_TOTAL,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Power flows",
            "Active power by device role [kW] (grid: import positive; battery: discharge "
            "positive), from the 1-minute table, or the 15-minute one for buckets of 15 "
            "minutes and more.",
            "kwatt",
            queries.power_by_role(roles),
            w=24,
            h=10,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Energy balance per hour",
            "The hour's grid import and export, generation, battery and load [kWh].",
            "kwatth",
            queries.ENERGY_BALANCE_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Scope 2 per hour",
            "Location-based (import x grid factor) and market-based (after contracts and "
            "certificates, residual-mix factor) Scope 2 [kg CO2], GHG Protocol Scope 2 "
            "Guidance.",
            "masskg",
            queries.SCOPE2_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Carbon-free energy share per hour",
            "Hourly-matched carbon-free energy (on-site generation, green contracts) over "
            "load, 0..1.",
            "percentunit",
            queries.CFE_SHARE_HOURLY,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Carbon intensity per hour",
            "Emissions per kWh of load, location- and market-based, and the grid factor "
            "[kg CO2/kWh].",
            _KG_PER_KWH,
            queries.INTENSITY_HOURLY,
        )
    )
    return d


def _devices(site: SiteConfig) -> dashboard.Dashboard:
    lay = _Layout()
    d = _dashboard(
        site,
        "devices",
        "devices",
        "Power, hourly energy and health of the devices chosen in $device.",
    ).with_variable(_variable("device", "Device", queries.DEVICE_VARIABLE))
    d.with_panel(
        _series(
            lay,
            "Active power",
            "Active power of each device [kW], from the 1-minute or 15-minute table.",
            "kwatt",
            queries.power_by_device(),
            w=24,
            h=10,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Energy per hour",
            "Each kWh counter's increase in the hour (or the energy integrated from a "
            "power-only device) [kWh].",
            "kwatth",
            queries.DEVICE_ENERGY_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Device events per hour",
            "Online, offline and torn-read events per hour [events].",
            "short",
            queries.DEVICE_EVENTS_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _table(
            lay,
            "Health",
            "Last online/offline state, offline events in the range, last reading and "
            "time since it [s].",
            queries.DEVICE_HEALTH,
            overrides={"last_seen": "dateTimeAsIso", "silent_s": "s"},
        )
    )
    d.with_panel(
        _table(
            lay,
            "Device events",
            "The devices' state changes in the range, newest first (at most 500).",
            queries.DEVICE_EVENTS,
            overrides={"time": "dateTimeAsIso"},
        )
    )
    return d


def _lines(site: SiteConfig) -> dashboard.Dashboard:
    lay = _Layout()
    names = ", ".join(f"{ln.id} ({ln.name or ln.id})" for ln in site.lines) or "from the data"
    d = _dashboard(
        site,
        "lines",
        "lines and products",
        f"Energy per unit of output (EnPI), energy and output per hour, drift against "
        f"the energy baseline and its CUSUM, for the lines in $line. Lines: {names}.",
    ).with_variable(_variable("line", "Line", queries.LINE_VARIABLE))
    d.with_panel(
        _series(
            lay,
            "Energy per unit",
            "The line's energy over its output in the hour (EnPI, ISO 50006) [kWh/unit].",
            "suffix: kWh/unit",
            queries.LINE_KWH_PER_UNIT,
            w=16,
        )
    )
    d.with_panel(
        _bars(
            lay,
            "Energy by line",
            "Each line's energy over the range [kWh].",
            "kwatth",
            queries.LINE_ENERGY_TOTAL,
            w=8,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Line energy per hour",
            "Sum of the line's sub-meters in the hour [kWh].",
            "kwatth",
            queries.LINE_ENERGY_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Output per hour",
            "Sum of the line's output counters in the hour [units].",
            "short",
            queries.LINE_PRODUCTION_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "EnPI against baseline",
            "Each drift period's energy and the energy its baseline model expects for the "
            "period's output and conditions [kWh] (ISO 50006 energy baseline).",
            "kwatth",
            queries.LINE_ENPI_BASELINE,
        )
    )
    cusum = _series(
        lay,
        "CUSUM",
        "Upper and lower CUSUM of the residuals and the decision limit (Page 1954; "
        "Montgomery, Introduction to Statistical Quality Control, 9.1) [kWh, or a share "
        "of expected energy for series marked (share)].",
        "kwatth",
        queries.LINE_CUSUM,
    )
    cusum.override_by_regexp(r".*\(share\)$", [models.DynamicConfigValue("unit", "percentunit")])
    d.with_panel(cusum)
    d.with_panel(
        _table(
            lay,
            "Drift signals",
            "Periods whose CUSUM crossed the limit, newest first.",
            queries.LINE_DRIFT_SIGNALS,
            unit="kwatth",
            overrides={
                "period_start": "dateTimeAsIso",
                "period_end": "dateTimeAsIso",
                "residual_share": "percentunit",
                "rule": "string",
                "line": "string",
                "chart_unit": "string",
            },
        )
    )
    return d


def _quality(site: SiteConfig) -> dashboard.Dashboard:
    lay = _Layout()
    d = _dashboard(
        site,
        "data-quality",
        "data quality",
        "Estimated energy, gaps, counter faults, missing devices and sub-meter mismatches.",
    )
    d.with_panel(
        _series(
            lay,
            "Estimated share per hour",
            "Part of the hour's metered energy that is estimated (gaps, meter swaps), 0..1.",
            "percentunit",
            queries.ESTIMATED_SHARE_HOURLY,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Missing devices and sub-meter mismatches",
            "Devices that have not covered the hour; main meters whose sub-meters differ "
            f"beyond {site.accounting.submeter_tolerance_pct:g} % [count].",
            "short",
            queries.COVERAGE_HOURLY,
            bars=True,
        )
    )
    d.with_panel(
        _series(
            lay,
            "Gaps and counter faults per hour",
            "Gaps, counter resets, rollovers, backward steps, meter replacements, rejected, "
            "late and duplicate readings, summed over the channels [count].",
            "short",
            queries.COUNTER_FAULTS_HOURLY,
            bars=True,
            w=24,
        )
    )
    d.with_panel(
        _table(
            lay,
            "By device",
            "Each channel's hours, incomplete hours, estimated and total increase (in the "
            "metric's unit) and faults over the range.",
            queries.QUALITY_BY_DEVICE,
            overrides={"device": "string", "metric": "string"},
        )
    )
    return d


def _alerts(site: SiteConfig) -> dashboard.Dashboard:
    lay = _Layout()
    d = _dashboard(
        site,
        "alerts",
        "alerts",
        "Firing alerts, alert history and acknowledgements.",
    )
    d.with_panel(
        _stat(lay, "Firing", "Alerts firing now [alerts].", "short", queries.ACTIVE_ALERT_COUNT)
    )
    d.with_panel(
        _series(
            lay,
            "Alert changes per hour",
            "Alert episodes firing, resolved and acknowledged per hour [changes].",
            "short",
            queries.ALERT_CHANGES_HOURLY,
            bars=True,
            w=18,
            h=4,
        )
    )
    d.with_panel(
        _table(
            lay,
            "Active alerts",
            "Alerts firing now, newest first.",
            queries.ACTIVE_ALERTS,
            overrides={"fired_at": "dateTimeAsIso", "acked_at": "dateTimeAsIso"},
        )
    )
    d.with_panel(
        _table(
            lay,
            "Alert history",
            "Alert episodes fired in the range, with their duration [s].",
            queries.ALERT_HISTORY,
            overrides={
                "fired_at": "dateTimeAsIso",
                "resolved_at": "dateTimeAsIso",
                "duration_s": "s",
            },
        )
    )
    d.with_panel(
        _table(
            lay,
            "Acknowledgements",
            "Who acknowledged which alert, and how long after it fired [s].",
            queries.ACKNOWLEDGEMENTS,
            overrides={"time": "dateTimeAsIso", "after_s": "s"},
        )
    )
    return d


_DASHBOARDS = (
    ("overview", _overview),
    ("devices", _devices),
    ("lines", _lines),
    ("data-quality", _quality),
    ("alerts", _alerts),
)


def build_dashboards(site: SiteConfig) -> list[GeneratedDashboard]:
    """The site's dashboards, in a fixed order (overview first)."""
    out = []
    for slug, make in _DASHBOARDS:
        model = make(site).build()
        assert model.uid is not None
        out.append(GeneratedDashboard(slug, model.uid, model))
    return out
