"""``zerocarbon devices scan``: which unit ids answer on a Modbus TCP endpoint (a device
or a serial gateway), which of them are SunSpec devices and with which models, and the
profile files and ``[[devices]]`` entries a user pastes into the site file.

Probing (Modbus Application Protocol v1.1b3, 7; Modbus Messaging on TCP/IP
Implementation Guide v1.0b): each unit id gets one read of holding registers 40000-40001
(where a SunSpec device has its "SunS" marker). Any answer, an exception response too,
means a unit is there, except the gateway exceptions 0x0A (path unavailable) and 0x0B
(target device failed to respond), which a gateway sends for an id with no device
behind it; no answer within ``timeout_s`` means no unit. Ids are probed over a few
connections at once (``connections``), one request at a time on each, so a 247-id scan
takes at most ``247 / connections * timeout_s`` seconds (measured on loopback with every
id silent and 0.1 s: 24.8 s over 1 connection, 6.3 s over 4, 3.2 s over 8); behind a
serial gateway the bus still takes one request at a time, and the gateway's own reply
timeout per absent id bounds the scan. A TCP-native device often
answers every unit id (or only 1 and 255): when every id probed answers, the report
keeps the first and says so.

For each unit found: SunSpec discovery (:mod:`zerocarbon.metering.sunspec`: the marker
at 40000, 0 or 50000, then the model chain) and the common model's identification; a
unit without a SunSpec map is tried against the bundled profiles: a profile whose every
register block reads without an exception is a candidate (it fits, though another
device could fit as well).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zerocarbon.ingest.modbus.planner import needed_points, plan_reads
from zerocarbon.ingest.modbus.tcp_transport import ModbusTcpTransport
from zerocarbon.ingest.modbus.transport import (
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    ModbusExceptionResponse,
    ModbusLinkDown,
    ModbusTimeout,
)
from zerocarbon.metering.profile import PROFILES_DIR, RegisterTable, load_profile
from zerocarbon.metering.profile_writer import profile_to_toml
from zerocarbon.metering.sunspec import (
    COMMON_MODEL_ID,
    MODELS,
    SUNS_MARKER,
    CommonInfo,
    ReadHolding,
    SunSpecMap,
    build_profile,
    discover,
    read_common,
    read_scale_factors,
)

DEFAULT_UNITS = "1-247,255"  # the serial unit ids, and 255 for TCP-native devices
PROBE_ADDRESS = 40000  # SunSpec's first base address: a SunSpec device answers "SunS"
GATEWAY_NO_TARGET = frozenset({0x0A, 0x0B})  # gateway path unavailable / target silent
INVERTER_MODELS = frozenset({101, 102, 103, 111, 112, 113})
STORAGE_MODELS = frozenset({124, 802})

Progress = Callable[[str], None]


class ScanError(Exception):
    """The scan could not run (endpoint unreachable, link lost); names host:port."""


def parse_unit_ids(text: str) -> tuple[int, ...]:
    """Unit ids from ``"1-247"``, ``"1,2,10-12,255"``: sorted, without repeats, 0..255."""
    ids: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"unit ids: {part!r} is not a number or a range like 1-247")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if not 0 <= first <= last <= 255:
            raise ValueError(f"unit ids: {part!r} is not within 0..255 (low-high)")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


@dataclass(frozen=True, slots=True)
class UnitReport:
    """One unit id that answered."""

    unit_id: int
    sunspec: SunSpecMap | None = None
    common: CommonInfo | None = None
    candidates: tuple[str, ...] = ()  # bundled profiles whose registers all answer
    scale_factors: tuple[tuple[str, int], ...] = ()  # SunSpec: (point name, exponent) read


@dataclass(frozen=True, slots=True)
class ScanReport:
    host: str
    port: int
    probed: tuple[int, ...]
    units: tuple[UnitReport, ...]
    every_unit_answers: bool = False  # a TCP-native device: only the first is kept

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class _Link:
    """One connection of the scan: reads raise :class:`ModbusExceptionResponse` or
    :class:`ModbusTimeout` as the transport does, and reconnect once when the link
    drops (a second :class:`ModbusLinkDown` ends the scan)."""

    def __init__(self, transport: ModbusTcpTransport, timeout_s: float) -> None:
        self.transport = transport
        self.timeout_s = timeout_s

    async def read(self, unit_id: int, table: RegisterTable, address: int, count: int) -> list[int]:
        function = READ_INPUT_REGISTERS if table is RegisterTable.INPUT else READ_HOLDING_REGISTERS
        try:
            return await self.transport.read_registers(
                unit_id, function, address, count, self.timeout_s
            )
        except ModbusLinkDown:
            await self.transport.connect()  # ModbusLinkDown again: the scan stops
            return await self.transport.read_registers(
                unit_id, function, address, count, self.timeout_s
            )

    def holding_reader(self, unit_id: int) -> ReadHolding:
        """A :data:`zerocarbon.metering.sunspec.ReadHolding` for ``unit_id``: None for an
        exception response or silence."""

        async def read(address: int, count: int) -> list[int] | None:
            try:
                return await self.read(unit_id, RegisterTable.HOLDING, address, count)
            except (ModbusExceptionResponse, ModbusTimeout):
                return None

        return read


def _meter_profiles() -> list[str]:
    """Bundled profiles that are not SunSpec maps (no "SunS" marker among their statics)."""
    names = []
    for path in sorted(PROFILES_DIR.glob("*.toml")):
        profile = load_profile(path.stem)
        if not any(tuple(b.registers[:2]) == SUNS_MARKER for b in profile.static):
            names.append(path.stem)
    return names


async def _fits(link: _Link, unit_id: int, name: str) -> bool:
    """Every register block ``name``'s collector would read answers with registers."""
    profile = load_profile(name)
    for block in plan_reads(needed_points(profile), max_gap_registers=0):
        try:
            await link.read(unit_id, block.table, block.address, block.count)
        except (ModbusExceptionResponse, ModbusTimeout):
            return False
    return True


