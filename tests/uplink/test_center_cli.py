"""``zerocarbon center`` and the uplink's options of ``zerocarbon run`` / ``check-config``
as a user meets them: what ``add-site`` prints, and errors that name what is wrong."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import bcrypt
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
