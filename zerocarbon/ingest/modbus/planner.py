"""Read planning: a device's points -> the fewest block reads.

Function codes 3 and 4 read at most 125 registers per request (Modbus Application
Protocol v1.1b3, 6.3/6.4). Points of one table are sorted by address and merged into
one block while the block stays within 125 registers and the unused registers between
two points (the gap) are at most ``max_gap_registers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerocarbon.metering.profile import DeviceProfile, Point, RegisterTable

MAX_READ_REGISTERS = 125


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers of ``table`` from ``address``."""

    table: RegisterTable
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end_address(self) -> int:
        return self.address + self.count


def needed_points(profile: DeviceProfile) -> list[Point]:
    """Metric points and the scale-factor points they refer to."""
    wanted = {p.name for p in profile.metric_points}
    wanted |= {p.scale_factor for p in profile.metric_points if p.scale_factor}
    return [p for p in profile.points if p.name in wanted]


def plan_reads(
    points: list[Point], *, max_gap_registers: int = 10, max_registers: int = MAX_READ_REGISTERS
) -> list[ReadBlock]:
    """Merge points into block reads (see module docstring). Order: table, address."""
    if max_registers < 1 or max_registers > MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_READ_REGISTERS}, got {max_registers}")
    blocks: list[ReadBlock] = []
    ordered = sorted(points, key=lambda p: (p.table, p.address))
    current: list[Point] = []
    for point in ordered:
        if point.register_count > max_registers:
            raise ValueError(f"point {point.name!r} is wider than {max_registers} registers")
        if current:
            start = current[0].address
            end = max(p.end_address for p in current)
            fits = (
                point.table == current[0].table
                and point.end_address - start <= max_registers
                and point.address - end <= max_gap_registers
            )
            if not fits:
                blocks.append(_block(current))
                current = []
        current.append(point)
    if current:
        blocks.append(_block(current))
    return blocks


def _block(points: list[Point]) -> ReadBlock:
    start = points[0].address
    end = max(p.end_address for p in points)
    return ReadBlock(points[0].table, start, end - start, tuple(points))
