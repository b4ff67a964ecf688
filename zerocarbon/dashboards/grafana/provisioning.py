"""Grafana's provisioning files for the dashboards, and the export that writes them.

Layout of an export directory (Grafana documentation, "Provision Grafana": data
sources and dashboard providers are YAML files under ``provisioning/``, dashboards are
JSON files a file provider reads):

- ``dashboards/<uid>.json``: one file per dashboard (:func:`build_dashboards`);
- ``provisioning/datasources/zerocarbon.yaml``: the PostgreSQL data source, uid
  :data:`DATASOURCE_UID`, logging in as the read-only role of ``zerocarbon db
  grant-readonly``, its password read by Grafana from ``$ZEROCARBON_GRAFANA_DB_PASSWORD``
  (provisioning files expand environment variables);
- ``provisioning/dashboards/zerocarbon.yaml``: a file provider reading
  ``/var/lib/grafana/dashboards`` into the site's folder.

The files are written in a fixed form (sorted keys, two-space indents, a final newline),
so that exporting twice gives the same bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerocarbon.config import SiteConfig
from zerocarbon.dashboards.grafana.build import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    build_dashboards,
    folder_uid,
)

__all__ = [
    "DASHBOARDS_PATH",
    "PASSWORD_ENV",
    "DatasourceSettings",
    "ExportedFile",
    "dashboards_provider_yaml",
    "datasource_yaml",
    "export",
    "export_files",
]

PASSWORD_ENV = "ZEROCARBON_GRAFANA_DB_PASSWORD"  # the read-only role's password
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"  # where the container mounts dashboards/


@dataclass(frozen=True, slots=True)
class DatasourceSettings:
    """Where Grafana finds the gateway's database."""

    host: str = "timescaledb:5432"  # host:port as Grafana's container reaches it
    database: str = "zerocarbon"
    user: str = "grafana"  # the read-only role (zerocarbon db grant-readonly --role)
    # False: $__timeGroup expands to plain SQL (floor of the epoch), which runs on both
    # layouts; True would make it time_bucket(), which needs the TimescaleDB extension
    timescaledb: bool = False


@dataclass(frozen=True, slots=True)
class ExportedFile:
    path: Path  # relative to the export directory
    text: str


_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./:$-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: object) -> str:
    """A YAML scalar: booleans and numbers as they are, strings plain when they cannot be
    read as anything else, else double-quoted (JSON's escapes are YAML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _yaml_lines(data: object, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{pad}{key}:")
                out.extend(_yaml_lines(value, indent + 2))
            else:
                out.append(f"{pad}{key}: {_scalar(value)}")
    elif isinstance(data, list):
        for item in data:
            lines = _yaml_lines(item, indent + 2)
            out.append(f"{pad}- {lines[0].lstrip()}")
            out.extend(lines[1:])
    else:
        out.append(f"{pad}{_scalar(data)}")
    return out


def _yaml(data: dict[str, Any]) -> str:
    """Block-style YAML of plain data (mappings, sequences, strings, numbers, booleans)."""
    return "\n".join(_yaml_lines(data, 0)) + "\n"


def datasource_yaml(site: SiteConfig, settings: DatasourceSettings) -> str:
    """The data source provisioning file (``apiVersion: 1``)."""
    data = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": f"zerocarbon ({site.site.name})",
                "type": DATASOURCE_TYPE,
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": settings.host,
                "user": settings.user,
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "database": settings.database,
                    "sslmode": "disable",
                    "postgresVersion": 1500,  # the highest version Grafana 11 lists (15+)
                    "timescaledb": settings.timescaledb,
                    "maxOpenConns": 10,
                    "maxIdleConns": 10,
                    "connMaxLifetime": 14400,
                },
                # Grafana expands $VAR in provisioning files at start-up
                "secureJsonData": {"password": f"${PASSWORD_ENV}"},
            }
        ],
    }
    return _yaml(data)


def dashboards_provider_yaml(site: SiteConfig) -> str:
    """The dashboard provider provisioning file: the JSON files in
    :data:`DASHBOARDS_PATH`, into the site's folder, not editable in the UI."""
    data = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "zerocarbon",
                "orgId": 1,
                "folder": f"zerocarbon: {site.site.name}",
                "folderUid": folder_uid(site.site.name),
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }
    return _yaml(data)


def export_files(site: SiteConfig, settings: DatasourceSettings) -> list[ExportedFile]:
    """Every file of an export, with its relative path and content."""
    files = [
        ExportedFile(
            Path("dashboards") / f"{d.uid}.json",
            json.dumps(d.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        )
        for d in build_dashboards(site)
    ]
    files.append(
        ExportedFile(
            Path("provisioning/datasources/zerocarbon.yaml"), datasource_yaml(site, settings)
        )
    )
    files.append(
        ExportedFile(
            Path("provisioning/dashboards/zerocarbon.yaml"), dashboards_provider_yaml(site)
        )
    )
    return files


def export(directory: Path, site: SiteConfig, settings: DatasourceSettings) -> list[Path]:
    """Write the export into ``directory``; dashboards of an earlier export that are no
    longer generated (``*.json`` in ``dashboards/``) are removed. Returns the paths
    written."""
    files = export_files(site, settings)
    dash_dir = directory / "dashboards"
    keep = {directory / f.path for f in files}
    if dash_dir.is_dir():
        for old in dash_dir.glob("*.json"):
            if old not in keep:
                old.unlink()
    written = []
    for f in files:
        target = directory / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.text, encoding="utf-8")
        written.append(target)
    return written
