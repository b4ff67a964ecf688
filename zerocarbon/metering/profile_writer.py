"""A :class:`~zerocarbon.metering.profile.DeviceProfile` written as a profile TOML file.

The inverse of :func:`zerocarbon.metering.profile.parse_profile`: the text loads back
into an equal profile. Keys that hold their default are left out, so the file reads like
a hand-written one (see ``zerocarbon/metering/profiles/``); static registers are written
in hex.
"""

from __future__ import annotations

import json

from zerocarbon.metering.profile import (
    DeviceProfile,
    Point,
    ProfileInfo,
    RegisterTable,
    StaticBlock,
)

_INFO_DEFAULTS = ProfileInfo(name="-")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _info_lines(info: ProfileInfo) -> list[str]:
    lines = ["[profile]", f"name = {_value(info.name)}"]
    for key in ("manufacturer", "model", "reference", "word_order", "byte_order"):
        value = getattr(info, key)
        if key in ("word_order", "byte_order") or value != getattr(_INFO_DEFAULTS, key):
            lines.append(f"{key} = {_value(str(value))}")
    for key in ("pt_ratio", "ct_ratio"):
        value = getattr(info, key)
        if value != getattr(_INFO_DEFAULTS, key):
            lines.append(f"{key} = {_value(float(value))}")
    return lines


def _point_lines(point: Point) -> list[str]:
    lines = ["[[points]]", f"name = {_value(point.name)}"]
    if point.metric is not None:
        lines.append(f"metric = {_value(point.metric)}")
    if point.table is not RegisterTable.HOLDING:
        lines.append(f"table = {_value(point.table.value)}")
    lines.append(f"address = {point.address}")
    lines.append(f"type = {_value(point.type.value)}")
    optional: list[tuple[str, object]] = [
        ("word_order", point.word_order.value if point.word_order else None),
        ("byte_order", point.byte_order.value if point.byte_order else None),
        ("scale", point.scale if point.scale != 1.0 else None),
        ("scale_factor", point.scale_factor),
        ("bit", point.bit),
        ("bits", point.bits),
        ("ratio", point.ratio.value if point.ratio else None),
        ("unit", point.unit or None),
    ]
    lines.extend(f"{key} = {_value(value)}" for key, value in optional if value is not None)
    return lines


def _static_lines(block: StaticBlock) -> list[str]:
    lines = ["[[static]]"]
    if block.table is not RegisterTable.HOLDING:
        lines.append(f"table = {_value(block.table.value)}")
    words = ", ".join(f"0x{w & 0xFFFF:04X}" for w in block.registers)
    lines += [f"address = {block.address}", f"registers = [{words}]"]
    return lines


def profile_to_toml(profile: DeviceProfile, comment: str = "") -> str:
    """The profile file for ``profile``, with ``comment`` (lines) as a header comment."""
    sections = [_info_lines(profile.profile)]
    sections += [_point_lines(p) for p in profile.points]
    sections += [_static_lines(b) for b in profile.static]
    header = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return header + "\n".join("\n".join(s) + "\n" for s in sections)
