"""SunSpec Modbus: the models we read, discovery of a device's model chain, and a
:class:`~zerocarbon.metering.profile.DeviceProfile` for the models a device has.

A SunSpec device serves, in holding registers, the marker "SunS" (0x5375 0x6E53) at a
base address (40000, else 0, else 50000), then a chain of models: each a header (model
ID, L = the number of registers after the header) followed by L registers, the chain
ending with ID 0xFFFF (L 0). Integer values are scaled by a ``sunssf`` point of the same
model, ``value = raw * 10**sf``; "not implemented" values are 0x8000 (int16), 0xFFFF
(uint16) and 0 (acc32).

References
----------
SunSpec Alliance, "SunSpec Information Model Reference" (models 1, 101-103, 111-113,
124, 160, 802) and "SunSpec Device Information Model Specification" (the map layout,
base addresses, end model). Point offsets and model lengths below are those of the
machine-readable definitions in github.com/sunspec/models, ``json/model_<id>.json``
(commit 7abdf89, 2026-04-22); offsets count from the model's ID register:

=====  ===========================  ====  ==========================================
model  name                         L     points used here (offset)
=====  ===========================  ====  ==========================================
1      Common                       66    Mn (2, 16 regs), Md (18, 16), SN (50, 16)
101    Inverter (single phase)      50    PhVphA 10, V_SF 13, W 14, W_SF 15, Hz 16,
102    Inverter (split phase)       50    Hz_SF 17, WH 24 (acc32), WH_SF 26
103    Inverter (three phase)       50    (same layout for 101, 102, 103)
111    Inverter, float (1 phase)    60    PhVphA 16, W 22, Hz 24, WH 32 (float32)
112    Inverter, float (split)      60    (same layout for 111, 112, 113)
113    Inverter, float (3 phase)    60
124    Storage                      24    WChaMax 2, ChaState 8, InBatV 10, ChaSt 11,
                                          WChaMax_SF 18, ChaState_SF 22, InBatV_SF 24
160    Multiple MPPT extension      8+20N DCA_SF 2, DCV_SF 3, DCW_SF 4, DCWH_SF 5, N 8;
                                          module block at 10 + 20k: DCA 9, DCV 10,
                                          DCW 11, DCWH 12 (acc32) within the block
802    Battery base                 62    SoC 11, SoH 13, ChaSt 16, V 34, A 44, W 47,
                                          SoC_SF 56, SoH_SF 58, V_SF 59, A_SF 61,
                                          W_SF 63
=====  ===========================  ====  ==========================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from zerocarbon.metering.profile import DeviceProfile, parse_profile
from zerocarbon.metering.registers import RegisterType

SUNS_MARKER: tuple[int, int] = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES: tuple[int, ...] = (40000, 0, 50000)  # tried in this order
END_MODEL_ID = 0xFFFF
MAX_MODELS = 100  # a longer chain is taken as a broken map
HEADER_REGISTERS = 2

ReadHolding = Callable[[int, int], Awaitable[Sequence[int] | None]]
"""Reads ``count`` holding registers from ``address``; None when the device answers
with an exception (the registers are not there). Timeouts and lost connections raise."""


class SunSpecError(ValueError):
    """A SunSpec model layout that cannot be built (unknown model, map beyond 65535)."""


@dataclass(frozen=True, slots=True)
class SunSpecPoint:
    """One point of a model: ``offset`` registers from the model's ID register (or from
    the start of its repeating block). ``sf`` names the model's ``sunssf`` point."""

    name: str
    offset: int
    type: RegisterType
    sf: str | None = None
    metric: str | None = None
    scale: float = 1.0  # unit conversion to the metric's unit (W -> kW: 0.001)
    unit: str = ""  # unit of the point as the model reference gives it


@dataclass(frozen=True, slots=True)
class RepeatingBlock:
    """A group repeated N times at the end of a model (model 160's modules)."""

    name: str
    offset: int  # first block, from the model's ID register
    length: int  # registers per block
    points: tuple[SunSpecPoint, ...]  # offsets within one block


