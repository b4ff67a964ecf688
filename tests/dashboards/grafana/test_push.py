"""``zerocarbon dashboards push`` against a small Grafana that checks each request
against the documented HTTP API (:mod:`tests.dashboards.grafana.fake_grafana`)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import DEMO_SITE
from tests.dashboards.grafana.fake_grafana import FakeGrafana
from zerocarbon.cli import app
from zerocarbon.config import SiteConfig, load_site
from zerocarbon.dashboards.grafana.build import build_dashboards, folder_uid
from zerocarbon.dashboards.grafana.push import PushError, push_dashboards

TOKEN = "glsa_test_token"


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(DEMO_SITE)


def test_first_push_creates_the_folder_and_every_dashboard(site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as grafana:
        result = push_dashboards(site, grafana.url, TOKEN)
    assert grafana.violations == []
    fuid = folder_uid(site.site.name)
    assert result.folder_uid == fuid and result.folder_created
    assert [(r.method, r.path) for r in grafana.requests[:2]] == [
        ("GET", f"/api/folders/{fuid}"),
        ("POST", "/api/folders"),
    ]
    assert grafana.requests[1].body == {"title": f"zerocarbon: {site.site.name}", "uid": fuid}
    saves = grafana.requests[2:]
    expected = build_dashboards(site)
    assert [r.path for r in saves] == ["/api/dashboards/db"] * len(expected)
    for req, d in zip(saves, expected, strict=True):
        assert req.body["dashboard"] == d.to_json()
        assert req.body["folderUid"] == fuid
        assert req.body["overwrite"] is True
    assert {p.uid for p in result.dashboards} == {d.uid for d in expected}
    assert all(p.version == 1 for p in result.dashboards)


def test_a_second_push_changes_nothing_but_versions(site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as grafana:
        push_dashboards(site, grafana.url, TOKEN)
        first = {u: dict(v) for u, v in grafana.dashboards.items()}
        folders = dict(grafana.folders)
        again = push_dashboards(site, grafana.url, TOKEN)
    assert grafana.violations == []
    assert not again.folder_created
    assert grafana.folders == folders  # one folder, not re-created
    assert sum(r.path == "/api/folders" for r in grafana.requests) == 1
    assert set(grafana.dashboards) == set(first)
    for uid, saved in grafana.dashboards.items():
        assert saved["version"] == first[uid]["version"] + 1
        assert saved["dashboard"] == first[uid]["dashboard"]
        assert saved["folderUid"] == first[uid]["folderUid"]


def test_an_http_error_names_the_dashboard(site: SiteConfig) -> None:
    victim = build_dashboards(site)[2]
    with FakeGrafana(TOKEN) as grafana:
        grafana.fail_dashboard = (victim.uid, 500)
        with pytest.raises(PushError) as err:
            push_dashboards(site, grafana.url, TOKEN)
    assert victim.uid in str(err.value)
    assert "/api/dashboards/db" in str(err.value) and "500" in str(err.value)


def test_a_wrong_token_fails_at_the_folder(site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as grafana, pytest.raises(PushError, match="401"):
        push_dashboards(site, grafana.url, "wrong")
    assert len(grafana.requests) == 1  # nothing written


def test_an_unreachable_grafana_is_a_clear_error(site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as grafana:
        url = grafana.url
    with pytest.raises(PushError, match="folder"):
        push_dashboards(site, url, TOKEN, timeout_s=2.0)


def test_the_command(site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as grafana:
        args = ["dashboards", "push", "--site", str(DEMO_SITE), "--grafana-url", grafana.url]
        ok = CliRunner().invoke(app, [*args, "--token", TOKEN])
        grafana.fail_dashboard = (build_dashboards(site)[0].uid, 403)
        failed = CliRunner().invoke(app, [*args, "--token", TOKEN])
    assert ok.exit_code == 0, ok.output
    assert f"folder {folder_uid(site.site.name)} (created)" in ok.output
    assert ok.output.count("dashboard zc-") == 5
    assert failed.exit_code == 1
    assert "error: dashboard" in failed.output and "403" in failed.output
