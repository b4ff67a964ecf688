"""Grafana dashboards as code, generated from the site file.

:mod:`.build` makes the dashboards (site overview, devices, lines and products, data
quality, alerts) with the Grafana Foundation SDK's typed builders, every panel a SQL
query on the gateway's PostgreSQL (1-minute and 15-minute power tables, hourly results,
events, alerts, drift periods); :mod:`.provisioning` writes them with Grafana's
provisioning files; :mod:`.push` uploads them through Grafana's HTTP API; :mod:`.cli`
is ``zerocarbon dashboards``. ``docs/grafana.md`` describes the dashboards.
"""

from __future__ import annotations

from zerocarbon.dashboards.grafana.build import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    GeneratedDashboard,
    build_dashboards,
    dashboard_uid,
    folder_uid,
)

__all__ = [
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "GeneratedDashboard",
    "build_dashboards",
    "dashboard_uid",
    "folder_uid",
]
