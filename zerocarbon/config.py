"""Site configuration: one TOML file -> validated, frozen models.

Any error stops start-up with a message that names the file, the path inside it
(``devices[3].port``) and the offending value. See ``examples/demo-site.toml`` for a
commented example of every key.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zerocarbon.metering.dlt645 import DEFAULT_IDENTIFIERS, METRIC_OF_IDENTIFIER, metric_of
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.metering.profile import DeviceProfile, ProfileError, load_profile
from zerocarbon.metering.registers import RegisterType
from zerocarbon.validation import format_validation_errors


class SiteConfigError(ValueError):
    """The site file is missing or invalid. The message names path and value."""


class DeviceRole(StrEnum):
    GRID = "grid"  # the grid-connection (fiscal) meter
    PV = "pv"  # a PV inverter
    BATTERY = "battery"  # a battery / microgrid controller
    LOAD = "load"  # a sub-meter of a production line or building
    PRODUCTION = "production"  # a production-output counter
    WIND = "wind"  # an on-site wind turbine (generation)
    FUEL = "fuel"  # a fuel meter (natural gas, diesel, ...): Scope 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteInfo(_Frozen):
    name: str = "factory"
    timezone: str = "UTC"  # IANA name; used to show "today" and local hours

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class GridConfig(_Frozen):
    """Where the site's grid electricity comes from, for Scope 2 factors.

    Whether ``region``/``province``/``data_year`` name a published factor is checked
    by :func:`zerocarbon.carbon_engine.factors.resolve_grid_factors` at start-up and by
    ``zerocarbon check-config`` (config does not depend on the engine's data).
    """

    region: str = "national"  # MEE regional grid or "national"
    province: str | None = None  # MEE provincial factor where published (overrides region)
    data_year: int = 2023  # MEE factor data year
    location_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override
    market_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override
    # optional hourly grid-intensity series (CSV: hour_start,location_kg_per_kwh[,market..])
    hourly_factors_csv: str | None = None  # path, relative to the site file


class FuelConfig(_Frozen):
    """Per-site overrides of a fuel's GB/T 32150 parameters ([fuels.<name>])."""

    ncv_gj_per_unit: float | None = Field(default=None, gt=0)  # net calorific value
    carbon_content_tc_per_gj: float | None = Field(default=None, gt=0)  # t C per GJ
    oxidation_rate: float | None = Field(default=None, gt=0, le=1)  # fraction oxidised
    density_kg_per_l: float | None = Field(default=None, gt=0)  # liquid fuels metered in l


class LineConfig(_Frozen):
    """A production line: its sub-meters and output counters are the devices whose
    ``line`` names it ([[lines]])."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    product: str = ""  # what one unit of output is, e.g. "stamped panel"
    unit: str = "units"  # unit of output, e.g. "pcs", "t"


_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


class GreenPowerContract(_Frozen):
    """A green-power purchase (green electricity trade / PPA) ([[green_power]]).

    Volumes are delivered grid electricity [kWh] that is carbon-free for market-based
    Scope 2: either monthly totals (``monthly_kwh = { "2026-06" = 120000 }``), allocated to
    the month's hours by the engine, or an hourly series (``hourly_csv``: hour_start,kwh).
    """

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    monthly_kwh: dict[Annotated[str, Field(pattern=_MONTH)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    hourly_csv: str | None = None  # path, relative to the site file

    @model_validator(mode="after")
    def _one_source(self) -> GreenPowerContract:
        if bool(self.monthly_kwh) == (self.hourly_csv is not None):
            raise ValueError("give exactly one of monthly_kwh or hourly_csv")
        return self


class CertificateBatch(_Frozen):
    """Green electricity certificates (GEC) retired by the site ([[certificates]]).

    1 GEC = 1 MWh (NDRC/MOF/NEA notice of 2023). ``issued`` is the month the energy was
    generated (certificates are issued monthly and valid for two years); ``applies_to``
    the consumption month they are retired against.
    """

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    count: int = Field(gt=0)  # certificates = MWh
    issued: Annotated[str, Field(pattern=_MONTH)]
    applies_to: Annotated[str, Field(pattern=_MONTH)]

    @model_validator(mode="after")
    def _valid_when_used(self) -> CertificateBatch:
        iy, im = (int(x) for x in self.issued.split("-"))
        ay, am = (int(x) for x in self.applies_to.split("-"))
        months = (ay - iy) * 12 + (am - im)
        if not 0 <= months < 24:
            raise ValueError(
                f"applies_to {self.applies_to} is not within the two years a certificate "
                f"issued {self.issued} is valid"
            )
        return self


class IngestConfig(_Frozen):
    """Which reading times are accepted ([ingest]). Readings outside
    [now - accept_past_h, now + accept_future_s] (gateway clock) are rejected and counted."""

    accept_past_h: float = Field(default=720.0, gt=0)  # how far back data may arrive [h]
    accept_future_s: float = Field(default=300.0, ge=0)  # clock skew allowed ahead [s]


class SpoolConfig(_Frozen):
    """The store-and-forward spool ([storage.spool]): every admitted batch is written here
    first (and acknowledged to the collectors once there), then forwarded to the database
    in order; it fills while the database is down or slower than ingest."""

    dir: str | None = None  # None: <data dir>/spool; a relative path is to the site file
    segment_mib: int = Field(default=64, ge=1, le=4096)  # size of one segment file [MiB]
    quota_mib: int = Field(default=2048, ge=1)  # disk the spool may use [MiB]
    alarm_percent: float = Field(default=80.0, gt=0, le=100)  # alarm above this use [%]
    # "always": fsync every appended batch before it is acknowledged (survives a power
    # cut); "interval": fsync at most every fsync_interval_s (survives a process crash);
    # "never": leave it to the operating system
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval_s: float = Field(default=1.0, gt=0)  # with fsync = "interval" [s]


class StorageConfig(_Frozen):
    """How readings are kept ([storage]). With TimescaleDB, ``readings`` is a hypertable
    with compression and retention policies; without it, native daily range partitions
    are created ahead and dropped by retention."""

    retention_days: int | None = Field(default=None, ge=1)  # raw readings kept; None: all
    compress_after_days: int = Field(default=7, ge=1)  # TimescaleDB: compress older chunks
    chunk_interval_h: float | None = Field(default=None, gt=0)  # None: from the ingest rate
    partitions_ahead_days: int = Field(default=3, ge=1)  # plain PostgreSQL: days made ahead
    spool: SpoolConfig = SpoolConfig()


class AccountingConfig(_Frozen):
    """Data-quality checks of the hourly balance ([accounting])."""

    submeter_tolerance_pct: float = Field(default=5.0, ge=0)  # sub-meters vs their main meter


class MqttConfig(_Frozen):
    url: str = "mqtt://127.0.0.1:1883"
    qos: Literal[0, 1] = 1
    client_id: str | None = None

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise ValueError("must look like mqtt://host:port")
        return value

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 1883


class _DeviceBase(_Frozen):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    role: DeviceRole
    line: str | None = None  # production line this device belongs to
    rated_power_kw: float | None = Field(default=None, gt=0)
    parent: str | None = None  # id of the meter this one is a sub-meter of
    fuel: str | None = None  # role "fuel": fuel name (GB/T 32150 table or [fuels.<name>])
    gap_s: float | None = Field(default=None, gt=0)  # longer silence = a gap (estimated)

    @model_validator(mode="after")
    def _fuel_only_for_fuel_meters(self) -> _DeviceBase:
        if (self.role is DeviceRole.FUEL) != (self.fuel is not None):
            raise ValueError("a device has `fuel` exactly when its role is 'fuel'")
        return self


class ModbusTcpDevice(_DeviceBase):
    protocol: Literal["modbus_tcp"]
    profile: str  # bundled profile name or path to a profile TOML (relative to the site file)
    host: Annotated[str, Field(min_length=1)]  # required: no silent default to this machine
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)  # Modbus unit identifier
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    max_gap_registers: int = Field(default=10, ge=0, le=125)  # read planner gap fill limit
    retries: int = Field(default=1, ge=0, le=10)  # extra sends of a request that timed out
    # link properties (every device on one host:port must agree): requests outstanding
    # at once (1: one at a time; more only for gateways that take a window of MBAP
    # transaction ids), and the pause between two requests [s] for slow gateways/buses
    max_in_flight: int = Field(default=1, ge=1, le=64)
    request_gap_s: float = Field(default=0.0, ge=0, le=10)

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, value: str, info: ValidationInfo) -> str:
        base_dir = (info.context or {}).get("base_dir")
        try:
            load_profile(value, base_dir)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        return value

    def load_profile(self, base_dir: Path | None = None) -> DeviceProfile:
        return load_profile(self.profile, base_dir)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)


class Dlt645Device(_DeviceBase):
    """A DL/T 645-2007 meter on an RS-485 line behind a transparent serial-to-TCP
    gateway (raw frames over TCP); several meters may share one gateway (``host:port``)."""

    protocol: Literal["dlt645"]
    host: Annotated[str, Field(min_length=1)]  # the gateway's address (required)
    port: int = Field(ge=1, le=65535)  # the gateway's TCP port (required: no standard one)
    # meter address as printed on it: 12 digits; "AA" pairs are wildcards (one meter a line)
    address: Annotated[str, Field(pattern=r"^([0-9]{2}|[Aa]{2}){6}$")]
    poll_interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)  # one reply [s]
    # data identifiers to read, 8 hex digits (DL/T 645-2007 附录A); empty: the defaults
    identifiers: tuple[Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{8}$")], ...] = ()

    @field_validator("identifiers")
    @classmethod
    def _known_identifiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {f"{d:08X}" for d in METRIC_OF_IDENTIFIER}
        unknown = [v for v in value if v.upper() not in known]
        if unknown:
            raise ValueError(f"unknown data identifiers {unknown}; known: {sorted(known)}")
        return value

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)

    def data_ids(self) -> tuple[int, ...]:
        """The identifiers to read (the defaults when the site file names none)."""
        return tuple(int(v, 16) for v in self.identifiers) or DEFAULT_IDENTIFIERS

    def metrics(self) -> tuple[str, ...]:
        """The metrics its identifiers carry."""
        return tuple(dict.fromkeys(metric_of(d) for d in self.data_ids()))


class MqttField(_Frozen):
    """A JSON key's metric, with the counter register behind it when the device
    forwards a Modbus counter (its wrap value is derived from type and scale)."""

    metric: str
    type: RegisterType | None = None  # register the device reads the counter from
    scale: float = Field(default=1.0, gt=0)  # value = register x scale


class MqttDevice(_DeviceBase):
    protocol: Literal["mqtt"]
    topic: str  # exact topic the device publishes JSON to
    fields: dict[str, str | MqttField]  # JSON key -> metric name (or a table, below)
    ts_field: str | None = "ts"  # JSON key of the timestamp (ISO 8601 or POSIX s); None: arrival
    interval_s: float = Field(default=10.0, gt=0)  # expected publish interval [s]

    def field_metric(self, key: str) -> str:
        spec = self.fields[key]
        return spec if isinstance(spec, str) else spec.metric

    def counter_register(self, metric: str) -> tuple[RegisterType, float] | None:
        """(register type, scale) of a counter metric, when the mapping gives them."""
        for spec in self.fields.values():
            if isinstance(spec, MqttField) and spec.metric == metric and spec.type is not None:
                return spec.type, spec.scale
        return None

    @field_validator("topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "#+"):
            raise ValueError("must be a non-empty topic without wildcards")
        return value

    @field_validator("fields")
    @classmethod
    def _known_metrics(cls, value: dict[str, str | MqttField]) -> dict[str, str | MqttField]:
        if not value:
            raise ValueError("must map at least one JSON key to a metric")
        for key, spec in value.items():
            name = spec if isinstance(spec, str) else spec.metric
            if name not in METRICS_BY_NAME:
                known = ", ".join(sorted(METRICS_BY_NAME))
                raise ValueError(f"key {key!r}: unknown metric {name!r}; known: {known}")
        return value


Device = Annotated[ModbusTcpDevice | MqttDevice | Dlt645Device, Field(discriminator="protocol")]


class _DeviceFault(_Frozen):
    device: str  # id of the device the fault happens to


class _CounterFault(_DeviceFault):
    metric: str | None = None  # counter metric; None: every counter of the device

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS_BY_NAME:
            raise ValueError(f"unknown metric {value!r}")
        return value


class CounterResetFault(_CounterFault):
    """The device restarts at ``at_s`` and its counter starts again from 0, counting
    the true energy from there."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]


class MeterReplacementFault(_CounterFault):
    """A new meter is fitted at ``at_s``: the counter jumps to ``new_value`` and counts
    the true energy from there."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    new_value: float = Field(ge=0)  # the new meter's reading [counter unit, e.g. kWh]


class RolloverFault(_CounterFault):
    """The counter starts ``below_wrap`` under its register's wrap value, so it wraps
    once that much energy has been counted (integer registers only)."""

    below_wrap: float = Field(default=10.0, gt=0)  # headroom at the start [counter unit]


class GapFault(_DeviceFault):
    """The device is silent for ``duration_s`` from ``start_s``; its counters keep
    counting. ``silent``: its Modbus unit gets no replies; ``closed``: its Modbus
    endpoint stops listening and drops connections. MQTT devices stop publishing."""

    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    duration_s: float = Field(gt=0)  # [simulated s]
    mode: Literal["silent", "closed"] = "silent"


class LateDataFault(_DeviceFault):
    """MQTT: messages stamped in [start_s, start_s + duration_s) are held back and
    published ``delay_s`` after the window ends, in shuffled order, with their own
    timestamps."""

    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    duration_s: float = Field(gt=0)  # [simulated s]
    delay_s: float = Field(default=60.0, ge=0)  # [simulated s]


class DuplicateFault(_DeviceFault):
    """MQTT: messages published twice (same payload, same timestamp): a seeded
    ``share`` of those stamped in [start_s, end_s), and the first one at or after each
    of ``at_s``."""

    share: float = Field(default=0.0, ge=0, le=1)
    start_s: float = Field(default=0.0, ge=0)  # window of ``share`` [simulated s]
    end_s: float | None = Field(default=None, ge=0)  # None: to the end of the run
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = ()  # offsets [simulated s]


class BackwardStepFault(_CounterFault):
    """The counter reads ``step`` lower than its true value in
    [at_s, at_s + duration_s) (by default one MQTT publish interval: one message),
    then continues from the true value."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    step: float = Field(default=12.0, gt=0)  # [counter unit, e.g. kWh]
    duration_s: float | None = Field(default=None, gt=0)  # None: publish_interval_s


class _WindowFault(_DeviceFault):
    start_s: float = Field(default=0.0, ge=0)  # offset from the simulation start [simulated s]
    duration_s: float | None = Field(default=None, gt=0)  # None: to the end of the run


class _MetricFault(_DeviceFault):
    metric: str | None = None  # None: every metric the fault can apply to

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS_BY_NAME:
            raise ValueError(f"unknown metric {value!r}")
        return value


class ExceptionCodeFault(_WindowFault):
    """Modbus: the unit answers every request with exception ``code`` in the window
    (Modbus Application Protocol v1.1b3 section 7: 04 server device failure, 06 server
    device busy, ...)."""

    code: int = Field(default=0x04, ge=1, le=0xFF)


class SingleConnectionFault(_DeviceFault):
    """Modbus: the device's endpoint serves one client connection at a time; a second
    concurrent one is accepted and closed at once."""


class WordSwapFault(_WindowFault, _MetricFault):
    """Modbus: the device serves its multi-register values (or only ``metric``'s) with
    the words in the wrong order in the window, as a meter configured for the other word
    order does."""


class StuckValueFault(_WindowFault, _MetricFault):
    """The device keeps reporting the value it reported when the window began
    (``metric``, or every metric when None)."""


class SpikeFault(_MetricFault):
    """A gauge reads ``factor`` x its value (or ``value``) once at each of ``at_s``: the
    first Modbus read of it, or the first MQTT message, at or after that time."""

    metric: str = "active_power_kw"
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = Field(min_length=1)  # [simulated s]
    factor: float = 10.0
    value: float | None = None  # served instead of factor x the value [metric unit]


class TornReadFault(_CounterFault):
    """Modbus: a counter of two registers is updated one word at a time; the first read
    after a carry into its high word gets the old high word with the new low word
    (``old_high``) or the new high word with the old low word (``old_low``)."""

    start_s: float = Field(default=0.0, ge=0)  # [simulated s]
    duration_s: float | None = Field(default=None, gt=0)  # None: to the end of the run
    mode: Literal["old_high", "old_low"] = "old_high"
    below_carry: float | None = Field(default=None, gt=0)  # start this far below a carry


class ClockSkewFault(_WindowFault):
    """MQTT: the payload timestamps of messages in the window are ``skew_s`` off the
    plant's time (+ ahead, - behind)."""

    skew_s: float  # [s]

    @field_validator("skew_s")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class MalformedFault(_DeviceFault):
    """MQTT: a seeded ``share`` of the messages stamped in [start_s, end_s), and the
    first one at or after each of ``at_s``, are replaced by malformed JSON of ``kinds``
    (chosen in turn, seeded)."""

    share: float = Field(default=0.0, ge=0, le=1)
    start_s: float = Field(default=0.0, ge=0)  # [simulated s]
    end_s: float | None = Field(default=None, ge=0)  # None: to the end of the run
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = ()  # [simulated s]
    kinds: tuple[Literal["truncated", "not_object", "deep_nesting"], ...] = Field(
        default=("truncated", "not_object", "deep_nesting"), min_length=1
    )


class SimulatorFaults(_Frozen):
    """Faults of the simulated devices ([simulation.faults]); all off by default.

    Times are offsets from the simulation start in simulated seconds. Faults change
    what devices report, never the energy the plant uses (the ground truth); see
    :mod:`zerocarbon.simulators.faults`.
    """

    counter_resets: tuple[CounterResetFault, ...] = ()
    meter_replacements: tuple[MeterReplacementFault, ...] = ()
    rollovers: tuple[RolloverFault, ...] = ()
    gaps: tuple[GapFault, ...] = ()
    late_data: tuple[LateDataFault, ...] = ()
    duplicates: tuple[DuplicateFault, ...] = ()
    backward_steps: tuple[BackwardStepFault, ...] = ()
    exception_codes: tuple[ExceptionCodeFault, ...] = ()
    single_connection: tuple[SingleConnectionFault, ...] = ()
    word_swaps: tuple[WordSwapFault, ...] = ()
    stuck_values: tuple[StuckValueFault, ...] = ()
    spikes: tuple[SpikeFault, ...] = ()
    torn_reads: tuple[TornReadFault, ...] = ()
    clock_skews: tuple[ClockSkewFault, ...] = ()
    malformed: tuple[MalformedFault, ...] = ()


class SimulationConfig(_Frozen):
    """Parameters of the simulated plant (only the simulators read these)."""

    seed: int = 42
    latitude_deg: float = Field(default=31.2, ge=-90, le=90)
    longitude_deg: float = Field(default=121.5, ge=-180, le=180)
    base_load_kw: float = Field(default=150.0, ge=0)  # unmetered utilities load
    cloudiness: float = Field(default=0.3, ge=0, le=1)  # 0 clear sky .. 1 overcast
    battery_capacity_kwh: float = Field(default=500.0, gt=0)
    initial_soc_pct: float = Field(default=50.0, ge=0, le=100)
    units_per_kwh: float = Field(default=2.0, gt=0)  # production output per line kWh
    tick_s: float = Field(default=5.0, gt=0)  # simulated seconds per physics step
    publish_interval_s: float = Field(default=10.0, gt=0)  # MQTT publish period [sim s]
    faults: SimulatorFaults = SimulatorFaults()  # fault injection, all off


class SiteConfig(_Frozen):
    site: SiteInfo = SiteInfo()
    grid: GridConfig = GridConfig()
    mqtt: MqttConfig | None = None
    devices: tuple[Device, ...]
    lines: tuple[LineConfig, ...] = ()
    fuels: dict[str, FuelConfig] = Field(default_factory=dict)
    green_power: tuple[GreenPowerContract, ...] = ()
    certificates: tuple[CertificateBatch, ...] = ()
    ingest: IngestConfig = IngestConfig()
    storage: StorageConfig = StorageConfig()
    accounting: AccountingConfig = AccountingConfig()
    simulation: SimulationConfig = SimulationConfig()
    base_dir: Path | None = Field(default=None, exclude=True)  # folder of the site file

    @model_validator(mode="after")
    def _consistent(self) -> SiteConfig:
        seen: dict[str, int] = {}
        for i, device in enumerate(self.devices):
            if device.id in seen:
                raise ValueError(
                    f"devices[{i}].id: {device.id!r} already used by devices[{seen[device.id]}]"
                )
            seen[device.id] = i
        if not any(d.role is DeviceRole.GRID for d in self.devices):
            raise ValueError(
                "at least one device must have role 'grid' (the grid connection meter)"
            )
        for i, device in enumerate(self.devices):
            if device.parent is not None and device.parent not in seen:
                raise ValueError(f"devices[{i}].parent: no device {device.parent!r}")
            if device.parent == device.id:
                raise ValueError(f"devices[{i}].parent: a device cannot be its own parent")
        line_ids = [ln.id for ln in self.lines]
        if len(set(line_ids)) != len(line_ids):
            raise ValueError(f"lines: ids must be unique, got {line_ids}")
        if self.lines:
            for i, device in enumerate(self.devices):
                if device.line is not None and device.line not in line_ids:
                    raise ValueError(
                        f"devices[{i}].line: {device.line!r} is not one of [[lines]] {line_ids}"
                    )
        for kind, items in (("green_power", self.green_power), ("certificates", self.certificates)):
            ids = [x.id for x in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind}: ids must be unique, got {ids}")
        if self.mqtt is None and any(isinstance(d, MqttDevice) for d in self.devices):
            raise ValueError("MQTT devices are configured but there is no [mqtt] section")
        units: dict[tuple[str, int, int], str] = {}
        for d in self.modbus_devices:
            key = (d.host, d.port, d.device_id)
            if key in units:
                raise ValueError(
                    f"devices {units[key]!r} and {d.id!r} share "
                    f"{d.host}:{d.port} unit {d.device_id}"
                )
            units[key] = d.id
        links: dict[tuple[str, int], ModbusTcpDevice] = {}
        for d in self.modbus_devices:
            first = links.setdefault(d.endpoint, d)
            for name in ("max_in_flight", "request_gap_s"):
                if getattr(first, name) != getattr(d, name):
                    raise ValueError(
                        f"devices {first.id!r} and {d.id!r} share {d.host}:{d.port} but "
                        f"disagree on {name} ({getattr(first, name)} and {getattr(d, name)}): "
                        "it is a property of the link"
                    )
        meters: dict[tuple[str, int, str], str] = {}
        for m in self.dlt645_devices:
            mkey = (m.host, m.port, m.address.upper())
            if mkey in meters:
                raise ValueError(
                    f"devices {meters[mkey]!r} and {m.id!r} share "
                    f"{m.host}:{m.port} address {m.address}"
                )
            meters[mkey] = m.id
        return self

    @property
    def modbus_devices(self) -> tuple[ModbusTcpDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, ModbusTcpDevice))

    @property
    def mqtt_devices(self) -> tuple[MqttDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, MqttDevice))

    @property
    def dlt645_devices(self) -> tuple[Dlt645Device, ...]:
        return tuple(d for d in self.devices if isinstance(d, Dlt645Device))

    def device(self, device_id: str) -> ModbusTcpDevice | MqttDevice | Dlt645Device:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id!r} in the site config")

    def devices_with_role(
        self, role: DeviceRole
    ) -> tuple[ModbusTcpDevice | MqttDevice | Dlt645Device, ...]:
        return tuple(d for d in self.devices if d.role is role)

    def profile_of(self, device: ModbusTcpDevice) -> DeviceProfile:
        return device.load_profile(self.base_dir)

    def line_ids(self) -> tuple[str, ...]:
        """Production lines: those of [[lines]], else every device's ``line``, in order."""
        if self.lines:
            return tuple(ln.id for ln in self.lines)
        return tuple(dict.fromkeys(d.line for d in self.devices if d.line is not None))

    def resolve_path(self, path: str) -> Path:
        """A path of the site file, relative to the file's folder."""
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


def parse_site(
    data: dict[str, Any], source: str = "<site>", base_dir: Path | None = None
) -> SiteConfig:
    """Validate a parsed site document; raise :class:`SiteConfigError` naming every problem."""
    try:
        return SiteConfig.model_validate(
            {**data, "base_dir": base_dir}, context={"base_dir": base_dir}
        )
    except ValidationError as exc:
        raise SiteConfigError(format_validation_errors(source, exc)) from None


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site TOML file."""
    path = Path(path)
    if not path.is_file():
        raise SiteConfigError(f"site file {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_site(data, str(path), path.resolve().parent)
