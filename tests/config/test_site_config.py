from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from zerocarbon.config import SiteConfigError, load_site, parse_site

from ..conftest import DEMO_SITE


def _demo() -> dict[str, Any]:
    return tomllib.loads(DEMO_SITE.read_text())


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(SiteConfigError) as info:
        parse_site(data, "site.toml")
    return str(info.value)


def test_demo_site_loads() -> None:
    site = load_site(DEMO_SITE)
    assert [d.id for d in site.devices][:3] == ["grid_meter", "pv_roof", "battery"]
    assert site.grid.region == "east"
    with pytest.raises(Exception, match="frozen"):
        site.grid.region = "north"  # type: ignore[misc]


def test_error_names_path_and_value() -> None:
    data = _demo()
    data["devices"][1]["port"] = 70000
    msg = _error(data)
    assert "site.toml: devices[1].port" in msg and "70000" in msg


def test_unknown_key_is_an_error_not_ignored() -> None:
    data = _demo()
    data["devices"][0]["word_oder"] = "big"
    assert "devices[0].word_oder" in _error(data)


def test_unknown_profile_lists_bundled_ones() -> None:
    data = _demo()
    data["devices"][2]["profile"] = "no_such_meter"
    msg = _error(data)
    assert "devices[2].profile" in msg and "eastron_sdm630" in msg


def test_duplicate_device_ids() -> None:
    data = _demo()
    data["devices"][1]["id"] = "grid_meter"
    assert "'grid_meter' already used by devices[0]" in _error(data)


def test_mqtt_field_with_unknown_metric() -> None:
    data = _demo()
    data["devices"][3]["fields"] = {"p": "power_watts"}
    msg = _error(data)
    assert "devices[3].fields" in msg and "power_watts" in msg


def test_at_least_one_grid_meter() -> None:
    data = _demo()
    data["devices"][0]["role"] = "load"
    assert "at least one device must have role 'grid'" in _error(data)


def test_parent_must_name_a_device() -> None:
    data = _demo()
    data["devices"][3]["parent"] = "main_switchboard"
    assert "devices[3].parent: no device 'main_switchboard'" in _error(data)


def test_certificate_used_beyond_its_two_years() -> None:
    data = _demo()
    data["certificates"] = [{"id": "old", "count": 1, "issued": "2023-01", "applies_to": "2026-06"}]
    assert "not within the two years" in _error(data)


def test_profile_path_relative_to_site_file(tmp_path: Path) -> None:
    profile = DEMO_SITE.parent.parent / "zerocarbon/metering/profiles/battery_controller.toml"
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "my_bms.toml").write_text(profile.read_text())
    text = DEMO_SITE.read_text().replace('"battery_controller"', '"maps/my_bms.toml"')
    (tmp_path / "site.toml").write_text(text)
    site = load_site(tmp_path / "site.toml")
    battery = site.modbus_devices[2]
    assert site.profile_of(battery).profile.name == "battery_controller"


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="not found"):
        load_site(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname=1")
    with pytest.raises(SiteConfigError, match="bad.toml: invalid TOML"):
        load_site(bad)


def test_example_hourly_files_load_with_the_demo_site() -> None:
    """The examples an integrator copies: the hourly grid factors and an hourly PPA."""
    from zerocarbon.carbon_engine.factors import site_factor_errors
    from zerocarbon.carbon_engine.instruments import load_contract_volumes

    data = _demo()
    data["grid"]["hourly_factors_csv"] = "grid-hourly-factors.csv"
    data["green_power"] = [{"id": "ppa", "hourly_csv": "ppa-hourly.csv"}]
    site = parse_site(data, "demo-site.toml", DEMO_SITE.parent)
    assert site_factor_errors(site) == []
    (ppa,) = load_contract_volumes(site)
    assert ppa.hourly_kwh is not None and ppa.hourly_kwh.sum() == 8 * 120.0 + 16 * 40.0


def test_a_modbus_device_without_a_host_is_an_error() -> None:
    """No silent default: a meter without an address must not be polled on this
    machine's 127.0.0.1."""
    data = _demo()
    del data["devices"][1]["host"]
    message = _error(data)
    assert "devices[1].host" in message and "required" in message.lower()
    data["devices"][1]["host"] = ""
    assert "devices[1].host" in _error(data)


def _ct_meter(**ratios: float) -> dict[str, Any]:
    return {
        "id": "press_line",
        "role": "grid",
        "protocol": "modbus_tcp",
        "profile": "acrel_adl400",
        "host": "10.0.0.7",
        **ratios,
    }


def test_device_transformer_ratios_scale_secondary_registers_to_primary() -> None:
    from zerocarbon.simulators.register_bank import RegisterBank

    data = {"devices": [_ct_meter(ct_ratio=120.0, pt_ratio=1.0)]}  # 600 A / 5 A CTs
    site = parse_site(data, "site.toml")
    installed = site.profile_of(site.devices[0])  # type: ignore[arg-type]
    assert (installed.profile.pt_ratio, installed.profile.ct_ratio) == (1.0, 120.0)
    bank = RegisterBank(installed)
    bank.update({"active_power_kw": 96.0, "energy_import_kwh": 120_000.0})
    by_metric = {p.metric: p for p in installed.metric_points}
    bundled = parse_site({"devices": [_ct_meter()]}, "site.toml")
    plain = bundled.profile_of(bundled.devices[0])  # type: ignore[arg-type]
    for metric, primary in (("active_power_kw", 96.0), ("energy_import_kwh", 120_000.0)):
        point = by_metric[metric]
        registers = bank.read(point.table, point.address, point.register_count)
        assert registers is not None
        # the meter holds secondary-side counts: x120 is applied only by the installed profile
        raw = installed.decode_raw(point, registers)
        assert raw == plain.decode_raw(point, registers)  # the same secondary-side counts
        value = raw * point.scale * installed.ratio_of(point)
        assert value == pytest.approx(primary, rel=1e-6)
        assert raw * point.scale * plain.ratio_of(point) == pytest.approx(primary / 120, rel=1e-4)


def test_device_transformer_ratio_must_be_positive() -> None:
    message = _error({"devices": [_ct_meter(ct_ratio=0.0)]})
    assert "devices[0]" in message and "ct_ratio" in message