async def _probe(link: _Link, unit_id: int) -> bool:
    """True when a unit answers at ``unit_id`` (see the module docstring)."""
    try:
        await link.read(unit_id, RegisterTable.HOLDING, PROBE_ADDRESS, len(SUNS_MARKER))
    except ModbusTimeout:
        return False
    except ModbusExceptionResponse as exc:
        return exc.exception_code not in GATEWAY_NO_TARGET
    return True


async def _describe(link: _Link, unit_id: int, meter_profiles: Sequence[str]) -> UnitReport:
    read = link.holding_reader(unit_id)
    sunspec = await discover(read)
    if sunspec is not None:
        common = None
        first = sunspec.models[0] if sunspec.models else None
        if first is not None and first.model_id == COMMON_MODEL_ID:
            common = await read_common(read, first)
        exponents = await read_scale_factors(read, sunspec)
        return UnitReport(unit_id, sunspec, common, scale_factors=tuple(sorted(exponents.items())))
    candidates = tuple([name for name in meter_profiles if await _fits(link, unit_id, name)])
    return UnitReport(unit_id, candidates=candidates)


async def scan(
    host: str,
    port: int,
    unit_ids: Sequence[int],
    *,
    timeout_s: float = 0.5,
    connections: int = 4,
    progress: Progress | None = None,
) -> ScanReport:
    """Probe ``unit_ids`` on ``host:port`` and describe the units that answer.

    ``timeout_s`` [s] is the wait for one answer; ``connections`` how many connections
    probe at once (1 for a gateway that takes one client). ``progress`` gets a line now
    and then. Raises :class:`ScanError` when the endpoint cannot be reached or the
    link is lost and cannot be opened again.
    """
    if not unit_ids:
        raise ValueError("no unit ids to probe")
    say = progress or (lambda _line: None)
    endpoint = f"{host}:{port}"
    connect_timeout_s = max(3.0, timeout_s)
    transports = [
        ModbusTcpTransport(host, port, connect_timeout_s=connect_timeout_s)
        for _ in range(max(1, min(connections, len(unit_ids))))
    ]
    try:
        await transports[0].connect()
    except ModbusLinkDown as exc:
        reason = str(exc).removeprefix(f"cannot connect to {endpoint}: ")
        raise ScanError(f"cannot reach {endpoint}: {reason}") from None
    links = [_Link(transports[0], timeout_s)]
    for transport in transports[1:]:
        try:
            await transport.connect()
        except ModbusLinkDown:
            break  # a gateway that takes fewer clients: scan with the ones open
        links.append(_Link(transport, timeout_s))
    say(f"scanning {endpoint}: {len(unit_ids)} unit ids over {len(links)} connection(s)")
    meter_profiles = _meter_profiles()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for unit_id in unit_ids:
        queue.put_nowait(unit_id)
    answered: dict[int, bool] = {}
    reports: dict[int, UnitReport] = {}

    async def work(link: _Link) -> None:
        while not queue.empty():
            unit_id = queue.get_nowait()
            present = await _probe(link, unit_id)
            answered[unit_id] = present
            if present:
                reports[unit_id] = report = await _describe(link, unit_id, meter_profiles)
                say(f"unit {unit_id}: {_summary(report)}")
            done = len(answered)
            if done % 16 == 0 or done == len(unit_ids):
                found = sum(answered.values())
                say(f"probed {done}/{len(unit_ids)} unit ids, {found} answer")

    try:
        async with asyncio.TaskGroup() as group:
            for link in links:
                group.create_task(work(link))
    except* ModbusLinkDown as group_error:
        raise ScanError(f"lost the link to {endpoint}: {group_error.exceptions[0]}") from None
    finally:
        for transport in transports:
            await transport.close()
    every = len(unit_ids) > 1 and all(answered.get(u, False) for u in unit_ids)
    units = tuple(reports[u] for u in sorted(reports))
    return ScanReport(host, port, tuple(unit_ids), units[:1] if every else units, every)


