"""``zerocarbon center`` and the uplink's options of ``zerocarbon run`` / ``check-config``
as a user meets them: what ``add-site`` prints, and errors that name what is wrong."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import bcrypt
import pytest
from typer.testing import CliRunner

from tests.conftest import DEMO_SITE
from zerocarbon.cli import app
from zerocarbon.netutil import free_tcp_port

runner = CliRunner()

UPLINK = """
[uplink]
site = "plant-1"
hub_urls = ["nats-leaf://hub1.example:7422", "nats-leaf://hub2.example:7422"]
password_env = "ZC_UPLINK_PASSWORD"
page_url = "http://plant-1.example/"
"""


def test_add_site_prints_a_password_and_its_sites_block() -> None:
    result = runner.invoke(app, ["center", "add-site", "plant-1", "--name", "Plant One"])
    assert result.exit_code == 0, result.output
    password = re.search(r"^# (\S+)$", result.output, re.MULTILINE)
    assert password is not None
    block = tomllib.loads(result.output)  # the password lines are comments
    [site] = block["sites"]
    assert (site["id"], site["name"]) == ("plant-1", "Plant One")
    assert bcrypt.checkpw(password.group(1).encode(), site["password_hash"].encode())
    # another run, another password
    again = runner.invoke(app, ["center", "add-site", "plant-1"])
    assert again.exit_code == 0 and password.group(1) not in again.output


def test_add_site_refuses_a_bad_site_id() -> None:
    result = runner.invoke(app, ["center", "add-site", "Plant 1"])
    assert result.exit_code == 2
    assert "'Plant 1'" in result.output and "lower-case" in result.output


def test_center_setup_names_the_file_and_the_key(tmp_path: Path) -> None:
    center = tmp_path / "center.toml"
    center.write_text(
        '[center]\nnats_urls = ["http://hub1:4222"]\n\n[[sites]]\nid = "plant-1"\n'
        '\n[[sites]]\nid = "Plant 2"\n'
    )
    result = runner.invoke(app, ["center", "setup", "--config", str(center)])
    assert result.exit_code == 2
    assert f"{center}: center.nats_urls:" in result.output
    assert "'http://hub1:4222' must look like nats://host:4222" in result.output
    assert f"{center}: sites[1].id:" in result.output

    center.write_text("[center\n")
    result = runner.invoke(app, ["center", "setup", "--config", str(center)])
    assert result.exit_code == 2 and f"{center}: not valid TOML" in result.output

    result = runner.invoke(app, ["center", "setup", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "none.toml: cannot read" in result.output


def test_run_uplink_needs_an_uplink_section(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "--site",
            str(DEMO_SITE),
            "--port",
            str(free_tcp_port()),
            "--uplink",
            "nats-leaf://x:7422",
        ],
    )
    assert result.exit_code == 2
    assert "--uplink: the site file has no [uplink] section naming the site" in result.output


def test_run_uplink_checks_the_url(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(DEMO_SITE.read_text("utf-8") + UPLINK, "utf-8")
    result = runner.invoke(
        app,
        [
            "run",
            "--site",
            str(site),
            "--port",
            str(free_tcp_port()),
            "--uplink",
            "nats-leaf://u:p@x:7422",
        ],
    )
    assert result.exit_code == 2
    assert "give the password with uplink.password_env, not in the URL" in result.output


def test_check_config_accepts_a_site_file_with_uplink(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(DEMO_SITE.read_text("utf-8") + UPLINK, "utf-8")
    result = runner.invoke(app, ["check-config", "--site", str(site)])
    assert result.exit_code == 0, result.output
    assert "6 devices" in result.output

    site.write_text(DEMO_SITE.read_text("utf-8") + UPLINK.replace("plant-1", "Plant 1"), "utf-8")
    result = runner.invoke(app, ["check-config", "--site", str(site)])
    assert result.exit_code == 2 and "uplink.site" in result.output


def _center_with_sites(tmp_path: Path, *hashes: str | None) -> Path:
    lines = [
        "[center]",
        'nats_user = "center"',
        'nats_password_env = "ZC_TEST_WORKERS_PASSWORD"',
        "",
    ]
    for i, h in enumerate(hashes):
        lines += ["[[sites]]", f'id = "plant-{i + 1}"']
        if h is not None:
            lines.append(f'password_hash = "{h}"')
        lines.append("")
    path = tmp_path / "center.toml"
    path.write_text("\n".join(lines))
    return path


def test_nats_config_writes_each_node_from_the_center_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zerocarbon.uplink.leaf import check_config, find_nats_server
    from zerocarbon.uplink.nats_config import hash_password

    monkeypatch.setenv("ZC_TEST_WORKERS_PASSWORD", "workers-secret")
    center = _center_with_sites(
        tmp_path, hash_password("one", cost=4), hash_password("two", cost=4)
    )
    out = tmp_path / "nats"
    args = ["center", "nats-config", "--config", str(center), "--out", str(out)]
    store = ["--store-dir", str(tmp_path / "js")]
    three = [*args, *store, "--advertise", "hub2=hub2.example.net:7422"]
    result = runner.invoke(app, three)
    assert result.exit_code == 0, result.output
    configs = {p.name: p.read_text() for p in sorted(out.iterdir())}
    assert sorted(configs) == ["hub1.conf", "hub2.conf", "hub3.conf"]
    for text in configs.values():
        assert "cluster {" in text and '"zcprogress.plant-2"' in text
        assert bcrypt.checkpw(b"workers-secret", re.findall(r'"(\$2b\$[^"]+)"', text)[0].encode())
    assert 'advertise: "hub2.example.net:7422"' in configs["hub2.conf"]
    assert "advertise" not in configs["hub1.conf"]
    try:
        binary = find_nats_server()
    except FileNotFoundError:
        binary = None
    if binary is not None:
        assert check_config(out / "hub1.conf", nats_server=binary) is None

    # one node: JetStream on its own, no cluster block
    single = runner.invoke(app, [*args, *store, "--node", "local=127.0.0.1"])
    assert single.exit_code == 0, single.output
    assert "cluster {" not in (out / "local.conf").read_text()


def test_nats_config_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zerocarbon.uplink.nats_config import hash_password

    center = _center_with_sites(tmp_path, hash_password("one", cost=4), None)
    args = ["center", "nats-config", "--config", str(center), "--out", str(tmp_path / "n")]
    monkeypatch.delenv("ZC_TEST_WORKERS_PASSWORD", raising=False)
    result = runner.invoke(app, [*args, "--advertise", "hub9=x:7422"])
    assert result.exit_code == 2
    assert f"{center}: sites[1].password_hash: missing (zerocarbon center add-site plant-2)" in (
        result.output
    )
    assert "ZC_TEST_WORKERS_PASSWORD is not set" in result.output
    assert "--advertise: no node named hub9" in result.output
    assert not (tmp_path / "n").exists()


def test_demo_uplink_needs_the_site_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--uplink", "nats-leaf://hub1:7422"])
    assert result.exit_code == 2
    assert "no [uplink] section naming the site" in result.output
