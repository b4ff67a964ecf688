"""Device profiles: register maps as data files, shared by collectors and simulators.

A profile is a TOML file (see ``zerocarbon/metering/profiles/``). Each point maps a
register range to a metric: ``value = decode(registers) * scale * 10**sf`` where ``sf``
is the value of the point named by ``scale_factor`` (SunSpec-style ``sunssf``
registers, IEEE/SunSpec Information Model Reference) or 0 when there is none.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.metering.registers import RegisterType, WordOrder, register_count
from zerocarbon.validation import format_validation_errors

PROFILES_DIR = Path(__file__).parent / "profiles"


class RegisterTable(StrEnum):
    HOLDING = "holding"  # function code 3
    INPUT = "input"  # function code 4


class ProfileError(ValueError):
    """A profile file is missing or invalid; the message names the file and the point."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Point(_Frozen):
    """One value in a register map."""

    name: str
    metric: str | None = None  # None: a helper point (e.g. a scale factor register)
    table: RegisterTable = RegisterTable.HOLDING
    address: int = Field(ge=0, le=65535)  # 0-based PDU address
    type: RegisterType
    word_order: WordOrder | None = None  # None: the profile's default
    scale: float = 1.0
    scale_factor: str | None = None  # name of an int16 point holding a power-of-ten exponent

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS_BY_NAME:
            known = ", ".join(sorted(METRICS_BY_NAME))
            raise ValueError(f"unknown metric {value!r}; known metrics: {known}")
        return value

    @property
    def register_count(self) -> int:
        return register_count(self.type)

    @property
    def end_address(self) -> int:
        """One past the last register of this point."""
        return self.address + self.register_count


class StaticBlock(_Frozen):
    """Registers with fixed contents (identification, SunSpec markers); simulators serve them."""

    table: RegisterTable = RegisterTable.HOLDING
    address: int = Field(ge=0, le=65535)
    registers: tuple[int, ...]


class ProfileInfo(_Frozen):
    name: str
    manufacturer: str = ""
    model: str = ""
    reference: str = ""  # the vendor document or standard the map comes from
    word_order: WordOrder = WordOrder.BIG


class DeviceProfile(_Frozen):
    profile: ProfileInfo
    points: tuple[Point, ...]
    static: tuple[StaticBlock, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        names: dict[str, Point] = {}
        for i, point in enumerate(self.points):
            if point.name in names:
                raise ValueError(f"points[{i}]: duplicate point name {point.name!r}")
            names[point.name] = point
        for i, point in enumerate(self.points):
            if point.scale_factor is None:
                continue
            ref = names.get(point.scale_factor)
            if ref is None:
                raise ValueError(
                    f"points[{i}] ({point.name}): scale_factor {point.scale_factor!r} "
                    "names no point of this profile"
                )
            if ref.type is not RegisterType.INT16:
                raise ValueError(
                    f"points[{i}] ({point.name}): scale_factor point {ref.name!r} must be int16"
                )
        by_table = sorted(self.points, key=lambda p: (p.table, p.address))
        for a, b in zip(by_table, by_table[1:], strict=False):
            if a.table == b.table and b.address < a.end_address:
                raise ValueError(
                    f"points {a.name!r} and {b.name!r} overlap in {a.table} registers "
                    f"{b.address}..{a.end_address - 1}"
                )
        return self

    def word_order_of(self, point: Point) -> WordOrder:
        return point.word_order or self.profile.word_order

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"profile {self.profile.name!r} has no point {name!r}")

    @property
    def metric_points(self) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.metric is not None)


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(format_validation_errors(source, exc)) from None


def profile_path(name_or_path: str, base_dir: Path | None = None) -> Path:
    """Resolve a profile reference: a bundled profile name or a path to a TOML file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    return PROFILES_DIR / f"{name_or_path}.toml"


@cache
def load_profile_file(path: Path) -> DeviceProfile:
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
        raise ProfileError(f"profile file {path} not found (bundled profiles: {bundled})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: invalid TOML: {exc}") from None
    return parse_profile(data, str(path))


def load_profile(name_or_path: str, base_dir: Path | None = None) -> DeviceProfile:
    """Load a bundled profile by name (``eastron_sdm630``) or a profile file by path."""
    return load_profile_file(profile_path(name_or_path, base_dir).resolve())
