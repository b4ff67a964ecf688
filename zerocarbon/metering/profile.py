"""Device profiles: register maps as data files, shared by collectors and simulators.

A profile is a TOML file (see ``zerocarbon/metering/profiles/``). Each point maps a
register range to a metric::

    value = raw * scale * 10**sf * ratio

* ``raw``: the registers decoded as ``type`` in the point's word and byte order (the
  profile's defaults unless the point sets its own; layouts ABCD, CDAB, BADC, DCBA, see
  :mod:`zerocarbon.metering.registers`), or, for a bit field (``bit``, ``bits``), the
  unsigned integer in those bits of the register value.
* ``sf``: the value of the point named by ``scale_factor`` (SunSpec-style ``sunssf``
  registers, IEEE/SunSpec Information Model Reference), 0 when there is none.
* ``ratio``: the instrument-transformer ratio the point's ``ratio`` names, for meters
  that report secondary-side values: ``pt`` (voltages: x PT ratio), ``ct`` (currents:
  x CT ratio), ``pt_ct`` (powers and energies: x PT x CT); 1 without ``ratio``. The
  ratios are device-level: ``pt_ratio`` and ``ct_ratio`` of ``[profile]`` (default 1),
  replaced per installed device with :meth:`DeviceProfile.with_ratios`. Meters that
  apply their own programmed ratios and report primary values have no ``ratio``.

``unit`` notes the unit of one raw count as the source document gives it ("0.1 V",
"W", "0.01 kWh"); it is documentation, the stored unit is the metric's.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.metering.registers import (
    ByteOrder,
    RegisterType,
    WordOrder,
    decode,
    encode,
    extract_bits,
    insert_bits,
    is_unsigned,
    register_count,
)
from zerocarbon.validation import format_validation_errors

PROFILES_DIR = Path(__file__).parent / "profiles"


class RegisterTable(StrEnum):
    HOLDING = "holding"  # function code 3
    INPUT = "input"  # function code 4


class TransformerRatio(StrEnum):
    """Which instrument-transformer ratio multiplies a secondary-side value."""

    PT = "pt"  # voltages
    CT = "ct"  # currents
    PT_CT = "pt_ct"  # powers and energies


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
    byte_order: ByteOrder | None = None  # None: the profile's default
    scale: float = 1.0
    scale_factor: str | None = None  # name of an int16 point holding a power-of-ten exponent
    bit: int | None = Field(default=None, ge=0, le=63)  # bit field: lowest bit (0: LSB)
    bits: int | None = Field(default=None, ge=1, le=64)  # bit field width (default 1)
    ratio: TransformerRatio | None = None  # secondary-side value: which ratio multiplies it
    unit: str = ""  # unit of one raw count as the source gives it ("0.1 V", "W")

    @model_validator(mode="after")
    def _valid_bit_field(self) -> Point:
        if self.bit is None:
            if self.bits is not None:
                raise ValueError("bits needs bit (the lowest bit of the field)")
            return self
        if not is_unsigned(self.type):
            raise ValueError(f"a bit field needs an unsigned type (uint16/32/64), not {self.type}")
        width = 16 * register_count(self.type)
        if self.bit + self.bit_count > width:
            raise ValueError(
                f"bits {self.bit}..{self.bit + self.bit_count - 1} do not fit "
                f"{self.type} ({width} bits)"
            )
        if self.scale_factor is not None or self.ratio is not None:
            raise ValueError("a bit field takes no scale_factor or ratio")
        return self

    @property
    def is_bit_field(self) -> bool:
        return self.bit is not None

    @property
    def bit_count(self) -> int:
        """Width of a bit field (1 unless ``bits`` says otherwise)."""
        return 1 if self.bits is None else self.bits

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
    byte_order: ByteOrder = ByteOrder.BIG
    pt_ratio: float = Field(default=1.0, gt=0)  # voltage transformer primary / secondary
    ct_ratio: float = Field(default=1.0, gt=0)  # current transformer primary / secondary


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
        self._check_overlaps()
        return self

    def _check_overlaps(self) -> None:
        """Points may not share registers, except bit fields of one register value
        (same table, address, type and orders) whose bits are disjoint."""
        by_table = sorted(self.points, key=lambda p: (p.table, p.address))
        for i, a in enumerate(by_table):
            for b in by_table[i + 1 :]:
                if b.table != a.table or b.address >= a.end_address:
                    break
                shared = (
                    a.is_bit_field
                    and b.is_bit_field
                    and (a.address, a.type) == (b.address, b.type)
                    and self.word_order_of(a) == self.word_order_of(b)
                    and self.byte_order_of(a) == self.byte_order_of(b)
                )
                if not shared:
                    raise ValueError(
                        f"points {a.name!r} and {b.name!r} overlap in {a.table} registers "
                        f"{b.address}..{min(a.end_address, b.end_address) - 1}"
                    )
                assert a.bit is not None and b.bit is not None
                if a.bit < b.bit + b.bit_count and b.bit < a.bit + a.bit_count:
                    raise ValueError(
                        f"bit fields {a.name!r} and {b.name!r} share bits of "
                        f"{a.table} register {a.address}"
                    )

    def word_order_of(self, point: Point) -> WordOrder:
        return point.word_order or self.profile.word_order

    def byte_order_of(self, point: Point) -> ByteOrder:
        return point.byte_order or self.profile.byte_order

    def ratio_of(self, point: Point) -> float:
        """The transformer multiplier of ``point``: PT, CT, PT x CT or 1 (module docstring)."""
        info = self.profile
        if point.ratio is TransformerRatio.PT:
            return info.pt_ratio
        if point.ratio is TransformerRatio.CT:
            return info.ct_ratio
        if point.ratio is TransformerRatio.PT_CT:
            return info.pt_ratio * info.ct_ratio
        return 1.0

    def with_ratios(
        self, *, pt_ratio: float | None = None, ct_ratio: float | None = None
    ) -> DeviceProfile:
        """This profile for one installed device: its PT and/or CT ratio replaced."""
        changes: dict[str, float] = {}
        if pt_ratio is not None:
            changes["pt_ratio"] = pt_ratio
        if ct_ratio is not None:
            changes["ct_ratio"] = ct_ratio
        info = ProfileInfo.model_validate({**self.profile.model_dump(), **changes})
        return self.model_copy(update={"profile": info})

    def decode_raw(self, point: Point, registers: Sequence[int]) -> float:
        """The raw value of ``point`` from its registers (before scale, sf and ratio)."""
        raw = decode(registers, point.type, self.word_order_of(point), self.byte_order_of(point))
        if point.bit is None:
            return raw
        return float(extract_bits(int(raw), point.type, point.bit, point.bit_count))

    def encode_raw(self, point: Point, raw: float, registers: Sequence[int] = ()) -> list[int]:
        """The registers of ``point`` holding ``raw``: the inverse of :meth:`decode_raw`.

        A bit field is written into ``registers`` (the current contents, zeros if not
        given), leaving the other bits as they are.
        """
        word_order, byte_order = self.word_order_of(point), self.byte_order_of(point)
        if point.bit is None:
            return encode(raw, point.type, word_order, byte_order)
        current = list(registers) or [0] * point.register_count
        word = int(decode(current, point.type, word_order, byte_order))
        word = insert_bits(word, point.type, point.bit, point.bit_count, round(raw))
        return encode(word, point.type, word_order, byte_order)

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
