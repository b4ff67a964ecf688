"""The generated dashboards: they decode back into the SDK's typed models unchanged,
every panel has a unit and a SQL query on the provisioned data source, uids are stable
and distinct, the site's time zone and the template variables are there."""

from __future__ import annotations

import re
from typing import Any

import pytest
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import timeseries

from tests.conftest import DEMO_SITE
from zerocarbon.config import SiteConfig, load_site, parse_site
from zerocarbon.dashboards.grafana.build import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    SqlQuery,
    build_dashboards,
    dashboard_json,
    dashboard_uid,
    folder_uid,
)


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(DEMO_SITE)


def _small_site(name: str, timezone: str = "Europe/Berlin") -> SiteConfig:
    return parse_site(
        {
            "site": {"name": name, "timezone": timezone},
            "mqtt": {},
            "devices": [
                {
                    "id": "main",
                    "role": "grid",
                    "protocol": "mqtt",
                    "topic": "w/main",
                    "fields": {"p": "active_power_kw"},
                },
                {
                    "id": "wind_1",
                    "role": "wind",
                    "protocol": "mqtt",
                    "topic": "w/wind",
                    "fields": {"p": "active_power_kw"},
                },
            ],
        }
    )


def test_at_least_five_dashboards_with_the_named_slugs(site: SiteConfig) -> None:
    slugs = [d.slug for d in build_dashboards(site)]
    assert slugs == ["overview", "devices", "lines", "data-quality", "alerts"]


def test_each_dashboard_round_trips_through_the_sdk_models(site: SiteConfig) -> None:
    register_default_plugins()  # the panel kinds' option models, for decoding
    for d in build_dashboards(site):
        data = d.to_json()
        decoded = models.Dashboard.from_json(data)
        assert isinstance(decoded, models.Dashboard)
        assert dashboard_json(decoded) == data
        assert decoded.panels
        for panel in decoded.panels:
            assert isinstance(panel, models.Panel), panel
            assert panel.targets
            for target in panel.targets:
                # decoded through the PostgreSQL query variant, which checks its keys
                assert isinstance(target, SqlQuery)
            # panel options and custom field config decode into the panel kind's models
            assert not isinstance(panel.options, dict), panel.title
            if panel.type_val == "timeseries":
                assert panel.field_config is not None and panel.field_config.defaults
                assert isinstance(panel.field_config.defaults.custom, timeseries.FieldConfig)


def test_a_foreign_key_in_a_query_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected keys"):
        SqlQuery.from_json({"refId": "A", "rawSql": "SELECT 1", "expr": "up"})
    with pytest.raises(ValueError, match="rawSql"):
        SqlQuery.from_json({"refId": "A", "rawSql": " "})


def _panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["panels"] if p["type"] != "row"]


def test_every_panel_has_a_unit_a_sql_query_and_the_data_source(site: SiteConfig) -> None:
    for d in build_dashboards(site):
        ids = []
        for p in _panels(d.to_json()):
            where = f"{d.slug}/{p.get('title')}"
            assert p["fieldConfig"]["defaults"].get("unit"), where
            assert p["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}, where
            assert len(p["targets"]) == 1, where
            (t,) = p["targets"]
            assert t["rawQuery"] is True and t["editorMode"] == "code", where
            assert t["format"] in ("time_series", "table"), where
            assert t["datasource"]["uid"] == DATASOURCE_UID, where
            # never raw readings: the power tables and hourly results only
            assert not re.search(r"\breadings\b", t["rawSql"]), where
            assert p.get("description"), where
            ids.append(p["id"])
        assert len(set(ids)) == len(ids), d.slug


def test_power_queries_read_both_rollup_tables_by_interval(site: SiteConfig) -> None:
    sqls = [
        p["targets"][0]["rawSql"]
        for d in build_dashboards(site)
        for p in _panels(d.to_json())
        if "power_1min" in p["targets"][0]["rawSql"]
    ]
    assert len(sqls) == 2
    for sql in sqls:
        assert "power_15min" in sql
        assert "$__interval_ms < 900000" in sql and "$__interval_ms >= 900000" in sql


def test_the_power_flows_follow_the_sites_roles() -> None:
    overview = build_dashboards(_small_site("Windy"))[0].to_json()
    flows = next(p for p in overview["panels"] if p["title"] == "Power flows")
    sql = flows["targets"][0]["rawSql"]
    assert "('wind', 'wind')" in sql and "('grid', 'grid')" in sql
    assert "'pv'" not in sql and "'battery'" not in sql


def test_uids_are_stable_distinct_and_from_the_site_name(site: SiteConfig) -> None:
    first = [d.uid for d in build_dashboards(site)]
    again = [d.uid for d in build_dashboards(load_site(DEMO_SITE))]
    assert first == again
    assert len(set(first)) == len(first)
    assert all(len(u) <= 40 and re.fullmatch(r"[a-z0-9-]+", u) for u in first)
    assert first[0] == dashboard_uid("Demo factory (Suzhou)", "overview")
    assert first[0].startswith(folder_uid("Demo factory (Suzhou)") + "-")
    other = [d.uid for d in build_dashboards(_small_site("Another plant"))]
    assert not set(other) & set(first)
    # the same JSON on every run
    assert [d.to_json() for d in build_dashboards(site)] == [
        d.to_json() for d in build_dashboards(site)
    ]


def test_the_sites_time_zone(site: SiteConfig) -> None:
    assert {d.to_json()["timezone"] for d in build_dashboards(site)} == {"Asia/Shanghai"}
    small = build_dashboards(_small_site("Berlin works"))
    assert {d.to_json()["timezone"] for d in small} == {"Europe/Berlin"}


def test_template_variables_for_device_and_line(site: SiteConfig) -> None:
    by_slug = {d.slug: d.to_json() for d in build_dashboards(site)}
    for slug, name, table in (("devices", "device", "devices"), ("lines", "line", "hourly_line")):
        (var,) = by_slug[slug]["templating"]["list"]
        assert var["name"] == name and var["type"] == "query"
        assert var["multi"] is True and var["includeAll"] is True
        assert var["datasource"]["uid"] == DATASOURCE_UID
        assert f"FROM {table}" in var["query"]
        for p in _panels(by_slug[slug]):
            assert f"IN (${name})" in p["targets"][0]["rawSql"], p["title"]
