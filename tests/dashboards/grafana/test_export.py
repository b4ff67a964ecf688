"""``zerocarbon dashboards export``: the provisioning layout, its files' content, and the
committed ``deploy/grafana`` equal to a fresh export of the demo site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import DEMO_SITE, REPO_ROOT
from zerocarbon.cli import app
from zerocarbon.config import load_site
from zerocarbon.dashboards.grafana.build import DATASOURCE_TYPE, DATASOURCE_UID, folder_uid
from zerocarbon.dashboards.grafana.provisioning import (
    DASHBOARDS_PATH,
    PASSWORD_ENV,
    DatasourceSettings,
    export_files,
)

yaml = pytest.importorskip("yaml")  # only to read the files back, as Grafana would

DEPLOY = REPO_ROOT / "deploy" / "grafana"


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_committed_export_equals_a_fresh_one(tmp_path: Path) -> None:
    """deploy/grafana is `zerocarbon dashboards export deploy/grafana --site
    examples/demo-site.toml`; run that again after changing the dashboards."""
    result = CliRunner().invoke(
        app, ["dashboards", "export", str(tmp_path), "--site", str(DEMO_SITE)]
    )
    assert result.exit_code == 0, result.output
    fresh = _tree(tmp_path)
    assert _tree(DEPLOY) == fresh


def test_the_layout_and_the_provisioning_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "dashboards",
            "export",
            str(tmp_path),
            "--site",
            str(DEMO_SITE),
            "--db-host",
            "db.example:6432",
            "--db-name",
            "plant",
            "--db-user",
            "viewer",
        ],
    )
    assert result.exit_code == 0, result.output
    site = load_site(DEMO_SITE)
    dashboards = sorted((tmp_path / "dashboards").glob("*.json"))
    assert len(dashboards) == 5
    for path in dashboards:
        assert json.loads(path.read_text())["uid"] == path.stem

    ds = yaml.safe_load((tmp_path / "provisioning/datasources/zerocarbon.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == DATASOURCE_TYPE and source["uid"] == DATASOURCE_UID
    assert source["url"] == "db.example:6432" and source["user"] == "viewer"
    assert source["jsonData"]["database"] == "plant"
    # Grafana expands $VAR in provisioning files: the password is never written out
    assert source["secureJsonData"] == {"password": f"${PASSWORD_ENV}"}

    prov = yaml.safe_load((tmp_path / "provisioning/dashboards/zerocarbon.yaml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_PATH
    assert provider["folderUid"] == folder_uid(site.site.name)


def test_defaults_are_the_compose_services() -> None:
    files = {str(f.path): f.text for f in export_files(load_site(DEMO_SITE), DatasourceSettings())}
    ds = yaml.safe_load(files["provisioning/datasources/zerocarbon.yaml"])
    assert ds["datasources"][0]["url"] == "timescaledb:5432"
    assert ds["datasources"][0]["user"] == "grafana"


def test_a_dashboard_no_longer_generated_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / "dashboards" / "zc-000000000000-old.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    kept = tmp_path / "dashboards" / "README.txt"
    kept.write_text("not a dashboard")
    result = CliRunner().invoke(
        app, ["dashboards", "export", str(tmp_path), "--site", str(DEMO_SITE)]
    )
    assert result.exit_code == 0, result.output
    assert not stale.exists() and kept.exists()


def test_a_bad_site_file_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["dashboards", "export", str(tmp_path), "--site", str(tmp_path / "missing.toml")]
    )
    assert result.exit_code == 2
    assert "missing.toml" in result.output
