"""Profiles written as TOML load back equal: every bundled one, and one using every
optional key (input table, orders, bit fields, ratios, scale factors, statics)."""

from __future__ import annotations

import tomllib

import pytest

from zerocarbon.metering.profile import PROFILES_DIR, load_profile, parse_profile
from zerocarbon.metering.profile_writer import profile_to_toml

FULL = {
    "profile": {
        "name": "full",
        "manufacturer": 'Acme "Meters"',
        "model": "M-1\\2",
        "reference": "Acme manual v1.2, table 3",
        "word_order": "little",
        "byte_order": "little",
        "pt_ratio": 100.0,
        "ct_ratio": 40.0,
    },
    "points": [
        {"name": "v", "metric": "voltage_v", "table": "input", "address": 0, "type": "uint16",
         "scale": 0.1, "ratio": "pt", "unit": "0.1 V"},
        {"name": "p", "metric": "active_power_kw", "address": 10, "type": "int32",
         "word_order": "big", "byte_order": "big", "scale": 0.001, "ratio": "pt_ct",
         "scale_factor": "p_sf"},
        {"name": "p_sf", "address": 12, "type": "int16"},
        {"name": "alarm", "address": 20, "type": "uint16", "bit": 3},
        {"name": "mode", "address": 20, "type": "uint16", "bit": 4, "bits": 3},
        {"name": "e", "metric": "energy_import_kwh", "address": 30, "type": "float64",
         "scale": 1e-05},
    ],
    "static": [
        {"address": 12, "registers": [0xFFFE]},
        {"table": "input", "address": 100, "registers": [0x5375, 0x6E53, 1]},
    ],
}  # fmt: skip


def test_every_optional_key_round_trips() -> None:
    profile = parse_profile(FULL, "full")
    text = profile_to_toml(profile)
    assert parse_profile(tomllib.loads(text), "written") == profile
    assert "registers = [0x5375, 0x6E53, 0x0001]" in text
    assert "table" not in text.split("[[points]]")[2]  # holding is the default: left out


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
def test_bundled_profiles_round_trip(name: str) -> None:
    profile = load_profile(name)
    assert parse_profile(tomllib.loads(profile_to_toml(profile, "c")), name) == profile
