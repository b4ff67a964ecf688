"""The documented examples of the group's center stay true to the code.

``examples/center.toml`` loads with :func:`load_center_config` and sets every key of
the center file, each under a comment; ``examples/uplink.toml`` appended to the demo
site file validates as a site's ``[uplink]`` (its commented-out keys too) and names
every key of :class:`UplinkConfig`, each under a comment.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from zerocarbon.config import parse_site
from zerocarbon.config_uplink import UplinkConfig
from zerocarbon.uplink.center_config import (
    CenterConfig,
    CenterHttp,
    CenterInfo,
    CenterSite,
    load_center_config,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CENTER_EXAMPLE = EXAMPLES / "center.toml"
UPLINK_EXAMPLE = EXAMPLES / "uplink.toml"
SITE_EXAMPLE = EXAMPLES / "demo-site.toml"


def _keys(model: type[BaseModel]) -> set[str]:
    """The keys a file may give for ``model`` (fields excluded from files left out)."""
    return {name for name, field in model.model_fields.items() if not field.exclude}


def _section_lines(text: str, header: str) -> list[str]:
    """The lines of the first table ``header`` (e.g. ``[center]``), up to the next."""
    lines = text.splitlines()
    start = lines.index(header) + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("[")),
        len(lines),
    )
    return lines[start:end]


def _documented_keys(lines: list[str]) -> dict[str, bool]:
    """Each key set (``key = ...`` or commented out ``# key = ...``) in ``lines``, and
    whether the line above it is a comment (its documentation)."""
    found: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^(?:# )?([a-z_]+) = ", line)
        if m:
            found[m.group(1)] = i > 0 and lines[i - 1].startswith("#")
    return found


def test_center_example_loads_and_sets_every_key() -> None:
    config = load_center_config(CENTER_EXAMPLE)
    assert isinstance(config, CenterConfig)
    assert config.site_ids == ("plant-a", "plant-b", "plant-c")
    data = tomllib.loads(CENTER_EXAMPLE.read_text())
    assert set(data) == _keys(CenterConfig)
    assert set(data["center"]) == _keys(CenterInfo)
    assert set(data["center"]["http"]) == _keys(CenterHttp)
    # the first site sets every key; every site has an id
    assert set(data["sites"][0]) == _keys(CenterSite)
    assert all("id" in s for s in data["sites"])


def test_center_example_documents_every_key() -> None:
    text = CENTER_EXAMPLE.read_text()
    for header, model in (
        ("[center]", CenterInfo),
        ("[center.http]", CenterHttp),
        ("[[sites]]", CenterSite),
    ):
        documented = _documented_keys(_section_lines(text, header))
        keys = _keys(model) - {"http"}
        assert keys <= documented.keys(), f"{header}: {sorted(keys - documented.keys())}"
        missing = sorted(k for k in keys if not documented[k])
        assert not missing, f"{header}: no comment above {missing}"


def test_center_example_password_hashes_are_bcrypt() -> None:
    from zerocarbon.uplink.nats_config import SiteCredential

    config = load_center_config(CENTER_EXAMPLE)
    for site in config.sites:
        assert site.password_hash is not None
        SiteCredential(site.id, site.password_hash)  # raises on a malformed hash


def _uplink_text(*, uncomment: bool) -> str:
    text = UPLINK_EXAMPLE.read_text()
    if uncomment:
        keys = "|".join(sorted(_keys(UplinkConfig)))
        text = re.sub(rf"^# ({keys}) = ", r"\1 = ", text, flags=re.MULTILINE)
    return text


@pytest.mark.parametrize("uncomment", [False, True], ids=["as-shipped", "all-keys-set"])
def test_uplink_example_validates_in_a_site_file(uncomment: bool) -> None:
    data: dict[str, Any] = tomllib.loads(SITE_EXAMPLE.read_text())
    assert "uplink" not in data, "the demo site has its own [uplink]: merge differently"
    data.update(tomllib.loads(_uplink_text(uncomment=uncomment)))
    site = parse_site(data, f"{SITE_EXAMPLE.name} + {UPLINK_EXAMPLE.name}", EXAMPLES)
    assert site.uplink is not None
    assert site.uplink.site == "plant-a"
    assert len(site.uplink.hub_urls) == 3
    if uncomment:
        assert set(data["uplink"]) == _keys(UplinkConfig)
        assert site.uplink.local_url is not None and site.uplink.nats_server is not None


def test_uplink_example_documents_every_key() -> None:
    documented = _documented_keys(_section_lines(UPLINK_EXAMPLE.read_text(), "[uplink]"))
    keys = _keys(UplinkConfig)
    assert keys <= documented.keys(), sorted(keys - documented.keys())
    assert not sorted(k for k in keys if not documented[k])


def test_uplink_example_site_matches_the_center_example() -> None:
    uplink = tomllib.loads(UPLINK_EXAMPLE.read_text())["uplink"]
    assert uplink["site"] in load_center_config(CENTER_EXAMPLE).site_ids
    assert UplinkConfig.model_validate(uplink).password({"ZC_UPLINK_PASSWORD": "x"}) == "x"