def _models_text(sunspec: SunSpecMap) -> str:
    parts = [
        f"{h.model_id} ({MODELS[h.model_id].label})" if h.known else str(h.model_id)
        for h in sunspec.models
    ]
    text = ", ".join(parts) or "none"
    return text if sunspec.complete else text + " (the chain breaks after these)"


def _summary(report: UnitReport) -> str:
    if report.sunspec is not None:
        return f"SunSpec at {report.sunspec.base_address}, models {_models_text(report.sunspec)}"
    if report.candidates:
        return "no SunSpec map; fits the bundled profile(s) " + ", ".join(report.candidates)
    return "answers; no SunSpec map and no bundled profile fits"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "device"


def profile_name(report: ScanReport, unit: UnitReport) -> str:
    """Name (and file stem) of the profile printed for a SunSpec unit."""
    return f"sunspec_{_slug(report.host)}_{report.port}_u{unit.unit_id}"


def _role(unit: UnitReport) -> str:
    ids = set(unit.sunspec.model_ids) if unit.sunspec is not None else set()
    if ids & INVERTER_MODELS:
        return "pv"
    if ids & STORAGE_MODELS:
        return "battery"
    return "load"


def _device_lines(report: ScanReport, unit: UnitReport, profile: str) -> list[str]:
    return [
        "[[devices]]",
        f'id = "unit{unit.unit_id}"            # choose: lower-case, unique in the site',
        f'role = "{_role(unit)}"   # check: grid | pv | wind | battery | load | production',
        'protocol = "modbus_tcp"',
        f'profile = "{profile}"',
        f'host = "{report.host}"',
        f"port = {report.port}",
        f"device_id = {unit.unit_id}",
        "poll_interval_s = 5",
    ]


@dataclass(frozen=True, slots=True)
class RenderedScan:
    """What the scan prints (``text``) and the profile files it writes (path -> text)."""

    text: str
    files: dict[Path, str]


def render(report: ScanReport, out_dir: Path | None = None) -> RenderedScan:
    """The scan's output: a summary as comments, the profile of each SunSpec unit, and
    ``[[devices]]`` entries. With ``out_dir`` the profiles go to files there and the
    text is a TOML fragment of the entries alone (their ``profile`` the file's absolute
    path); without, each profile is printed after a ``# ---- profile file NAME.toml``
    line, and the entries after a ``# ---- [[devices]] entries`` line.
    """
    head = [
        f"zerocarbon devices scan of {report.endpoint}: {len(report.probed)} unit id(s) "
        f"probed, {len(report.units)} answer.",
    ]
    if report.every_unit_answers:
        head.append(
            "Every unit id answers: a TCP-native device that ignores the unit id; "
            f"only unit {report.units[0].unit_id} is described."
        )
    head += [f"unit {u.unit_id}: {_summary(u)}" for u in report.units]
    for u in report.units:
        if u.common is not None and (u.common.manufacturer or u.common.model):
            head.append(
                f"unit {u.unit_id}: manufacturer {u.common.manufacturer!r}, model "
                f"{u.common.model!r}, serial {u.common.serial!r}"
            )
    out: list[str] = [f"# {line}" for line in head]
    files: dict[Path, str] = {}
    devices: list[str] = []
    for unit in report.units:
        if unit.sunspec is not None:
            name = profile_name(report, unit)
            profile = build_profile(
                unit.sunspec, name=name, common=unit.common, sf_exponents=dict(unit.scale_factors)
            )
            comment = (
                f"SunSpec device at {report.endpoint} unit {unit.unit_id}, found by "
                "`zerocarbon devices scan`.\nModels: "
                f"{_models_text(unit.sunspec)}.\nThe [[static]] blocks are the map's "
                "marker, model headers and the scale factors the\ndevice served at scan "
                "time: what a simulator serves. The collector reads the scale\nfactors "
                "at every poll."
            )
            text = profile_to_toml(profile, comment)
            if out_dir is not None:
                path = (out_dir / f"{name}.toml").resolve()
                files[path] = text
                where = str(path)
            else:
                out += ["", f"# ---- profile file {name}.toml " + "-" * 20, text.rstrip()]
                where = f"{name}.toml"
            devices += ["", *_device_lines(report, unit, where)]
        elif unit.candidates:
            others = unit.candidates[1:]
            devices += [
                "",
                f"# unit {unit.unit_id}: its registers fit {unit.candidates[0]} (check the model)",
            ]
            if others:
                devices.append(f"# unit {unit.unit_id} also fits: {', '.join(others)}")
            devices += _device_lines(report, unit, unit.candidates[0])
        else:
            devices += [
                "",
                f"# unit {unit.unit_id} answers, but shows no SunSpec map and fits no bundled",
                "# profile: write its profile (see zerocarbon/metering/profiles/), then",
                *(f"# {line}" for line in _device_lines(report, unit, "PROFILE.toml")),
            ]
    if out_dir is None:
        out += ["", "# ---- [[devices]] entries " + "-" * 20]
        if any(u.sunspec is not None for u in report.units):
            out.append("# save each profile above as its file next to the site file")
    out += devices
    return RenderedScan("\n".join(out) + "\n", files)
