from __future__ import annotations

import pytest

from zerocarbon.ingest.modbus.planner import needed_points, plan_reads
from zerocarbon.metering.profile import Point, RegisterTable, load_profile
from zerocarbon.metering.registers import RegisterType


def _point(name: str, address: int, rtype: str = "uint16", table: str = "holding") -> Point:
    return Point(
        name=name,
        metric="active_power_kw",
        address=address,
        type=RegisterType(rtype),
        table=RegisterTable(table),
    )


def test_adjacent_points_merge_into_one_block() -> None:
    blocks = plan_reads([_point("a", 0), _point("b", 1, "uint32"), _point("c", 3)])
    assert [(b.address, b.count) for b in blocks] == [(0, 4)]


def test_gap_above_limit_splits() -> None:
    points = [_point("a", 0), _point("b", 12)]
    assert len(plan_reads(points, max_gap_registers=10)) == 2
    assert [(b.address, b.count) for b in plan_reads(points, max_gap_registers=11)] == [(0, 13)]


def test_block_never_exceeds_125_registers() -> None:
    points = [_point(f"p{i}", i * 2, "uint32") for i in range(100)]  # 200 registers, no gaps
    blocks = plan_reads(points)
    assert [b.count for b in blocks] == [124, 76]
    assert all(b.count <= 125 for b in blocks)
    covered = {p.name for b in blocks for p in b.points}
    assert covered == {p.name for p in points}


def test_tables_are_never_mixed() -> None:
    blocks = plan_reads([_point("a", 0, table="input"), _point("b", 1, table="holding")])
    assert sorted(b.table.value for b in blocks) == ["holding", "input"]


def test_sunspec_profile_plans_one_block_with_scale_factors() -> None:
    profile = load_profile("sunspec_inverter_103")
    blocks = plan_reads(needed_points(profile))
    assert [(b.address, b.count) for b in blocks] == [(40080, 17)]
    assert {"W_SF", "WH_SF"} <= {p.name for p in blocks[0].points}


def test_sdm630_profile_with_default_gap() -> None:
    blocks = plan_reads(needed_points(load_profile("eastron_sdm630")))
    # voltage at 0 is far from power at 52; power..export energy (52..75) merge? gap 70-54=16
    assert [(b.address, b.count) for b in blocks] == [(0, 2), (52, 2), (70, 6)]


def test_bad_max_registers_is_refused() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan_reads([_point("a", 0)], max_registers=126)
