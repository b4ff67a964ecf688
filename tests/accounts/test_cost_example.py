"""``examples/tariff.toml`` is a valid ``[tariff]`` and bills its hours as it says."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from zerocarbon.accounts.cost import period_kind
from zerocarbon.config_tariff import TariffConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tariff.toml"
ZONE = ZoneInfo("Asia/Shanghai")


def _example() -> TariffConfig:
    return TariffConfig.model_validate(tomllib.loads(EXAMPLE.read_text("utf-8"))["tariff"])


@pytest.mark.parametrize(
    ("local", "kind"),
    [
        ((2026, 7, 15, 7), "valley"),
        ((2026, 7, 15, 14), "critical_peak"),
        ((2026, 7, 15, 20), "critical_peak"),
        ((2026, 7, 15, 21), "peak"),
        ((2026, 7, 15, 22), "flat"),
        ((2027, 1, 15, 9), "critical_peak"),
        ((2027, 1, 15, 8), "peak"),
        ((2026, 6, 15, 14), "flat"),
        ((2026, 6, 15, 18), "peak"),
    ],
)
def test_example_tariff(local: tuple[int, int, int, int], kind: str) -> None:
    tariff = _example()
    assert str(tariff.prices.flat) == "0.6137"  # read exactly, not as a binary float
    assert period_kind(tariff, datetime(*local, tzinfo=ZONE).astimezone(UTC), ZONE) == kind