@dataclass(frozen=True, slots=True)
class ModelDefinition:
    model_id: int
    label: str
    length: int  # L of the fixed part: registers after the header
    points: tuple[SunSpecPoint, ...]
    block: RepeatingBlock | None = None

    def block_count(self, length: int) -> int:
        """Repeating blocks in a model whose header says L = ``length``."""
        if self.block is None:
            return 0
        return max(0, (length - self.length) // self.block.length)

    def length_with(self, blocks: int) -> int:
        """L of this model with ``blocks`` repeating blocks."""
        return self.length + (self.block.length * blocks if self.block is not None else 0)


_I16, _U16, _U32, _F32 = (
    RegisterType.INT16,
    RegisterType.UINT16,
    RegisterType.UINT32,
    RegisterType.FLOAT32,
)


def _integer_inverter(model_id: int, label: str) -> ModelDefinition:
    return ModelDefinition(
        model_id,
        label,
        50,
        (
            SunSpecPoint("PhVphA", 10, _U16, "V_SF", "voltage_v", unit="V"),
            SunSpecPoint("V_SF", 13, _I16),
            SunSpecPoint("W", 14, _I16, "W_SF", "active_power_kw", 0.001, "W"),
            SunSpecPoint("W_SF", 15, _I16),
            SunSpecPoint("Hz", 16, _U16, "Hz_SF", "frequency_hz", unit="Hz"),
            SunSpecPoint("Hz_SF", 17, _I16),
            SunSpecPoint("WH", 24, _U32, "WH_SF", "energy_generated_kwh", 0.001, "Wh"),
            SunSpecPoint("WH_SF", 26, _I16),
        ),
    )


def _float_inverter(model_id: int, label: str) -> ModelDefinition:
    return ModelDefinition(
        model_id,
        label,
        60,
        (
            SunSpecPoint("PhVphA", 16, _F32, metric="voltage_v", unit="V"),
            SunSpecPoint("W", 22, _F32, metric="active_power_kw", scale=0.001, unit="W"),
            SunSpecPoint("Hz", 24, _F32, metric="frequency_hz", unit="Hz"),
            SunSpecPoint("WH", 32, _F32, metric="energy_generated_kwh", scale=0.001, unit="Wh"),
        ),
    )


COMMON_MODEL_ID = 1
MPPT_MODEL_ID = 160
COMMON_STRINGS: tuple[tuple[str, int, int], ...] = (("Mn", 2, 16), ("Md", 18, 16), ("SN", 50, 16))

MODELS: dict[int, ModelDefinition] = {
    m.model_id: m
    for m in (
        ModelDefinition(COMMON_MODEL_ID, "Common", 66, ()),
        _integer_inverter(101, "Inverter (single phase)"),
        _integer_inverter(102, "Inverter (split phase)"),
        _integer_inverter(103, "Inverter (three phase)"),
        _float_inverter(111, "Inverter (single phase), float"),
        _float_inverter(112, "Inverter (split phase), float"),
        _float_inverter(113, "Inverter (three phase), float"),
        ModelDefinition(
            124,
            "Storage",
            24,
            (
                SunSpecPoint("WChaMax", 2, _U16, "WChaMax_SF", unit="W"),
                SunSpecPoint("ChaState", 8, _U16, "ChaState_SF", "state_of_charge_pct", unit="%"),
                SunSpecPoint("InBatV", 10, _U16, "InBatV_SF", unit="V"),
                SunSpecPoint("ChaSt", 11, _U16, unit="enum"),
                SunSpecPoint("WChaMax_SF", 18, _I16),
                SunSpecPoint("ChaState_SF", 22, _I16),
                SunSpecPoint("InBatV_SF", 24, _I16),
            ),
        ),
        ModelDefinition(
            MPPT_MODEL_ID,
            "Multiple MPPT inverter extension",
            8,
            (
                SunSpecPoint("DCA_SF", 2, _I16),
                SunSpecPoint("DCV_SF", 3, _I16),
                SunSpecPoint("DCW_SF", 4, _I16),
                SunSpecPoint("DCWH_SF", 5, _I16),
                SunSpecPoint("N", 8, _U16, unit="count"),
            ),
            RepeatingBlock(
                "module",
                10,
                20,
                (
                    SunSpecPoint("DCA", 9, _U16, "DCA_SF", unit="A"),
                    SunSpecPoint("DCV", 10, _U16, "DCV_SF", unit="V"),
                    SunSpecPoint("DCW", 11, _U16, "DCW_SF", unit="W"),
                    SunSpecPoint("DCWH", 12, _U32, "DCWH_SF", unit="Wh"),
                ),
            ),
        ),
        ModelDefinition(
            802,
            "Battery base",
            62,
            (
                SunSpecPoint("SoC", 11, _U16, "SoC_SF", "state_of_charge_pct", unit="%"),
                SunSpecPoint("SoH", 13, _U16, "SoH_SF", unit="%"),
                SunSpecPoint("ChaSt", 16, _U16, unit="enum"),
                SunSpecPoint("V", 34, _U16, "V_SF", unit="V"),
                SunSpecPoint("A", 44, _I16, "A_SF", unit="A"),
                SunSpecPoint("W", 47, _I16, "W_SF", "active_power_kw", 0.001, "W"),
                SunSpecPoint("SoC_SF", 56, _I16),
                SunSpecPoint("SoH_SF", 58, _I16),
                SunSpecPoint("V_SF", 59, _I16),
                SunSpecPoint("A_SF", 61, _I16),
                SunSpecPoint("W_SF", 63, _I16),
            ),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ModelHeader:
    """One model of a device's chain: its ID, the address of its ID register, its L."""

    model_id: int
    address: int
    length: int

    @property
    def known(self) -> bool:
        return self.model_id in MODELS

    @property
    def end_address(self) -> int:
        """One past the model's last register."""
        return self.address + HEADER_REGISTERS + self.length


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    """A device's SunSpec map: base address and models in chain order. ``complete`` is
    False when the chain could not be followed to its end model."""

    base_address: int
    models: tuple[ModelHeader, ...]
    complete: bool = True

    @property
    def model_ids(self) -> tuple[int, ...]:
        return tuple(m.model_id for m in self.models)


@dataclass(frozen=True, slots=True)
class CommonInfo:
    """Identification from the common model 1 (manufacturer, model, serial number)."""

    manufacturer: str = ""
    model: str = ""
    serial: str = ""


def layout(
    model_ids: Sequence[int], base_address: int = 40000, mppt_modules: int = 2
) -> SunSpecMap:
    """The map a device with ``model_ids`` (known models) has at ``base_address``: each
    model right after the previous one, model 160 with ``mppt_modules`` modules."""
    if base_address not in BASE_ADDRESSES:
        raise SunSpecError(f"base address {base_address} is none of {BASE_ADDRESSES}")
    address = base_address + len(SUNS_MARKER)
    headers: list[ModelHeader] = []
    for model_id in model_ids:
        definition = MODELS.get(model_id)
        if definition is None:
            raise SunSpecError(f"model {model_id} is not defined here (known: {sorted(MODELS)})")
        header = ModelHeader(model_id, address, definition.length_with(mppt_modules))
        headers.append(header)
        address = header.end_address
    if address + HEADER_REGISTERS > 0x10000:
        raise SunSpecError(f"models {list(model_ids)} do not fit below address 65536")
    return SunSpecMap(base_address, tuple(headers))


async def find_base_address(read: ReadHolding) -> int | None:
    """The first of 40000, 0, 50000 holding the "SunS" marker; None if none does."""
    for base in BASE_ADDRESSES:
        registers = await read(base, len(SUNS_MARKER))
        if registers is not None and tuple(registers) == SUNS_MARKER:
            return base
    return None


async def discover(read: ReadHolding, max_models: int = MAX_MODELS) -> SunSpecMap | None:
    """Find the marker and walk the model chain (ID, L) to the end model 0xFFFF.

    Returns None when no base address holds the marker. A chain that breaks (a header
    that cannot be read, a model running past address 65535, more than ``max_models``
    models) gives the models found before it with ``complete=False``.
    """
    base = await find_base_address(read)
    if base is None:
        return None
    headers: list[ModelHeader] = []
    address = base + len(SUNS_MARKER)
    while len(headers) < max_models and address + HEADER_REGISTERS <= 0x10000:
        registers = await read(address, HEADER_REGISTERS)
        if registers is None or len(registers) != HEADER_REGISTERS:
            break
        model_id, length = int(registers[0]), int(registers[1])
        if model_id == END_MODEL_ID:
            return SunSpecMap(base, tuple(headers))
        header = ModelHeader(model_id, address, length)
        if header.end_address > 0x10000:
            break
        headers.append(header)
        address = header.end_address
    return SunSpecMap(base, tuple(headers), complete=False)


def decode_string(registers: Sequence[int]) -> str:
    """A SunSpec ``string`` point: two characters per register, high byte first,
    NUL-padded."""
    raw = b"".join((int(r) & 0xFFFF).to_bytes(2, "big") for r in registers)
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def encode_string(text: str, registers: int) -> list[int]:
    """``text`` as a NUL-padded SunSpec string of ``registers`` registers."""
    raw = text.encode("latin-1")[: 2 * registers].ljust(2 * registers, b"\x00")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


async def read_common(read: ReadHolding, header: ModelHeader) -> CommonInfo | None:
    """Manufacturer, model and serial number from common model 1 (one read of 64
    registers); None if the model cannot be read."""
    if header.model_id != COMMON_MODEL_ID:
        raise SunSpecError(f"model {header.model_id} is not the common model 1")
    first = COMMON_STRINGS[0][1]
    last = max(offset + count for _name, offset, count in COMMON_STRINGS)
    registers = await read(header.address + first, last - first)
    if registers is None or len(registers) != last - first:
        return None
    text = {
        name: decode_string(registers[offset - first : offset - first + count])
        for name, offset, count in COMMON_STRINGS
    }
    return CommonInfo(text["Mn"], text["Md"], text["SN"])


def _common_body(common: CommonInfo) -> list[int]:
    """The 66 registers after model 1's header: Mn, Md, Opt, Vr, SN strings, DA 1, pad."""
    body = [0] * MODELS[COMMON_MODEL_ID].length
    values = {"Mn": common.manufacturer, "Md": common.model, "SN": common.serial}
    for name, offset, count in COMMON_STRINGS:
        start = offset - HEADER_REGISTERS
        body[start : start + count] = encode_string(values[name], count)
    body[66 - HEADER_REGISTERS] = 1  # DA: device address
    return body


async def read_scale_factors(read: ReadHolding, sunspec_map: SunSpecMap) -> dict[str, int]:
    """The scale-factor exponents a device serves now, by profile point name
    (``{"m103_W_SF": 1, ...}``): one read per known model; "not implemented" (0x8000)
    and unreadable ones are left out."""
    exponents: dict[str, int] = {}
    for header, prefix in zip(sunspec_map.models, _prefixes(sunspec_map.models), strict=True):
        definition = MODELS.get(header.model_id)
        sf_points = [p for p in definition.points if p.name.endswith("_SF")] if definition else []
        if not sf_points:
            continue
        first = min(p.offset for p in sf_points)
        count = max(p.offset for p in sf_points) - first + 1
        registers = await read(header.address + first, count)
        if registers is None or len(registers) != count:
            continue
        for point in sf_points:
            word = int(registers[point.offset - first]) & 0xFFFF
            if word != 0x8000:
                exponents[prefix + point.name] = word - 0x10000 if word & 0x8000 else word
    return exponents


def _prefixes(models: Sequence[ModelHeader]) -> list[str]:
    """Point name prefix per model: ``m103_``; ``m802_2_`` for a second model 802."""
    seen: dict[int, int] = {}
    prefixes = []
    for header in models:
        seen[header.model_id] = seen.get(header.model_id, 0) + 1
        n = seen[header.model_id]
        prefixes.append(f"m{header.model_id}_" if n == 1 else f"m{header.model_id}_{n}_")
    return prefixes


def _point_dict(
    point: SunSpecPoint, name: str, address: int, sf_name: str | None
) -> dict[str, object]:
    entry: dict[str, object] = {"name": name, "address": address, "type": point.type.value}
    if point.scale != 1.0:
        entry["scale"] = point.scale
    if sf_name is not None:
        entry["scale_factor"] = sf_name
    if point.unit:
        entry["unit"] = point.unit
    return entry


def build_profile(
    sunspec_map: SunSpecMap,
    *,
    name: str,
    common: CommonInfo | None = None,
    sf_exponents: Mapping[str, int] | None = None,
    serve_common: bool = False,
) -> DeviceProfile:
    """A profile for the known models of ``sunspec_map``.

    Points are named ``m<model>_<point>`` (``m160_module<k>_<point>`` in model 160's
    blocks). Each metric goes to the first model in the chain that gives it; the same
    value of a later model is kept as a helper point (no metric), so one device never
    reports a metric twice. Static blocks: the marker, every model header, model 160's
    module count N, the end model, and, when given, the scale-factor exponents
    ``sf_exponents`` (what a simulator serves; keyed by the profile's point name,
    ``{"m103_W_SF": 1}``, or by the model's, ``{"W_SF": 1}`` for every model with that
    point, the first winning) and, with ``serve_common``, the identification strings of
    ``common`` in model 1.
    """
    points: list[dict[str, object]] = []
    static: list[dict[str, object]] = [
        {"address": sunspec_map.base_address, "registers": list(SUNS_MARKER)}
    ]
    used_metrics: set[str] = set()
    exponents = dict(sf_exponents or {})
    for header, prefix in zip(sunspec_map.models, _prefixes(sunspec_map.models), strict=True):
        static.append({"address": header.address, "registers": [header.model_id, header.length]})
        definition = MODELS.get(header.model_id)
        if definition is None:
            continue
        if header.model_id == COMMON_MODEL_ID and serve_common and common is not None:
            static.append(
                {"address": header.address + HEADER_REGISTERS, "registers": _common_body(common)}
            )
        for point in definition.points:
            entry = _point_dict(
                point,
                prefix + point.name,
                header.address + point.offset,
                prefix + point.sf if point.sf else None,
            )
            if point.metric is not None and point.metric not in used_metrics:
                entry["metric"] = point.metric
                used_metrics.add(point.metric)
            points.append(entry)
            exponent = exponents.get(prefix + point.name, exponents.get(point.name))
            if exponent is not None and point.type is RegisterType.INT16:
                static.append(
                    {"address": header.address + point.offset, "registers": [exponent & 0xFFFF]}
                )
        block = definition.block
        blocks = definition.block_count(header.length)
        if block is None:
            continue
        n_point = next(p for p in definition.points if p.name == "N")
        static.append({"address": header.address + n_point.offset, "registers": [blocks]})
        for k in range(blocks):
            base = header.address + block.offset + k * block.length
            for point in block.points:
                points.append(
                    _point_dict(
                        point,
                        f"{prefix}{block.name}{k + 1}_{point.name}",
                        base + point.offset,
                        prefix + point.sf if point.sf else None,
                    )
                )
    end = sunspec_map.models[-1].end_address if sunspec_map.models else sunspec_map.base_address + 2
    if sunspec_map.complete:
        static.append({"address": end, "registers": [END_MODEL_ID, 0]})
    labels = ", ".join(
        f"{h.model_id} ({MODELS[h.model_id].label})" if h.known else f"{h.model_id} (not read)"
        for h in sunspec_map.models
    )
    info = common or CommonInfo()
    ids = ", ".join(map(str, sunspec_map.model_ids))
    reference = "SunSpec Information Model Reference, models " + labels
    data = {
        "profile": {
            "name": name,
            "manufacturer": info.manufacturer,
            "model": info.model or f"SunSpec device, models {ids}",
            "reference": f"{reference}; base address {sunspec_map.base_address}",
        },
        "points": points,
        "static": static,
    }
    return parse_profile(data, f"SunSpec map of {name}")
